//! Saved audiences stay true (sequences among them, `then not` entering at tA + T; `first` and
//! `last`; `bucket(NAME)`, which new customers enter at their first write): random streams of ingests, deletes, clock steps (many of them
//! landing exactly on a rule's edge or a millisecond beside it), rule edits, checkpoints,
//! restarts and crashes. After every step, every saved audience's kept members must equal a
//! fresh evaluation of its rule at the audiences' time, and replaying the change feed from the
//! start must give the same members: no entry or exit missed, none reported twice.
//!
//! Some writes give the same event to many customers at one instant (or a millisecond either side
//! of it), so that many edges pass in the same clock step.
//!
//! `PROPTEST_CASES=2000 cargo test --test audiences_model` runs more streams.

use std::collections::{BTreeMap, BTreeSet};

use audiencedb::ingest::message::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::{Clock, Config, Db, Error};
use proptest::prelude::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// The audiences every stream starts with: windows of minutes and hours, counts, sums,
/// relative trait times, `not`, and `in audience` chains.
const AUDIENCES: [(&str, &str); 11] = [
    ("recent_viewers", "viewed in last 2 hours"),
    (
        "buyers_not_browsing",
        "purchased at least 2 times in last 3 hours and not viewed in last 30 minutes",
    ),
    (
        "gold_or_spender",
        "tier = Gold or purchased sum(amount) > 5 in last 90 minutes",
    ),
    (
        "new_viewers",
        "not viewed before 1 hour ago and viewed ever",
    ),
    (
        "old_signups_idle",
        "signup before 2 hours ago and not in audience recent_viewers",
    ),
    (
        "cart_abandoners",
        "added_to_cart since 45 minutes ago and not purchased since 45 minutes ago",
    ),
    (
        "big_or_new",
        "purchased where amount > 2 in last 1 hour or in audience new_viewers",
    ),
    (
        "abandoned_carts",
        "added_to_cart then not purchased within 30 minutes in last 3 hours",
    ),
    ("quick_buyers", "viewed then purchased within 45 minutes"),
    ("new_buyers", "first purchased in last 90 minutes"),
    (
        "lapsed_buyers",
        "last purchased where amount > 1 before 1 hour ago",
    ),
];

/// Rules an edit may save under one of the names.
const EDITS: [&str; 12] = [
    "purchased distinct(amount) >= 2 in last 90 minutes",
    "viewed distinct(amount) < 2 in last 1 hour and tier = Gold",
    "viewed at least 2 times in last 1 hour",
    "bucket(exp) >= 30",
    "not bucket(holdout) < 20 and viewed in last 1 hour",
    "everyone",
    "not purchased in last 2 hours",
    "in audience big_or_new",
    "tier in (Gold, Silver) and added_to_cart ever",
    "purchased avg(amount) >= 2 between 3 hours ago and 1 hour ago",
    "added_to_cart then viewed then purchased within 1 hour since 2 hours ago",
    "first viewed since 2 hours ago or last added_to_cart between 3 hours ago and 30 minutes ago",
];

/// The same streams in days: every length of time above 24 times longer, so that clock steps
/// cross many UTC days (milliseconds beside an edge stay milliseconds).
const DAY_AUDIENCES: [(&str, &str); 11] = [
    ("recent_viewers", "viewed in last 2 days"),
    (
        "buyers_not_browsing",
        "purchased at least 2 times in last 3 days and not viewed in last 12 hours",
    ),
    (
        "gold_or_spender",
        "tier = Gold or purchased sum(amount) > 5 in last 36 hours",
    ),
    ("new_viewers", "not viewed before 1 day ago and viewed ever"),
    (
        "old_signups_idle",
        "signup before 2 days ago and not in audience recent_viewers",
    ),
    (
        "cart_abandoners",
        "added_to_cart since 18 hours ago and not purchased since 18 hours ago",
    ),
    (
        "big_or_new",
        "purchased where amount > 2 in last 1 day or in audience new_viewers",
    ),
    (
        "abandoned_carts",
        "added_to_cart then not purchased within 12 hours in last 3 days",
    ),
    ("quick_buyers", "viewed then purchased within 18 hours"),
    ("new_buyers", "first purchased in last 36 hours"),
    (
        "lapsed_buyers",
        "last purchased where amount > 1 before 1 day ago",
    ),
];

