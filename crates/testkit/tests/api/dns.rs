//! The authoritative DNS server, seen by a real resolver (hickory-resolver).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use mta_sts_testkit::{DnsFault, World};

fn resolver(world: &World, timeout: Duration) -> Resolver<TokioRuntimeProvider> {
    let addr = world.dns_addr();
    let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut ns.connections {
        connection.port = addr.port();
    }
    let config = ResolverConfig::from_parts(None, vec![], vec![ns]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    builder.options_mut().timeout = timeout;
    builder.options_mut().attempts = 1;
    builder.options_mut().cache_size = 0;
    builder.build().expect("resolver")
}

/// Each TXT RR's strings, in answer order, of the TXT records only.
async fn txt(
    resolver: &Resolver<TokioRuntimeProvider>,
    name: &str,
) -> Result<Vec<Vec<String>>, NetError> {
    let lookup = resolver.lookup(name, RecordType::TXT).await?;
    Ok(lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

#[tokio::test]
async fn txt_strings_and_rrs() {
    let world = World::builder()
        .domain("multi.test", |d| {
            d.sts_txt_rrs(&[&["v=STSv1; ", "id=123;"]])
        })
        .start();
    world.dns().set_txt(
        "_mta-sts.two.test",
        &[&["v=STSv1; id=1;"], &["v=STSv1; id=2;"]],
    );
    let r = resolver(&world, Duration::from_secs(2));

    let one = txt(&r, "_mta-sts.multi.test.").await.expect("txt");
    assert_eq!(
        one,
        vec![vec!["v=STSv1; ".to_string(), "id=123;".to_string()]]
    );

    let mut two = txt(&r, "_mta-sts.two.test.").await.expect("txt");
    two.sort();
    assert_eq!(two.len(), 2);
    assert_eq!(two[0], vec!["v=STSv1; id=1;".to_string()]);

    // Mutation while running.
    world
        .dns()
        .set_txt("_mta-sts.multi.test", &[&["v=STSv1; id=456;"]]);
    let changed = txt(&r, "_mta-sts.multi.test.").await.expect("txt");
    assert_eq!(changed, vec![vec!["v=STSv1; id=456;".to_string()]]);
    assert_eq!(
        world
            .dns()
            .query_count("_mta-sts.multi.test", RecordType::TXT),
        2
    );
    assert_eq!(
        world
            .dns()
            .query_count("_mta-sts.nothing.test", RecordType::TXT),
        0
    );
}

#[tokio::test]
async fn cname_chain_carries_target_records() {
    let world = World::empty();
    let dns = world.dns();
    dns.set_cname("_mta-sts.alias.test", "_mta-sts.hop.test");
    dns.set_cname("_mta-sts.hop.test", "_mta-sts.target.test");
    dns.set_txt("_mta-sts.target.test", &[&["v=STSv1; id=9;"]]);
    let r = resolver(&world, Duration::from_secs(2));
    let lookup = r
        .lookup("_mta-sts.alias.test.", RecordType::TXT)
        .await
        .expect("lookup");
    let types: Vec<RecordType> = lookup.answers().iter().map(|r| r.record_type()).collect();
    assert_eq!(
        types,
        vec![RecordType::CNAME, RecordType::CNAME, RecordType::TXT]
    );
    // Only the alias was queried: the server answered the whole chain at once.
    assert_eq!(dns.query_count("_mta-sts.target.test", RecordType::TXT), 0);
}

#[tokio::test]
async fn nxdomain_nodata_servfail_refused_are_distinct() {
    let world = World::builder()
        .negative_ttl(42)
        .domain("good.test", |d| d.enforce())
        .start();
    let dns = world.dns();
    dns.set_txt("_mta-sts.sick.test", &[&["v=STSv1; id=1;"]]);
    dns.set_fault("_mta-sts.sick.test", Some(DnsFault::ServFail));
    dns.set_fault("_mta-sts.rude.test", Some(DnsFault::Refused));
    let r = resolver(&world, Duration::from_secs(2));

    // NXDOMAIN, with the SOA carrying the negative TTL.
    let err = r
        .lookup("_mta-sts.absent.test.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(err.is_nx_domain(), "{err:?}");
    let soa = err.into_soa().expect("soa in authority");
    assert_eq!(soa.data.minimum, 42);
    assert_eq!(soa.ttl, 42);

    // NODATA: the name exists (A record), TXT does not.
    let err = r
        .lookup("mta-sts.good.test.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(err.is_no_records_found() && !err.is_nx_domain(), "{err:?}");
    // An empty non-terminal is NODATA too.
    let err = r.lookup("good.test.", RecordType::TXT).await;
    assert!(err.is_ok() || err.as_ref().is_err_and(|e| !e.is_nx_domain()));
    let err = r.lookup("test.", RecordType::TXT).await.unwrap_err();
    assert!(err.is_no_records_found() && !err.is_nx_domain(), "{err:?}");

    // SERVFAIL and REFUSED.
    let err = r
        .lookup("_mta-sts.sick.test.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail))
        ),
        "{err:?}"
    );
    let err = r
        .lookup("_mta-sts.rude.test.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused))
        ),
        "{err:?}"
    );

    // Healing mid-test.
    dns.set_fault("_mta-sts.sick.test", None);
    assert_eq!(
        txt(&r, "_mta-sts.sick.test.").await.expect("healed").len(),
        1
    );
    // Removing the last record makes the name vanish.
    dns.remove("_mta-sts.sick.test", RecordType::TXT);
    let err = r
        .lookup("_mta-sts.sick.test.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(err.is_nx_domain(), "{err:?}");
}

#[tokio::test]
async fn black_hole_times_out_and_delay_answers_late() {
    let world = World::empty();
    let dns = world.dns();
    dns.set_fault("_mta-sts.void.test", Some(DnsFault::BlackHole));
    dns.set_txt("_mta-sts.slow.test", &[&["v=STSv1; id=1;"]]);
    dns.set_type_fault(
        "_mta-sts.slow.test",
        RecordType::TXT,
        Some(DnsFault::Delay(Duration::from_millis(300))),
    );
    let r = resolver(&world, Duration::from_millis(500));

    let started = Instant::now();
    let err = r
        .lookup("_mta-sts.void.test.", RecordType::TXT)
        .await
        .unwrap_err();
    assert!(!err.is_no_records_found(), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(400), "{err:?}");
    assert!(dns.query_count("_mta-sts.void.test", RecordType::TXT) >= 1);

    let started = Instant::now();
    assert_eq!(txt(&r, "_mta-sts.slow.test.").await.expect("late").len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn mx_a_aaaa_tlsa_and_ttls() {
    let world = World::builder()
        .default_ttl(77)
        .domain("good.test", |d| d.enforce())
        .start();
    let dns = world.dns();
    dns.set_aaaa("mail.good.test", &["::1".parse().expect("v6")]);
    dns.set_tlsa("_25._tcp.mail.good.test", &[(3, 1, 1, &[0xab; 32])]);
    dns.set_ttl("mail.good.test", RecordType::A, 5);
    let r = resolver(&world, Duration::from_secs(2));

    let mx = r.lookup("good.test.", RecordType::MX).await.expect("mx");
    let record = &mx.answers()[0];
    assert_eq!(record.ttl, 77);
    match &record.data {
        RData::MX(mx) => {
            assert_eq!(mx.preference, 10);
            assert_eq!(mx.exchange.to_ascii(), "mail.good.test.");
        }
        other => panic!("{other:?}"),
    }
    let a = r.lookup("mail.good.test.", RecordType::A).await.expect("a");
    assert_eq!(a.answers()[0].ttl, 5);
    assert!(matches!(&a.answers()[0].data, RData::A(a) if a.0 == Ipv4Addr::LOCALHOST));
    let aaaa = r
        .lookup("mail.good.test.", RecordType::AAAA)
        .await
        .expect("aaaa");
    assert_eq!(aaaa.answers().len(), 1);
    let tlsa = r
        .lookup("_25._tcp.mail.good.test.", RecordType::TLSA)
        .await
        .expect("tlsa");
    assert!(matches!(&tlsa.answers()[0].data, RData::TLSA(_)));
}

#[test]
fn ten_thousand_domains() {
    let started = Instant::now();
    let world = World::builder().bulk(10_000).start();
    assert!(world.dns().name_count() >= 30_000);
    assert_eq!(world.https().host_count(), 10_000);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let r = resolver(&world, Duration::from_secs(2));
        let name = format!("_mta-sts.{}.", mta_sts_testkit::world::bulk_name(9_999));
        assert_eq!(txt(&r, &name).await.expect("txt").len(), 1);
    });
}
