//! Intake: every input shape (JSON, gzip, zip, e-mail from vectors S2/S15, mbox, Maildir),
//! decompression caps (vectors S2.2), clear refusals, no panics on arbitrary bytes.

use crate::common;

use std::time::Instant;

use common::*;
use mta_sts_report_store::intake::{IntakeError, Limits, parse_input, read_capped};
use mta_sts_report_store::mailbox;
use tlsrpt::Report;

const RPT01_JSON: &str = include_str!("../data/rpt01.json");
const RPT01_EML: &str = include_str!("../data/rpt01.eml");
const RPT02_EML: &str = include_str!("../data/rpt02.eml");
/// The report JSON of the vectors S2.2 size-cap tests, verbatim.
const S22_REPORT: &str = r#"{"organization-name":"Example","report-id":"1","date-range":{"start-datetime":"2023-01-01T00:00:00Z","end-datetime":"2023-01-02T00:00:00Z"},"policies":[]}"#;

fn one(bytes: &[u8]) -> Report {
    let mut r = parse_input(bytes, None, &Limits::default()).unwrap();
    assert_eq!(r.len(), 1);
    r.remove(0).report
}

fn limits(cap: usize) -> Limits {
    Limits {
        max_report_bytes: cap,
        ..Limits::default()
    }
}

/// Vectors S2: rpt01.eml (application/tlsrpt+gzip, base64) equals rpt01.json; rpt02.eml
/// (application/tlsrpt with a .json name, unencoded) parses.
#[test]
fn s2_stalwart_eml_fixtures() {
    let from_eml = one(RPT01_EML.as_bytes());
    let from_json = Report::from_json(RPT01_JSON.as_bytes()).unwrap();
    assert_eq!(from_eml, from_json);
    let r = one(RPT02_EML.as_bytes());
    assert_eq!(r.report_id, "2020-01-01T00:00:00Z_example.com");
    assert_eq!(r.policies[0].summary.total_successful_session_count, 23);
    // The same bytes with LF line ends (as stored in many mailboxes).
    assert_eq!(one(RPT01_EML.replace("\r\n", "\n").as_bytes()), from_json);
}

/// Vectors S15.4/S15.5 (mox): a tlsrpt+json part with 8bit encoding, a top-level
/// application/tlsrpt+json message, the real Google and Microsoft reports mailed as gzip.
#[test]
fn s15_mox_message_shapes() {
    let multipart = format!(
        "From: tlsrpt@mail.sender.example.com\r\nDate: Fri, May 09 2017 16:54:30 -0800\r\n\
         To: mts-sts-tlsrpt@example.net\r\nSubject: Report Domain: example.net\r\n\
         Submitter: mail.sender.example.com\r\nReport-ID: <735ff.e317+bf22029@example.net>\r\n\
         TLS-Report-Domain: example.net\r\nTLS-Report-Submitter: mail.sender.example.com\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\";\r\n\
         \tboundary=\"----=_NextPart_000_024E_01CC9B0A.AFE54C00\"\r\nContent-Language: en-us\r\n\r\n\
         This is a multipart message in MIME format.\r\n\r\n\
         ------=_NextPart_000_024E_01CC9B0A.AFE54C00\r\nContent-Type: text/plain; charset=\"us-ascii\"\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\nThis is an aggregate TLS report from mail.sender.example.com\r\n\r\n\
         ------=_NextPart_000_024E_01CC9B0A.AFE54C00\r\nContent-Type: application/tlsrpt+json\r\n\
         Content-Transfer-Encoding: 8bit\r\nContent-Disposition: attachment;\r\n\
         \tfilename=\"mail.sender.example!example.com!1013662812!1013749130.json.gz\"\r\n\r\n\
         {RPT01_JSON}\r\n------=_NextPart_000_024E_01CC9B0A.AFE54C00--\r\n"
    );
    let expected = Report::from_json(RPT01_JSON.as_bytes()).unwrap();
    // The file name says .json.gz but the part is plain JSON: the bytes decide.
    assert_eq!(one(multipart.as_bytes()), expected);
    // multipart/related instead of multipart/report: still found by the part's type.
    assert_eq!(
        one(multipart
            .replace("multipart/report", "multipart/related")
            .as_bytes()),
        expected
    );
    // application/json without a §5.1 file name is not a report part.
    let plain_json = multipart
        .replace("application/tlsrpt+json", "application/json")
        .replace(
            "mail.sender.example!example.com!1013662812!1013749130.json.gz",
            "report.json",
        );
    assert!(matches!(
        parse_input(plain_json.as_bytes(), None, &Limits::default()),
        Err(IntakeError::NoReport)
    ));
    let top = format!(
        "From: tlsrpt@mail.sender.example.com\r\nSubject: Report Domain: example.net\r\n\
         MIME-Version: 1.0\r\nContent-Type: application/tlsrpt+json\r\n\r\n{RPT01_JSON}"
    );
    assert_eq!(one(top.as_bytes()), expected);

    // S15.5 payloads (= corpus 010, 016) mailed the way Google and Microsoft do.
    for (file, domain, submitter) in [
        ("010.json", "test.xmox.nl", "google.com"),
        ("016.json", "test.xmox.nl", "microsoft.com"),
    ] {
        let json = std::fs::read(corpus_dir().join(file)).unwrap();
        let mail = report_email(&json, domain, submitter, "id");
        assert_eq!(one(&mail), Report::from_json(&json).unwrap(), "{file}");
    }
}