const DAY_EDITS: [&str; 12] = [
    "purchased distinct(amount) >= 2 in last 36 hours",
    "viewed distinct(amount) < 2 in last 1 day and tier = Gold",
    "bucket(exp) >= 30",
    "not bucket(holdout) < 20 and viewed in last 1 day",
    "viewed at least 2 times in last 1 day",
    "everyone",
    "not purchased in last 2 days",
    "in audience big_or_new",
    "tier in (Gold, Silver) and added_to_cart ever",
    "purchased avg(amount) >= 2 between 3 days ago and 1 day ago",
    "added_to_cart then viewed then purchased within 1 day since 2 days ago",
    "first viewed since 2 days ago or last added_to_cart between 3 days ago and 12 hours ago",
];

/// What a stream runs against.
#[derive(Debug)]
struct Model {
    audiences: &'static [(&'static str, &'static str)],
    edits: &'static [&'static str],
    /// Lengths of time in the ops are multiplied by this (see [`Model::time`]).
    scale: i64,
    /// [`Config::audience_bulk_from`]: 0 sends every re-evaluation through the bulk path.
    bulk_from: u64,
}

/// Hours and minutes, customers checked one by one (as small writes are).
const HOURS: Model = Model {
    audiences: &AUDIENCES,
    edits: &EDITS,
    scale: 1,
    bulk_from: 2048,
};

/// Days, every re-evaluation through the bitmaps and day-level wake-ups (as a new audience or
/// a large import on a big store is).
const DAYS_BULK: Model = Model {
    audiences: &DAY_AUDIENCES,
    edits: &DAY_EDITS,
    scale: 24,
    bulk_from: 0,
};

