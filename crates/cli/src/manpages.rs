//! `mta-sts completions SHELL` and `mta-sts man [--out DIR]`: shell completion scripts and
//! man pages generated from the clap definitions in `main.rs`, plus section-5 pages for the
//! two shipped configuration files generated from the commented files themselves
//! (`packaging/daemon.toml`, `packaging/serve.toml`), so a page cannot drift from its file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use roff::{Roff, italic, roman};

use crate::exit;
use crate::output::{out, outln};

/// Arguments of `mta-sts completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for (to standard output).
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `mta-sts man`.
///
/// The command is visible in `--help` (not hidden): packagers and users who install the
/// binary by hand both need to find out how to get the pages, and it has its own page.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

/// A shipped configuration file and the section-5 page generated from it.
struct ConfigPage {
    /// Page name without the section: `mta-sts-daemon.toml`.
    name: &'static str,
    /// Where the packages install the file.
    installed: &'static str,
    /// The subcommand reading it.
    command: &'static str,
    /// The commented file, as shipped.
    source: &'static str,
}

const CONFIG_PAGES: [ConfigPage; 2] = [
    ConfigPage {
        name: "mta-sts-daemon.toml",
        installed: "/etc/mta-sts/daemon.toml",
        command: "daemon",
        source: include_str!("../../../packaging/daemon.toml"),
    },
    ConfigPage {
        name: "mta-sts-serve.toml",
        installed: "/etc/mta-sts/serve.toml",
        command: "serve",
        source: include_str!("../../../packaging/serve.toml"),
    },
];

/// Writes the completion script of `shell` for `cmd` to standard output.
pub fn run_completions(args: &CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<u8> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mta-sts", &mut script);
    out!("{}", String::from_utf8_lossy(&script))?;
    Ok(exit::OK)
}

/// Writes `mta-sts.1`, one page per (nested) subcommand and the configuration files' section-5
/// pages into `args.out`, and lists the files written on standard output.
pub fn run_man(args: &ManArgs, cmd: clap::Command) -> anyhow::Result<u8> {
    let dir = &args.out;
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create {}; pass a writable directory with --out",
            dir.display()
        )
    })?;
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    command_pages(&cmd, dir, &mut written)?;
    for page in &CONFIG_PAGES {
        let path = dir.join(format!("{}.5", page.name));
        write_page(&path, config_page(page).as_bytes())?;
        written.push(path);
    }
    for path in written {
        outln!("{}", path.display())?;
    }
    Ok(exit::OK)
}

/// The pages of `cmd` and of its visible subcommands, depth first (`mta-sts-report-import.1`).
fn command_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page)
        .context("rendering a man page into memory failed")?;
    write_page(&path, &page)?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        command_pages(sub, dir, written)?;
    }
    Ok(())
}

fn write_page(path: &Path, page: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, page).with_context(|| {
        format!(
            "cannot write {}; pass a writable directory with --out",
            path.display()
        )
    })
}

/// What one line of a commented configuration file is.
#[derive(Debug, PartialEq)]
enum Line<'a> {
    Blank,
    /// `[section]`, `[[table]]` (not commented out).
    Section(&'a str),
    /// Prose of a `# comment`, without the `#`.
    Text(&'a str),
    /// A setting or an example, shown as written (`#key = value`, `#example: …`, `key = value`).
    Code(&'a str),
}

fn classify(line: &str) -> Line<'_> {
    let line = line.trim_end();
    if line.is_empty() {
        return Line::Blank;
    }
    let Some(comment) = line.strip_prefix('#') else {
        return if line.starts_with('[') {
            Line::Section(line)
        } else {
            Line::Code(line)
        };
    };
    if comment.starts_with("example:") || is_setting(comment) {
        return Line::Code(line);
    }
    Line::Text(comment.strip_prefix(' ').unwrap_or(comment))
}

/// `key = …`, `[table]` or `[[table]]` right after the `#`: a commented-out setting.
fn is_setting(text: &str) -> bool {
    let key_len = text
        .bytes()
        .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
        .count();
    (key_len > 0 && text[key_len..].starts_with(" =")) || text.starts_with('[')
}

/// The section-5 page of a shipped configuration file: its leading comment block is the
/// DESCRIPTION (kept as laid out), the rest is SETTINGS, one subsection per `[section]`, the
/// comments as paragraphs and the setting lines exactly as in the file.
fn config_page(page: &ConfigPage) -> String {
    let mut roff = Roff::new();
    let title = page.name.to_uppercase();
    let source = format!("mta-sts {}", env!("CARGO_PKG_VERSION"));
    roff.control(
        "TH",
        [title.as_str(), "5", "", source.as_str(), "File Formats"],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman(format!(
        "{} - configuration of mta-sts {}",
        page.name, page.command
    ))]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([italic(page.installed)]);
    roff.control("SH", ["DESCRIPTION"]);
    let mut lines = page.source.lines().peekable();
    roff.control("nf", []);
    while let Some(Line::Text(text)) = lines.peek().map(|l| classify(l)) {
        roff.text([roman(text)]);
        lines.next();
    }
    roff.control("fi", []);
    roff.control("SH", ["SETTINGS"]);
    let mut block = Block::None;
    for line in lines {
        match classify(line) {
            Line::Blank => block = close(&mut roff, block, Block::None),
            Line::Section(name) => {
                block = close(&mut roff, block, Block::None);
                roff.control("SS", [name]);
            }
            Line::Text(text) => {
                if block != Block::Text {
                    close(&mut roff, block, Block::None);
                    roff.control("PP", []);
                    block = Block::Text;
                }
                roff.text([roman(text)]);
            }
            Line::Code(code) => {
                if block != Block::Code {
                    close(&mut roff, block, Block::None);
                    roff.control("PP", []);
                    roff.control("RS", ["4"]);
                    roff.control("nf", []);
                    block = Block::Code;
                }
                roff.text([roman(code)]);
            }
        }
    }
    close(&mut roff, block, Block::None);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(format!("mta-sts-{}(1), mta-sts(1)", page.command))]);
    roff.render()
}

/// The kind of roff block open while turning a file into a page.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Block {
    None,
    Text,
    Code,
}

/// Ends `open` (a code block needs `.fi`/`.RE`) and returns `next`.
fn close(roff: &mut Roff, open: Block, next: Block) -> Block {
    if open == Block::Code {
        roff.control("fi", []);
        roff.control("RE", []);
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_told_apart() {
        assert_eq!(
            classify("# Where Postfix connects"),
            Line::Text("Where Postfix connects")
        );
        assert_eq!(classify("#listen = \"x\""), Line::Code("#listen = \"x\""));
        assert_eq!(
            classify("#example: [zones.a]"),
            Line::Code("#example: [zones.a]")
        );
        assert_eq!(classify("#[[domain]]"), Line::Code("#[[domain]]"));
        assert_eq!(
            classify("mode = \"enforce\""),
            Line::Code("mode = \"enforce\"")
        );
        assert_eq!(classify("[acme]"), Line::Section("[acme]"));
        assert_eq!(
            classify("#   #key = value  the default"),
            Line::Text("  #key = value  the default")
        );
        assert_eq!(classify("  "), Line::Blank);
    }
}
