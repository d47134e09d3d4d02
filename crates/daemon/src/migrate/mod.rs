//! Switching from postfix-mta-sts-resolver (docs/migrating.md): its configuration file
//! converted to `daemon.toml` ([`peer_config`], over the YAML 1.1 reader [`yaml`]), and the
//! replies of both daemons compared on the operator's own destinations ([`compare`] decides,
//! [`client`] asks).
//!
//! Inside: `peer_config` → `yaml`; `client` → `compare`.

pub mod client;
pub mod compare;
pub mod peer_config;
pub mod yaml;

use std::sync::Arc;
use std::time::Duration;

pub use client::SocketmapAddr;
pub use compare::{Answer, Reason, Verdict};
pub use peer_config::{Conversion, PeerConfigError, Warning};

/// One destination's answers from both servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The key sent (a domain, as in the operator's list).
    pub key: String,
    /// The peer's answer.
    pub peer: Answer,
    /// Our answer.
    pub ours: Answer,
    /// Same or why not.
    pub verdict: Verdict,
}

/// Asks both servers `map KEY` for every key, up to `concurrency` keys at a time, each on
/// new connections; rows come back in the order of `keys`.
pub async fn compare_servers(
    peer: &SocketmapAddr,
    ours: &SocketmapAddr,
    map: &str,
    keys: &[String],
    timeout: Duration,
    concurrency: usize,
) -> Vec<Row> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, key) in keys.iter().enumerate() {
        let (peer, ours, map, key) = (peer.clone(), ours.clone(), map.to_owned(), key.clone());
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let (p, o) = tokio::join!(
                client::ask(&peer, &map, &key, timeout),
                client::ask(&ours, &map, &key, timeout)
            );
            let verdict = compare::compare(&p, &o);
            (
                i,
                Row {
                    key,
                    peer: p,
                    ours: o,
                    verdict,
                },
            )
        });
    }
    let mut rows: Vec<Option<Row>> = vec![None; keys.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, row)) = done {
            rows[i] = Some(row);
        }
    }
    rows.into_iter()
        .zip(keys)
        .map(|(row, key)| {
            row.unwrap_or_else(|| Row {
                key: key.clone(),
                peer: Answer::Failed("internal error".into()),
                ours: Answer::Failed("internal error".into()),
                verdict: Verdict::Differs(Reason::NoReply),
            })
        })
        .collect()
}

/// The keys of a destination list: one per line, `#` comments and blank lines skipped.
pub fn destination_keys(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}
