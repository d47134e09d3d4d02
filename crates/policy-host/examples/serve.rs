//! A minimal `mta-sts serve` for benchmarks and manual tests, until the CLI wires it:
//! `serve CONFIG` runs the policy host until Ctrl-C (SIGHUP reloads).
//! `MTA_STS_WORKERS=N` sets the number of runtime worker threads.

use mta_sts_policy_host::{ServeConfig, serve};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let path = std::env::args().nth(1).ok_or("usage: serve CONFIG.toml")?;
    let config = ServeConfig::load(&path)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("MTA_STS_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build()?.block_on(async {
        serve(config, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })?;
    Ok(())
}
