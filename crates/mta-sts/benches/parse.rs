//! Parse and match throughput of the core crate (docs/design.md §6; issue targets: a 5-mx policy at
//! ≥ 1,000,000 parses/s per core, a TXT record at ≥ 5,000,000/s).
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mta_sts::{Policy, StsRecord, policy};
use std::hint::black_box;

const POLICY_5MX: &[u8] = b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: mx2.example.com\r\nmx: *.mail.example.net\r\nmx: backup.example.org\r\nmx: mx.provider.example\r\nmax_age: 604800\r\n";
const RECORD: &str = "v=STSv1; id=20240101T000000Z;";

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("policy_5mx", |b| {
        b.iter(|| Policy::parse(black_box(POLICY_5MX)))
    });
    group.bench_function("policy_5mx_lint", |b| {
        b.iter(|| policy::lint(black_box(POLICY_5MX)))
    });
    group.bench_function("sts_record", |b| {
        b.iter(|| StsRecord::parse(black_box(RECORD)))
    });
    group.bench_function("sts_record_select", |b| {
        b.iter(|| StsRecord::select(black_box(["v=spf1 include:_spf.example.com -all", RECORD])))
    });
    group.finish();

    let policy = Policy::parse(POLICY_5MX).expect("benchmark policy is valid");
    let mut group = c.benchmark_group("match");
    group.throughput(Throughput::Elements(1));
    group.bench_function("exact_hit", |b| {
        b.iter(|| policy.matches_mx(black_box("mx2.example.com.")))
    });
    group.bench_function("wildcard_hit", |b| {
        b.iter(|| policy.matches_mx(black_box("in1.mail.example.net")))
    });
    group.bench_function("miss", |b| {
        b.iter(|| policy.matches_mx(black_box("mx.attacker.example")))
    });
    group.bench_function("idn_host", |b| {
        b.iter(|| policy.matches_mx(black_box("mx.bücher.example")))
    });
    group.finish();
}

criterion_group!(parse, benches);
criterion_main!(parse);
