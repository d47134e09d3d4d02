//! `[default]` and `[[domain]]`: the policy domains, with `[default]` applied, a
//! `policy_file` read the way `mta-sts lint` reads it, and each domain configured once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mta_sts::{Domain, Mode, MxPattern, Policy};
use mta_sts_config::Source;
use toml::Spanned;

use super::raw::{RawDefault, RawDomain};
use super::{ConfigError, DEFAULT_MAX_AGE, MAX_POLICY_FILE};

/// Where the `mx` lines of a policy come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxSource {
    /// Fixed patterns, in policy order.
    List(Vec<MxPattern>),
    /// The domain's MX records, looked up at start and on every reload (sorted, so the
    /// policy and its id do not change when DNS rotates the answer order).
    Auto,
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertPaths {
    /// The chain, leaf first (`fullchain.pem`).
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One policy domain, with `[default]` applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    /// The policy domain; the policy host is `mta-sts.<name>`.
    pub name: Domain,
    /// `mode` of the policy.
    pub mode: Mode,
    /// `mx` of the policy.
    pub mx: MxSource,
    /// `max_age` of the policy, seconds.
    pub max_age: u64,
    /// Extension fields of the policy (RFC 8461 §3.2), in order; only from a `policy_file`.
    pub extensions: Vec<(String, String)>,
    /// The policy file the policy was read from (`policy_file`), if any.
    pub policy_file: Option<PathBuf>,
    /// The certificate for `mta-sts.<name>`, if given for this domain.
    pub cert: Option<CertPaths>,
    /// The TLS-RPT `rua` value for the `_smtp._tls` record, if any.
    pub rua: Option<String>,
    /// Where the domain was defined (`file:line`), for log lines and errors.
    pub origin: String,
}

impl DomainConfig {
    /// The policy with `mx` patterns `mx` (for [`MxSource::List`] the configured ones).
    pub fn policy_with(&self, mx: Vec<MxPattern>) -> Policy {
        Policy {
            mode: self.mode,
            max_age: self.max_age,
            mx,
            extensions: self.extensions.clone(),
        }
    }

    /// The policy host name, `mta-sts.<name>` (RFC 8461 §3.2).
    pub fn policy_host(&self) -> String {
        self.name.policy_host()
    }
}

/// `cert` and `key` of one table: both or neither (`Err`: the span to blame).
pub(super) fn cert_pair(
    src: &Source<'_>,
    cert: Option<&Spanned<PathBuf>>,
    key: Option<&Spanned<PathBuf>>,
) -> Result<Option<CertPaths>, std::ops::Range<usize>> {
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some(CertPaths {
            cert: src.path(c.get_ref()),
            key: src.path(k.get_ref()),
        })),
        (None, None) => Ok(None),
        (Some(one), None) | (None, Some(one)) => Err(one.span()),
    }
}

/// Every domain of `[[domain]]` and of `[default] domains` / `domains_file`, in that
/// order, each configured once; and the files (`domains_file`, `policy_file`) whose change
/// triggers a reload.
pub(super) fn build_domains(
    src: &Source<'_>,
    entries: &[Spanned<RawDomain>],
    default: Option<&Spanned<RawDefault>>,
) -> Result<(Vec<DomainConfig>, Vec<PathBuf>), ConfigError> {
    let mut extra_watch = Vec::new();
    let (defaults, default_names) = match default {
        Some(d) => build_defaults(src, d.get_ref(), &mut extra_watch)?,
        None => (Defaults::default(), Vec::new()),
    };
    let mut domains = Domains::default();
    for entry in entries {
        domains.add(build_domain(src, entry, &defaults, &mut extra_watch)?)?;
    }
    for (name, origin) in default_names {
        domains.add(default_domain(&name, origin, &defaults)?)?;
    }
    Ok((domains.list, extra_watch))
}

/// The domains so far, each name once.
#[derive(Default)]
struct Domains {
    list: Vec<DomainConfig>,
    seen: HashMap<Domain, String>,
}

