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
//! metrics_listen = "127.0.0.1:8463"       # Prometheus /metrics over plain HTTP; default off
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
//!
//! [web]                                   # the TLS-RPT dashboard over the [tlsrpt] store
//! listen = "127.0.0.1:8480"               # plain HTTP; not loopback: token_file or users
//! token_file = "/etc/mta-sts/web.token"   # or users = "/etc/mta-sts/web.users"
//! check = true                            # the "re-run check" button
//! ```

mod acme;
mod domain;
mod limits;
mod raw;
#[cfg(test)]
mod tests;
mod tlsrpt;
mod web;

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mta_sts::Domain;
use mta_sts_config::{HumanDuration, Schema, Source};
use toml::Spanned;

pub use self::acme::{AcmeConfig, ChallengeKind};
pub use self::domain::{CertPaths, DomainConfig, MxSource};
pub use self::limits::Limits;
pub use self::tlsrpt::{DEFAULT_DRAIN_INTERVAL, TlsRptConfig};
pub use self::web::{DEFAULT_WEB_LISTEN, WebSettings};
pub use mta_sts_config::{ConfigError, is_postgres_url};

use self::raw::Raw;

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
    "metrics_listen",
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
/// The keys of `[web]`.
pub const WEB_KEYS: &[&str] = &["listen", "token_file", "users", "check"];
/// Every key `serve.toml` accepts, by table (`""`: the top level); any other key is an
/// error that lists the keys of its table.
pub const SECTIONS: &[(&str, &[&str])] = &[
    ("", TOP_KEYS),
    ("default", DEFAULT_KEYS),
    ("domain", DOMAIN_KEYS),
    ("acme", ACME_KEYS),
    ("tlsrpt", TLSRPT_KEYS),
    ("limits", LIMITS_KEYS),
    ("web", WEB_KEYS),
];

/// Largest `policy_file` read, bytes: what senders fetch at most (RFC 8461 §3.3 suggests
/// 64 KiB); a policy is a few lines.
pub const MAX_POLICY_FILE: u64 = 64 * 1024;

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
    /// Where `GET /metrics` is served over plain HTTP (`None`: nowhere).
    pub metrics_listen: Option<SocketAddr>,
    /// `[acme]`.
    pub acme: Option<AcmeConfig>,
    /// `[tlsrpt]`.
    pub tlsrpt: Option<TlsRptConfig>,
    /// `[limits]`.
    pub limits: Limits,
    /// `[web]`: the dashboard, over the `[tlsrpt]` store.
    pub web: Option<WebSettings>,
    /// Other files whose change triggers a reload (`domains_file`).
    pub extra_watch: Vec<PathBuf>,
}

/// How unknown keys and bad values of `serve.toml` are explained.
const SCHEMA: Schema = Schema {
    sections: SECTIONS,
    tables: "[default], [[domain]], [acme], [tlsrpt], [limits], [web]",
    described_in: "packaging/serve.toml",
    hint: " (see the [[domain]], [default], [acme], [tlsrpt], [limits] and [web] keys in the serve.toml documentation)",
};

impl ServeConfig {
    /// Reads and checks `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<ServeConfig, ConfigError> {
        let path = path.as_ref();
        let text = Source::read(path)?;
        ServeConfig::parse(&text, Some(path))
    }

    /// Checks the TOML `text`; relative paths are taken relative to the directory of `path`
    /// (the current directory when `None`).
    pub fn parse(text: &str, path: Option<&Path>) -> Result<ServeConfig, ConfigError> {
        let source = Source::new(text, path, "serve.toml");
        let raw: Raw = source.parse(&SCHEMA)?;
        build(raw, &source, path)
    }

    /// The domain named `name`, if configured.
    pub fn domain(&self, name: &Domain) -> Option<&DomainConfig> {
        self.domains.iter().find(|d| &d.name == name)
    }
}

/// The checked configuration from the raw one: the top-level keys here, each table in its
/// module.
fn build(raw: Raw, src: &Source<'_>, path: Option<&Path>) -> Result<ServeConfig, ConfigError> {
    let listen = build_listen(src, raw.listen.as_ref())?;
    let shared_cert = domain::cert_pair(src, raw.cert.as_ref(), raw.key.as_ref())
        .map_err(|span| src.err(&span, "`cert` and `key` go together: give both or neither"))?;
    let nameservers = raw.nameservers.iter().flatten().map(|n| n.0).collect();
    let watch_interval = match &raw.watch_interval {
        Some(v) => positive_duration(src, v, "watch_interval")?,
        None => Duration::from_secs(5),
    };
    let cache_control = match &raw.cache_control {
        Some(v) => Some(build_cache_control(src, v)?),
        None => None,
    };
    let metrics_listen = match &raw.metrics_listen {
        Some(v) => Some(parse_addr(src, v.get_ref(), &v.span())?),
        None => None,
    };
    let (domains, extra_watch) = domain::build_domains(src, &raw.domain, raw.default.as_ref())?;
    let acme = match &raw.acme {
        Some(a) => Some(acme::build_acme(src, a)?),
        None => None,
    };
    let tlsrpt = match &raw.tlsrpt {
        Some(t) => Some(tlsrpt::build_tlsrpt(src, t)?),
        None => None,
    };
    let web = match &raw.web {
        Some(w) => Some(web::build_web(src, w, tlsrpt.as_ref())?),
        None => None,
    };
    let limits = match &raw.limits {
        Some(l) => limits::build_limits(src, l.get_ref())?,
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
        metrics_listen,
        acme,
        tlsrpt,
        limits,
        web,
        extra_watch,
    })
}

/// `listen`: one address string or a list of them. Walked by hand rather than through a
/// serde type: its messages name `listen` and point at the whole value, which a serde
/// error for one element could not.
fn build_listen(
    src: &Source<'_>,
    listen: Option<&Spanned<toml::Value>>,
) -> Result<Vec<SocketAddr>, ConfigError> {
    let Some(v) = listen else {
        return Ok(vec![parse_addr(src, DEFAULT_LISTEN, &(0..0))?]);
    };
    let span = v.span();
    match v.get_ref() {
        toml::Value::String(s) => Ok(vec![parse_addr(src, s, &span)?]),
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                let Some(s) = item.as_str() else {
                    return Err(src.err(
                        &span,
                        "`listen` entries must be strings such as \"0.0.0.0:443\"",
                    ));
                };
                out.push(parse_addr(src, s, &span)?);
            }
            if out.is_empty() {
                return Err(src.err(
                    &span,
                    "`listen` is empty: give at least one address such as \"0.0.0.0:443\"",
                ));
            }
            Ok(out)
        }
        _ => Err(src.err(
            &span,
            "`listen` must be an address string or a list of them, e.g. \"0.0.0.0:443\"",
        )),
    }
}

/// `cache_control`: sent as a header value, so printable ASCII only.
fn build_cache_control(src: &Source<'_>, v: &Spanned<String>) -> Result<String, ConfigError> {
    let value = v.get_ref();
    if value.is_empty() || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(src.err(
            &v.span(),
            "`cache_control` must be a non-empty printable ASCII header value such as \"max-age=60\"",
        ));
    }
    Ok(value.clone())
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

/// A duration that must not be zero (the value's form is checked by [`HumanDuration`]).
fn positive_duration(
    src: &Source<'_>,
    v: &Spanned<HumanDuration>,
    key: &str,
) -> Result<Duration, ConfigError> {
    match v.get_ref().0 {
        d if !d.is_zero() => Ok(d),
        _ => Err(src.err(
            &v.span(),
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
