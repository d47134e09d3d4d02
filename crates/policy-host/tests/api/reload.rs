//! Reload without dropping connections: policy and certificate swap while a keep-alive
//! connection stays open; a broken config is refused and the old one kept serving.

use crate::common;

use std::time::{Duration, Instant};

use common::{Conn, Fixture, POLICY_A, tls, write_atomic};

const PATH: &str = "/.well-known/mta-sts.txt";

fn peer_cert(stream: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_policy_and_certificate_keeping_connections() {
    let f = Fixture::new();
    let config = f.standard_config("");
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];

    let old_cert = peer_cert(&tls(&f.pki, addr, "mta-sts.a.test", &[]).await.unwrap());
    let mut h1 = Conn::open(&f.pki, addr, "mta-sts.a.test", false)
        .await
        .unwrap();
    let mut h2 = Conn::open(&f.pki, addr, "mta-sts.a.test", true)
        .await
        .unwrap();
    assert_eq!(
        h1.request("GET", "mta-sts.a.test", PATH)
            .await
            .unwrap()
            .text(),
        POLICY_A
    );
    let old_id = server.table().host("mta-sts.a.test").unwrap().id.clone();

    // New policy (max_age) and a new certificate for a.test, then an explicit reload.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("max_age = 86400", "max_age = 172800");
    f.write_cert("a", &["mta-sts.a.test"]);
    write_atomic(&config, text.as_bytes());
    server.reload().await.unwrap();

    let new_id = server.table().host("mta-sts.a.test").unwrap().id.clone();
    assert_ne!(old_id, new_id);
    let expected = POLICY_A.replace("86400", "172800");
    // The old keep-alive connections still work and now see the new policy.
    for conn in [&mut h1, &mut h2] {
        let r = conn.request("GET", "mta-sts.a.test", PATH).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), expected);
    }
    // New connections get the new certificate.
    let new_cert = peer_cert(&tls(&f.pki, addr, "mta-sts.a.test", &[]).await.unwrap());
    assert_ne!(old_cert, new_cert);
    drop((h1, h2));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_is_refused_and_the_old_one_kept() {
    let f = Fixture::new();
    let config = f.standard_config("");
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];
    let good = std::fs::read_to_string(&config).unwrap();

    // Syntax error, semantic error, missing certificate: each refused with a reason.
    let cases = [
        (
            good.replace("mode = \"enforce\"", "mode = \"enforced\""),
            "mode `enforced`",
        ),
        (good.replace("[[domain]]", "[[domian]]"), "domian"),
        (
            good.replace("cert = \"a.pem\"", "cert = \"missing.pem\""),
            "missing.pem",
        ),
        (
            good.replace("mx = [\"mx1.a.test\", \"*.mail.a.test\"]", "mx = []"),
            "needs at least one `mx`",
        ),
    ];
    for (text, expect) in cases {
        write_atomic(&config, text.as_bytes());
        let err = server.reload().await.unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
        assert!(
            err.contains("serve.toml") || err.contains("missing.pem"),
            "{err}"
        );
        let r = common::get_policy(&f.pki, addr, "mta-sts.a.test")
            .await
            .unwrap();
        assert_eq!(r.text(), POLICY_A, "old policy still served");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_are_picked_up_without_asking() {
    let f = Fixture::new();
    let config = f.standard_config("");
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];
    let mut conn = Conn::open(&f.pki, addr, "mta-sts.b.test", false)
        .await
        .unwrap();

    // Add a domain by editing the file; the watcher (200 ms) reloads.
    std::fs::create_dir_all(f.path("certs")).unwrap();
    f.write_cert("certs/mta-sts.c.test", &["mta-sts.c.test"]);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "domains = [\"b.test\"]",
        "domains = [\"b.test\", \"c.test\"]",
    );
    write_atomic(&config, text.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.table().host("mta-sts.c.test").is_none() {
        assert!(Instant::now() < deadline, "the watcher did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = common::get_policy(&f.pki, addr, "mta-sts.c.test")
        .await
        .unwrap();
    assert_eq!(r.status, 200);

    // Replacing a certificate file alone triggers a reload too.
    let before = peer_cert(&tls(&f.pki, addr, "mta-sts.b.test", &[]).await.unwrap());
    f.write_cert("certs/mta-sts.b.test", &["mta-sts.b.test"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = peer_cert(&tls(&f.pki, addr, "mta-sts.b.test", &[]).await.unwrap());
        if now != before {
            break;
        }
        assert!(Instant::now() < deadline, "the certificate was not swapped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before all this still answers.
    assert_eq!(
        conn.request("GET", "mta-sts.b.test", PATH)
            .await
            .unwrap()
            .status,
        200
    );
    drop(conn);
    server.shutdown().await;
}

// Issue #19 item 6: a domain served from its policy file (`policy_file`), as written, with
// the id `mta-sts records --policy FILE` prints for the same file; saving the file reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_file_is_served_and_its_edits_reload() {
    let f = Fixture::new();
    let file = f.path("c.txt");
    write_atomic(
        &file,
        b"version: STSv1\nmode: testing\nmx: mx.c.test\nmax_age: 86400\n",
    );
    f.write_cert("c", &["mta-sts.c.test"]);
    let config = f.standard_config(
        "\n[[domain]]\nname = \"c.test\"\npolicy_file = \"c.txt\"\ncert = \"c.pem\"\nkey = \"c.key\"\n",
    );
    let server = f.start(&config).await;
    let addr = server.local_addrs()[0];
    let body = |text: &str| text.replace('\n', "\r\n");
    let r = common::get_policy(&f.pki, addr, "mta-sts.c.test")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        body("version: STSv1\nmode: testing\nmx: mx.c.test\nmax_age: 86400\n")
    );
    let policy = mta_sts::Policy::parse(&std::fs::read(&file).unwrap()).unwrap();
    let id = server.table().host("mta-sts.c.test").unwrap().id.clone();
    assert_eq!(
        id,
        mta_sts_policy_host::records(&"c.test".parse().unwrap(), &policy, None).id
    );

    // The owner edits the file: the watcher reloads it.
    let edited = "version: STSv1\nmode: enforce\nmx: mx.c.test\nmx: mx2.c.test\nmax_age: 604800\n";
    write_atomic(&file, edited.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = common::get_policy(&f.pki, addr, "mta-sts.c.test")
            .await
            .unwrap();
        if r.text() == body(edited) {
            break;
        }
        assert!(Instant::now() < deadline, "not reloaded: {}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken edit is refused with the file and line; the last good policy stays.
    write_atomic(
        &file,
        b"version: STSv1\nmode: enforce\nmx: mx.c.test\nmax_age: x\n",
    );
    let e = server.reload().await.unwrap_err().to_string();
    assert!(e.starts_with(&format!("{}:4:", file.display())), "{e}");
    let r = common::get_policy(&f.pki, addr, "mta-sts.c.test")
        .await
        .unwrap();
    assert_eq!(r.text(), body(edited));
    server.shutdown().await;
}
