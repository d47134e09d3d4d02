//! RFC 8460 §3 on import: "Reports sent via SMTP MUST contain a valid DKIM signature by the
//! reporting domain. Reports lacking such a signature MUST be ignored by the recipient."
//!
//! Real parts only: keys are published in the testkit's authoritative DNS server and looked
//! up over UDP/TCP; messages are signed by our signer (`dkim.rs`) and, where installed, by
//! dkimpy (Debian python3-dkim + python3-nacl; absent: the dkimpy cases print a skip note,
//! or fail under `MTA_STS_REQUIRE_INTEROP=1`).

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::report_email;
use mta_sts_dkim::{Algorithm, Canonicalization, DkimRefusal, DkimSigner, SignOptions};
use mta_sts_net::dns::{Dns, DnsConfig};
use mta_sts_report_store::dkim_dns::DkimVerifier;
use mta_sts_report_store::import::{DkimCheck, DkimStatus, Imported, MailImporter};
use mta_sts_report_store::{InputOutcome, Limits, ReportSink, ReportStore, SqliteStore, mailbox};
use mta_sts_testkit::{DnsFault, World};
use ring::signature::KeyPair;

/// 2024-05-02T01:00:00Z.
const NOW: u64 = 1_714_611_600;
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dkim");

fn data(name: &str) -> String {
    std::fs::read_to_string(Path::new(DATA).join(name)).unwrap()
}

fn report_json(id: &str) -> Vec<u8> {
    format!(
        r#"{{"organization-name":"Sender Org","report-id":"{id}","contact-info":"tlsrpt@sender.test",
        "date-range":{{"start-datetime":"2024-05-01T00:00:00Z","end-datetime":"2024-05-01T23:59:59Z"}},
        "policies":[{{"policy":{{"policy-type":"sts","policy-domain":"example.com"}},
        "summary":{{"total-successful-session-count":5,"total-failure-session-count":1}}}}]}}"#
    )
    .into_bytes()
}

/// A report mail from `submitter` (TLS-Report-Submitter and From).
fn mail(id: &str, submitter: &str) -> Vec<u8> {
    report_email(&report_json(id), "example.com", submitter, id)
}

struct Env {
    world: World,
    store: Arc<SqliteStore>,
    importer: MailImporter,
}

fn env_with(require_service: bool) -> Env {
    let world = World::builder().start();
    let dns = Dns::new(&DnsConfig {
        nameservers: vec![world.dns_addr()],
        timeout: Duration::from_secs(3),
        cache_size: 0,
    })
    .unwrap();
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let sink = ReportSink::new(store.clone(), Limits::default());
    let verifier = DkimVerifier::new(dns).require_service(require_service);
    let importer = MailImporter::new(sink, DkimCheck::Verify(Box::new(verifier)));
    Env {
        world,
        store,
        importer,
    }
}

fn env() -> Env {
    env_with(false)
}

impl Env {
    async fn import(&self, bytes: &[u8]) -> Imported {
        self.importer.import(bytes, "test", NOW).await.unwrap()
    }

    fn publish(&self, selector: &str, domain: &str, record: &str) {
        // Long keys: split into 255-byte strings of one RR (RFC 6376 §3.6.2.2 concatenates).
        let chunks: Vec<&str> = record
            .as_bytes()
            .chunks(255)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        self.world
            .dns()
            .set_txt(&format!("{selector}._domainkey.{domain}"), &[&chunks]);
    }

    async fn stored(&self) -> u64 {
        self.store.count().await.unwrap()
    }
}

fn refusal(imported: &Imported) -> &DkimRefusal {
    match &imported.dkim {
        DkimStatus::Refused(r) => {
            assert!(
                matches!(&imported.outcome, InputOutcome::Refused { reason } if *reason == r.to_string()),
                "{imported:?}"
            );
            r
        }
        other => panic!(
            "expected a DKIM refusal, got {other:?} ({:?})",
            imported.outcome
        ),
    }
}

fn assert_verified(imported: &Imported, algorithm: Algorithm) {
    match &imported.dkim {
        DkimStatus::Verified(pass) => assert_eq!(pass.algorithm, algorithm),
        other => panic!("expected a verified signature, got {other:?}"),
    }
    assert!(
        matches!(&imported.outcome, InputOutcome::Accepted { reports } if reports.len() == 1),
        "{imported:?}"
    );
}

