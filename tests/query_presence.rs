//! Long presence windows (`visited ever`, `not visited before 7 days ago and visited in last 7
//! days`, `purchased in last 400 days`) answered from kept unions of aligned runs of day bitmaps
//! (`src/index/presence.rs`), against the reference evaluator (`tests/reference/mod.rs`), in one
//! database whose events span more than two years, through writes of past and present days,
//! deletes and merges, at *nows* that move the windows' edges by a millisecond:
//! - the runs are kept between rules and used again (the test reads how many are kept);
//! - every change to a day a kept run covers is seen by the next rule (proptest).

mod fixture;
mod reference;

use std::ops::{Deref, DerefMut};

use audiencedb::ingest::Message;
use audiencedb::model::time::{format_rfc3339, parse_rfc3339, DAY_MS};
use audiencedb::testing::Internals;
use audiencedb::Customer;
use fixture::Fixture;
use proptest::prelude::*;

const HOUR: i64 = 3_600_000;

/// 2026-03-15T10:30:00Z.
fn now() -> i64 {
    parse_rfc3339("2026-03-15T10:30:00Z").unwrap()
}

/// Midnight starting the day of [`now`].
fn today() -> i64 {
    parse_rfc3339("2026-03-15T00:00:00Z").unwrap()
}

/// Rules the way users write them, each with a window that covers runs of whole days.
const RULES: &[&str] = &[
    "visited ever",
    "not visited ever",
    "visited in last 400 days",
    "visited before 7 days ago",
    "not visited before 7 days ago and visited in last 7 days",
    "visited ever and not visited in last 6 months",
    "purchased ever and not purchased in last 180 days",
    "visited between 700 days ago and 30 days ago",
    "visited in last 300 days and purchased in last 90 days",
    "visited before 2025-06-01",
    "visited since 2024-05-01 and not purchased ever",
];

/// The shared fixture (every id written remembered), opened to allow merges of known customers.
struct Shop(Fixture);

impl Deref for Shop {
    type Target = Fixture;
    fn deref(&self) -> &Fixture {
        &self.0
    }
}

impl DerefMut for Shop {
    fn deref_mut(&mut self) -> &mut Fixture {
        &mut self.0
    }
}

impl Shop {
    fn new() -> Shop {
        Shop(Fixture::configured(|config| {
            config.allow_known_merge = true
        }))
    }

    /// The engine's members of `rule` at `now` equal the reference's.
    fn check(&self, customers: &[Customer], rule: &str, now: i64) -> Result<(), String> {
        let parsed = audiencedb::rules::parse(rule).unwrap();
        let expected = reference::evaluate(&parsed, now, customers)?;
        let got = self
            .db
            .member_ids(&self.db.query(rule, now).map_err(|e| e.to_string())?)
            .unwrap();
        if got == expected {
            return Ok(());
        }
        Err(format!(
            "{rule} at {}: engine {got:?}, reference {expected:?}",
            format_rfc3339(now)
        ))
    }

    fn check_all(&self, nows: &[i64]) {
        let customers = self.customers_once();
        for &now in nows {
            for rule in RULES {
                if let Err(e) = self.check(&customers, rule, now) {
                    panic!("{e}");
                }
            }
        }
    }

    /// Unions of runs of days kept for `event`.
    fn kept_runs(&self, event: &str) -> usize {
        let st = self.db.read();
        let id = st.catalog.event_id(event).unwrap();
        st.indexes.event_index(id).unwrap().presence_runs.len()
    }
}

fn track(id: &str, event: &str, ts: i64) -> Message {
    Message::track(id, event, Vec::new(), Some(ts))
}

