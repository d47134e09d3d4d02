//! The checker judges certificates at the time of its injected clock (`Checker::with_clock`):
//! the same valid policy host certificate is fine today and expired once the clock is moved
//! past its `notAfter` (RFC 8461 §3.3: the policy host's certificate must be valid).

use std::sync::Arc;

use crate::common::{config, good};
use mta_sts_checker::Checker;
use mta_sts_net::{Clock, ManualClock, SystemClock};
use mta_sts_testkit::World;

fn finding_ids(world: &World, clock: Arc<dyn Clock>) -> Vec<String> {
    let mut cfg = config(world, &[]);
    cfg.smtp = false;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime
        .block_on(async {
            let checker = Checker::with_clock(cfg, clock).expect("checker");
            checker.check("clock.test").await
        })
        .unwrap_or_else(|e| panic!("check: {e}"));
    report.findings.into_iter().map(|f| f.id).collect()
}

#[test]
fn clock_decides_whether_the_policy_host_certificate_has_expired() {
    let world = World::builder().domain("clock.test", good).start();
    let today = finding_ids(&world, Arc::new(SystemClock));
    assert!(
        !today.iter().any(|id| id == "policy-host-cert-expired"),
        "valid today: {today:?}"
    );
    // Ten years on, the testkit's certificate is long past its notAfter.
    let later = Arc::new(ManualClock::new(SystemClock.now() + 10 * 365 * 86_400));
    let then = finding_ids(&world, later);
    assert!(
        then.iter().any(|id| id == "policy-host-cert-expired"),
        "expired in ten years: {then:?}"
    );
}