/// A fresh Ed25519 key: (PKCS#8 PEM, raw 32-byte seed, raw public key).
fn ed25519() -> (String, Vec<u8>, Vec<u8>) {
    let pkcs8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\r\n{}\r\n-----END PRIVATE KEY-----\r\n",
        tlsrpt::mail::base64_lines(pkcs8.as_ref())
    );
    // ring's PKCS#8 v2 document: the 32-byte seed follows a 16-byte prefix.
    let seed = pkcs8.as_ref()[16..48].to_vec();
    (pem, seed, pair.public_key().as_ref().to_vec())
}

fn b64(bytes: &[u8]) -> String {
    tlsrpt::mail::base64_lines(bytes).replace("\r\n", "")
}

fn rsa_signer(domain: &str, selector: &str) -> DkimSigner {
    DkimSigner::from_pem(data("rsa2048.pem").as_bytes(), domain, selector).unwrap()
}

fn rsa_record(extra: &str) -> String {
    format!(
        "v=DKIM1; k=rsa;{extra} p={}",
        data("rsa2048.pub.b64").trim()
    )
}

/// Inserts `tag` into the first DKIM-Signature field, right after `v=1;`.
fn with_tag(signed: &[u8], tag: &str) -> Vec<u8> {
    let text = String::from_utf8(signed.to_vec()).unwrap();
    text.replacen(
        "DKIM-Signature: v=1;",
        &format!("DKIM-Signature: v=1; {tag};"),
        1,
    )
    .into_bytes()
}

// ---- dkimpy -------------------------------------------------------------------------------