impl Domains {
    fn add(&mut self, domain: DomainConfig) -> Result<(), ConfigError> {
        if let Some(first) = self.seen.get(&domain.name) {
            return Err(ConfigError::Invalid {
                location: domain.origin.clone(),
                message: format!(
                    "domain {} is configured twice (first at {first}); remove one",
                    domain.name
                ),
            });
        }
        self.seen.insert(domain.name.clone(), domain.origin.clone());
        self.list.push(domain);
        Ok(())
    }
}

/// `[default]`: the shared policy values, and the domains it lists (name, `file:line`).
fn build_defaults(
    src: &Source<'_>,
    d: &RawDefault,
    extra_watch: &mut Vec<PathBuf>,
) -> Result<(Defaults, Vec<(String, String)>), ConfigError> {
    let defaults = Defaults {
        mode: d.mode.as_ref().map(|m| parse_mode(src, m)).transpose()?,
        mx: d.mx.as_ref().map(|m| parse_mx(src, m)).transpose()?,
        max_age: d
            .max_age
            .as_ref()
            .map(|m| parse_max_age(src, m))
            .transpose()?,
        rua: d.rua.as_ref().map(|r| parse_rua(src, r)).transpose()?,
    };
    let mut names: Vec<(String, String)> = d
        .domains
        .iter()
        .map(|name| (name.get_ref().clone(), src.line(&name.span())))
        .collect();
    if let Some(file) = &d.domains_file {
        let file_path = src.path(file.get_ref());
        let text = std::fs::read_to_string(&file_path).map_err(|e| {
            src.err(
                &file.span(),
                format!(
                    "cannot read domains_file {}: {e}; fix the path (relative paths start at the config file's directory)",
                    file_path.display()
                ),
            )
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            names.push((
                line.to_string(),
                format!("{}:{}", file_path.display(), i + 1),
            ));
        }
        extra_watch.push(file_path);
    }
    Ok((defaults, names))
}

/// One `[[domain]]`, with `[default]` filling what it leaves out, or its `policy_file`.
fn build_domain(
    src: &Source<'_>,
    entry: &Spanned<RawDomain>,
    defaults: &Defaults,
    extra_watch: &mut Vec<PathBuf>,
) -> Result<DomainConfig, ConfigError> {
    let span = entry.span();
    let d = entry.get_ref();
    let name = parse_domain(src, &d.name)?;
    let origin = src.line(&span);
    let from_file = match &d.policy_file {
        Some(file) => Some(policy_from_file(src, &name, d, file, extra_watch)?),
        None => None,
    };
    let mode = match &d.mode {
        _ if from_file.is_some() => from_file.as_ref().map_or(Mode::None, |(p, _)| p.mode),
        Some(m) => parse_mode(src, m)?,
        None => defaults.mode.ok_or_else(|| {
            src.err(
                &span,
                format!("domain {name} has no `mode`: set mode = \"enforce\", \"testing\" or \"none\" here or in [default]"),
            )
        })?,
    };
    let mx = match &d.mx {
        _ if from_file.is_some() => MxSource::List(
            from_file
                .as_ref()
                .map_or_else(Vec::new, |(p, _)| p.mx.clone()),
        ),
        Some(m) => parse_mx(src, m)?,
        None => defaults.mx.clone().unwrap_or(MxSource::List(Vec::new())),
    };
    let max_age = match &d.max_age {
        _ if from_file.is_some() => from_file.as_ref().map_or(0, |(p, _)| p.max_age),
        Some(m) => parse_max_age(src, m)?,
        None => defaults.max_age.unwrap_or(DEFAULT_MAX_AGE),
    };
    let cert = cert_pair(src, d.cert.as_ref(), d.key.as_ref()).map_err(|_| {
        src.err(
            &span,
            format!("domain {name}: `cert` and `key` go together: give both or neither"),
        )
    })?;
    let rua = match &d.rua {
        Some(r) => Some(parse_rua(src, r)?),
        None => defaults.rua.clone(),
    };
    let (extensions, policy_file) = match from_file {
        Some((policy, file)) => (policy.extensions, Some(file)),
        None => (Vec::new(), None),
    };
    let domain = DomainConfig {
        name,
        mode,
        mx,
        max_age,
        extensions,
        policy_file,
        cert,
        rua,
        origin,
    };
    check_policy(&domain).map_err(|m| src.err(&span, m))?;
    Ok(domain)
}

/// The policy of a `policy_file`, which must not be mixed with the keys it replaces.
fn policy_from_file(
    src: &Source<'_>,
    name: &Domain,
    d: &RawDomain,
    file: &Spanned<PathBuf>,
    extra_watch: &mut Vec<PathBuf>,
) -> Result<(Policy, PathBuf), ConfigError> {
    let given = [
        ("mode", d.mode.is_some()),
        ("mx", d.mx.is_some()),
        ("max_age", d.max_age.is_some()),
    ];
    if let Some((key, _)) = given.iter().find(|(_, set)| *set) {
        return Err(src.err(
            &file.span(),
            format!("domain {name}: policy_file gives the whole policy, and `{key}` is set here too: remove `{key}` (or policy_file)"),
        ));
    }
    let file_path = src.path(file.get_ref());
    let policy = read_policy_file(src, file, &file_path)?;
    extra_watch.push(file_path.clone());
    Ok((policy, file_path))
}

/// A domain listed by `[default]` (`domains` or `domains_file`): `[default]`'s policy.
fn default_domain(
    name: &str,
    origin: String,
    defaults: &Defaults,
) -> Result<DomainConfig, ConfigError> {
    let parsed = Domain::parse(name).map_err(|e| ConfigError::Invalid {
        location: origin.clone(),
        message: format!("`{name}` is not a domain name: {e}"),
    })?;
    let mode = defaults.mode.ok_or_else(|| ConfigError::Invalid {
        location: origin.clone(),
        message: "[default] lists domains but has no `mode`: add mode = \"enforce\", \"testing\" or \"none\" to [default]".to_string(),
    })?;
    let domain = DomainConfig {
        name: parsed,
        mode,
        mx: defaults.mx.clone().unwrap_or(MxSource::List(Vec::new())),
        max_age: defaults.max_age.unwrap_or(DEFAULT_MAX_AGE),
        extensions: Vec::new(),
        policy_file: None,
        cert: None,
        rua: defaults.rua.clone(),
        origin: origin.clone(),
    };
    check_policy(&domain).map_err(|message| ConfigError::Invalid {
        location: origin,
        message,
    })?;
    Ok(domain)
}

/// `[default]`'s policy values.
#[derive(Default)]
struct Defaults {
    mode: Option<Mode>,
    mx: Option<MxSource>,
    max_age: Option<u64>,
    rua: Option<String>,
}

/// Reads and parses a `policy_file` (RFC 8461 §3.2) the way `mta-sts lint` does; errors
/// name the policy file and line.
fn read_policy_file(
    src: &Source<'_>,
    file: &Spanned<PathBuf>,
    path: &Path,
) -> Result<Policy, ConfigError> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| {
        src.err(
            &file.span(),
            format!(
                "cannot read policy_file {}: {e}; fix the path (relative paths start at the config file's directory)",
                path.display()
            ),
        )
    };
    let mut body = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_POLICY_FILE + 1).read_to_end(&mut body))
        .map_err(unreadable)?;
    if body.len() as u64 > MAX_POLICY_FILE {
        return Err(src.err(
            &file.span(),
            format!(
                "policy_file {} is larger than {MAX_POLICY_FILE} bytes, more than senders fetch (RFC 8461 §3.3): a policy is a few lines",
                path.display()
            ),
        ));
    }
    Policy::parse(&body).map_err(|e| {
        let first = e.errors().next();
        let location = match first.and_then(|d| d.line) {
            Some(line) => format!("{}:{line}", path.display()),
            None => path.display().to_string(),
        };
        let message = first.map_or_else(|| "not a valid policy".to_string(), |d| d.message.clone());
        ConfigError::Invalid {
            location,
            message: format!(
                "{message} (RFC 8461 §3.2; policy_file of domain at {}); run `mta-sts lint {}` for every problem",
                src.line(&file.span()),
                path.display()
            ),
        }
    })
}

