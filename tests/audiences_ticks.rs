//! Time-driven changes in bulk: many customers whose edges pass inside one clock step, at
//! different milliseconds of it, several inside one two-second span of the count rollups (the
//! unit the indexes know times by), and steps landing on an edge or a millisecond either side.
//! After every step each saved audience's members are what a plain evaluator of its rule says at
//! the clock's time, every entry and exit is reported once, stamped with that step's time, and
//! `verify` agrees at the end. Windows of days and hours, presence, its negation, `since`,
//! counts, traits, two events; events before and after the clock; both re-evaluation paths
//! (`Config::audience_bulk_from` 0 and the default). Then 40 audiences over the same events with
//! windows of hours and days (presence, counts, sums, averages), most of them due at the same
//! steps, with the due customers' days listed once for all of them and without
//! (`Config::audience_due_days_from`). Then audiences left to reading (filters) beside ones the
//! indexes decide, with windows of hours to months, read at the same steps: each customer's
//! events read from where its own audiences need them; and customers holding several blocks of
//! events, what decides their reads just inside a window's start in an earlier block than the
//! one a later start would read from. Last, audiences naming a date-time trait beside windows:
//! the trait's value crossing a relative edge wakes the customer. And windows of weeks over
//! events spread across months, whose passes over the days skip runs of days a customer has none.
//!
//! `PROPTEST_CASES=500 cargo test --test audiences_ticks` runs more streams.

use std::collections::BTreeSet;

use audiencedb::ingest::message::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::{Clock, Config, Db};
use proptest::prelude::*;

const SECOND: i64 = 1000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn t0() -> i64 {
    parse_rfc3339("2026-03-15T10:30:00Z").unwrap()
}

/// One customer's data: views and carts (times in ms), and whether it is Gold.
#[derive(Debug, Clone)]
struct Customer {
    views: Vec<i64>,
    carts: Vec<i64>,
    gold: bool,
}

/// The rules, and what each says for a customer at `t`.
const RULES: [(&str, &str); 8] = [
    ("recent", "viewed in last 2 days"),
    ("recent_hours", "viewed in last 5 hours"),
    ("since", "viewed since 1 days ago"),
    ("gone", "viewed ever and not viewed in last 2 days"),
    ("twice", "viewed at least 2 times in last 2 days"),
    ("gold_recent", "tier = Gold and viewed in last 1 days"),
    (
        "either",
        "viewed in last 1 days or added_to_cart in last 3 days",
    ),
    (
        "carts_not_views",
        "added_to_cart in last 3 days and not viewed in last 5 hours",
    ),
];

fn holds(rule: &str, c: &Customer, t: i64) -> bool {
    let last = |ts: &[i64], w: i64| ts.iter().filter(|&&e| t - w < e && e <= t).count();
    let since = |ts: &[i64], w: i64| ts.iter().any(|&e| t - w <= e && e <= t);
    match rule {
        "recent" => last(&c.views, 2 * DAY) > 0,
        "recent_hours" => last(&c.views, 5 * HOUR) > 0,
        "since" => since(&c.views, DAY),
        "gone" => c.views.iter().any(|&e| e <= t) && last(&c.views, 2 * DAY) == 0,
        "twice" => last(&c.views, 2 * DAY) >= 2,
        "gold_recent" => c.gold && last(&c.views, DAY) > 0,
        "either" => last(&c.views, DAY) > 0 || last(&c.carts, 3 * DAY) > 0,
        "carts_not_views" => last(&c.carts, 3 * DAY) > 0 && last(&c.views, 5 * HOUR) == 0,
        _ => unreachable!(),
    }
}