fn dkimpy() -> Option<&'static str> {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(python)
            .args(["-c", "import dkim, nacl"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    if std::env::var("MTA_STS_REQUIRE_INTEROP").as_deref() == Ok("1") {
        panic!(
            "dkimpy needed (MTA_STS_REQUIRE_INTEROP=1): apt-get install python3-dkim python3-nacl"
        );
    }
    eprintln!("skipped: dkimpy not installed (apt-get install python3-dkim python3-nacl)");
    None
}

/// Signs `message` with dkimpy; `kwargs` is a Python dict literal for `dkim.sign`.
fn dkimpy_sign(
    python: &str,
    message: &[u8],
    selector: &str,
    domain: &str,
    key: &[u8],
    kwargs: &str,
) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.eml"), message).unwrap();
    std::fs::write(dir.path().join("key"), key).unwrap();
    let script = r#"
import sys, dkim
msg = open(sys.argv[1], 'rb').read()
key = open(sys.argv[2], 'rb').read()
kw = eval(sys.argv[5])
sig = dkim.sign(msg, sys.argv[3].encode(), sys.argv[4].encode(), key,
    include_headers=[b'from', b'to', b'subject', b'tls-report-domain', b'tls-report-submitter'], **kw)
sys.stdout.buffer.write(sig + msg)
"#;
    let out = Command::new(python)
        .args(["-c", script])
        .arg(dir.path().join("m.eml"))
        .arg(dir.path().join("key"))
        .args([selector, domain, kwargs])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dkimpy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---- valid signatures ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_rsa_sha256_relaxed_relaxed_is_imported() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    let signed = rsa_signer("sender.test", "rsa")
        .sign(&mail("r1", "sender.test"), NOW as i64)
        .unwrap();
    let imported = env.import(&signed).await;
    assert_verified(&imported, Algorithm::RsaSha256);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    assert_eq!(env.stored().await, 1);
    let stored = env.store.find("r1").await.unwrap();
    assert_eq!(
        stored[0].dkim.as_deref(),
        Some("pass (d=sender.test, s=rsa)"),
        "the DKIM result is stored with the report, for the dashboard's report page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_3_4_simple_simple_is_imported() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    let options = SignOptions {
        header: Canonicalization::Simple,
        body: Canonicalization::Simple,
        ..SignOptions::new(NOW as i64)
    };
    let signed = rsa_signer("sender.test", "rsa")
        .sign_with(&mail("s1", "sender.test"), &options)
        .unwrap();
    assert!(String::from_utf8_lossy(&signed).contains("c=simple/simple"));
    assert_verified(&env.import(&signed).await, Algorithm::RsaSha256);
    // simple/relaxed and relaxed/simple too.
    for (header, body) in [
        (Canonicalization::Simple, Canonicalization::Relaxed),
        (Canonicalization::Relaxed, Canonicalization::Simple),
    ] {
        let options = SignOptions {
            header,
            body,
            ..SignOptions::new(NOW as i64)
        };
        let id = format!("s-{}-{}", header.as_str(), body.as_str());
        let signed = rsa_signer("sender.test", "rsa")
            .sign_with(&mail(&id, "sender.test"), &options)
            .unwrap();
        assert_verified(&env.import(&signed).await, Algorithm::RsaSha256);
    }
    assert_eq!(env.stored().await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8463_ed25519_sha256_is_imported() {
    let env = env();
    let (pem, _, public) = ed25519();
    env.publish(
        "ed",
        "sender.test",
        &format!("v=DKIM1; k=ed25519; s=tlsrpt; p={}", b64(&public)),
    );
    let signer = DkimSigner::from_pem(pem.as_bytes(), "sender.test", "ed").unwrap();
    let signed = signer.sign(&mail("e1", "sender.test"), NOW as i64).unwrap();
    assert_verified(&env.import(&signed).await, Algorithm::Ed25519Sha256);
}

/// dkimpy as the signer: RSA 2048 and 1024 bits (RFC 8301 §3.2's minimum), relaxed and simple,
/// and Ed25519.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_dkimpy_signatures_are_imported() {
    let Some(python) = dkimpy() else { return };
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    env.publish(
        "small",
        "sender.test",
        &format!(
            "v=DKIM1; k=rsa; s=tlsrpt; p={}",
            data("rsa1024.pub.b64").trim()
        ),
    );
    let (_, seed, public) = ed25519();
    env.publish(
        "ed",
        "sender.test",
        &format!("v=DKIM1; k=ed25519; s=tlsrpt; p={}", b64(&public)),
    );
    let cases: [(&str, Vec<u8>, &str, Algorithm); 4] = [
        (
            "rsa",
            data("rsa2048.pem").into_bytes(),
            "dict(canonicalize=(b'relaxed', b'relaxed'))",
            Algorithm::RsaSha256,
        ),
        (
            "rsa",
            data("rsa2048.pem").into_bytes(),
            "dict(canonicalize=(b'simple', b'simple'))",
            Algorithm::RsaSha256,
        ),
        (
            "small",
            data("rsa1024.pem").into_bytes(),
            "dict(canonicalize=(b'relaxed', b'simple'))",
            Algorithm::RsaSha256,
        ),
        (
            "ed",
            b64(&seed).into_bytes(),
            "dict(signature_algorithm=b'ed25519-sha256', canonicalize=(b'relaxed', b'relaxed'))",
            Algorithm::Ed25519Sha256,
        ),
    ];
    for (i, (selector, key, kwargs, algorithm)) in cases.into_iter().enumerate() {
        let message = mail(&format!("py{i}"), "sender.test");
        let signed = dkimpy_sign(python, &message, selector, "sender.test", &key, kwargs);
        let imported = env.import(&signed).await;
        assert_verified(&imported, algorithm);
    }
    assert_eq!(env.stored().await, 4);
}

/// d= may be a parent or a subdomain of the reporting domain (DMARC-like relaxed alignment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s3_signer_aligned_with_submitter_subdomain() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    env.publish("rsa", "mail.other.test", &rsa_record(" s=tlsrpt;"));
    let parent = rsa_signer("sender.test", "rsa")
        .sign(&mail("a1", "mx.sender.test"), NOW as i64)
        .unwrap();
    assert_verified(&env.import(&parent).await, Algorithm::RsaSha256);
    let child = rsa_signer("mail.other.test", "rsa")
        .sign(&mail("a2", "other.test"), NOW as i64)
        .unwrap();
    assert_verified(&env.import(&child).await, Algorithm::RsaSha256);
}

