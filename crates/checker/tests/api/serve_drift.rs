//! `serve --check` drift (issue #12 item 17): the policy a testkit policy host really serves
//! is fetched by the checker and compared with the policy "served here"
//! (`drift::drift`). `serve-policy-differs` when they differ in mode, max_age or the set of
//! mx patterns (RFC 8461 §3.2), never when they are the same policy written differently.

use std::time::SystemTime;

use crate::common::{checker, config, good};
use mta_sts::Policy;
use mta_sts_checker::analyze::Thresholds;
use mta_sts_checker::drift::{Served, drift};
use mta_sts_testkit::World;

/// The drift finding ids when `mail.<domain>` serves `live` and this host has `here`.
fn drift_ids(
    runtime: &tokio::runtime::Runtime,
    world: &World,
    domain: &str,
    here: &str,
) -> Vec<String> {
    let mut cfg = config(world, &[]);
    cfg.smtp = false;
    let report = runtime
        .block_on(checker(cfg.clone()).check(domain))
        .unwrap_or_else(|e| panic!("check {domain}: {e}"));
    let policy = Policy::parse(here.as_bytes()).expect("policy here");
    let served = Served {
        policy: &policy,
        id: report
            .record
            .as_ref()
            .and_then(|r| r.id.as_deref())
            .unwrap_or("1"),
        cert_not_after: None,
    };
    let thresholds = Thresholds {
        cert_warn_days: 14,
        slow: std::time::Duration::from_secs(5),
    };
    drift(&report, &served, &thresholds, SystemTime::now())
        .into_iter()
        .map(|f| f.id)
        .collect()
}

#[test]
fn serve_policy_differs_when_the_world_fetches_another_policy() {
    let live = "version: STSv1\nmode: enforce\nmx: mail.drift.test\nmx: *.backup.drift.test\nmax_age: 1209600\n";
    let world = World::builder()
        .domain("drift.test", |d| good(d).policy(live))
        .start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // the same policy: no drift, also with other line order, line ends and upper case
    for same in [
        live,
        "version: STSv1\r\nmax_age: 1209600\r\nmx: *.backup.drift.test\r\nmx: MAIL.drift.test\r\nmode: enforce\r\n",
    ] {
        let ids = drift_ids(&runtime, &world, "drift.test", same);
        assert!(ids.is_empty(), "{same:?}: {ids:?}");
    }
    // another mode, max_age or mx set: senders apply something else than served here
    for other in [
        "version: STSv1\nmode: testing\nmx: mail.drift.test\nmx: *.backup.drift.test\nmax_age: 1209600\n",
        "version: STSv1\nmode: enforce\nmx: mail.drift.test\nmx: *.backup.drift.test\nmax_age: 604800\n",
        "version: STSv1\nmode: enforce\nmx: mail.drift.test\nmax_age: 1209600\n",
        "version: STSv1\nmode: enforce\nmx: mail.drift.test\nmx: *.backup.drift.test\nmx: mx.drift.test\nmax_age: 1209600\n",
    ] {
        let ids = drift_ids(&runtime, &world, "drift.test", other);
        assert_eq!(ids, ["serve-policy-differs"], "{other:?}");
    }
}
