//! `mta-sts report import` and RFC 8460 §3 end to end: a Maildir with a signed and an
//! unsigned report, the key served by the testkit DNS (`--dns`), the JSON refusal codes,
//! `--no-dkim` and `--dkim-require-service`.

use std::path::Path;
use std::process::{Command, Output};

use mta_sts_dkim::DkimSigner;
use mta_sts_testkit::World;
use serde_json::Value;

const KEYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../report-store/tests/data/dkim"
);

fn import(db: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_mta-sts"))
        .args(["report", "--db"])
        .arg(db)
        .args(["import", "--json", "--now", "1714611600"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), json)
}

fn mail(id: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"organization-name":"Sender","report-id":"{id}","date-range":{{"start-datetime":"2024-05-01T00:00:00Z","end-datetime":"2024-05-01T23:59:59Z"}},"policies":[{{"policy":{{"policy-type":"sts","policy-domain":"example.com"}},"summary":{{"total-successful-session-count":1,"total-failure-session-count":0}}}}]}}"#
    );
    format!(
        "From: tlsrpt@sender.test\r\nTo: tlsrpt@example.com\r\nSubject: Report Domain: example.com Submitter: sender.test Report-ID: <{id}@sender.test>\r\n\
         TLS-Report-Domain: example.com\r\nTLS-Report-Submitter: sender.test\r\nMIME-Version: 1.0\r\n\
         Content-Type: application/tlsrpt+json\r\n\r\n{json}\r\n"
    )
    .into_bytes()
}

#[test]
fn rfc8460_s3_report_import_verifies_dkim() {
    let world = World::builder().start();
    let key = std::fs::read_to_string(format!("{KEYS}/rsa2048.pub.b64")).unwrap();
    let record = format!("v=DKIM1; k=rsa; p={}", key.trim());
    let chunks: Vec<&str> = record
        .as_bytes()
        .chunks(255)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    // No s=tlsrpt: accepted with a warning, refused with --dkim-require-service.
    world
        .dns()
        .set_txt("sel._domainkey.sender.test", &[&chunks]);
    let pem = std::fs::read(format!("{KEYS}/rsa2048.pem")).unwrap();
    let signer = DkimSigner::from_pem(&pem, "sender.test", "sel").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let md = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    std::fs::write(
        md.join("cur/1.signed:2,S"),
        signer.sign(&mail("signed"), 1_714_600_000).unwrap(),
    )
    .unwrap();
    std::fs::write(md.join("new/2.unsigned"), mail("unsigned")).unwrap();
    let dns = world.dns_addr().to_string();
    let md = md.to_str().unwrap();

    let strict_db = dir.path().join("strict.db");
    let (code, json) = import(&strict_db, &["--dns", &dns, "--dkim-require-service", md]);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["imported"], 0, "{json}");
    let codes: Vec<&str> = json["refused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["dkim-no-tlsrpt-service", "dkim-missing"], "{json}");

    let db = dir.path().join("reports.db");
    let (code, json) = import(&db, &["--dns", &dns, md]);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["imported"], 1, "{json}");
    assert_eq!(json["dkim"], "verify");
    assert_eq!(json["dkim_verified"], 1);
    let refused = json["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]["input"]
            .as_str()
            .unwrap()
            .ends_with("2.unsigned")
    );
    assert_eq!(refused[0]["code"], "dkim-missing");
    assert_eq!(refused[0]["temporary"], false);
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("RFC 8460 §3")
    );
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("dkim-no-tlsrpt-service")
    );

    // The key's DNS fails: temporary, and a retry once DNS works imports it.
    let db2 = dir.path().join("servfail.db");
    world.dns().set_fault(
        "sel._domainkey.sender.test",
        Some(mta_sts_testkit::DnsFault::ServFail),
    );
    let (_, json) = import(&db2, &["--dns", &dns, md]);
    let temp = &json["refused"].as_array().unwrap()[0];
    assert_eq!(temp["code"], "dkim-temporary", "{json}");
    assert_eq!(temp["temporary"], true);
    world.dns().set_fault("sel._domainkey.sender.test", None);

    // --no-dkim: the unsigned report too (the signed one is a duplicate by now).
    let (code, json) = import(&db, &["--no-dkim", md]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(
        (json["imported"].as_u64(), json["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(json["dkim"], "skip");
}