/// Every corpus report reads in every container: JSON, gzip, zip (stored and deflated,
/// plain and gzipped entry), e-mail, mbox.
#[test]
fn corpus_in_every_container() {
    for (name, json) in corpus() {
        let expected = Report::from_json(&json).unwrap();
        let inputs = [
            json.clone(),
            gzip(&json),
            zip_one(&name, &json, false, None, None),
            zip_one(&name, &json, true, None, None),
            zip_one(&format!("{name}.gz"), &gzip(&json), false, None, None),
            report_email(&json, "example.com", "reporter.example", &name),
        ];
        for (i, input) in inputs.iter().enumerate() {
            assert_eq!(one(input), expected, "{name} form {i}");
        }
    }
}

/// Vectors S2.2: zip with a forged uncompressed size → too large; forged compressed size →
/// an error; within limits → the report; cap one byte short → too large.
#[test]
fn s22_zip_caps() {
    let report = S22_REPORT.as_bytes();
    let cap = 25 << 20;
    let forged = zip_one("report.json", report, false, Some(u32::MAX), None);
    assert!(matches!(
        parse_input(&forged, Some("application/tlsrpt+zip"), &limits(cap)),
        Err(IntakeError::ReportTooLarge { .. })
    ));
    let forged_c = zip_one("report.json", report, false, None, Some(u32::MAX));
    assert!(parse_input(&forged_c, None, &limits(cap)).is_err());
    let ok = zip_one("report.json", report, true, None, None);
    assert_eq!(
        parse_input(&ok, None, &limits(cap)).unwrap()[0].report,
        Report::from_json(report).unwrap()
    );
    assert!(matches!(
        parse_input(&ok, None, &limits(report.len() - 1)),
        Err(IntakeError::ReportTooLarge { .. })
    ));
    // A deflated entry whose declared size is small but which inflates past the cap.
    let big = vec![b' '; 1 << 20];
    let lying = zip_one("report.json", &big, true, Some(10), None);
    assert!(matches!(
        parse_input(&lying, None, &limits(65_536)),
        Err(IntakeError::ReportTooLarge { .. }) | Err(IntakeError::Zip(_))
    ));
    // Entry names are labels, never paths.
    let evil = zip_one("../../../../tmp/evil.json", report, false, None, None);
    let parsed = parse_input(&evil, None, &limits(cap)).unwrap();
    assert!(
        parsed[0].origin.contains("evil.json"),
        "{}",
        parsed[0].origin
    );
}

