//! Parse throughput of `_smtp._tls` records.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const RECORDS: &[&str] = &[
    "v=TLSRPTv1;rua=mailto:tls-rua@mailcheck.service.ncsc.gov.uk",
    "v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://tlsrpt.example.com/v1; ext=1",
    "v=TLSRPTv1; rua=mailto:a@example.com , mailto:b%2Bc@example.com ;",
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("tlsrpt_record");
    let bytes: usize = RECORDS.iter().map(|r| r.len()).sum();
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("parse", |b| {
        b.iter(|| {
            for r in RECORDS {
                let _ = black_box(tlsrpt::TlsRptRecord::parse(black_box(r)));
            }
        })
    });
    group.bench_function("lint", |b| {
        b.iter(|| {
            for r in RECORDS {
                black_box(tlsrpt::lint(black_box(r)));
            }
        })
    });
    group.bench_function("select", |b| {
        let rrs = [
            vec!["v=spf1 -all"],
            vec!["v=TLSRPTv1; rua=mailto:", "tlsrpt@example.com"],
        ];
        b.iter(|| black_box(tlsrpt::select(black_box(&rrs))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
