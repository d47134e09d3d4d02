//! `mta-sts migrate compare` against the real postfix-mta-sts-resolver 1.5.1 (a venv cached by
//! `scripts/peer-resolver`): the peer and our daemon, configured from the same YAML file
//! (ours through `mta-sts migrate config`), answer for one test world holding the peer's
//! own fixture domains (../shared/vectors/postfix-mta-sts-resolver.txt §A, §B, §D) and two
//! where ours differs on purpose. The peer reaches the world's DNS on port 53 of a
//! 127.0.71.x address and the policy hosts on port 443 of 127.0.72.1 (a forwarder to the
//! testkit's HTTPS server), so the test needs root; it skips without root, python3 or PyPI
//! unless `MTA_STS_REQUIRE_INTEROP=1`.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mta_sts_testkit::{CertKind, HostBehavior, World};

use crate::daemon_support::{DaemonProc, bin, free_port, have, is_root, require_interop};

const GOOD: &str = "version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 86400";
const ID: &str = "v=STSv1;id=20180907T090909;";

pub(crate) fn skip(why: &str) {
    assert!(!require_interop(), "{why} (MTA_STS_REQUIRE_INTEROP=1)");
    eprintln!("SKIP: {why}");
}

/// The peer's fixture world (vectors §A/§B) plus `wild.loc` (pattern order differs), and
/// `maxageover.loc`, `underscore.loc`, `emptymx.loc`, `dupkeys.loc` and `emptyid.loc` where
/// ours differs on purpose, and `ipmx.loc` where it does not (vectors §K).
fn world() -> World {
    let mut b = World::builder();
    let hosts: Vec<(&str, HostBehavior)> = vec![
        ("good.loc", HostBehavior::policy(GOOD)),
        (
            "testing.loc",
            HostBehavior::policy("version: STSv1\nmode: testing\nmax_age: 86400\nmx: mail.loc\n"),
        ),
        (
            "valid-none.loc",
            HostBehavior::policy("version: STSv1\nmode: none\nmax_age: 86400"),
        ),
        ("bad-policy1.loc", HostBehavior::policy("garbage")),
        (
            "bad-policy2.loc",
            HostBehavior::policy("version: STSv1\nmode: enforce\nmax_age: 86400"),
        ),
        (
            "bad-policy3.loc",
            HostBehavior::policy(GOOD).content_type("text/html"),
        ),
        (
            "bad-cert1.loc",
            HostBehavior::policy(GOOD).cert(CertKind::Untrusted),
        ),
        (
            "bad-cert2.loc",
            HostBehavior::policy(GOOD).cert(CertKind::WrongName),
        ),
        (
            "wild.loc",
            HostBehavior::policy(
                "version: STSv1\nmode: enforce\nmx: mail.wild.loc\nmx: *.wild.loc\nmx: *.mx.wild.loc\nmax_age: 604800\n",
            ),
        ),
        (
            "maxageover.loc",
            HostBehavior::policy(
                "version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 31557601\n",
            ),
        ),
        (
            "underscore.loc",
            HostBehavior::policy("version: STSv1\nmode: enforce\nmx: mail.loc\nmax_age: 86_400\n"),
        ),
        (
            "emptymx.loc",
            HostBehavior::policy("version: STSv1\nmode: enforce\nmx:\nmax_age: 86400\n"),
        ),
        (
            "ipmx.loc",
            HostBehavior::policy("version: STSv1\nmode: enforce\nmx: 192.0.2.1\nmax_age: 86400\n"),
        ),
        (
            "dupkeys.loc",
            HostBehavior::policy(
                "version: STSv1\nmode: none\nmode: enforce\nmx: mail.loc\nmax_age: 86400\n",
            ),
        ),
    ];
    for (name, behavior) in hosts {
        b = b.domain(name, move |d| d.sts_txt(ID).policy_behavior(behavior));
    }
    for (name, txt) in [
        ("emptyid.loc", "v=STSv1; id=;"),
        ("bad-record1.loc", "id=20180907T090909; v=STSv1;"),
        ("bad-record2.loc", "azazaza;asdasdasdasd"),
    ] {
        b = b.domain(name, move |d| d.sts_txt(txt).policy(GOOD));
    }
    b.start()
}