/// RFC 8461 §3.2: `mx` is required at least once unless the mode is `none`.
fn check_policy(domain: &DomainConfig) -> Result<(), String> {
    if let MxSource::List(list) = &domain.mx
        && list.is_empty()
        && domain.mode != Mode::None
    {
        return Err(format!(
            "domain {}: mode {} needs at least one `mx` (RFC 8461 §3.2): add mx = [\"mx.example.com\"] or mx = \"auto\"",
            domain.name, domain.mode
        ));
    }
    Ok(())
}

fn parse_domain(src: &Source<'_>, name: &Spanned<String>) -> Result<Domain, ConfigError> {
    let text = name.get_ref();
    Domain::parse(text)
        .map_err(|e| src.err(&name.span(), format!("`{text}` is not a domain name: {e}")))
}

fn parse_mode(src: &Source<'_>, mode: &Spanned<String>) -> Result<Mode, ConfigError> {
    Mode::parse(mode.get_ref()).ok_or_else(|| {
        src.err(
            &mode.span(),
            format!(
                "mode `{}` is not a policy mode: use \"enforce\", \"testing\" or \"none\" (RFC 8461 §3.2, lower case)",
                mode.get_ref()
            ),
        )
    })
}

fn parse_max_age(src: &Source<'_>, v: &Spanned<i64>) -> Result<u64, ConfigError> {
    let value = *v.get_ref();
    match u64::try_from(value) {
        Ok(n) if n <= mta_sts::MAX_AGE_LIMIT => Ok(n),
        _ => Err(src.err(
            &v.span(),
            format!(
                "max_age {value} is out of range: use 0 to {} seconds (RFC 8461 §3.2); a week (604800) or more is typical",
                mta_sts::MAX_AGE_LIMIT
            ),
        )),
    }
}

