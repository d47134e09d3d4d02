//! `serve.toml`: what the policy host serves, where its certificates come from, ACME and
//! the TLS-RPT intake.
//!
//! Every key is optional where a sensible default exists; unknown keys are errors (a typo
//! must not silently change what is served) that list the keys of their table
//! ([`SECTIONS`]). Errors name the file, the line and the fix.
//!
//! ```toml
//! listen = ["0.0.0.0:443", "[::]:443"]   # or one string; default "0.0.0.0:443"
//! cert_dir = "/etc/mta-sts/certs"         # <host>.pem + <host>.key, or <host>/fullchain.pem + privkey.pem
//! cert = "/etc/mta-sts/wildcard.pem"      # one certificate (wildcard or many names) for every host it covers
//! key = "/etc/mta-sts/wildcard.key"
//! nameservers = ["127.0.0.1:53"]          # for mx = "auto"; default: /etc/resolv.conf
//! watch_interval = "5s"                   # how often changed files are looked for
//! cache_control = "max-age=60"            # only behind a caching reverse proxy (RFC 8461 §8.2)
//!
//! [default]                               # a policy shared by many domains
//! mode = "enforce"
//! mx = ["mx1.example.net", "*.example.net"]
//! max_age = 604800
//! rua = "mailto:tlsrpt@example.net"
//! domains = ["example.org", "example.info"]
//! domains_file = "domains.txt"            # one domain a line, `#` comments
//!
//! [[domain]]
//! name = "example.com"
//! mode = "testing"                        # missing keys come from [default]
//! mx = "auto"                             # the domain's MX records, at start and on reload
//! max_age = 86400
//! cert = "/etc/mta-sts/example.com.pem"
//! key = "/etc/mta-sts/example.com.key"
//! rua = "https://mta-sts.example.com/tlsrpt"
//!
//! [[domain]]
//! name = "example.info"
//! policy_file = "example.info.txt"        # a policy file served as written, instead of mode/mx/max_age
//!
//! [acme]                                  # certificates for hosts that have none
//! directory = "https://acme-v02.api.letsencrypt.org/directory"
//! contact = ["mailto:hostmaster@example.com"]
//! storage = "/var/lib/mta-sts/acme"
//! challenge = "tls-alpn-01"               # or "http-01" (then http_listen, default 0.0.0.0:80)
//! ca_file = "/etc/mta-sts/acme-ca.pem"    # trust for a private ACME CA (Pebble, step-ca)
//!
//! [tlsrpt]                               # accept TLS-RPT reports POSTed over HTTPS (RFC 8460 §5.4)
//! intake_path = "/tlsrpt"
//! store = "/var/lib/mta-sts/reports.db"   # the report store, as `mta-sts report --db` takes it
//!                                         # (a SQLite file or a postgres:// URL)
//! spool_dir = "/var/spool/mta-sts/tlsrpt" # with `store`: where reports go when the store fails;
//!                                         # alone: where every report goes
//! drain_interval = "60s"                  # with both: how often spooled reports are moved
//!                                         # into the store once it works again
//!
//! accept_foreign = false                  # reports for domains not configured here: 403
//! max_concurrent = 4                     # reports handled at once; more: 503 + Retry-After
//! max_inflight = 33554432                 # decompressed report bytes held at once, all requests
//!
//! [limits]
//! header_read_timeout = "10s"
//! idle_timeout = "60s"
//! body_timeout = "30s"                    # a request body must arrive within this (408)
//! max_streams = 32                        # concurrent HTTP/2 streams per connection
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mta_sts::{Domain, Mode, MxPattern, Policy};
use serde::Deserialize;
use toml::Spanned;

/// The policy resource (RFC 8461 §3.2); `[tlsrpt] intake_path` must differ from it.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";
/// Default listening address (RFC 8461 §3.3: the policy is fetched from port 443).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:443";
/// Default `max_age`: one week. RFC 8461 §3.2 expects "weeks or greater".
pub const DEFAULT_MAX_AGE: u64 = 604_800;
/// Default ACME directory: Let's Encrypt production.
pub const DEFAULT_ACME_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The keys of the top level (besides the tables of [`SECTIONS`]).
pub const TOP_KEYS: &[&str] = &[
    "listen",
    "cert_dir",
    "cert",
    "key",
    "nameservers",
    "watch_interval",
    "cache_control",
];
/// The keys of `[default]`.
pub const DEFAULT_KEYS: &[&str] = &["mode", "mx", "max_age", "rua", "domains", "domains_file"];
/// The keys of each `[[domain]]`.
pub const DOMAIN_KEYS: &[&str] = &[
    "name",
    "policy_file",
    "mode",
    "mx",
    "max_age",
    "cert",
    "key",
    "rua",
];
/// The keys of `[acme]`.
pub const ACME_KEYS: &[&str] = &[
    "directory",
    "contact",
    "storage",
    "ca_file",
    "challenge",
    "http_listen",
    "check_interval",
    "renew_after",
];
/// The keys of `[tlsrpt]`.
pub const TLSRPT_KEYS: &[&str] = &[
    "intake_path",
    "store",
    "spool_dir",
    "drain_interval",
    "accept_foreign",
    "max_body",
    "max_report",
    "max_concurrent",
    "max_inflight",
];
/// The keys of `[limits]`.
pub const LIMITS_KEYS: &[&str] = &[
    "handshake_timeout",
    "header_read_timeout",
    "idle_timeout",
    "max_header_bytes",
    "max_connections",
    "body_timeout",
    "max_streams",
];
/// Every key `serve.toml` accepts, by table (`""`: the top level); any other key is an
/// error that lists the keys of its table.
pub const SECTIONS: &[(&str, &[&str])] = &[
    ("", TOP_KEYS),
    ("default", DEFAULT_KEYS),
    ("domain", DOMAIN_KEYS),
    ("acme", ACME_KEYS),
    ("tlsrpt", TLSRPT_KEYS),
    ("limits", LIMITS_KEYS),
];