/// An event time: a few anchors (whole hours back from t0, or ahead), each customer within a
/// few seconds of one, at any millisecond, so that many share a two-second span and many edges
/// fall inside one step.
fn time() -> impl Strategy<Value = i64> {
    (
        prop::sample::select(vec![
            -3 * DAY,
            -2 * DAY,
            -50 * HOUR,
            -30 * HOUR,
            -DAY,
            -5 * HOUR,
            -HOUR,
            0,
            HOUR,
            7 * HOUR,
        ]),
        prop_oneof![0i64..5, 1995i64..2005, 0i64..6 * SECOND],
    )
        .prop_map(|(anchor, ms)| t0() + anchor + ms)
}

fn customer() -> impl Strategy<Value = Customer> {
    (
        prop::collection::vec(time(), 0..4),
        prop::collection::vec(time(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(views, carts, gold)| Customer { views, carts, gold })
}

/// A clock step: a plain length, or to an edge of some customer's event (its time plus a
/// window) and a millisecond before, on or after it.
#[derive(Debug, Clone)]
enum Step {
    By(i64),
    ToEdge { pick: usize, delta: i64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => prop::sample::select(vec![1, 999, 2 * SECOND, HOUR, HOUR + 1, 5 * HOUR, DAY])
            .prop_map(Step::By),
        1 => (1i64..3 * HOUR).prop_map(Step::By),
        3 => (any::<usize>(), -1i64..=1).prop_map(|(pick, delta)| Step::ToEdge { pick, delta }),
    ]
}

fn members(db: &Db, name: &str) -> BTreeSet<String> {
    db.member_ids(&db.audience_members(name).unwrap())
        .unwrap()
        .into_iter()
        .collect()
}

/// A view's amount (the property the sums add up), from its time.
fn amount(ts: i64) -> i64 {
    1 + ts.rem_euclid(97)
}

fn run(custs: &[Customer], steps: &[Step], bulk_from: u64) {
    let rules: Vec<(String, String)> = RULES
        .iter()
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect();
    // The low bulk threshold goes with listing the due customers' days for any number of
    // audiences, the default with never.
    let due_days_from = if bulk_from == 0 { 0 } else { usize::MAX };
    let edges = [0, 5 * HOUR, DAY, 2 * DAY, 3 * DAY];
    run_rules(
        custs,
        steps,
        (bulk_from, due_days_from),
        &rules,
        &edges,
        &|k, c, t| holds(RULES[k].0, c, t),
    );
}

/// Saves `rules` (name, rule), whose plain evaluation is `holds(rule's place, customer, t)`,
/// over `custs`, then steps the clock by `steps`, checking members, counts and the feed at
/// every step; `(bulk_from, due_days_from)` set the two re-evaluation choices; the steps to an
/// edge go to an event's time plus one of `edges_after`.
fn run_rules(
    custs: &[Customer],
    steps: &[Step],
    (bulk_from, due_days_from): (u64, usize),
    rules: &[(String, String)],
    edges_after: &[i64],
    holds: &dyn Fn(usize, &Customer, i64) -> bool,
) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let mut config = Config::new(dir.path().join("db"));
    config.clock = clock.clone();
    config.audience_bulk_from = bulk_from;
    config.audience_due_days_from = due_days_from;
    let db = Db::open_with(config).unwrap();
    let id = |i: usize| format!("c{i}");
    let mut msgs = Vec::new();
    for (i, c) in custs.iter().enumerate() {
        for &ts in &c.views {
            let props = vec![("amount".into(), Value::Int(amount(ts)))];
            msgs.push(Message::track(id(i), "viewed", props, Some(ts)));
        }
        for &ts in &c.carts {
            msgs.push(Message::track(id(i), "added_to_cart", vec![], Some(ts)));
        }
    }
    if !msgs.is_empty() {
        db.ingest(msgs).unwrap();
    }
    for (i, c) in custs.iter().enumerate() {
        let tier = if c.gold { "Gold" } else { "Silver" };
        db.identify(&id(i), vec![("tier".into(), Some(Value::Str(tier.into())))])
            .unwrap();
    }
    for (name, rule) in rules {
        db.define_audience(name, rule).unwrap();
    }
    let expected = |t: i64| -> Vec<BTreeSet<String>> {
        (0..rules.len())
            .map(|k| {
                custs
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| holds(k, c, t))
                    .map(|(i, _)| id(i))
                    .collect()
            })
            .collect()
    };
    let kept = |db: &Db| -> Vec<BTreeSet<String>> {
        rules.iter().map(|(name, _)| members(db, name)).collect()
    };
    assert_eq!(kept(&db), expected(t0()), "at the start");
    // Every edge: an event's time plus a window (and the event itself).
    let mut edges: Vec<i64> = custs
        .iter()
        .flat_map(|c| c.views.iter().chain(&c.carts))
        .flat_map(|&ts| edges_after.iter().map(move |l| ts + l))
        .collect();
    edges.sort_unstable();
    let mut before = expected(t0());
    let mut position = db.feed_position();
    for s in steps {
        let now = clock.now();
        let to = match *s {
            Step::By(ms) => now + ms,
            Step::ToEdge { pick, delta } => {
                let later: Vec<i64> = edges.iter().copied().filter(|&e| e + delta > now).collect();
                match later.get(pick % later.len().max(1)) {
                    Some(e) => e + delta,
                    None => now + HOUR,
                }
            }
        };
        clock.set(to);
        let n = db.advance_audiences().unwrap();
        let want = expected(to);
        assert_eq!(kept(&db), want, "at t0 {:+} ms", to - t0());
        let flips: usize = before
            .iter()
            .zip(&want)
            .map(|(a, b)| a.symmetric_difference(b).count())
            .sum();
        assert_eq!(n, flips, "changes at t0 {:+} ms", to - t0());
        let changes = db.changes_since(position, 1_000_000).unwrap();
        assert_eq!(changes.len(), flips);
        for c in &changes {
            assert_eq!(
                c.at, to,
                "a time-driven change is stamped with its step's time"
            );
            let k = rules.iter().position(|(n, _)| *n == c.audience).unwrap();
            assert_eq!(want[k].contains(&c.customer), c.entered);
            assert_ne!(before[k].contains(&c.customer), c.entered);
        }
        position = db.feed_position();
        before = want;
    }
    let report = db.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn time_driven_changes_in_bulk_match_a_plain_evaluator(
        custs in prop::collection::vec(customer(), 1..80),
        steps in prop::collection::vec(step(), 1..30),
        bulk in any::<bool>(),
    ) {
        run(&custs, &steps, if bulk { 0 } else { 2048 });
    }
}

