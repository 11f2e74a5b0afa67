//! Measures identity merges (issue 19) on an existing shop folder, which it changes (run it on a
//! copy):
//!
//! 1. `MERGES` merges of two known customers each (`c-…(2k+1)` into `c-…(2k+2)`), as `alias`
//!    messages in writes of 1,000 (the import path), with `allow_known_merge`;
//! 2. one merge of a customer with 1,000 events into one with 1,000 events (`Db::alias`: one
//!    durable write), five times, each pair made first with 1,000 interleaved events each.
//!
//! Prints wall and process CPU seconds (CPU is the steadier figure on a loaded machine).
//!
//! ```text
//! audiencedb gen --customers 200000 --order customer --end 2026-11-01 > shop.ndjson
//! audiencedb --db /tmp/shop import shop.ndjson
//! cargo run --release --example merge_speed -- /tmp/shop [MERGES] [CUSTOMERS]
//! ```

use std::time::Instant;

use audiencedb::ingest::message::Message;
use audiencedb::{Config, Db};

/// User plus system CPU seconds of this process so far.
fn cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

fn main() -> audiencedb::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("the folder of a shop (it is changed: use a copy)");
    let merges: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let customers: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mut config = Config::new(&path);
    config.allow_known_merge = true;
    let db = Db::open_with(config)?;
    let before = db.totals();
    println!(
        "shop: {} customers, {} events",
        before.customers, before.events
    );
    let width = customers.to_string().len().max(6);
    let id = |n: u64| format!("c-{n:0width$}");

    // 1. Many merges, 1,000 per write.
    let (t0, c0) = (Instant::now(), cpu());
    let mut done = 0u64;
    let pairs: Vec<(u64, u64)> = (0..merges).map(|k| (2 * k + 1, 2 * k + 2)).collect();
    for chunk in pairs.chunks(1_000) {
        let batch: Vec<Message> = chunk
            .iter()
            .map(|&(a, b)| Message::alias(id(a), id(b)))
            .collect();
        done += db.ingest(batch)?.merges;
    }
    let (wall, cpu_s) = (t0.elapsed().as_secs_f64(), cpu() - c0);
    let after = db.totals();
    println!(
        "{done} merges in writes of 1,000: wall {wall:.2} s, cpu {cpu_s:.2} s ({:.1} µs wall, {:.1} µs cpu a merge); {} customers, {} events after",
        wall * 1e6 / done.max(1) as f64,
        cpu_s * 1e6 / done.max(1) as f64,
        after.customers,
        after.events
    );
    assert_eq!(
        after.events, before.events,
        "a merge moves events, never loses one"
    );

    // 2. One merge of a customer with 1,000 events, five times.
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for round in 0..5 {
        let (a, b) = (format!("big-a-{round}"), format!("big-b-{round}"));
        for part in 0..10 {
            let batch: Vec<Message> = (0..200)
                .map(|i| {
                    let n = part * 200 + i;
                    let who = if n % 2 == 0 { &a } else { &b };
                    Message::track(
                        who.as_str(),
                        "viewed",
                        vec![(
                            "product".into(),
                            audiencedb::model::Value::Str(format!("p{}", n % 97).into()),
                        )],
                        Some(1_760_000_000_000 + i64::from(n) * 60_000),
                    )
                })
                .collect();
            db.ingest(batch)?;
        }
        let (t0, c0) = (Instant::now(), cpu());
        assert!(db.alias(&a, &b)?);
        walls.push(t0.elapsed().as_secs_f64() * 1e3);
        cpus.push((cpu() - c0) * 1e3);
        assert_eq!(db.customer(&a)?.map(|c| c.events.len()), Some(2_000));
    }
    walls.sort_by(f64::total_cmp);
    cpus.sort_by(f64::total_cmp);
    println!(
        "one merge of 1,000 events into 1,000: wall {:.1} ms median ({:.1}..{:.1}), cpu {:.1} ms median",
        walls[2], walls[0], walls[4], cpus[2]
    );
    let report = db.verify()?;
    println!("verify: {}", if report.is_ok() { "ok" } else { "PROBLEMS" });
    assert!(report.is_ok(), "{:?}", report.problems);
    Ok(())
}