/// Largest `policy_file` read, bytes: what senders fetch at most (RFC 8461 §3.3 suggests
/// 64 KiB); a policy is a few lines.
pub const MAX_POLICY_FILE: u64 = 64 * 1024;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid: `location` is `file:line:column` (or `file` alone).
    #[error("{location}: {message}")]
    Invalid {
        /// Where: `file:line:column`, `file:line` or `file`.
        location: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

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

/// ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// TLS-ALPN-01 (RFC 8737), answered on the HTTPS listener through the `acme-tls/1` ALPN.
    TlsAlpn01,
    /// HTTP-01 (RFC 8555 §8.3), answered on a plain HTTP listener (port 80).
    Http01,
}

/// `[acme]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AcmeConfig {
    /// The ACME directory URL.
    pub directory: String,
    /// Account contact URIs (`mailto:`).
    pub contact: Vec<String>,
    /// Where the account key and the certificates are kept.
    pub storage: PathBuf,
    /// Challenge type.
    pub challenge: ChallengeKind,
    /// Plain HTTP listener for HTTP-01 (default `0.0.0.0:80`).
    pub http_listen: SocketAddr,
    /// A PEM CA certificate to trust for the ACME server itself (Pebble, private CAs).
    pub ca_file: Option<PathBuf>,
    /// How often certificates are checked for renewal.
    pub check_interval: Duration,
    /// Renew when this fraction of the certificate lifetime has passed (default 2/3).
    pub renew_after: f64,
}

/// Default `[tlsrpt] drain_interval`.
pub const DEFAULT_DRAIN_INTERVAL: Duration = Duration::from_secs(60);

/// `[tlsrpt]`: the report intake (RFC 8460 §5.4). At least one of `store` and `spool_dir`
/// is set.
///
/// | `store` | `spool_dir` | a POSTed report goes |
/// |---|---|---|
/// | set | unset | into the store; when the store fails, 503 and the sender retries (§5.5) |
/// | set | set | into the store; when the store fails, into the spool, moved into the store every `drain_interval` once it works |
/// | unset | set | into the spool, for `mta-sts report import <spool_dir>` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRptConfig {
    /// The path reports are POSTed to, e.g. `/tlsrpt`.
    pub intake_path: String,
    /// The report store, in the syntax of `mta-sts report --db`: a `postgres://` or
    /// `postgresql://` URL, or a SQLite file path (made absolute against the configuration
    /// file's directory). The policy host does not open it; the front end supplies a
    /// `ReportSink` (of the intake module) for it.
    pub store: Option<String>,
    /// The spool directory: the fallback for `store`, or where every report goes without it.
    pub spool_dir: Option<PathBuf>,
    /// With both `store` and `spool_dir`: how often reports spooled while the store failed
    /// are moved into it (default 60 s; also once at start).
    pub drain_interval: Duration,
    /// Largest request body accepted, bytes (default 1 MiB).
    pub max_body: usize,
    /// Largest decompressed report accepted, bytes (default 16 MiB).
    pub max_report: usize,
    /// Most intake requests handled at once, over all hosts and connections (default 4);
    /// one more is answered 503 with `Retry-After` before its body is read (RFC 8460 §5.5:
    /// the sender retries). Bounds the request bodies held: `max_concurrent × max_body`.
    pub max_concurrent: usize,
    /// Most decompressed report bytes held at once by all intake requests together, each
    /// JSON object or array counted 64 bytes more for its parsed form (default twice
    /// `max_report`, minimum `max_report`); a report that would go over now is answered 503
    /// with `Retry-After`, one that never fits 413. Bounds the memory that parsing and
    /// storing reports takes (about 6× this).
    pub max_inflight: usize,
    /// Whether reports whose `policy-domain` (RFC 8460 §4.4) is not one of the configured
    /// domains are accepted (default `false`: they are answered 403). For hosters that
    /// receive reports for domains whose policies they do not serve.
    pub accept_foreign: bool,
}