/// The window lengths of [`many_rules`]: whole days and hours either side of them, so that the
/// windows cut days at different hours and have whole days between.
const MANY_LENGTHS: [i64; 8] = [
    26 * HOUR,
    2 * DAY,
    50 * HOUR,
    3 * DAY,
    70 * HOUR,
    4 * DAY,
    100 * HOUR,
    5 * DAY,
];

/// What a rule of [`many_rules`] tests (its place in each length's five) and its window's length.
type Kind = (u8, i64);

/// The two ways a clock step finds its due customers' days (`audience_due_days_from`): listed
/// once for every audience due, or looked up by each audience.
const BOTH_WAYS: [usize; 2] = [0, usize::MAX];

/// [`many_rules`] over `custs` and `steps` (see [`run_rules`]).
fn run_many_rules(custs: &[Customer], steps: &[Step], due_days_from: usize) {
    let (rules, kinds) = many_rules();
    run_rules(
        custs,
        steps,
        (2048, due_days_from),
        &rules,
        &many_edges(),
        &|k, c, t| many_holds(kinds[k], c, t),
    );
}

/// [`read_rules`] over `custs` and `steps` (see [`run_rules`]).
fn run_read_rules(custs: &[Customer], steps: &[Step], due_days_from: usize) {
    let (rules, kinds) = read_rules();
    run_rules(
        custs,
        steps,
        (2048, due_days_from),
        &rules,
        &read_edges(),
        &|k, c, t| read_holds(kinds[k], c, t),
    );
}

