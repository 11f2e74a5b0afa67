//! Parse throughput: the spec's example rules, and guards against slow cases (deep nesting, long
//! chains, a run of open parentheses) so that a regression to super-linear parsing shows up here.
//!
//! `cargo bench --bench parse`

use std::hint::black_box;

use audiencedb::rules::{parse, print};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use audiencedb::rules::SPEC_EXAMPLES;

fn typical(c: &mut Criterion) {
    let mut group = c.benchmark_group("typical");
    group.throughput(Throughput::Elements(SPEC_EXAMPLES.len() as u64));
    group.bench_function("parse spec examples", |b| {
        b.iter(|| {
            for rule in SPEC_EXAMPLES {
                black_box(parse(black_box(rule)).ok());
            }
        })
    });
    let parsed: Vec<_> = SPEC_EXAMPLES.iter().filter_map(|r| parse(r).ok()).collect();
    group.bench_function("print spec examples", |b| {
        b.iter(|| {
            for rule in &parsed {
                black_box(print(black_box(rule)));
            }
        })
    });
    group.finish();
}

fn pathological(c: &mut Criterion) {
    let mut group = c.benchmark_group("pathological");
    let cases = [
        (
            "64 nested parentheses",
            format!("{}tier = Gold{}", "(".repeat(64), ")".repeat(64)),
        ),
        (
            "200 nested parentheses (error)",
            format!("{}tier = Gold{}", "(".repeat(200), ")".repeat(200)),
        ),
        ("10000-term and chain", vec!["x"; 10_000].join(" and ")),
        ("1000 open parentheses (error)", "(".repeat(1000)),
        ("16000 nots (error)", "not ".repeat(16_000)),
        ("unclosed string of 60000 quotes", "\"".repeat(60_000)),
    ];
    for (name, input) in &cases {
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| black_box(parse(black_box(input)).is_ok()))
        });
    }
    group.finish();
}

criterion_group!(benches, typical, pathological);
criterion_main!(benches);