impl Model {
    /// A length of time from an op, scaled: whole minutes are scaled, the milliseconds beside
    /// them (an edge's ±1 ms) are kept.
    fn time(&self, ms: i64) -> i64 {
        let minutes = (ms as f64 / MINUTE as f64).round() as i64;
        minutes * MINUTE * self.scale + (ms - minutes * MINUTE)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Track {
        cust: u8,
        event: &'static str,
        amount: i64,
        /// Milliseconds from the clock (negative: the past; positive: the future).
        offset: i64,
    },
    /// Customers `first..first + count` get the same event in one write, at the same instant or
    /// (with `spread`) a millisecond either side of it, so that their edges pass in the same
    /// clock step.
    TrackMany {
        first: u8,
        count: u8,
        event: &'static str,
        offset: i64,
        spread: bool,
    },
    Identify {
        cust: u8,
        tier: Option<&'static str>,
        signup_ago: Option<i64>,
    },
    Delete(u8),
    /// Moves the clock by this many milliseconds.
    Advance(i64),
    Edit {
        audience: usize,
        rule: usize,
    },
    Checkpoint,
    Reopen {
        crash: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let cust = 0u8..8;
    let offset = prop_oneof![
        -4 * HOUR..HOUR / 4,
        prop::sample::select(vec![0, -1, 1, -HOUR, -2 * HOUR, -30 * MINUTE, 5 * MINUTE]),
    ];
    let step = prop_oneof![
        prop::sample::select(vec![
            1,
            999,
            MINUTE,
            30 * MINUTE,
            30 * MINUTE - 1,
            HOUR,
            HOUR + 1,
            45 * MINUTE,
            90 * MINUTE,
            2 * HOUR,
            24 * HOUR,
        ]),
        1..3 * HOUR,
    ];
    prop_oneof![
        6 => (cust.clone(), prop::sample::select(vec!["viewed", "purchased", "added_to_cart"]), 0i64..5, offset.clone())
            .prop_map(|(cust, event, amount, offset)| Op::Track { cust, event, amount, offset }),
        2 => (0u8..8, 2u8..40, prop::sample::select(vec!["viewed", "purchased", "added_to_cart"]), offset, any::<bool>())
            .prop_map(|(first, count, event, offset, spread)| Op::TrackMany { first, count, event, offset, spread }),
        2 => (cust.clone(), prop::option::of(prop::sample::select(vec!["Gold", "Silver"])),
              prop::option::of(0..4 * HOUR))
            .prop_map(|(cust, tier, signup_ago)| Op::Identify { cust, tier, signup_ago }),
        1 => cust.prop_map(Op::Delete),
        5 => step.prop_map(Op::Advance),
        1 => (0..AUDIENCES.len(), 0..EDITS.len()).prop_map(|(audience, rule)| Op::Edit { audience, rule }),
        1 => Just(Op::Checkpoint),
        1 => any::<bool>().prop_map(|crash| Op::Reopen { crash }),
    ]
}

struct Harness {
    model: &'static Model,
    dir: tempfile::TempDir,
    clock: Clock,
    db: Option<Db>,
    /// Members as the change feed tells them, by audience.
    replayed: BTreeMap<String, BTreeSet<String>>,
    /// The last feed position read.
    position: u64,
}

impl Harness {
    fn new(model: &'static Model) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(parse_rfc3339("2026-03-15T10:30:00Z").unwrap());
        let mut h = Harness {
            model,
            dir,
            clock,
            db: None,
            replayed: BTreeMap::new(),
            position: 0,
        };
        h.open();
        for (name, rule) in model.audiences {
            h.db().define_audience(name, rule).unwrap();
        }
        h
    }

    fn open(&mut self) {
        let mut config = Config::new(self.dir.path().join("db"));
        config.clock = self.clock.clone();
        config.checkpoint_after = 4;
        config.audience_bulk_from = self.model.bulk_from;
        self.db = Some(Db::open_with(config).unwrap());
    }

    fn db(&self) -> &Db {
        self.db.as_ref().unwrap()
    }

    fn run(&mut self, op: &Op) {
        let now = self.clock.now();
        let id = |c: u8| format!("c{c}");
        match op {
            Op::Track {
                cust,
                event,
                amount,
                offset,
            } => {
                let props = vec![("amount".into(), Value::Int(*amount))];
                let m = Message::track(
                    id(*cust),
                    *event,
                    props,
                    Some(now + self.model.time(*offset)),
                );
                self.db().ingest(vec![m]).unwrap();
            }
            Op::TrackMany {
                first,
                count,
                event,
                offset,
                spread,
            } => {
                let at = now + self.model.time(*offset);
                let msgs = (*first..first.saturating_add(*count))
                    .map(|c| {
                        let ts = if *spread {
                            at + i64::from(c % 3) - 1
                        } else {
                            at
                        };
                        let props = vec![("amount".into(), Value::Int(i64::from(c % 5)))];
                        Message::track(id(c), *event, props, Some(ts))
                    })
                    .collect();
                self.db().ingest(msgs).unwrap();
            }
            Op::Identify {
                cust,
                tier,
                signup_ago,
            } => {
                let traits = vec![
                    ("tier".into(), tier.map(|t| Value::Str(t.into()))),
                    (
                        "signup".into(),
                        signup_ago.map(|a| Value::Time(now - self.model.time(a))),
                    ),
                ];
                self.db()
                    .ingest(vec![Message::identify(id(*cust), traits)])
                    .unwrap();
            }
            Op::Delete(cust) => match self.db().delete_customer(&id(*cust)) {
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(e) => panic!("delete: {e}"),
            },
            Op::Advance(ms) => {
                self.clock.advance(self.model.time(*ms));
                self.db().advance_audiences().unwrap();
            }
            Op::Edit { audience, rule } => {
                let (name, rule) = (self.model.audiences[*audience].0, self.model.edits[*rule]);
                let before = self.members();
                let diff = self.db().diff_audience(name, rule);
                match self.db().define_audience(name, rule) {
                    Ok(info) => {
                        let diff = diff.unwrap();
                        assert_eq!(
                            info.size, diff.after,
                            "define and diff disagree on the size"
                        );
                        assert_eq!(before[name].len() as u64, diff.before);
                    }
                    Err(Error::Evaluation(msg)) => {
                        assert!(msg.contains("cycle"), "{msg}");
                        assert!(diff.is_err(), "diff accepted a rule that define refused");
                        assert_eq!(self.members(), before, "a refused edit changed members");
                    }
                    Err(e) => panic!("edit: {e}"),
                }
            }
            Op::Checkpoint => self.db().checkpoint().unwrap(),
            Op::Reopen { crash } => {
                let db = self.db.take().unwrap();
                if *crash {
                    db.abandon();
                } else {
                    drop(db);
                }
                self.open();
            }
        }
    }

    fn members(&self) -> BTreeMap<String, BTreeSet<String>> {
        let db = self.db();
        db.audiences()
            .into_iter()
            .map(|a| {
                let m = db.audience_members(&a.name).unwrap();
                (a.name, db.member_ids(&m).unwrap().into_iter().collect())
            })
            .collect()
    }

    /// The invariant, after every step.
    fn check(&mut self, step: usize) {
        let db = self.db.take().unwrap();
        self.check_with(&db, step);
        self.db = Some(db);
    }

    fn check_with(&mut self, db: &Db, step: usize) {
        let as_of = db.audiences_as_of();
        assert_eq!(
            as_of,
            self.clock.now(),
            "step {step}: audiences lag the clock"
        );
        let mut kept = BTreeMap::new();
        for a in db.audiences() {
            let members = db.audience_members(&a.name).unwrap();
            let fresh = db.query(&a.rule, as_of).unwrap();
            assert_eq!(
                members.bitmap(),
                fresh.bitmap(),
                "step {step}: audience {} ({}) kept {:?}, fresh evaluation {:?}",
                a.name,
                a.rule,
                db.member_ids(&members).unwrap(),
                db.member_ids(&fresh).unwrap()
            );
            assert_eq!(a.size, members.len());
            kept.insert(a.name.clone(), db.member_ids(&members).unwrap());
        }
        loop {
            let changes = db.changes_since(self.position, 1000).unwrap();
            if changes.is_empty() {
                break;
            }
            for c in changes {
                assert_eq!(c.seq, self.position + 1, "step {step}: feed positions skip");
                self.position = c.seq;
                let set = self.replayed.entry(c.audience.clone()).or_default();
                let changed = if c.entered {
                    set.insert(c.customer.clone())
                } else {
                    set.remove(&c.customer)
                };
                assert!(changed, "step {step}: the feed repeats {c:?}");
            }
        }
        for (name, ids) in kept {
            let replayed: Vec<String> = self
                .replayed
                .get(&name)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default();
            assert_eq!(
                replayed, ids,
                "step {step}: the feed of {name} disagrees with its members"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn kept_members_equal_a_fresh_evaluation(ops in prop::collection::vec(op(), 1..40)) {
        run_stream(&HOURS, &ops)?;
    }

    #[test]
    fn over_days_through_the_bulk_path(ops in prop::collection::vec(op(), 1..40)) {
        run_stream(&DAYS_BULK, &ops)?;
    }
}

fn run_stream(model: &'static Model, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut h = Harness::new(model);
    h.check(0);
    for (i, op) in ops.iter().enumerate() {
        h.run(op);
        h.check(i + 1);
    }
    let report = h.db().verify().unwrap();
    prop_assert!(report.is_ok(), "{:?}", report.problems);
    Ok(())
}