/// Many audiences over the same events with different windows (40: presence, its negation with
/// carts, counts and sums of the views' amounts for each length of [`MANY_LENGTHS`]), most of
/// them due at the same steps; and what each says for a customer at `t`.
fn many_rules() -> (Vec<(String, String)>, Vec<Kind>) {
    rule_family("m", &MANY_LENGTHS, |hours| {
        vec![
            format!("viewed in last {hours} hours"),
            format!("added_to_cart in last {hours} hours and not viewed in last {hours} hours"),
            format!("viewed at least 2 times in last {hours} hours"),
            format!("viewed sum(amount) > 120 in last {hours} hours"),
            format!("viewed avg(amount) >= 50 in last {hours} hours or added_to_cart ever"),
        ]
    })
}

/// For each length of `lengths` (the `j`th), the rules `templates` writes for its hours, named
/// `{prefix}{j}_{kind}` with `kind` their place: the rules, and each one's (kind, length).
fn rule_family(
    prefix: &str,
    lengths: &[i64],
    templates: impl Fn(i64) -> Vec<String>,
) -> (Vec<(String, String)>, Vec<Kind>) {
    let mut rules = Vec::new();
    let mut kinds = Vec::new();
    for (j, &len) in lengths.iter().enumerate() {
        for (kind, rule) in templates(len / HOUR).into_iter().enumerate() {
            rules.push((format!("{prefix}{j}_{kind}"), rule));
            kinds.push((kind as u8, len));
        }
    }
    (rules, kinds)
}

/// The times of `ts` in the window of length `len` ending at `t`.
fn inside(ts: &[i64], t: i64, len: i64) -> Vec<i64> {
    ts.iter()
        .copied()
        .filter(|&e| t - len < e && e <= t)
        .collect()
}

