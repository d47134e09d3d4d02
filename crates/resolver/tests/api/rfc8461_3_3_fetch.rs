//! RFC 8461 §3.2 / §3.3 and docs/design.md §3: every rule of the HTTPS policy fetch, against the
//! testkit's real HTTPS host.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use mta_sts_net::ConnectTo;
use mta_sts_net::policy_fetch::is_text_plain;
use mta_sts_resolver::{Error, Outcome};
use mta_sts_testkit::{CertKind, HostBehavior, World};
use tlsrpt::ResultType;

fn world_with(behavior: HostBehavior) -> World {
    World::builder()
        .domain("good.test", move |d| {
            d.sts_id("1")
                .policy_behavior(behavior)
                .mx(10, "mail.good.test")
        })
        .start()
}

async fn live_error(behavior: HostBehavior) -> (World, Option<Error>, Outcome) {
    let world = world_with(behavior);
    let s = setup(&world);
    let out = s.resolver.query_live(&domain("good.test")).await;
    let outcome = out.outcome();
    (world, out.error, outcome)
}

#[tokio::test]
async fn rfc8461_3_3_valid_policy_is_fetched() {
    let (world, error, outcome) = live_error(HostBehavior::policy(POLICY)).await;
    assert_eq!(error, None);
    assert_eq!(outcome, Outcome::Policy);
    assert_eq!(requests(&world, "good.test"), 1);
    let req = &world.https().requests("mta-sts.good.test")[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/.well-known/mta-sts.txt");
}

#[tokio::test]
async fn rfc8461_3_3_sni_is_the_policy_host() {
    let (world, error, _) = live_error(HostBehavior::policy(POLICY)).await;
    assert_eq!(error, None);
    let req = &world.https().requests("mta-sts.good.test")[0];
    assert_eq!(req.sni, "mta-sts.good.test");
    assert_eq!(req.header("host"), Some("mta-sts.good.test"));
}

#[tokio::test]
async fn rfc8461_3_3_tls_is_1_2_or_later() {
    let (world, error, _) = live_error(HostBehavior::policy(POLICY)).await;
    assert_eq!(error, None);
    let req = &world.https().requests("mta-sts.good.test")[0];
    assert!(
        req.tls_version.contains("1_2") || req.tls_version.contains("1_3"),
        "{}",
        req.tls_version
    );
}

#[tokio::test]
async fn rfc8461_3_3_tls_1_0_only_host_fails_with_tls_version() {
    let (_w, error, outcome) = live_error(HostBehavior::policy(POLICY).legacy_tls()).await;
    let error = error.expect("error");
    assert!(matches!(error, Error::TlsVersion { .. }), "{error:?}");
    assert_eq!(error.reason_code(), "tls-version");
    assert_eq!(outcome, Outcome::Unusable);
}

#[tokio::test]
async fn rfc8461_3_3_no_cache_headers_and_user_agent() {
    let (world, error, _) = live_error(HostBehavior::policy(POLICY)).await;
    assert_eq!(error, None);
    let req = &world.https().requests("mta-sts.good.test")[0];
    for h in [
        "if-none-match",
        "if-modified-since",
        "cache-control",
        "pragma",
    ] {
        assert_eq!(req.header(h), None, "{h} must not be sent");
    }
    let ua = req.header("user-agent").expect("user-agent");
    assert!(ua.starts_with("mta-sts/"), "{ua}");
}

#[tokio::test]
async fn rfc8461_3_3_redirect_is_not_followed() {
    for status in [301, 302, 307, 308] {
        let (world, error, outcome) = live_error(HostBehavior::redirect(
            status,
            "https://mta-sts.good.test/other.txt",
        ))
        .await;
        let error = error.expect("error");
        assert!(
            matches!(&error, Error::Redirect { status: s, .. } if *s == status),
            "{error:?}"
        );
        assert_eq!(error.result_type(), ResultType::StsPolicyFetchError);
        assert_eq!(outcome, Outcome::Unusable);
        // Only one request: the Location was not followed.
        assert_eq!(world.https().all_requests().len(), 1);
    }
}

#[tokio::test]
async fn rfc8461_3_3_only_status_200_is_accepted() {
    for status in [201, 204, 404, 500] {
        let behavior = HostBehavior::policy(POLICY).with_status(status);
        let (_w, error, outcome) = live_error(behavior).await;
        let error = error.expect("error");
        assert!(
            matches!(&error, Error::Status { status: s } if *s == status),
            "{status}: {error:?}"
        );
        assert_eq!(error.reason_code(), "http-status");
        assert_eq!(outcome, Outcome::Unusable);
    }
}

#[tokio::test]
async fn rfc8461_3_2_media_type_must_be_text_plain() {
    let (_w, error, _) = live_error(HostBehavior::policy(POLICY).content_type("text/html")).await;
    let error = error.expect("error");
    assert!(matches!(error, Error::MediaType { .. }), "{error:?}");
    assert_eq!(error.result_type(), ResultType::StsPolicyInvalid);

    let (_w, error, _) = live_error(HostBehavior::policy(POLICY).no_content_type()).await;
    assert!(
        matches!(error, Some(Error::MediaType { content_type: None })),
        "{error:?}"
    );

    let (_w, error, outcome) =
        live_error(HostBehavior::policy(POLICY).content_type("TEXT/PLAIN; charset=utf-8")).await;
    assert_eq!(error, None);
    assert_eq!(outcome, Outcome::Policy);
}

#[tokio::test]
async fn rfc8461_3_2_media_type_check_can_be_switched_off() {
    let world = world_with(HostBehavior::policy(POLICY).content_type("text/html"));
    let mut config = config(&world);
    config.check_media_type = false;
    let s = setup_with(&world, config);
    let out = s.resolver.query_live(&domain("good.test")).await;
    assert_eq!(out.error, None);
    assert_eq!(out.outcome(), Outcome::Policy);
}

/// postfix-mta-sts-resolver §H and postfix-tlspol S10.3 vectors.
#[test]
fn rfc8461_3_2_media_type_vectors() {
    let accept = [
        "text/plain",
        "TEXT/PLAIN",
        "TeXT/PlAiN",
        "text/plain;charset=utf-8",
        "text/plain;charset=UTF-8",
        "text/plain; charset=UTF-8",
        "text/plain ; charset=UTF-8",
        "text/plain; charset=utf-8",
        "TEXT/PLAIN; charset=US-ASCII; x-extra=ignored",
        // docs/rfc-requirements.md §4 item 8: other charsets are ignored, body parsed as UTF-8.
        "text/plain; charset=iso-8859-1",
    ];
    let reject = [
        "application/octet-stream",
        "application/octet-stream+text/plain",
        "application/json+text/plain",
        "text/plain+",
        "",
        "text/html",
        "not a media type",
    ];
    for v in accept {
        assert!(is_text_plain(v), "should accept {v:?}");
    }
    for v in reject {
        assert!(!is_text_plain(v), "should reject {v:?}");
    }
}

fn sized_policy(len: usize) -> Vec<u8> {
    let mut body = POLICY.as_bytes().to_vec();
    // Pad with an extension line so the policy stays valid.
    let pad = len - body.len() - "x: \n".len();
    body.extend_from_slice(b"x: ");
    body.extend(std::iter::repeat_n(b'a', pad));
    body.push(b'\n');
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn rfc8461_3_3_body_of_65536_bytes_is_accepted() {
    let (_w, error, outcome) = live_error(HostBehavior::policy(sized_policy(65536))).await;
    assert_eq!(error, None);
    assert_eq!(outcome, Outcome::Policy);
}

#[tokio::test]
async fn rfc8461_3_3_body_of_65537_bytes_is_rejected() {
    let (_w, error, _) = live_error(HostBehavior::policy(sized_policy(65537))).await;
    assert!(
        matches!(error, Some(Error::TooLarge { limit: 65536 })),
        "{error:?}"
    );
}

#[tokio::test]
async fn rfc8461_3_3_chunked_body_is_capped_on_the_stream() {
    let (_w, error, _) = live_error(HostBehavior::policy(sized_policy(65537)).chunked()).await;
    assert!(matches!(error, Some(Error::TooLarge { .. })), "{error:?}");
}

#[tokio::test]
async fn rfc8461_3_3_lying_content_length_is_capped_on_the_stream() {
    // Announces 100 bytes, sends 200 000 and closes.
    let behavior = HostBehavior::huge(200_000).lying_content_length(100);
    let (_w, error, _) = live_error(behavior).await;
    // hyper stops at the announced length: whatever it read is not a policy. Either way
    // the fetch must never accept more than the cap.
    assert!(error.is_some(), "{error:?}");
    let behavior = HostBehavior::huge(200_000).close_delimited();
    let (_w, error, _) = live_error(behavior).await;
    assert!(matches!(error, Some(Error::TooLarge { .. })), "{error:?}");
}

#[tokio::test]
async fn rfc8461_3_3_truncated_body_is_not_a_policy() {
    // The whole valid policy, then the connection closes before the announced length: a
    // cut body must fail the fetch, even though what arrived would parse.
    let behavior = HostBehavior::policy(POLICY).lying_content_length(POLICY.len() as u64 + 40);
    let (_w, error, outcome) = live_error(behavior).await;
    assert!(matches!(error, Some(Error::Http { .. })), "{error:?}");
    assert_ne!(outcome, Outcome::Policy);
}

#[tokio::test]
async fn rfc8461_3_3_ten_megabyte_body_ends_quickly_with_too_large() {
    for behavior in [
        HostBehavior::huge(10_000_000),
        HostBehavior::huge(10_000_000).chunked(),
        HostBehavior::huge(10_000_000).close_delimited(),
    ] {
        let started = Instant::now();
        let (_w, error, _) = live_error(behavior).await;
        assert!(matches!(error, Some(Error::TooLarge { .. })), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

#[tokio::test]
async fn rfc8461_3_3_expired_certificate_is_webpki_invalid() {
    let (_w, error, _) = live_error(HostBehavior::policy(POLICY).cert(CertKind::Expired)).await;
    let error = error.expect("error");
    assert!(
        matches!(error, Error::CertificateExpired { .. }),
        "{error:?}"
    );
    assert_eq!(error.result_type(), ResultType::StsWebpkiInvalid);
}

#[tokio::test]
async fn rfc8461_3_3_wrong_name_certificate_is_webpki_invalid() {
    let (_w, error, _) = live_error(HostBehavior::policy(POLICY).cert(CertKind::WrongName)).await;
    let error = error.expect("error");
    assert!(
        matches!(error, Error::CertificateWrongName { .. }),
        "{error:?}"
    );
    assert_eq!(error.result_type(), ResultType::StsWebpkiInvalid);
}

#[tokio::test]
async fn rfc8461_3_3_untrusted_certificate_is_webpki_invalid() {
    for kind in [CertKind::Untrusted, CertKind::SelfSigned] {
        let (_w, error, _) = live_error(HostBehavior::policy(POLICY).cert(kind)).await;
        let error = error.expect("error");
        assert!(
            matches!(error, Error::CertificateUntrusted { .. }),
            "{kind:?}: {error:?}"
        );
        assert_eq!(error.result_type(), ResultType::StsWebpkiInvalid);
    }
}

async fn assert_times_out(behavior: HostBehavior) {
    let world = world_with(behavior);
    let mut config = config(&world);
    config.timeout = Duration::from_millis(800);
    let s = setup_with(&world, config);
    let started = Instant::now();
    let out = s.resolver.query_live(&domain("good.test")).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(out.error, Some(Error::Timeout { .. })),
        "{:?}",
        out.error
    );
    assert!(elapsed < Duration::from_millis(1800), "{elapsed:?}");
}

#[tokio::test]
async fn rfc8461_3_3_timeout_on_slow_body() {
    assert_times_out(HostBehavior::policy(POLICY).slow(4, Duration::from_millis(200))).await;
}

#[tokio::test]
async fn rfc8461_3_3_timeout_on_no_response() {
    assert_times_out(HostBehavior::policy(POLICY).no_response()).await;
}

#[tokio::test]
async fn rfc8461_3_3_timeout_on_hanging_handshake() {
    assert_times_out(HostBehavior::policy(POLICY).hang_handshake()).await;
}

#[tokio::test]
async fn rfc8461_3_3_connect_to_keeps_the_validated_name() {
    // A host-specific override (not the catch-all) works the same way.
    let world = world_with(HostBehavior::policy(POLICY));
    let mut config = config(&world);
    config.connect_to = vec![world.connect_to("mta-sts.good.test").parse().expect("ct")];
    let s = setup_with(&world, config);
    let out = s.resolver.query_live(&domain("good.test")).await;
    assert_eq!(out.error, None);
    assert_eq!(
        world.https().requests("mta-sts.good.test")[0].sni,
        "mta-sts.good.test"
    );
    // Without any override the policy host resolves to 127.0.0.1:443, where nothing
    // listens (or something else does): the connection fails, typed.
    let mut config = common::config(&world);
    config.connect_to.clear();
    let s = setup_with(&world, config);
    let out = s.resolver.query_live(&domain("good.test")).await;
    assert!(out.error.is_some());
}

#[test]
fn connect_to_syntax() {
    let c: ConnectTo = "a.test:443:10.0.0.1:8443".parse().expect("parse");
    assert_eq!(c.host.as_deref(), Some("a.test"));
    assert_eq!(c.port, Some(443));
    assert_eq!(c.addr.as_deref(), Some("10.0.0.1"));
    assert_eq!(c.addr_port, Some(8443));
    assert!(c.applies("A.TEST", 443));
    assert!(!c.applies("b.test", 443));
    assert!(!c.applies("a.test", 80));
    let c: ConnectTo = "::[::1]:".parse().expect("parse");
    assert_eq!(c.host, None);
    assert_eq!(c.addr.as_deref(), Some("::1"));
    assert_eq!(c.addr_port, None);
    assert!("nonsense".parse::<ConnectTo>().is_err());
    assert!("a:b:c:d".parse::<ConnectTo>().is_err());
}