/// Forwards `listen` to `target` on the world's runtime (the peer only speaks to port 443).
fn forward(world: &World, listen: SocketAddr, target: SocketAddr) -> std::io::Result<()> {
    let std_listener = std::net::TcpListener::bind(listen)?;
    std_listener.set_nonblocking(true)?;
    let handle = world.handle().clone();
    let _guard = handle.enter();
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    handle.spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Ok(())
}

/// Python run as the peer's `mta-sts-daemon`, with its DNS resolver (aiodns, also behind
/// aiohttp) pointed at `PEER_DNS` instead of /etc/resolv.conf.
const PEER_MAIN: &str = "
import os, aiodns, aiohttp.connector, aiohttp.resolver
_init = aiodns.DNSResolver.__init__
def _with_test_dns(self, nameservers=None, *args, **kwargs):
    _init(self, [os.environ['PEER_DNS']], *args, **kwargs)
aiodns.DNSResolver.__init__ = _with_test_dns
aiohttp.connector.DefaultResolver = aiohttp.resolver.AsyncResolver
from postfix_mta_sts_resolver.daemon import main
main()
";

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "peer exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "peer not listening on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The test world with the peer running on it, configured by `yaml(port)`.
pub(crate) struct PeerLab {
    pub world: World,
    pub peer_addr: SocketAddr,
    pub peer_log: std::path::PathBuf,
    pub yaml_file: std::path::PathBuf,
    _peer: Peer,
}

/// Starts the world and the peer on a free port (`None`: skipped, the reason printed).
pub(crate) fn start_lab(dir: &Path, yaml: impl Fn(u16) -> String) -> Option<PeerLab> {
    if !is_root() {
        skip("needs root (DNS on port 53, policy hosts on port 443 for the peer)");
        return None;
    }
    if !have("python3", "python3-venv") {
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/peer-resolver");
    let out = Command::new(&script)
        .output()
        .expect("run scripts/peer-resolver");
    if !out.status.success() {
        skip(&format!(
            "scripts/peer-resolver failed (python3-venv, PyPI): {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    let venv_bin = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    let world = world();
    world
        .dns()
        .set_a("mta-sts.no-record.loc", &[Ipv4Addr::LOCALHOST]);
    let dns_ip = (1..50)
        .map(|n| Ipv4Addr::new(127, 0, 71, n))
        .find(|ip| {
            world
                .dns()
                .also_listen(world.handle(), SocketAddr::from((*ip, 53)))
                .is_ok()
        })
        .expect("a free port 53 on 127.0.71.1-49");
    let https_ip = (1..50)
        .map(|n| Ipv4Addr::new(127, 0, 72, n))
        .find(|ip| forward(&world, SocketAddr::from((*ip, 443)), world.https_addr()).is_ok())
        .expect("a free port 443 on 127.0.72.1-49");
    for host in world.https().host_names() {
        world.dns().set_a(&host, &[https_ip]);
    }

    let peer_port = free_port();
    let yaml_file = dir.join("mta-sts-daemon.yml");
    std::fs::write(&yaml_file, yaml(peer_port)).expect("write yaml");
    let peer_log = dir.join("peer.log");
    let mut child = Command::new(format!("{venv_bin}/python"))
        .args(["-c", PEER_MAIN, "-c"])
        .arg(&yaml_file)
        .env("PEER_DNS", dns_ip.to_string())
        .env("SSL_CERT_FILE", world.ca_file())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&peer_log).expect("log"))
        .spawn()
        .expect("start the peer");
    let peer_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, peer_port));
    wait_listening(peer_addr, &mut child, &peer_log);
    Some(PeerLab {
        world,
        peer_addr,
        peer_log,
        yaml_file,
        _peer: Peer(child),
    })
}