/// Vectors S2.2: gzip of 1 MiB of spaces with a 64 KiB cap → too large; within limits and
/// one byte short.
#[test]
fn s22_gzip_caps() {
    let spaces = gzip(&vec![b' '; 1 << 20]);
    assert!(matches!(
        parse_input(&spaces, Some("application/tlsrpt+gzip"), &limits(65_536)),
        Err(IntakeError::ReportTooLarge { .. })
    ));
    let gz = gzip(S22_REPORT.as_bytes());
    assert_eq!(
        parse_input(&gz, None, &limits(25 << 20)).unwrap()[0].report,
        Report::from_json(S22_REPORT.as_bytes()).unwrap()
    );
    assert!(matches!(
        parse_input(&gz, None, &limits(S22_REPORT.len() - 1)),
        Err(IntakeError::ReportTooLarge { .. })
    ));
    assert!(read_capped(&b"hello"[..], 4).is_err());
    assert_eq!(read_capped(&b"hello"[..], 5).unwrap(), b"hello");
}

/// A 1 GiB gzip bomb (≈1 MB compressed, generated, never stored) is refused after at most
/// 25 MiB of output, quickly, alone and inside an e-mail.
#[test]
fn one_gib_gzip_bomb_is_refused_quickly() {
    let bomb = gzip_bomb(1);
    assert!(bomb.len() < 4 << 20, "bomb is {} bytes", bomb.len());
    // It is a real bomb: an uncapped reader keeps producing zeros past the cap.
    let mut probe = flate2::read::GzDecoder::new(&bomb[..]);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    while total < 40 << 20 {
        let n = std::io::Read::read(&mut probe, &mut buf).unwrap();
        assert!(n > 0 && buf[..n].iter().all(|b| *b == 0));
        total += n;
    }
    let start = Instant::now();
    let err = parse_input(&bomb, Some("application/tlsrpt+gzip"), &Limits::default()).unwrap_err();
    assert!(
        matches!(err, IntakeError::ReportTooLarge { limit } if limit == 25 << 20),
        "{err}"
    );
    let mail = String::from_utf8(report_email(b"{}", "a.example", "b.example", "x")).unwrap();
    let idx = mail.find("Content-Transfer-Encoding: base64").unwrap();
    let body_start = mail[idx..].find("\r\n\r\n").unwrap() + idx + 4;
    let body_end = mail.rfind("\r\n--b1--").unwrap();
    let bomb_mail = format!(
        "{}{}{}",
        &mail[..body_start],
        base64(&bomb),
        &mail[body_end..]
    );
    let err = parse_input(bomb_mail.as_bytes(), None, &Limits::default()).unwrap_err();
    assert!(matches!(err, IntakeError::ReportTooLarge { .. }), "{err}");
    let elapsed = start.elapsed();
    eprintln!("1 GiB bomb refused twice in {elapsed:?}");
    assert!(elapsed.as_secs() < 60, "{elapsed:?}");
}

/// Clear refusals for broken inputs.
#[test]
fn refusals_are_clear() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"report-id\": ".to_vec(), "not a TLS-RPT report"),
        (b"{}".to_vec(), "missing field"),
        (b"\x1f\x8b\x08\x00garbage".to_vec(), "corrupt gzip"),
        (gzip(b"{}")[..10].to_vec(), "corrupt gzip"),
        (b"PK\x03\x04junk".to_vec(), "zip"),
        (b"".to_vec(), "no TLS-RPT report"),
        (b"hello world".to_vec(), "no TLS-RPT report"),
        (b"Subject: x\r\nContent-Type: multipart/report; boundary=q\r\n\r\n--q\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n--q--\r\n".to_vec(), "gzip"),
        (b"Subject: x\r\nContent-Type: multipart/report; boundary=q\r\n\r\n--q\r\nContent-Type: application/tlsrpt+json\r\n\r\n[1,2]\r\n--q--\r\n".to_vec(), "not a TLS-RPT report"),
    ];
    for (input, needle) in cases {
        let err = parse_input(&input, None, &Limits::default()).unwrap_err();
        assert!(
            err.to_string().contains(needle),
            "{:?}: {err}",
            String::from_utf8_lossy(&input)
        );
    }
    let big = vec![b' '; 100];
    assert!(matches!(
        parse_input(
            &big,
            None,
            &Limits {
                max_input_bytes: 99,
                ..Limits::default()
            }
        ),
        Err(IntakeError::InputTooLarge { .. })
    ));
}