/// `[limits]`: protection against slow and greedy clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// TLS handshake must finish within this (default 10 s).
    pub handshake_timeout: Duration,
    /// A request's header must arrive within this (default 10 s); also closes idle
    /// HTTP/1.1 keep-alive connections.
    pub header_read_timeout: Duration,
    /// A connection with no traffic for this long is closed (default 60 s).
    pub idle_timeout: Duration,
    /// Largest request header block, bytes (default 8192; larger → 431).
    pub max_header_bytes: usize,
    /// Most concurrent connections (default 10000); more wait in the accept queue.
    pub max_connections: usize,
    /// A request body must arrive within this, counted from the end of the header
    /// (default 30 s); a slower one is answered 408 and its connection closed.
    pub body_timeout: Duration,
    /// Most concurrent HTTP/2 streams per connection (default 32; RFC 9113 §6.5.2
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`); more are refused by the HTTP/2 layer.
    pub max_streams: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 8192,
            max_connections: 10_000,
            body_timeout: Duration::from_secs(30),
            max_streams: 32,
        }
    }
}

/// A checked `serve.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// The file it was read from (watched for changes and re-read on reload).
    pub path: Option<PathBuf>,
    /// HTTPS listening addresses.
    pub listen: Vec<SocketAddr>,
    /// Policy domains, in file order.
    pub domains: Vec<DomainConfig>,
    /// Directory of per-host certificates.
    pub cert_dir: Option<PathBuf>,
    /// One certificate for every host it covers (wildcard or multi-name).
    pub shared_cert: Option<CertPaths>,
    /// Nameservers for `mx = "auto"` (empty: system configuration).
    pub nameservers: Vec<SocketAddr>,
    /// How often files are checked for changes.
    pub watch_interval: Duration,
    /// `Cache-Control` value sent with policies, if any.
    pub cache_control: Option<String>,
    /// `[acme]`.
    pub acme: Option<AcmeConfig>,
    /// `[tlsrpt]`.
    pub tlsrpt: Option<TlsRptConfig>,
    /// `[limits]`.
    pub limits: Limits,
    /// Other files whose change triggers a reload (`domains_file`).
    pub extra_watch: Vec<PathBuf>,
}

// ---------------------------------------------------------------------------------------
// Raw TOML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: Option<Spanned<toml::Value>>,
    cert_dir: Option<PathBuf>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    nameservers: Option<Vec<Spanned<String>>>,
    watch_interval: Option<Spanned<toml::Value>>,
    cache_control: Option<Spanned<String>>,
    #[serde(default)]
    domain: Vec<Spanned<RawDomain>>,
    default: Option<Spanned<RawDefault>>,
    acme: Option<Spanned<RawAcme>>,
    tlsrpt: Option<Spanned<RawTlsRpt>>,
    limits: Option<Spanned<RawLimits>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: Spanned<String>,
    policy_file: Option<Spanned<PathBuf>>,
    mode: Option<Spanned<String>>,
    mx: Option<Spanned<toml::Value>>,
    max_age: Option<Spanned<i64>>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    rua: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefault {
    mode: Option<Spanned<String>>,
    mx: Option<Spanned<toml::Value>>,
    max_age: Option<Spanned<i64>>,
    rua: Option<Spanned<String>>,
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    domains_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Option<String>,
    #[serde(default)]
    contact: Vec<String>,
    storage: Option<PathBuf>,
    challenge: Option<Spanned<String>>,
    http_listen: Option<Spanned<String>>,
    ca_file: Option<PathBuf>,
    check_interval: Option<Spanned<toml::Value>>,
    renew_after: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTlsRpt {
    intake_path: Option<Spanned<String>>,
    store: Option<Spanned<String>>,
    spool_dir: Option<PathBuf>,
    drain_interval: Option<Spanned<toml::Value>>,
    max_body: Option<Spanned<i64>>,
    max_report: Option<Spanned<i64>>,
    max_concurrent: Option<Spanned<i64>>,
    max_inflight: Option<Spanned<i64>>,
    accept_foreign: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    handshake_timeout: Option<Spanned<toml::Value>>,
    header_read_timeout: Option<Spanned<toml::Value>>,
    idle_timeout: Option<Spanned<toml::Value>>,
    max_header_bytes: Option<Spanned<i64>>,
    max_connections: Option<Spanned<i64>>,
    body_timeout: Option<Spanned<toml::Value>>,
    max_streams: Option<Spanned<i64>>,
}

/// Turns byte spans into `file:line:column`.
struct Source<'a> {
    name: String,
    text: &'a str,
    dir: PathBuf,
}

