//! `[web]`: the TLS-RPT dashboard served by `mta-sts serve` itself, over the report store
//! of `[tlsrpt]` (the pages of `mta-sts web`). The policy host only checks the settings;
//! the front end (the CLI) runs the dashboard.

use std::net::SocketAddr;
use std::path::PathBuf;

use mta_sts_config::Source;
use toml::Spanned;

use super::raw::RawWeb;
use super::tlsrpt::TlsRptConfig;
use super::{ConfigError, parse_addr};

/// Default `[web] listen`, the default of `mta-sts web --listen`.
pub const DEFAULT_WEB_LISTEN: &str = "127.0.0.1:8480";

/// `[web]`: the dashboard's listener and who may read it. Same meaning and same safety
/// rule as `mta-sts web`: an address other than loopback needs `token_file` or `users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSettings {
    /// Where the dashboard is served over plain HTTP (default 127.0.0.1:8480).
    pub listen: SocketAddr,
    /// A file holding the token (`--token-file` of `mta-sts web`).
    pub token_file: Option<PathBuf>,
    /// A file of `NAME:HASH` lines, argon2id hashes (`--users` of `mta-sts web`).
    pub users: Option<PathBuf>,
    /// Whether the domain pages have the "re-run check" button (default `true`).
    pub check: bool,
    /// The report store it reads: `[tlsrpt] store`.
    pub store: String,
}

pub(super) fn build_web(
    src: &Source<'_>,
    w: &Spanned<RawWeb>,
    tlsrpt: Option<&TlsRptConfig>,
) -> Result<WebSettings, ConfigError> {
    let span = w.span();
    let w = w.get_ref();
    let Some(store) = tlsrpt.and_then(|t| t.store.clone()) else {
        return Err(src.err(
            &span,
            "[web] shows the reports of the [tlsrpt] store, and this file has no [tlsrpt] section with `store`: add one (e.g. store = \"/var/lib/mta-sts/reports.db\") or remove [web]",
        ));
    };
    let listen = match &w.listen {
        Some(v) => parse_addr(src, v.get_ref(), &v.span())?,
        None => parse_addr(src, DEFAULT_WEB_LISTEN, &(0..0))?,
    };
    let token_file = w.token_file.as_deref().map(|p| src.path(p));
    let users = w.users.as_ref().map(|p| src.path(p.get_ref()));
    if let (Some(_), Some(u)) = (&token_file, &w.users) {
        return Err(src.err(
            &u.span(),
            "[web] takes `token_file` or `users`, not both: keep one",
        ));
    }
    if !listen.ip().is_loopback() && token_file.is_none() && users.is_none() {
        let at = w.listen.as_ref().map_or(span.clone(), Spanned::span);
        return Err(src.err(
            &at,
            format!("refusing to listen on {listen} without authentication: set `token_file` or `users` in [web] (or listen on 127.0.0.1)"),
        ));
    }
    Ok(WebSettings {
        listen,
        token_file,
        users,
        check: w.check.unwrap_or(true),
        store,
    })
}
