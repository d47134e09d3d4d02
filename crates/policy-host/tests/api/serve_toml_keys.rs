//! Issue #19 item 4: `packaging/serve.toml` calls itself the full key list, so it must show
//! every key the configuration accepts, in the right table, and no other.

use std::collections::{BTreeMap, BTreeSet};

use mta_sts_policy_host::config::SECTIONS;

/// The keys shown (`key = …` or commented out `#key = …`) under each table header (`[x]`,
/// `[[x]]`, also commented out) of a serve.toml text; `""` is the top level.
fn shown_keys(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    keys.entry(section.clone()).or_default();
    for line in text.lines() {
        let line = line.strip_prefix('#').unwrap_or(line);
        if let Some(header) = line.strip_prefix('[') {
            if let Some(end) = header.find(']') {
                section = header[..end].trim_matches('[').to_string();
                keys.entry(section.clone()).or_default();
            }
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            keys.entry(section.clone())
                .or_default()
                .insert(key.to_string());
        }
    }
    keys
}

#[test]
fn packaging_serve_toml_shows_every_key_the_config_accepts() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging/serve.toml");
    let text = std::fs::read_to_string(path).expect("packaging/serve.toml");
    let shown = shown_keys(&text);
    let accepted: BTreeMap<String, BTreeSet<String>> = SECTIONS
        .iter()
        .map(|(name, keys)| {
            (
                name.to_string(),
                keys.iter().map(|k| k.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(shown, accepted);
}

#[test]
fn the_key_reader_sees_sections_and_commented_keys() {
    let shown = shown_keys(
        "#listen = 1\n# a comment = not a key\n[acme]\n#ca_file = \"x\"\n#[[domain]]\nname = \"a\"\n",
    );
    assert_eq!(shown[""], BTreeSet::from(["listen".to_string()]));
    assert_eq!(shown["acme"], BTreeSet::from(["ca_file".to_string()]));
    assert_eq!(shown["domain"], BTreeSet::from(["name".to_string()]));
}