impl Source<'_> {
    fn location(&self, span: &Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(start, |nl| start - nl - 1) + 1;
        format!("{}:{line}:{column}", self.name)
    }

    fn line(&self, span: &Range<usize>) -> String {
        let start = span.start.min(self.text.len());
        let line = self.text.get(..start).unwrap_or("").matches('\n').count() + 1;
        format!("{}:{line}", self.name)
    }

    fn err(&self, span: &Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            location: self.location(span),
            message: message.into(),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

impl ServeConfig {
    /// Reads and checks `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<ServeConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        ServeConfig::parse(&text, Some(path))
    }

    /// Checks the TOML `text`; relative paths are taken relative to the directory of `path`
    /// (the current directory when `None`).
    pub fn parse(text: &str, path: Option<&Path>) -> Result<ServeConfig, ConfigError> {
        let source = Source {
            name: path.map_or_else(|| "serve.toml".to_string(), |p| p.display().to_string()),
            text,
            dir: path
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            match e.span() {
                Some(span) => match unknown_key(&message) {
                    Some(key) => {
                        let section = section_at(text, span.start);
                        let keys = SECTIONS
                            .iter()
                            .find(|(name, _)| *name == section)
                            .map_or(&[][..], |(_, keys)| keys);
                        let (place, tables) = if section.is_empty() {
                            ("at the top level".to_string(), ", and the tables [default], [[domain]], [acme], [tlsrpt], [limits]")
                        } else {
                            (format!("in [{section}]"), "")
                        };
                        source.err(&span, format!("unknown key `{key}` {place}: the keys there are {}{tables} (packaging/serve.toml describes each)", keys.join(", ")))
                    }
                    None => source.err(&span, format!("{message} (see the [[domain]], [default], [acme], [tlsrpt] and [limits] keys in the serve.toml documentation)")),
                },
                None => ConfigError::Invalid {
                    location: source.name.clone(),
                    message,
                },
            }
        })?;
        build(raw, &source, path)
    }

    /// The domain named `name`, if configured.
    pub fn domain(&self, name: &Domain) -> Option<&DomainConfig> {
        self.domains.iter().find(|d| &d.name == name)
    }
}

/// The key of serde's "unknown field `x`, expected …" message.
fn unknown_key(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(key, _)| key)
}

/// The table a byte offset of `text` is in: the name of the last `[name]` or `[[name]]`
/// header before it, `""` for the top level.
fn section_at(text: &str, offset: usize) -> &str {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    before
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let name = line.strip_prefix('[')?;
            let end = name.find(']')?;
            Some(name[..end].trim_matches(['[', ' ']))
        })
        .next_back()
        .unwrap_or("")
}

fn build(raw: Raw, src: &Source<'_>, path: Option<&Path>) -> Result<ServeConfig, ConfigError> {
    let listen = match &raw.listen {
        None => vec![parse_addr(src, DEFAULT_LISTEN, &(0..0))?],
        Some(v) => {
            let span = v.span();
            match v.get_ref() {
                toml::Value::String(s) => vec![parse_addr(src, s, &span)?],
                toml::Value::Array(items) => {
                    let mut out = Vec::new();
                    for item in items {
                        match item.as_str() {
                            Some(s) => out.push(parse_addr(src, s, &span)?),
                            None => {
                                return Err(src.err(
                                    &span,
                                    "`listen` entries must be strings such as \"0.0.0.0:443\"",
                                ));
                            }
                        }
                    }
                    if out.is_empty() {
                        return Err(src.err(
                            &span,
                            "`listen` is empty: give at least one address such as \"0.0.0.0:443\"",
                        ));
                    }
                    out
                }
                _ => {
                    return Err(src.err(
                        &span,
                        "`listen` must be an address string or a list of them, e.g. \"0.0.0.0:443\"",
                    ));
                }
            }
        }
    };

    if raw.cert.is_some() != raw.key.is_some() {
        let span = raw
            .cert
            .as_ref()
            .map(Spanned::span)
            .or_else(|| raw.key.as_ref().map(Spanned::span))
            .unwrap_or(0..0);
        return Err(src.err(&span, "`cert` and `key` go together: give both or neither"));
    }
    let shared_cert = match (&raw.cert, &raw.key) {
        (Some(c), Some(k)) => Some(CertPaths {
            cert: src.path(c.get_ref()),
            key: src.path(k.get_ref()),
        }),
        _ => None,
    };

    let mut nameservers = Vec::new();
    for ns in raw.nameservers.iter().flatten() {
        let text = ns.get_ref();
        let addr = text
            .parse::<SocketAddr>()
            .or_else(|_| {
                text.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| {
                src.err(
                    &ns.span(),
                    format!("`{text}` is not a nameserver address: write \"IP\" or \"IP:PORT\""),
                )
            })?;
        nameservers.push(addr);
    }

    let watch_interval = match &raw.watch_interval {
        Some(v) => duration(src, v, "watch_interval")?,
        None => Duration::from_secs(5),
    };
    let cache_control = match &raw.cache_control {
        Some(v) => {
            let value = v.get_ref();
            if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(src.err(&v.span(), "`cache_control` must be a non-empty printable ASCII header value such as \"max-age=60\""));
            }
            Some(value.clone())
        }
        None => None,
    };

    // [default]
    let mut defaults = Defaults::default();
    let mut extra_watch = Vec::new();
    let mut default_names: Vec<(String, String)> = Vec::new();
    if let Some(d) = &raw.default {
        let d = d.get_ref();
        defaults.mode = d.mode.as_ref().map(|m| parse_mode(src, m)).transpose()?;
        defaults.mx = d.mx.as_ref().map(|m| parse_mx(src, m)).transpose()?;
        defaults.max_age = d
            .max_age
            .as_ref()
            .map(|m| parse_max_age(src, m))
            .transpose()?;
        defaults.rua = d.rua.as_ref().map(|r| parse_rua(src, r)).transpose()?;
        for name in &d.domains {
            default_names.push((name.get_ref().clone(), src.line(&name.span())));
        }
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
                default_names.push((
                    line.to_string(),
                    format!("{}:{}", file_path.display(), i + 1),
                ));
            }
            extra_watch.push(file_path);
        }
    }

    let mut domains: Vec<DomainConfig> = Vec::new();
    let mut seen: HashMap<Domain, String> = HashMap::new();
    let mut add = |domain: DomainConfig| -> Result<(), ConfigError> {
        if let Some(first) = seen.get(&domain.name) {
            return Err(ConfigError::Invalid {
                location: domain.origin.clone(),
                message: format!(
                    "domain {} is configured twice (first at {first}); remove one",
                    domain.name
                ),
            });
        }
        seen.insert(domain.name.clone(), domain.origin.clone());
        domains.push(domain);
        Ok(())
    };

    for entry in &raw.domain {
        let span = entry.span();
        let d = entry.get_ref();
        let name = parse_domain(src, &d.name)?;
        let origin = src.line(&span);
        let from_file = match &d.policy_file {
            Some(file) => {
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
                Some((policy, file_path))
            }
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
        if d.cert.is_some() != d.key.is_some() {
            return Err(src.err(
                &span,
                format!("domain {name}: `cert` and `key` go together: give both or neither"),
            ));
        }
        let cert = match (&d.cert, &d.key) {
            (Some(c), Some(k)) => Some(CertPaths {
                cert: src.path(c.get_ref()),
                key: src.path(k.get_ref()),
            }),
            _ => None,
        };
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
        add(domain)?;
    }

    for (name, origin) in default_names {
        let parsed = Domain::parse(&name).map_err(|e| ConfigError::Invalid {
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
            location: origin.clone(),
            message,
        })?;
        add(domain)?;
    }

    let acme = match &raw.acme {
        Some(a) => Some(build_acme(src, a)?),
        None => None,
    };
    let tlsrpt = match &raw.tlsrpt {
        Some(t) => Some(build_tlsrpt(src, t)?),
        None => None,
    };
    let limits = match &raw.limits {
        Some(l) => build_limits(src, l.get_ref())?,
        None => Limits::default(),
    };

    Ok(ServeConfig {
        path: path.map(Path::to_path_buf),
        listen,
        domains,
        cert_dir: raw.cert_dir.as_deref().map(|p| src.path(p)),
        shared_cert,
        nameservers,
        watch_interval,
        cache_control,
        acme,
        tlsrpt,
        limits,
        extra_watch,
    })
}

