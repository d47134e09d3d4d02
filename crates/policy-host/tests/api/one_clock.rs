//! One clock (issue #13): what the policy host decides by the time reads the injected
//! clock, so moving a `ManualClock` moves it. The report `received` stamp is checked in
//! `rfc8460_intake`.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use common::Fixture;
use mta_sts_net::clock::ManualClock;
use mta_sts_policy_host::{ServeConfig, Table};

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The warnings logged while the table for `config` is built by `clock`.
async fn warnings_building(config: &Arc<ServeConfig>, clock: &ManualClock) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    Table::build_with_clock(config.clone(), clock)
        .await
        .expect("table");
    drop(guard);
    let bytes = captured.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

// RFC 8461 §3.3: an expired certificate makes senders refuse the policy, so the table warns
// about one. Expired is judged by the injected clock: the fixture's certificates are valid
// now and expired ten years on.
#[tokio::test]
async fn certificate_expiry_follows_the_injected_clock() {
    let f = Fixture::new();
    let config = Arc::new(ServeConfig::load(f.standard_config("")).unwrap());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let clock = ManualClock::new(now);
    let today = warnings_building(&config, &clock).await;
    assert!(!today.contains("expired"), "{today}");
    clock.advance(10 * 365 * 86_400);
    let later = warnings_building(&config, &clock).await;
    for host in ["mta-sts.a.test", "mta-sts.b.test"] {
        assert!(
            later
                .lines()
                .any(|l| l.contains("the certificate has expired") && l.contains(host)),
            "{later}"
        );
    }
}