#[test]
fn compare_with_the_real_peer_on_its_own_vectors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(lab) = start_lab(dir.path(), |peer_port| {
        format!(
            "host: 127.0.0.1\nport: {peer_port}\nreuse_port: true\nshutdown_timeout: 1\n\
             cache:\n  type: internal\n  options:\n    cache_size: 1000\n\
             default_zone:\n  strict_testing: false\n  timeout: 3\n\
             zones:\n  strict:\n    strict_testing: true\n    timeout: 3\n  nosni:\n    require_sni: false\n  tlsrpt:\n    tlsrpt: true\n"
        )
    }) else {
        return;
    };
    let (world, peer_addr, peer_log, yaml_file) =
        (&lab.world, lab.peer_addr, &lab.peer_log, &lab.yaml_file);

    // Ours: the same YAML through `mta-sts migrate config`, on its own port, with the
    // world's resolver settings added (the peer's come from the patch above).
    let converted = Command::new(bin())
        .args(["migrate", "config"])
        .arg(yaml_file)
        .output()
        .expect("migrate config");
    assert!(converted.status.success());
    let toml = String::from_utf8_lossy(&converted.stdout).into_owned();
    let (socketmap, rest) = toml.split_at(toml.find("[cache]").expect("[cache] in the TOML"));
    let socketmap_extra: String = socketmap
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('[') && !l.starts_with("listen"))
        .map(|l| format!("{l}\n"))
        .collect();
    let ours = DaemonProc::start(
        dir.path(),
        &socketmap_extra,
        &format!("{}\n{rest}", crate::daemon_support::resolver_section(world)),
        &[],
    );

    let keys = "good.loc\n[good.loc]:123\ngood.loc.\n.good.loc\ntesting.loc\nvalid-none.loc\n\
                no-record.loc\nbad-record1.loc\nbad-record2.loc\nbad-policy1.loc\nbad-policy2.loc\n\
                bad-policy3.loc\nbad-cert1.loc\nbad-cert2.loc\n[1.2.3.4]\nwild.loc\n\
                maxageover.loc\nunderscore.loc\nemptymx.loc\nipmx.loc\ndupkeys.loc\nemptyid.loc\n";
    let list = dir.path().join("destinations.txt");
    std::fs::write(&list, keys).expect("write list");
    let compare = |map: &str| {
        let out = Command::new(bin())
            .args(["migrate", "compare", "--map", map, "--peer"])
            .arg(format!("inet:{peer_addr}"))
            .arg("--ours")
            .arg(format!("inet:{}", ours.socketmap))
            .arg(&list)
            .output()
            .expect("migrate compare");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    for map in ["postfix", "strict", "nosni", "tlsrpt"] {
        let (code, text) = compare(map);
        eprintln!("map {map}:\n{text}");
        let differing: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("differs "))
            .collect();
        // Everything of the peer's own tables is the same (wild.loc in another pattern
        // order); the two on purpose differences are named with their reason.
        assert_eq!(
            differing,
            [
                "maxageover.loc",
                "underscore.loc",
                "emptymx.loc",
                "dupkeys.loc",
                "emptyid.loc"
            ],
            "map {map}:\n{text}\npeer log: {}\nours: {}",
            std::fs::read_to_string(peer_log).unwrap_or_default(),
            ours.log_text()
        );
        assert!(
            text.contains("ours clamps it, RFC 8461 erratum 7282"),
            "{text}"
        );
        assert!(text.contains("max_age: 86_400"), "{text}");
        assert!(
            text.contains(
                "22 destinations: 17 same, 5 differ (5 where ours differs on purpose, 0 to look at)"
            ),
            "{text}"
        );
        assert_eq!(code, Some(1), "{text}");
    }
    // The zone settings reached both: testing.loc is secure in `strict`, SNI-less in `nosni`.
    assert!(
        ours.query("strict testing.loc")
            .starts_with("OK secure match=mail.loc")
    );
    assert_eq!(ours.query("nosni good.loc"), "OK secure match=mail.loc");

    // Only the same answers: exit 0.
    std::fs::write(&list, "good.loc\nwild.loc\nno-record.loc\n").expect("write list");
    let (code, text) = compare("postfix");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 destinations: 3 same, 0 differ"), "{text}");
}