#[derive(Default)]
struct Defaults {
    mode: Option<Mode>,
    mx: Option<MxSource>,
    max_age: Option<u64>,
    rua: Option<String>,
}

/// RFC 8461 §3.2: `mx` is required at least once unless the mode is `none`.
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

fn parse_addr(
    src: &Source<'_>,
    text: &str,
    span: &Range<usize>,
) -> Result<SocketAddr, ConfigError> {
    text.parse::<SocketAddr>().map_err(|_| {
        src.err(
            span,
            format!("`{text}` is not a listening address: write \"IP:PORT\", e.g. \"0.0.0.0:443\" or \"[::]:443\""),
        )
    })
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

fn duration(
    src: &Source<'_>,
    v: &Spanned<toml::Value>,
    key: &str,
) -> Result<Duration, ConfigError> {
    let span = v.span();
    let d = match v.get_ref() {
        toml::Value::Integer(n) => u64::try_from(*n).ok().map(Duration::from_secs),
        toml::Value::Float(f) if f.is_finite() && *f >= 0.0 => Some(Duration::from_secs_f64(*f)),
        toml::Value::String(s) => humantime::parse_duration(s).ok(),
        _ => None,
    };
    match d {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(src.err(
            &span,
            format!("`{key}` must be a positive duration: seconds (10) or a string such as \"10s\", \"5m\", \"12h\""),
        )),
    }
}

fn positive(src: &Source<'_>, v: &Spanned<i64>, key: &str) -> Result<usize, ConfigError> {
    match usize::try_from(*v.get_ref()) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(src.err(&v.span(), format!("`{key}` must be a positive integer"))),
    }
}

