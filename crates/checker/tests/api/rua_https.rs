//! Issue #19 item 2: `https:` TLS-RPT destinations (RFC 8460 §3, §5.4) are probed with an
//! empty `POST` of `application/tlsrpt+gzip`, never a made-up report, over TLS with SNI =
//! the URI's host, to the URI's port and path.

use std::net::Ipv4Addr;

use crate::common::{checker, config, good};
use mta_sts_testkit::{HostBehavior, World};

#[test]
fn the_probe_is_an_empty_post_to_the_uri() {
    let world = World::builder()
        .domain("post.test", |d| {
            good(d).tlsrpt(
                "v=TLSRPTv1; rua=https://Reports.Post.test:8443/v1/tlsrpt?tenant=7,mailto:tlsrpt@post.test",
            )
        })
        // The same reporting service for a second domain: probed once per run.
        .domain("other.test", |d| {
            good(d).tlsrpt("v=TLSRPTv1; rua=https://Reports.Post.test:8443/v1/tlsrpt?tenant=7")
        })
        .start();
    world
        .dns()
        .set_a("reports.post.test", &[Ipv4Addr::LOCALHOST]);
    world
        .https()
        .set("reports.post.test", HostBehavior::status(415));
    let mut cfg = config(&world, &[]);
    cfg.smtp = false;
    let addr = world.https_addr();
    let to = format!("reports.post.test:8443:{}:{}", addr.ip(), addr.port());
    cfg.connect_to.insert(0, to.parse().expect("connect-to"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let checker = checker(cfg);
    for domain in ["post.test", "other.test"] {
        let report = runtime.block_on(checker.check(domain)).expect("a domain");
        assert!(
            !report.ids().iter().any(|id| id.starts_with("tlsrpt-")),
            "{domain}: {:#?}",
            report.findings
        );
    }
    let requests = world.https().requests("reports.post.test");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r.sni, "reports.post.test");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/tlsrpt?tenant=7");
    assert_eq!(r.header("host"), Some("reports.post.test:8443"));
    assert_eq!(r.header("content-type"), Some("application/tlsrpt+gzip"));
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty(), "no report is ever submitted");
}