/// Several signatures: one valid aligned signature is enough, whatever the others are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_multiple_signatures_one_valid_passes() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    env.publish("rsa", "relay.test", &rsa_record(" s=tlsrpt;"));
    let inner = rsa_signer("sender.test", "rsa")
        .sign(&mail("m1", "sender.test"), NOW as i64)
        .unwrap();
    // A relay adds its own (unaligned) signature on top, and one with a missing key.
    let outer = rsa_signer("relay.test", "rsa")
        .sign(&inner, NOW as i64)
        .unwrap();
    let outer = rsa_signer("sender.test", "gone")
        .sign(&outer, NOW as i64)
        .unwrap();
    let imported = env.import(&outer).await;
    assert_verified(&imported, Algorithm::RsaSha256);
}

// ---- refused ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s3_unsigned_report_is_ignored() {
    let env = env();
    let imported = env.import(&mail("u1", "sender.test")).await;
    let r = refusal(&imported);
    assert_eq!(r, &DkimRefusal::Missing);
    assert_eq!(r.code(), "dkim-missing");
    assert!(!r.is_temporary());
    assert_eq!(env.stored().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_body_tampered_is_invalid() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    let signed = rsa_signer("sender.test", "rsa")
        .sign(&mail("t1", "sender.test"), NOW as i64)
        .unwrap();
    let text = String::from_utf8(signed).unwrap();
    let tampered = text.replace("This is an aggregate", "This is a forged");
    let r = refusal(&env.import(tampered.as_bytes()).await).clone();
    assert_eq!(r.code(), "dkim-invalid");
    assert!(r.to_string().contains("body hash mismatch"), "{r}");
    assert_eq!(env.stored().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_header_tampered_is_invalid() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    let signed = rsa_signer("sender.test", "rsa")
        .sign(&mail("h1", "sender.test"), NOW as i64)
        .unwrap();
    let text = String::from_utf8(signed).unwrap();
    let tampered = text.replace(
        "TLS-Report-Domain: example.com",
        "TLS-Report-Domain: example.org",
    );
    assert_ne!(text, tampered);
    let r = refusal(&env.import(tampered.as_bytes()).await).clone();
    assert_eq!(r.code(), "dkim-invalid");
    assert!(r.to_string().contains("does not verify"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s3_l_tag_is_refused() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    let signed = rsa_signer("sender.test", "rsa")
        .sign(&mail("l1", "sender.test"), NOW as i64)
        .unwrap();
    let r = refusal(&env.import(&with_tag(&signed, "l=10")).await).clone();
    assert_eq!(r.code(), "dkim-invalid");
    assert!(r.to_string().contains("l="), "{r}");
    if let Some(python) = dkimpy() {
        let signed = dkimpy_sign(
            python,
            &mail("l2", "sender.test"),
            "rsa",
            "sender.test",
            data("rsa2048.pem").as_bytes(),
            "dict(length=True)",
        );
        assert!(String::from_utf8_lossy(&signed).contains(" l="));
        let r = refusal(&env.import(&signed).await).clone();
        assert!(r.to_string().contains("l= (body length limit)"), "{r}");
    }
    assert_eq!(env.stored().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8301_rsa_sha1_is_refused() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(""));
    let signed = rsa_signer("sender.test", "rsa")
        .sign(&mail("x1", "sender.test"), NOW as i64)
        .unwrap();
    let text = String::from_utf8(signed)
        .unwrap()
        .replacen("a=rsa-sha256", "a=rsa-sha1", 1);
    let r = refusal(&env.import(text.as_bytes()).await).clone();
    assert!(
        r.to_string().contains("rsa-sha1 is not a valid algorithm"),
        "{r}"
    );
    if let Some(python) = dkimpy() {
        // A genuine rsa-sha1 signature, valid by RFC 6376's rules alone.
        let signed = dkimpy_sign(
            python,
            &mail("x2", "sender.test"),
            "rsa",
            "sender.test",
            data("rsa2048.pem").as_bytes(),
            "dict(signature_algorithm=b'rsa-sha1')",
        );
        let r = refusal(&env.import(&signed).await).clone();
        assert_eq!(r.code(), "dkim-invalid");
        assert!(r.to_string().contains("RFC 8301"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8301_rsa_key_under_1024_bits_is_invalid() {
    let env = env();
    env.publish(
        "tiny",
        "sender.test",
        &format!("v=DKIM1; k=rsa; p={}", data("rsa512.pub.b64").trim()),
    );
    let signed = rsa_signer("sender.test", "tiny")
        .sign(&mail("k1", "sender.test"), NOW as i64)
        .unwrap();
    let r = refusal(&env.import(&signed).await).clone();
    assert!(r.to_string().contains("512 bits"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s3_unaligned_signer_is_refused() {
    let env = env();
    env.publish("rsa", "attacker.test", &rsa_record(" s=tlsrpt;"));
    let signed = rsa_signer("attacker.test", "rsa")
        .sign(&mail("n1", "sender.test"), NOW as i64)
        .unwrap();
    let r = refusal(&env.import(&signed).await).clone();
    assert_eq!(
        r,
        DkimRefusal::NotAligned {
            signing: "attacker.test".into(),
            reporting: "sender.test".into()
        }
    );
    assert_eq!(r.code(), "dkim-not-aligned");
    // Unaligned signatures are not worth a DNS query.
    assert_eq!(
        env.world
            .dns()
            .query_count_name("rsa._domainkey.attacker.test"),
        0
    );
    // A look-alike suffix is no subdomain.
    env.publish("rsa", "xsender.test", &rsa_record(" s=tlsrpt;"));
    let signed = rsa_signer("xsender.test", "rsa")
        .sign(&mail("n2", "sender.test"), NOW as i64)
        .unwrap();
    assert_eq!(
        refusal(&env.import(&signed).await).code(),
        "dkim-not-aligned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_6_1_2_key_not_found() {
    let env = env();
    let signed = rsa_signer("sender.test", "nokey")
        .sign(&mail("nf", "sender.test"), NOW as i64)
        .unwrap();
    let r = refusal(&env.import(&signed).await).clone();
    assert_eq!(
        r,
        DkimRefusal::KeyNotFound {
            name: "nokey._domainkey.sender.test".into()
        }
    );
    assert!(!r.is_temporary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_6_1_2_dns_servfail_is_temporary() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    env.world
        .dns()
        .set_fault("rsa._domainkey.sender.test", Some(DnsFault::ServFail));
    let signed = rsa_signer("sender.test", "rsa")
        .sign(&mail("sf", "sender.test"), NOW as i64)
        .unwrap();
    let r = refusal(&env.import(&signed).await).clone();
    assert_eq!(r.code(), "dkim-temporary");
    assert!(r.is_temporary());
    assert!(r.to_string().contains("try the import again later"), "{r}");
    // Once DNS answers again, the same mail imports.
    env.world
        .dns()
        .set_fault("rsa._domainkey.sender.test", None);
    assert_verified(&env.import(&signed).await, Algorithm::RsaSha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_3_5_expired_signature_is_invalid() {
    let env = env();
    env.publish("rsa", "sender.test", &rsa_record(" s=tlsrpt;"));
    let options = SignOptions {
        expiration: Some(NOW as i64 - 3600),
        ..SignOptions::new(NOW as i64 - 7200)
    };
    let signed = rsa_signer("sender.test", "rsa")
        .sign_with(&mail("ex", "sender.test"), &options)
        .unwrap();
    let r = refusal(&env.import(&signed).await).clone();
    assert!(r.to_string().contains("expired"), "{r}");
    // Not yet expired: imported.
    let options = SignOptions {
        expiration: Some(NOW as i64 + 3600),
        ..SignOptions::new(NOW as i64)
    };
    let signed = rsa_signer("sender.test", "rsa")
        .sign_with(&mail("ex2", "sender.test"), &options)
        .unwrap();
    assert_verified(&env.import(&signed).await, Algorithm::RsaSha256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6376_3_6_1_revoked_key_is_invalid() {
    let env = env();
    env.publish("rsa", "sender.test", "v=DKIM1; k=rsa; p=");
    let signed = rsa_signer("sender.test", "rsa")
        .sign(&mail("rv", "sender.test"), NOW as i64)
        .unwrap();
    let r = refusal(&env.import(&signed).await).clone();
    assert!(r.to_string().contains("revoked"), "{r}");
}

/// RFC 8460 §3: the key SHOULD carry s=tlsrpt; receivers MAY ignore reports whose key lacks
/// it. Default: imported with a warning; with require_service: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s3_key_without_tlsrpt_service() {
    for (record, declares) in [
        (rsa_record(""), false),
        (rsa_record(" s=email;"), false),
        (rsa_record(" s=*;"), true),
        (rsa_record(" s=email:tlsrpt;"), true),
    ] {
        let lenient = env();
        lenient.publish("rsa", "sender.test", &record);
        let signed = rsa_signer("sender.test", "rsa")
            .sign(&mail("sv", "sender.test"), NOW as i64)
            .unwrap();
        let imported = lenient.import(&signed).await;
        assert_verified(&imported, Algorithm::RsaSha256);
        assert_eq!(imported.warnings.is_empty(), declares, "{record}");
        if !declares {
            assert!(imported.warnings[0].starts_with("dkim-no-tlsrpt-service"));
        }

        let strict = env_with(true);
        strict.publish("rsa", "sender.test", &record);
        let imported = strict.import(&signed).await;
        if declares {
            assert_verified(&imported, Algorithm::RsaSha256);
        } else {
            assert_eq!(refusal(&imported).code(), "dkim-no-tlsrpt-service");
            assert_eq!(strict.stored().await, 0);
        }
    }
}

/// An mbox of three reports, one unsigned: two stored, one refused, nothing else lost. The
/// mbox has LF line ends, as files on disk do; the signatures were made over CRLF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s3_mbox_with_one_unsigned_report() {
    let env = env();
    let (pem, _, public) = ed25519();
    env.publish(
        "ed",
        "sender.test",
        &format!("v=DKIM1; k=ed25519; s=tlsrpt; p={}", b64(&public)),
    );
    let signer = DkimSigner::from_pem(pem.as_bytes(), "sender.test", "ed").unwrap();
    let messages = [
        signer
            .sign(&mail("mb1", "sender.test"), NOW as i64)
            .unwrap(),
        mail("mb2", "sender.test"),
        signer
            .sign(&mail("mb3", "sender.test"), NOW as i64)
            .unwrap(),
    ];
    let mut mbox = Vec::new();
    for m in &messages {
        mbox.extend_from_slice(b"From tlsrpt@sender.test Thu May  2 01:00:00 2024\n");
        mbox.extend_from_slice(
            &String::from_utf8_lossy(m)
                .replace("\r\n", "\n")
                .into_bytes(),
        );
        mbox.extend_from_slice(b"\n");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reports.mbox");
    std::fs::write(&path, &mbox).unwrap();
    let inputs = mailbox::read_file(&path, Limits::default().max_input_bytes).unwrap();
    assert_eq!(inputs.len(), 3);
    let mut refused = Vec::new();
    for input in &inputs {
        let imported = env
            .importer
            .import(&input.bytes, &input.label, NOW)
            .await
            .unwrap();
        if let DkimStatus::Refused(r) = &imported.dkim {
            refused.push((input.label.clone(), r.code()));
        } else {
            assert_verified(&imported, Algorithm::Ed25519Sha256);
        }
    }
    assert_eq!(refused, [(format!("{}#2", path.display()), "dkim-missing")]);
    assert_eq!(env.stored().await, 2);
    assert!(env.store.find("mb2").await.unwrap().is_empty());
    assert_eq!(env.store.find("mb3").await.unwrap().len(), 1);
}

// ---- not mail, or not checked -------------------------------------------------------------

/// Bare JSON / gzip files are not mail: no DKIM check. `DkimCheck::Skip` imports unsigned
/// mail (archives whose keys are gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc8460_s3_only_mail_is_checked_and_skip_is_explicit() {
    let env = env();
    let imported = env.import(&report_json("j1")).await;
    assert_eq!(imported.dkim, DkimStatus::NotMail);
    let imported = env.import(&common::gzip(&report_json("j2"))).await;
    assert_eq!(imported.dkim, DkimStatus::NotMail);
    assert_eq!(env.stored().await, 2);

    let skip = MailImporter::new(env.importer.sink().clone(), DkimCheck::Skip);
    let imported = skip
        .import(&mail("sk", "sender.test"), "archive", NOW)
        .await
        .unwrap();
    assert_eq!(imported.dkim, DkimStatus::Skipped);
    assert_eq!(env.stored().await, 3);
    let dkim_of = |id: &'static str| {
        let store = env.store.clone();
        async move { store.find(id).await.unwrap()[0].dkim.clone() }
    };
    assert_eq!(dkim_of("j1").await, None, "a JSON file is not mail");
    assert_eq!(
        dkim_of("sk").await.as_deref(),
        Some("not checked (imported with --no-dkim)")
    );
}