fn build_acme(src: &Source<'_>, a: &Spanned<RawAcme>) -> Result<AcmeConfig, ConfigError> {
    let span = a.span();
    let a = a.get_ref();
    let challenge = match a
        .challenge
        .as_ref()
        .map(|c| (c.get_ref().as_str(), c.span()))
    {
        None | Some(("tls-alpn-01", _)) => ChallengeKind::TlsAlpn01,
        Some(("http-01", _)) => ChallengeKind::Http01,
        Some((other, span)) => {
            return Err(src.err(
                &span,
                format!("challenge `{other}` is not supported: use \"tls-alpn-01\" or \"http-01\""),
            ));
        }
    };
    let http_listen = match &a.http_listen {
        Some(v) => parse_addr(src, v.get_ref(), &v.span())?,
        None => parse_addr(src, "0.0.0.0:80", &span)?,
    };
    let check_interval = match &a.check_interval {
        Some(v) => duration(src, v, "check_interval")?,
        None => Duration::from_secs(12 * 3600),
    };
    let renew_after = match &a.renew_after {
        Some(v) if (0.0..1.0).contains(v.get_ref()) => *v.get_ref(),
        Some(v) => {
            return Err(src.err(
                &v.span(),
                "`renew_after` is the fraction of a certificate's lifetime after which it is renewed: use a number in 0..1, e.g. 0.66",
            ));
        }
        None => 2.0 / 3.0,
    };
    for c in &a.contact {
        if !c.contains(':') {
            return Err(src.err(
                &span,
                format!("contact `{c}` is not a URI: write \"mailto:{c}\""),
            ));
        }
    }
    Ok(AcmeConfig {
        directory: a
            .directory
            .clone()
            .unwrap_or_else(|| DEFAULT_ACME_DIRECTORY.to_string()),
        contact: a.contact.clone(),
        storage: src.path(
            a.storage
                .as_deref()
                .unwrap_or(Path::new("/var/lib/mta-sts/acme")),
        ),
        challenge,
        http_listen,
        ca_file: a.ca_file.as_deref().map(|p| src.path(p)),
        check_interval,
        renew_after,
    })
}

fn build_tlsrpt(src: &Source<'_>, t: &Spanned<RawTlsRpt>) -> Result<TlsRptConfig, ConfigError> {
    let span = t.span();
    let t = t.get_ref();
    let intake_path = match &t.intake_path {
        Some(p) => {
            let path = p.get_ref();
            if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path == POLICY_PATH {
                return Err(src.err(
                    &p.span(),
                    format!("intake_path `{path}` must be an absolute URL path such as \"/tlsrpt\" (no query, not the policy path)"),
                ));
            }
            path.clone()
        }
        None => "/tlsrpt".to_string(),
    };
    let store = match &t.store {
        Some(s) => {
            let location = s.get_ref().trim();
            if location.is_empty() {
                return Err(src.err(
                    &s.span(),
                    "store is empty: write a SQLite file path such as \"/var/lib/mta-sts/reports.db\" or a postgres:// URL",
                ));
            }
            Some(store_location(src, location))
        }
        None => None,
    };
    let spool_dir = t.spool_dir.as_deref().map(|p| src.path(p));
    if store.is_none() && spool_dir.is_none() {
        return Err(src.err(
            &span,
            "[tlsrpt] needs `store` (the report database, as `mta-sts report --db` takes it) or `spool_dir` (a directory for `mta-sts report import`), or both",
        ));
    }
    let max_report = match &t.max_report {
        Some(v) => positive(src, v, "max_report")?,
        None => 16 << 20,
    };
    let max_inflight = match &t.max_inflight {
        Some(v) => {
            let n = positive(src, v, "max_inflight")?;
            if n < max_report {
                return Err(src.err(
                    &v.span(),
                    format!("`max_inflight` ({n}) must be at least `max_report` ({max_report}), or no report of the largest accepted size could ever be handled"),
                ));
            }
            n
        }
        None => max_report.saturating_mul(2),
    };
    Ok(TlsRptConfig {
        intake_path,
        store,
        spool_dir,
        drain_interval: match &t.drain_interval {
            Some(v) => duration(src, v, "drain_interval")?,
            None => DEFAULT_DRAIN_INTERVAL,
        },
        max_body: match &t.max_body {
            Some(v) => positive(src, v, "max_body")?,
            None => 1 << 20,
        },
        max_report,
        max_concurrent: match &t.max_concurrent {
            Some(v) => positive(src, v, "max_concurrent")?,
            None => 4,
        },
        max_inflight,
        accept_foreign: t.accept_foreign.unwrap_or(false),
    })
}

/// A `store` value: URLs as written, SQLite paths made absolute like every other path.
fn store_location(src: &Source<'_>, location: &str) -> String {
    if is_postgres_url(location) {
        location.to_string()
    } else {
        src.path(Path::new(location)).display().to_string()
    }
}

/// Whether a `store` value names PostgreSQL (the `mta-sts report --db` rule).
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

