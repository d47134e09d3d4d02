//! Issue #19 item 1: for a `mode: testing` policy the checker says what `mode: enforce`
//! would do with today's MX hosts (RFC 8461 §5), names the hosts and why, and advises
//! switching to enforce only when enforce would deliver.

use crate::common::{checker, config, good_with};
use mta_sts_checker::{Report, Verdict, finding::ids};
use mta_sts_testkit::{CertKind, SmtpConfig, World};

fn world() -> (World, Vec<String>) {
    let hosts: Vec<String> = [
        "mail.wrongname.test",
        "mail.fine.test",
        "mail.enforced.test",
        "mail.some.test",
        "backup.some.test",
    ]
    .iter()
    .map(|h| h.to_string())
    .collect();
    let world = World::builder()
        .domain("wrongname.test", |d| good_with(d, "testing", 1_209_600))
        .domain("fine.test", |d| good_with(d, "testing", 1_209_600))
        .domain("enforced.test", |d| good_with(d, "enforce", 1_209_600))
        // backup.some.test is not in the policy: enforce skips it (RFC 8461 §4.1).
        .domain("some.test", |d| {
            good_with(d, "testing", 1_209_600).mx(20, "backup.some.test")
        })
        .smtp(SmtpConfig::new("mail.wrongname.test").starttls(CertKind::WrongName))
        .smtp(SmtpConfig::new("mail.fine.test").starttls(CertKind::Valid))
        .smtp(SmtpConfig::new("mail.enforced.test").starttls(CertKind::WrongName))
        .smtp(SmtpConfig::new("mail.some.test").starttls(CertKind::Valid))
        .smtp(SmtpConfig::new("backup.some.test").starttls(CertKind::Valid))
        .start();
    (world, hosts)
}

fn check_all(world: &World, hosts: &[String], domains: &[&str]) -> Vec<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let checker = checker(config(world, hosts));
        let mut out = Vec::new();
        for d in domains {
            out.push(checker.check(d).await.expect("a domain name"));
        }
        out
    })
}

fn finding<'a>(report: &'a Report, id: &str) -> &'a mta_sts_checker::Finding {
    report
        .findings
        .iter()
        .find(|f| f.id == id)
        .unwrap_or_else(|| panic!("no {id} in {:#?}", report.findings))
}

#[test]
fn testing_policy_says_what_enforce_would_do() {
    let (world, hosts) = world();
    let reports = check_all(
        &world,
        &hosts,
        &["wrongname.test", "fine.test", "enforced.test", "some.test"],
    );
    let [wrong, fine, enforced, some] = reports.as_slice() else {
        panic!("four reports");
    };

    // Testing with a wrong-name MX certificate: today mail flows, enforce would defer it.
    assert_eq!(wrong.verdict, Verdict::Warn);
    assert_eq!(wrong.delivery.would_deliver, Some(true));
    let what_if = wrong.delivery.if_enforced.as_ref().expect("if_enforced");
    assert_eq!(what_if.would_deliver, Some(false), "{what_if:?}");
    assert_eq!(what_if.skipped.len(), 1);
    assert_eq!(what_if.skipped[0].host, "mail.wrongname.test");
    assert_eq!(what_if.skipped[0].reasons, vec!["mx-cert-name-mismatch"]);
    let defer = finding(wrong, "enforce-would-defer");
    assert!(
        defer
            .detail
            .contains("mail.wrongname.test (mx-cert-name-mismatch)"),
        "{defer:?}"
    );
    assert!(defer.title.contains("defer all mail"), "{defer:?}");
    let advice = &finding(wrong, "policy-mode-testing").fix;
    assert!(advice.starts_with("Do not switch"), "{advice}");

    // Testing with a valid MX: enforce would deliver; the usual advice to switch.
    let what_if = fine.delivery.if_enforced.as_ref().expect("if_enforced");
    assert_eq!(what_if.would_deliver, Some(true));
    assert_eq!(what_if.mx.as_deref(), Some("mail.fine.test"));
    assert!(what_if.skipped.is_empty());
    assert!(!fine.has("enforce-would-defer") && !fine.has("enforce-would-defer-some"));
    assert_eq!(
        finding(fine, "policy-mode-testing").fix,
        ids::POLICY_MODE_TESTING.fix
    );

    // Enforce already: the enforce answer is the delivery itself.
    assert_eq!(enforced.delivery.if_enforced, None);
    assert!(enforced.has("delivery-deferred"));

    // One MX of two would be skipped: mail still flows, but not through the backup.
    let what_if = some.delivery.if_enforced.as_ref().expect("if_enforced");
    assert_eq!(what_if.would_deliver, Some(true));
    assert_eq!(what_if.skipped.len(), 1);
    assert_eq!(what_if.skipped[0].host, "backup.some.test");
    assert_eq!(what_if.skipped[0].reasons, vec!["mx-not-in-policy"]);
    assert!(some.has("enforce-would-defer-some"), "{:?}", some.ids());
    let advice = &finding(some, "policy-mode-testing").fix;
    assert!(advice.starts_with("Fix the MX hosts"), "{advice}");
}