/// Customers whose visits and purchases are spread over 800 days before *now*'s, and events at
/// the windows' edges: 7 days and 6 months before *now* ±1 ms, at *now* and 1 ms after.
fn shop() -> Shop {
    let mut s = Shop::new();
    let mut batch = Vec::new();
    for i in 0..60i64 {
        let id = format!("c{i:02}");
        for k in 0..(i % 7) {
            let days_ago = (i * 37 + k * 113) % 800;
            batch.push(track(
                &id,
                "visited",
                today() - days_ago * DAY_MS + (k + 1) * HOUR,
            ));
            if (i + k) % 3 == 0 {
                batch.push(track(
                    &id,
                    "purchased",
                    today() - days_ago * DAY_MS + 2 * HOUR,
                ));
            }
        }
    }
    s.ingest(batch);
    let seven = now() - 7 * DAY_MS;
    let half_year = now() - 180 * DAY_MS;
    s.ingest(vec![
        track("edge7_before", "visited", seven - 1),
        track("edge7_at", "visited", seven),
        track("edge7_after", "visited", seven + 1),
        track("edge7_after", "visited", now() - 2 * DAY_MS),
        track("half_before", "purchased", half_year - 1),
        track("half_at", "purchased", half_year),
        track("half_after", "purchased", half_year + 1),
        track("at_now", "visited", now()),
        track("after_now", "visited", now() + 1),
    ]);
    s
}

fn nows() -> Vec<i64> {
    let n = now();
    vec![
        n,
        n - 1,
        n + 1,
        today() + DAY_MS - 1,
        today() + DAY_MS,
        n + 40 * DAY_MS,
    ]
}

#[test]
fn long_windows_equal_the_reference_at_every_edge() {
    let s = shop();
    s.check_all(&nows());
    assert!(s.kept_runs("visited") > 0, "the long windows used runs");
}

#[test]
fn kept_runs_follow_writes_deletes_and_merges() {
    let mut s = shop();
    s.check_all(&[now()]);
    let kept = s.kept_runs("visited");
    assert!(kept > 0);
    // Writes of days the kept runs cover: an old visit, one on a run's first and last day.
    s.ingest(vec![
        track("c00", "visited", today() - 500 * DAY_MS),
        track("c01", "visited", today() - 256 * DAY_MS),
        track("newcomer", "visited", today() - 64 * DAY_MS - 1),
        track("c02", "purchased", today() - 300 * DAY_MS),
    ]);
    s.check_all(&[now(), now() + 1]);
    // A delete of a customer whose visits are in many runs.
    s.db.delete_customer("c13").unwrap();
    s.ids.remove("c13");
    s.check_all(&[now()]);
    // A merge: an anonymous visitor's old visits join a known customer.
    s.ingest(vec![track("anon-1", "visited", today() - 700 * DAY_MS)]);
    s.check_all(&[now()]);
    assert!(s.db.alias("anon-1", "c20").unwrap());
    s.ids.remove("anon-1");
    s.check_all(&[now(), now() + DAY_MS]);
}

/// A random event: customer, event, day before *now*'s (0: *now*'s), millisecond of the day.
fn random_event() -> impl Strategy<Value = (usize, bool, i64, i64)> {
    let days = prop_oneof![
        0..10i64,
        0..800i64,
        Just(7),
        Just(180),
        Just(256),
        Just(512)
    ];
    let ms = prop_oneof![
        Just(0i64),
        Just(DAY_MS - 1),
        Just(10 * HOUR + 30 * 60_000),
        Just(10 * HOUR + 30 * 60_000 + 1),
        0..DAY_MS,
    ];
    (0..10usize, any::<bool>(), days, ms)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random visits and purchases over two years written in batches, a random delete between
    /// some, every rule asked after each batch: always the reference's answer.
    #[test]
    fn random_writes_and_long_windows_equal_the_reference(
        batches in prop::collection::vec(prop::collection::vec(random_event(), 1..20), 1..5),
        deletes in prop::collection::vec(prop::option::of(0..10usize), 5),
        shift in prop_oneof![Just(0i64), Just(1), Just(-1), Just(DAY_MS)],
    ) {
        let mut s = Shop::new();
        for (batch, delete) in batches.into_iter().zip(deletes) {
            let messages = batch
                .into_iter()
                .map(|(c, bought, d, ms)| {
                    let event = if bought { "purchased" } else { "visited" };
                    track(&format!("p{c}"), event, today() - d * DAY_MS + ms)
                })
                .collect();
            s.ingest(messages);
            if let Some(c) = delete {
                let id = format!("p{c}");
                if s.ids.remove(&id) {
                    s.db.delete_customer(&id).unwrap();
                }
            }
            let customers = s.customers_once();
            for rule in RULES {
                if let Err(e) = s.check(&customers, rule, now() + shift) {
                    prop_assert!(false, "{}", e);
                }
            }
        }
    }
}