fn many_holds((kind, len): Kind, c: &Customer, t: i64) -> bool {
    let (views, carts) = (inside(&c.views, t, len), inside(&c.carts, t, len));
    let sum: i64 = views.iter().map(|&e| amount(e)).sum();
    match kind {
        0 => !views.is_empty(),
        1 => !carts.is_empty() && views.is_empty(),
        2 => views.len() >= 2,
        3 => sum > 120,
        _ => {
            (!views.is_empty() && sum as f64 / views.len() as f64 >= 50.0)
                || c.carts.iter().any(|&e| e <= t)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Many audiences due at the same steps, their customers' days listed once for all of them
    /// or looked up by each: the same members as a plain evaluator at every step, edges to the
    /// millisecond.
    #[test]
    fn many_audiences_due_at_one_step_match_a_plain_evaluator(
        custs in prop::collection::vec(customer(), 1..60),
        steps in prop::collection::vec(step(), 1..20),
        listed in any::<bool>(),
    ) {
        run_many_rules(&custs, &steps, BOTH_WAYS[usize::from(!listed)]);
    }
}

/// An event's own time and [`MANY_LENGTHS`] after it.
fn many_edges() -> Vec<i64> {
    std::iter::once(0).chain(MANY_LENGTHS).collect()
}

/// Hundreds of customers with views a few milliseconds apart around whole hours, and 40
/// audiences over them with windows of days and hours: the clock steps onto the edges and a
/// millisecond either side, each step with the due customers' days listed once and without.
#[test]
fn many_audiences_and_hundreds_of_customers_at_their_own_millisecond() {
    let base = t0() - 5 * DAY + 3 * HOUR;
    let custs: Vec<Customer> = (0..300i64)
        .map(|i| Customer {
            views: (0..(i % 5))
                .map(|k| base + k * 22 * HOUR + (i * 7) % 3001)
                .collect(),
            carts: if i % 3 == 0 {
                vec![base + 2 * DAY + i]
            } else {
                vec![]
            },
            gold: false,
        })
        .collect();
    let mut steps = edge_steps(12, 37);
    steps.extend([Step::By(1), Step::By(999), Step::By(DAY), Step::By(DAY)]);
    for due_days_from in BOTH_WAYS {
        run_many_rules(&custs, &steps, due_days_from);
    }
}

/// Hundreds of customers whose latest views are a few milliseconds apart leave one window in
/// one step; the steps land a millisecond before, on and after the edges of some of them.
#[test]
fn hundreds_leave_at_their_own_millisecond() {
    let base = t0() - 2 * DAY + HOUR;
    let custs: Vec<Customer> = (0..600i64)
        .map(|i| Customer {
            // Spread over 3 seconds: two spans and a bit, each millisecond several times.
            views: vec![base + (i * 7) % 3001],
            carts: if i % 4 == 0 { vec![base + i] } else { vec![] },
            gold: i % 3 == 0,
        })
        .collect();
    let mut steps = vec![Step::By(HOUR - 2)];
    for ms in [1, 1, 1, 998, 1, 1, 500, 1000, 499, 1, 1, HOUR, DAY, DAY] {
        steps.push(Step::By(ms));
    }
    for bulk_from in [0, 2048] {
        run(&custs, &steps, bulk_from);
    }
}

/// Hundreds of customers with views a few milliseconds either side of the clock's instant when
/// the audiences are saved: those at or before it are told from those after it by the day's
/// event columns (the two-second span holding the instant cannot), and each one after it enters
/// at its own millisecond; steps of one millisecond, then to the windows' edges.
#[test]
fn hundreds_with_views_at_the_clocks_instant() {
    let custs: Vec<Customer> = (0..400i64)
        .map(|i| Customer {
            views: match i % 4 {
                0 => vec![t0() + i % 9 - 4],
                1 => vec![t0() - DAY + i % 5, t0() + i % 7 - 3],
                2 => vec![t0() - 2 * DAY + 2 * SECOND + i % 5],
                _ => vec![],
            },
            carts: if i % 3 == 0 {
                vec![t0() + i % 3]
            } else {
                vec![]
            },
            gold: i % 2 == 0,
        })
        .collect();
    let mut steps: Vec<Step> = (0..6).map(|_| Step::By(1)).collect();
    steps.extend([
        Step::By(2 * SECOND),
        Step::By(HOUR),
        Step::ToEdge { pick: 0, delta: -1 },
        Step::ToEdge { pick: 0, delta: 0 },
        Step::ToEdge { pick: 0, delta: 1 },
        Step::By(5 * HOUR),
        Step::By(DAY),
        Step::By(DAY),
    ]);
    for bulk_from in [0, 2048] {
        run(&custs, &steps, bulk_from);
    }
}

/// The lengths of [`read_rules`]: hours, a day and a bit, days, and months.
const READ_LENGTHS: [i64; 4] = [5 * HOUR, 26 * HOUR, 3 * DAY, 120 * DAY];

/// Audiences the indexes leave to reading (a filter on the views' amount, for few due
/// customers) beside ones they decide (presence, counts), for windows of hours to months: at one
/// step a customer is read once for every audience asking, its events from where the longest
/// window among those audiences needs them, and audiences with nobody left to read get no read.
fn read_rules() -> (Vec<(String, String)>, Vec<Kind>) {
    rule_family("r", &READ_LENGTHS, |hours| {
        vec![
            format!("viewed where amount >= 50 in last {hours} hours"),
            format!("viewed in last {hours} hours"),
            format!("viewed at least 2 times in last {hours} hours"),
            format!("viewed where amount < 30 in last {hours} hours and not added_to_cart in last {hours} hours"),
        ]
    })
}

fn read_holds((kind, len): Kind, c: &Customer, t: i64) -> bool {
    let (views, carts) = (inside(&c.views, t, len), inside(&c.carts, t, len));
    match kind {
        0 => views.iter().any(|&e| amount(e) >= 50),
        1 => !views.is_empty(),
        2 => views.len() >= 2,
        _ => views.iter().any(|&e| amount(e) < 30) && carts.is_empty(),
    }
}

/// A first step of just under an hour, then `n` steps to edges picked `stride` apart, each onto
/// the edge, a millisecond before or after it in turn.
fn edge_steps(n: usize, stride: usize) -> Vec<Step> {
    let mut steps = vec![Step::By(HOUR - 2)];
    for i in 0..n {
        steps.push(Step::ToEdge {
            pick: i * stride,
            delta: [-1, 0, 1][i % 3],
        });
    }
    steps
}

fn read_edges() -> Vec<i64> {
    std::iter::once(0).chain(READ_LENGTHS).collect()
}

/// Hundreds of customers with views months, days and hours back, a few milliseconds apart:
/// audiences read at the same steps with windows from hours to months (each customer's events
/// read from where its own audiences need them) against a plain evaluator, steps onto the edges
/// and a millisecond either side, the due customers' days listed and not.
#[test]
fn audiences_read_at_one_step_each_customer_from_its_own_windows() {
    let custs: Vec<Customer> = (0..240i64)
        .map(|i| {
            let ms = (i * 7) % 3001;
            let mut views = vec![t0() - 100 * DAY + ms];
            for k in 0..(i % 4) {
                views.push(t0() - (3 + 9 * k) * HOUR - (i % 3) * DAY + ms + k);
            }
            Customer {
                views,
                carts: if i % 5 == 0 {
                    vec![t0() - 2 * HOUR + i]
                } else {
                    vec![]
                },
                gold: false,
            }
        })
        .collect();
    let mut steps = edge_steps(14, 23);
    steps.extend([Step::By(1), Step::By(DAY), Step::By(20 * DAY)]);
    for due_days_from in BOTH_WAYS {
        run_read_rules(&custs, &steps, due_days_from);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// [`read_rules`] over random streams (views a few seconds around whole hours, some of them
    /// months back): the same members as a plain evaluator at every step.
    #[test]
    fn audiences_read_at_one_step_match_a_plain_evaluator(
        custs in prop::collection::vec(customer(), 1..50),
        old in prop::collection::vec(0i64..200 * DAY, 0..50),
        steps in prop::collection::vec(step(), 1..16),
        listed in any::<bool>(),
    ) {
        let mut custs = custs;
        for (c, back) in custs.iter_mut().zip(old) {
            c.views.push(t0() - back);
        }
        run_read_rules(&custs, &steps, BOTH_WAYS[usize::from(!listed)]);
    }
}

/// A time `ts` moved back by under 97 ms so that a view at it has the amount `a` (see [`amount`]).
fn with_amount(ts: i64, a: i64) -> i64 {
    ts - ts.rem_euclid(97) + (a - 1)
}

/// Customers holding several blocks of events ([`audiencedb`] stores a customer's events in
/// blocks of 128, read a whole block at a time), laid out so that what decides a read lies just
/// inside a window's start, in a block before the one where a read starting a little later
/// would begin: neutral views (amount 40) every 15 minutes; 254 of them, then a cart at `c` and
/// the customer's one low view (amount 10) half an hour later, which end the first 256 events;
/// the next block starts an hour after the cart and holds two high views (amount 80) half an
/// hour apart, the second ending an hour before the third block starts. So when the cart leaves
/// a window the customer enters the low-amount-without-cart audience of that window only if its
/// events are read from the window's start (not two hours or three days after it), and when the
/// first high view leaves, only the second keeps the customer in the high-amount audience. The
/// carts sit so that each customer's edge of one window length passes after the clock's start,
/// a few minutes apart from the others'; the clock steps onto each edge of every special event.
#[test]
fn customers_with_several_blocks_read_from_their_windows_start() {
    const MINUTE: i64 = 60 * SECOND;
    let neutral = |ts: i64| with_amount(ts, 40);
    let custs: Vec<Customer> = (0..24i64)
        .map(|i| {
            let len = READ_LENGTHS[i as usize % READ_LENGTHS.len()];
            let c = t0() - len + (1 + i) * 11 * MINUTE;
            let mut views: Vec<i64> = (0..254)
                .map(|j| neutral(c - (254 - j) * 15 * MINUTE))
                .collect();
            views.push(with_amount(c + 30 * MINUTE, 10));
            let b1 = c + HOUR;
            for j in 0..128 {
                let ts = b1 + j * 15 * MINUTE;
                views.push(match j {
                    124 | 126 => with_amount(ts, 80),
                    _ => neutral(ts),
                });
            }
            let b2 = b1 + 128 * 15 * MINUTE;
            views.extend((0..40).map(|j| neutral(b2 + j * 15 * MINUTE)));
            Customer {
                views,
                carts: vec![c],
                gold: false,
            }
        })
        .collect();
    // Onto every edge after the start of the cart, the low view and the high views.
    let mut targets: Vec<i64> = custs
        .iter()
        .flat_map(|c| {
            let special = [
                c.carts[0],
                c.views[254],
                c.views[255 + 124],
                c.views[255 + 126],
            ];
            special
                .into_iter()
                .flat_map(|e| read_edges().into_iter().map(move |l| e + l))
        })
        .filter(|&t| t > t0())
        .collect();
    targets.sort_unstable();
    targets.dedup();
    let mut at = t0();
    let steps: Vec<Step> = targets
        .into_iter()
        .map(|t| {
            let s = Step::By(t - at);
            at = t;
            s
        })
        .collect();
    for due_days_from in BOTH_WAYS {
        run_read_rules(&custs, &steps, due_days_from);
    }
}

/// Audiences naming a date-time trait beside windows over views: a customer whose trait value
/// crosses a relative edge is read and woken at that instant (its profile's date-times are next
/// instants only for rules naming such a trait), and one naming none is woken by its events
/// alone. Hourly steps over four days against a plain evaluator.
#[test]
fn date_time_traits_move_audiences_read_with_windows() {
    const MINUTE: i64 = 60 * SECOND;
    let rules = [
        (
            "old_viewers",
            "signup < 2 days ago and viewed in last 3 days",
        ),
        (
            "old_or_big",
            "signup < 1 days ago or viewed where amount >= 50 in last 5 hours",
        ),
        ("big_views", "viewed where amount >= 50 in last 26 hours"),
    ];
    // (signup, views) per customer: signups from three days back to a day ahead, views from
    // two days back to a day ahead, a few minutes apart.
    let custs: Vec<(i64, Vec<i64>)> = (0..60i64)
        .map(|i| {
            let signup = t0() - 3 * DAY + i * 97 * MINUTE + i;
            let views = (0..(i % 4))
                .map(|k| t0() - 2 * DAY + i * 53 * MINUTE + k * 7 * HOUR + 3 * i)
                .collect();
            (signup, views)
        })
        .collect();
    let holds = |k: usize, (signup, views): &(i64, Vec<i64>), t: i64| -> bool {
        let seen = |len: i64, big: bool| {
            views
                .iter()
                .any(|&e| t - len < e && e <= t && (!big || amount(e) >= 50))
        };
        match k {
            0 => *signup < t - 2 * DAY && seen(3 * DAY, false),
            1 => *signup < t - DAY || seen(5 * HOUR, true),
            _ => seen(26 * HOUR, true),
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let mut config = Config::new(dir.path().join("db"));
    config.clock = clock.clone();
    let db = Db::open_with(config).unwrap();
    let id = |i: usize| format!("c{i}");
    let mut msgs = Vec::new();
    for (i, (_, views)) in custs.iter().enumerate() {
        for &ts in views {
            let props = vec![("amount".into(), Value::Int(amount(ts)))];
            msgs.push(Message::track(id(i), "viewed", props, Some(ts)));
        }
    }
    db.ingest(msgs).unwrap();
    for (i, (signup, _)) in custs.iter().enumerate() {
        db.identify(&id(i), vec![("signup".into(), Some(Value::Time(*signup)))])
            .unwrap();
    }
    for (name, rule) in rules {
        db.define_audience(name, rule).unwrap();
    }
    for step in 0..=96 {
        let t = t0() + step * HOUR;
        clock.set(t);
        db.advance_audiences().unwrap();
        for (k, (name, _)) in rules.iter().enumerate() {
            let want: BTreeSet<String> = custs
                .iter()
                .enumerate()
                .filter(|(_, c)| holds(k, c, t))
                .map(|(i, _)| id(i))
                .collect();
            assert_eq!(members(&db, name), want, "{name} at t0 {:+} h", step);
        }
    }
    let report = db.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

/// Windows of weeks over events spread across three months: a customer's first or latest day
/// with an event in a window is found past the aligned runs of days it has no event in (their
/// kept unions, `index::presence`), which windows of a few days never reach.
const LONG_RULES: [(&str, &str); 6] = [
    ("long_recent", "viewed in last 40 days"),
    ("long_twice", "viewed at least 2 times in last 30 days"),
    ("long_gone", "viewed ever and not viewed in last 20 days"),
    (
        "long_either",
        "viewed in last 17 days or added_to_cart in last 50 days",
    ),
    ("long_sum", "viewed sum(amount) > 150 in last 45 days"),
    ("long_not", "not added_to_cart in last 33 days"),
];

fn long_holds(k: usize, c: &Customer, t: i64) -> bool {
    let inside = |ts: &[i64], w: i64| -> Vec<i64> {
        ts.iter()
            .copied()
            .filter(|&e| t - w < e && e <= t)
            .collect()
    };
    match k {
        0 => !inside(&c.views, 40 * DAY).is_empty(),
        1 => inside(&c.views, 30 * DAY).len() >= 2,
        2 => c.views.iter().any(|&e| e <= t) && inside(&c.views, 20 * DAY).is_empty(),
        3 => !inside(&c.views, 17 * DAY).is_empty() || !inside(&c.carts, 50 * DAY).is_empty(),
        4 => {
            inside(&c.views, 45 * DAY)
                .iter()
                .map(|&e| amount(e))
                .sum::<i64>()
                > 150
        }
        5 => inside(&c.carts, 33 * DAY).is_empty(),
        _ => unreachable!(),
    }
}

/// An event time on one of the 90 days before t0 or the 5 after, at any millisecond of it.
fn long_time() -> impl Strategy<Value = i64> {
    (-90i64..5, 0..DAY).prop_map(|(day, ms)| t0() + day * DAY + ms)
}

fn long_customer() -> impl Strategy<Value = Customer> {
    (
        prop::collection::vec(long_time(), 0..12),
        prop::collection::vec(long_time(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(views, carts, gold)| Customer { views, carts, gold })
}

fn long_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (1i64..6 * DAY).prop_map(Step::By),
        3 => (any::<usize>(), -1i64..=1).prop_map(|(pick, delta)| Step::ToEdge { pick, delta }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Windows of weeks: the same members as a plain evaluator at every step, the due
    /// customers' days listed once for all audiences or looked up by each.
    #[test]
    fn long_windows_over_months_match_a_plain_evaluator(
        custs in prop::collection::vec(long_customer(), 1..50),
        steps in prop::collection::vec(long_step(), 1..25),
        listed in any::<bool>(),
    ) {
        let rules: Vec<(String, String)> = LONG_RULES
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect();
        let edges = [0, 17 * DAY, 20 * DAY, 30 * DAY, 33 * DAY, 40 * DAY, 45 * DAY, 50 * DAY];
        run_rules(
            &custs,
            &steps,
            (2048, BOTH_WAYS[usize::from(!listed)]),
            &rules,
            &edges,
            &long_holds,
        );
    }
}
