//! `[web]` of `mta-sts serve`: the dashboard of `mta-sts web` served by the policy host's
//! own process, over the report store of its `[tlsrpt]` section (opened read-only), with
//! the serve configuration itself as `--serve-config` (records and drift for every served
//! domain). The records and drift follow the policy host's reloads (the table is read
//! through its `TableHandle` at each page and check); the dashboard's own settings
//! (`[web]`) and its DNS servers stay as they were at start.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use mta_sts_net::{Clock, SystemClock};
use mta_sts_policy_host::config::WebSettings;
use mta_sts_policy_host::{ServeConfig, TableHandle};
use mta_sts_web::{Auth, Diagnose, WebConfig, WebServer};

use crate::net::NetArgs;
use crate::served::{LiveServed, Tables};
use crate::web::{CheckerDiagnose, auth, open_read_only};

/// Time budget of one "re-run check" (`mta-sts web --check-timeout`'s default).
const CHECK_BUDGET: Duration = Duration::from_secs(60);

/// `--check-config`'s line for `[web]`; fails when the token or users file cannot be read.
pub(crate) fn describe(web: &WebSettings) -> Result<String> {
    let who = match auth(web.token_file.as_deref(), web.users.as_deref())? {
        Auth::None => "no authentication (loopback only)".to_owned(),
        Auth::Token(_) => format!(
            "token of {} required",
            web.token_file
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
        _ => format!(
            "users of {} required",
            web.users
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    };
    Ok(format!(
        "TLS-RPT dashboard ([web]): http://{}/ over the report store {} (read-only), {who}, re-run check {}",
        web.listen,
        web.store,
        if web.check { "on" } else { "off" }
    ))
}

/// Starts the dashboard of `[web]`. `config_path` is the serve configuration (named on
/// the pages and in fixes), `net` the `--dns`/`--ca-file` options of `serve` (DNS from
/// the configuration's `nameservers` otherwise, as `serve --check`).
pub(crate) async fn start(
    web: &WebSettings,
    config: &ServeConfig,
    tables: TableHandle,
    config_path: &Path,
    net: &NetArgs,
) -> Result<WebServer> {
    let auth = auth(web.token_file.as_deref(), web.users.as_deref())?;
    // Already refused at config load; checked again where the socket is bound.
    auth.check_listen(web.listen)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (net, _, asked) = crate::served::dns_choice(net, config, config_path);
    let tables = Tables::Live(tables);
    let store = open_read_only(&web.store).await?;
    let served = LiveServed::new(tables.clone(), config_path);
    let diagnose: Option<Arc<dyn Diagnose>> = if web.check {
        Some(Arc::new(CheckerDiagnose::new(
            &net,
            CHECK_BUDGET,
            clock.clone(),
            Some((tables, config_path.to_path_buf(), asked)),
        )?))
    } else {
        None
    };
    let settings = WebConfig {
        listen: web.listen,
        auth,
        served: Arc::new(served),
        ..WebConfig::default()
    };
    Ok(WebServer::start(&settings, store, clock, diagnose).await?)
}