fn build_limits(src: &Source<'_>, l: &RawLimits) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    Ok(Limits {
        handshake_timeout: match &l.handshake_timeout {
            Some(v) => duration(src, v, "handshake_timeout")?,
            None => d.handshake_timeout,
        },
        header_read_timeout: match &l.header_read_timeout {
            Some(v) => duration(src, v, "header_read_timeout")?,
            None => d.header_read_timeout,
        },
        idle_timeout: match &l.idle_timeout {
            Some(v) => duration(src, v, "idle_timeout")?,
            None => d.idle_timeout,
        },
        max_header_bytes: match &l.max_header_bytes {
            Some(v) => positive(src, v, "max_header_bytes")?.max(8192),
            None => d.max_header_bytes,
        },
        max_connections: match &l.max_connections {
            Some(v) => positive(src, v, "max_connections")?,
            None => d.max_connections,
        },
        body_timeout: match &l.body_timeout {
            Some(v) => duration(src, v, "body_timeout")?,
            None => d.body_timeout,
        },
        max_streams: match &l.max_streams {
            Some(v) => u32::try_from(positive(src, v, "max_streams")?).unwrap_or(u32::MAX),
            None => d.max_streams,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_defaults() {
        let c = ServeConfig::parse(
            "[[domain]]\nname = \"example.com\"\nmode = \"enforce\"\nmx = [\"mx.example.com\"]\n",
            None,
        )
        .unwrap();
        assert_eq!(c.listen, vec!["0.0.0.0:443".parse().unwrap()]);
        assert_eq!(c.domains[0].max_age, DEFAULT_MAX_AGE);
    }

    #[test]
    fn errors_name_line_and_fix() {
        let e = ServeConfig::parse(
            "listen = \"127.0.0.1:0\"\n\n[[domain]]\nname = \"example.com\"\nmode = \"Enforce\"\n",
            Some(Path::new("/x/serve.toml")),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("/x/serve.toml:5:"), "{e}");
        assert!(e.contains("\"enforce\""), "{e}");
        let e = ServeConfig::parse("lisen = \"1\"\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("serve.toml:1:1"), "{e}");
        assert!(e.contains("lisen"), "{e}");
        let e = ServeConfig::parse(
            "[[domain]]\nname = \"a.example\"\nmode = \"enforce\"\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs at least one `mx`"), "{e}");
    }

    #[test]
    fn defaults_apply_and_duplicates_refused() {
        let c = ServeConfig::parse(
            "[default]\nmode = \"testing\"\nmx = [\"*.example.net\"]\ndomains = [\"a.test\", \"b.test\"]\n[[domain]]\nname = \"c.test\"\nmax_age = 86400\n",
            None,
        )
        .unwrap();
        assert_eq!(c.domains.len(), 3);
        assert!(c.domains.iter().all(|d| d.mode == Mode::Testing));
        let e = ServeConfig::parse(
            "[default]\nmode = \"none\"\ndomains = [\"a.test\"]\n[[domain]]\nname = \"A.test\"\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("configured twice"), "{e}");
    }

    #[test]
    fn tlsrpt_store_and_spool() {
        let base = "[[domain]]\nname = \"a.test\"\nmode = \"enforce\"\nmx = [\"mx.a.test\"]\n";
        let parse = |extra: &str| {
            ServeConfig::parse(
                &format!("{base}{extra}"),
                Some(Path::new("/etc/m/serve.toml")),
            )
        };
        let c = parse("[tlsrpt]\nstore = \"reports.db\"\n").unwrap();
        let t = c.tlsrpt.unwrap();
        assert_eq!(t.store.as_deref(), Some("/etc/m/reports.db"));
        assert_eq!(t.spool_dir, None);
        assert_eq!(t.intake_path, "/tlsrpt");
        let url = "postgres://u:p@127.0.0.1/reports";
        let t = parse(&format!(
            "[tlsrpt]\nstore = \"{url}\"\nspool_dir = \"spool\"\n"
        ))
        .unwrap()
        .tlsrpt
        .unwrap();
        assert_eq!(t.store.as_deref(), Some(url), "URLs are not paths");
        assert_eq!(t.spool_dir, Some(PathBuf::from("/etc/m/spool")));
        let e = parse("[tlsrpt]\nintake_path = \"/r\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `store`"), "{e}");
        let e = parse("[tlsrpt]\nstore = \" \"\n").unwrap_err().to_string();
        assert!(e.contains("store is empty"), "{e}");
        assert_eq!(t.drain_interval, DEFAULT_DRAIN_INTERVAL);
        let t = parse("[tlsrpt]\nstore = \"r.db\"\nspool_dir = \"s\"\ndrain_interval = \"5m\"\n")
            .unwrap()
            .tlsrpt
            .unwrap();
        assert_eq!(t.drain_interval, Duration::from_secs(300));
        let e = parse("[tlsrpt]\nstore = \"r.db\"\ndrain_interval = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("drain_interval"), "{e}");
    }

    // Issue #12: the intake's and the connections' bounds, with defaults that hold the
    // largest report, and a budget that could never hold one refused.
    #[test]
    fn intake_and_connection_bounds() {
        let base = "[[domain]]\nname = \"a.test\"\nmode = \"enforce\"\nmx = [\"mx.a.test\"]\n";
        let parse = |extra: &str| ServeConfig::parse(&format!("{base}{extra}"), None);
        let c = parse("[tlsrpt]\nspool_dir = \"s\"\nmax_report = 1000\n").unwrap();
        let t = c.tlsrpt.unwrap();
        assert_eq!((t.max_concurrent, t.max_inflight), (4, 2000));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.max_streams, 32);
        let c = parse(
            "[tlsrpt]\nspool_dir = \"s\"\nmax_concurrent = 2\nmax_report = 4000\nmax_inflight = 5000\n[limits]\nbody_timeout = \"5s\"\nmax_streams = 8\n",
        )
        .unwrap();
        let t = c.tlsrpt.unwrap();
        assert_eq!((t.max_concurrent, t.max_inflight), (2, 5000));
        assert_eq!(c.limits.body_timeout, Duration::from_secs(5));
        assert_eq!(c.limits.max_streams, 8);
        let e = parse("[tlsrpt]\nspool_dir = \"s\"\nmax_inflight = 100\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least `max_report`"), "{e}");
        for bad in [
            "[tlsrpt]\nspool_dir = \"s\"\nmax_concurrent = 0\n",
            "[limits]\nmax_streams = -1\n",
            "[limits]\nbody_timeout = \"0s\"\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    /// serde's own list of the fields of a table, from its unknown-field error.
    fn serde_fields(section: &str) -> Vec<String> {
        let text = match section {
            "" => "zzz = 1\n".to_string(),
            "domain" => "[[domain]]\nzzz = 1\n".to_string(),
            other => format!("[{other}]\nzzz = 1\n"),
        };
        let message = match toml::from_str::<Raw>(&text) {
            Ok(_) => panic!("zzz accepted in [{section}]"),
            Err(e) => e.message().to_string(),
        };
        let (_, expected) = message.split_once("expected one of ").expect(&message);
        let mut fields: Vec<String> = expected
            .split(", ")
            .map(|f| f.trim_matches('`').to_string())
            .collect();
        fields.sort();
        fields
    }

    // Issue #19 item 4: the key lists the unknown-key error shows are the keys the parser
    // takes, table by table.
    #[test]
    fn key_lists_are_the_parser_keys() {
        for (section, keys) in SECTIONS {
            let mut listed: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            if section.is_empty() {
                listed.extend(SECTIONS.iter().skip(1).map(|(name, _)| name.to_string()));
            }
            listed.sort();
            assert_eq!(serde_fields(section), listed, "[{section}]");
        }
        let e = ServeConfig::parse("[acme]\nca_fle = \"ca.pem\"\n", None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("serve.toml:2:1: unknown key `ca_fle` in [acme]: the keys there are directory, contact, storage, ca_file,"), "{e}");
        let e = ServeConfig::parse(
            "[[domain]]\nname = \"a.test\"\n[[domain]]\npolicy = \"p\"\n",
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("in [domain]: the keys there are name, policy_file,"),
            "{e}"
        );
    }

    // Issue #19 item 6: `policy_file` serves an owner's policy file as written (mode, mx,
    // max_age, extensions); errors name the policy file and line; it cannot be mixed with
    // the keys it replaces.
    #[test]
    fn policy_file_is_read_with_file_and_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("serve.toml");
        std::fs::write(
            dir.path().join("p.txt"),
            "version: STSv1\nmode: testing\nmx: mx1.a.test\nmx: *.b.test\nmax_age: 86400\nx_note: kept\n",
        )
        .unwrap();
        let parse = |extra: &str| {
            ServeConfig::parse(
                &format!(
                    "[default]\nmode = \"enforce\"\nmx = [\"other.test\"]\n[[domain]]\nname = \"a.test\"\npolicy_file = \"p.txt\"\n{extra}"
                ),
                Some(&config),
            )
        };
        let c = parse("").unwrap();
        let d = &c.domains[0];
        assert_eq!(d.mode, Mode::Testing);
        assert_eq!(d.max_age, 86400);
        let policy = d.policy_with(match &d.mx {
            MxSource::List(l) => l.clone(),
            MxSource::Auto => panic!("auto"),
        });
        assert_eq!(
            policy.to_string(),
            "version: STSv1\r\nmode: testing\r\nmx: mx1.a.test\r\nmx: *.b.test\r\nmax_age: 86400\r\nx_note: kept\r\n"
        );
        assert_eq!(
            d.policy_file.as_deref(),
            Some(dir.path().join("p.txt").as_path())
        );
        assert!(c.extra_watch.contains(&dir.path().join("p.txt")));
        let e = parse("mode = \"enforce\"\n").unwrap_err().to_string();
        assert!(e.contains("`mode` is set here too"), "{e}");
        std::fs::write(
            dir.path().join("p.txt"),
            "version: STSv1\nmode: enforce\nmx: mx1.a.test\nmax_age: soon\n",
        )
        .unwrap();
        let e = parse("").unwrap_err().to_string();
        let want = format!("{}:4: ", dir.path().join("p.txt").display());
        assert!(e.starts_with(&want), "{e}");
        assert!(e.contains("mta-sts lint"), "{e}");
        std::fs::remove_file(dir.path().join("p.txt")).unwrap();
        let e = parse("").unwrap_err().to_string();
        assert!(e.contains("cannot read policy_file"), "{e}");
    }

    #[test]
    fn packaging_example_is_valid() {
        let text = include_str!("../../../packaging/serve.toml");
        let c = ServeConfig::parse(text, Some(Path::new("/etc/mta-sts/serve.toml"))).unwrap();
        let t = c.tlsrpt.unwrap();
        assert_eq!(t.store.as_deref(), Some("/var/lib/mta-sts/reports.db"));
        assert_eq!(
            t.spool_dir,
            Some(PathBuf::from("/var/spool/mta-sts/tlsrpt"))
        );
        assert_eq!(c.domains.len(), 1);
    }
}