fn parse_mx(src: &Source<'_>, v: &Spanned<toml::Value>) -> Result<MxSource, ConfigError> {
    let span = v.span();
    match v.get_ref() {
        toml::Value::String(s) if s == "auto" => Ok(MxSource::Auto),
        toml::Value::String(s) => Err(src.err(
            &span,
            format!("mx = \"{s}\": write a list, mx = [\"{s}\"], or mx = \"auto\" for the domain's MX records"),
        )),
        toml::Value::Array(items) => {
            let mut out: Vec<MxPattern> = Vec::new();
            for item in items {
                let Some(text) = item.as_str() else {
                    return Err(src.err(&span, "`mx` entries must be strings such as \"mx.example.com\" or \"*.example.net\""));
                };
                let (pattern, _note) = MxPattern::parse_noted(text).map_err(|e| {
                    src.err(
                        &span,
                        format!("mx `{text}`: {e}; write a host name or `*.` and a domain (RFC 8461 §3.2), without a trailing dot or port"),
                    )
                })?;
                if !out.contains(&pattern) {
                    out.push(pattern);
                }
            }
            Ok(MxSource::List(out))
        }
        _ => Err(src.err(
            &span,
            "`mx` must be a list of patterns or \"auto\"",
        )),
    }
}

fn parse_rua(src: &Source<'_>, v: &Spanned<String>) -> Result<String, ConfigError> {
    let rua = v.get_ref().trim().to_string();
    let record = format!("v=TLSRPTv1; rua={rua}");
    let lint = tlsrpt::lint(&record);
    if !lint.is_valid() {
        let why = lint
            .diagnostics
            .iter()
            .find(|d| d.is_error())
            .map_or_else(|| "invalid".to_string(), |d| d.message.clone());
        return Err(src.err(
            &v.span(),
            format!("rua `{rua}` does not make a valid TLS-RPT record (RFC 8460 §3): {why}; write e.g. \"mailto:tlsrpt@example.com\" or \"https://reports.example.com/tlsrpt\", comma-separated for several"),
        ));
    }
    Ok(rua)
}