/// mbox files split into messages; Maildir cur/ and new/ are read, tmp/ is not.
#[test]
fn mbox_and_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let files = corpus();
    let mut mbox = Vec::new();
    for (name, json) in files.iter().take(3) {
        mbox.extend_from_slice(b"From tlsrpt@reporter.example Mon Jan  1 00:00:00 2024\n");
        mbox.extend_from_slice(&report_email(json, "example.com", "reporter.example", name));
        mbox.extend_from_slice(b"\n");
    }
    let mbox_path = dir.path().join("reports.mbox");
    std::fs::write(&mbox_path, &mbox).unwrap();
    let inputs = mailbox::read_file(&mbox_path, 1 << 20).unwrap();
    assert_eq!(inputs.len(), 3);
    for (input, (_, json)) in inputs.iter().zip(&files) {
        assert_eq!(one(&input.bytes), Report::from_json(json).unwrap());
    }
    assert!(inputs[1].label.ends_with("reports.mbox#2"));

    let md = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(md.join(sub)).unwrap();
    }
    std::fs::write(
        md.join("cur/1.host:2,S"),
        report_email(&files[0].1, "a", "b", "1"),
    )
    .unwrap();
    std::fs::write(
        md.join("new/2.host"),
        report_email(&files[1].1, "a", "b", "2"),
    )
    .unwrap();
    std::fs::write(md.join("tmp/3.host"), b"partial").unwrap();
    std::fs::write(md.join("dovecot-uidlist"), b"3 V1 N2").unwrap();
    std::fs::write(md.join(".hidden"), b"x").unwrap();
    let listed: Vec<_> = mailbox::list_files(std::slice::from_ref(&md))
        .into_iter()
        .map(|p| p.unwrap())
        .collect();
    assert!(listed.iter().any(|p| p.ends_with("cur/1.host:2,S")));
    assert!(listed.iter().any(|p| p.ends_with("new/2.host")));
    assert!(!listed.iter().any(|p| p.starts_with(md.join("tmp"))));
    assert!(!listed.iter().any(|p| p.ends_with(".hidden")));
    let missing = mailbox::list_files(&[dir.path().join("nope")]);
    assert!(missing[0].is_err());
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes, alone or behind each sniffed prefix, never panic the importer.
        #[test]
        fn importer_never_panics(
            prefix in prop_oneof![
                Just(Vec::new()),
                Just(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff".to_vec()),
                Just(b"PK\x03\x04".to_vec()),
                Just(b"{".to_vec()),
                Just(b"Content-Type: multipart/report; boundary=x\r\n\r\n--x\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec()),
            ],
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let mut input = prefix;
            input.extend_from_slice(&body);
            let _ = parse_input(&input, None, &Limits::default());
            let _ = mailbox::split_mbox(&input);
        }

        /// Truncating or flipping a byte of a valid gzip or zip report never panics.
        #[test]
        fn damaged_containers_never_panic(cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
            let json = std::fs::read(corpus_dir().join("001.json")).unwrap();
            for mut data in [gzip(&json), zip_one("r.json", &json, true, None, None)] {
                let i = flip % data.len();
                data[i] ^= 1 << bit;
                data.truncate(cut.max(1).min(data.len()));
                let _ = parse_input(&data, None, &Limits::default());
            }
        }
    }
}

/// A corrupt gzip or zip input keeps the decoder's error as its source, and the refusal
/// reason (with its causes) still carries the decoder's words.
#[test]
fn corrupt_archives_keep_the_decoders_error() {
    use std::error::Error;
    for (input, gzip) in [
        (b"\x1f\x8b\x08\x00garbage".to_vec(), true),
        (b"PK\x03\x04junk".to_vec(), false),
    ] {
        let err = parse_input(&input, None, &Limits::default()).unwrap_err();
        assert_eq!(matches!(err, IntakeError::Gzip(_)), gzip, "{err:?}");
        assert_eq!(matches!(err, IntakeError::Zip(_)), !gzip, "{err:?}");
        let cause = err.source().expect("the decoder's error").to_string();
        let reason = mta_sts_net::with_causes(&err);
        assert!(
            reason.starts_with(&format!("{err}: ")) && reason.contains(&cause),
            "{reason}"
        );
    }
}
