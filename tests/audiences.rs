//! Saved audiences through the library: defining, listing, dropping, `in audience`, refusals
//! (bad names, unknown audiences, cycles, drops of audiences in use), the personalisation
//! lookup, dry runs of edits, history, the change feed (live subscribers, resuming, bounds) and
//! what survives a restart.

use std::time::Duration;

use audiencedb::ingest::message::Message;
use audiencedb::model::time::parse_rfc3339;
use audiencedb::model::Value;
use audiencedb::{Clock, Config, Db, Error};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn t0() -> i64 {
    parse_rfc3339("2026-03-15T10:30:00Z").unwrap()
}

fn open(dir: &std::path::Path, clock: &Clock) -> Db {
    let mut config = Config::new(dir.join("db"));
    config.clock = clock.clone();
    Db::open_with(config).unwrap()
}

fn track(db: &Db, id: &str, event: &str, ts: i64) {
    db.ingest(vec![Message::track(id, event, vec![], Some(ts))])
        .unwrap();
}

fn tier(db: &Db, id: &str, tier: &str) {
    db.identify(id, vec![("tier".into(), Some(Value::Str(tier.into())))])
        .unwrap();
}

fn members(db: &Db, name: &str) -> Vec<String> {
    db.member_ids(&db.audience_members(name).unwrap()).unwrap()
}

/// A cycle is refused on a database with no customer yet too: the new rule is planned before
/// any answer, not only when some customer is asked about.
#[test]
fn a_cycle_is_refused_with_no_customers() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path(), &Clock::manual(t0()));
    db.define_audience("a", "tier = Gold").unwrap();
    db.define_audience("b", "in audience a").unwrap();
    assert!(matches!(
        db.define_audience("a", "in audience b or tier = Silver"),
        Err(Error::Evaluation(m)) if m.contains("cycle")
    ));
    assert_eq!(db.audience("a").unwrap().rule, "tier = Gold");
}

#[test]
fn define_list_show_and_drop() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    tier(&db, "a", "Gold");
    tier(&db, "b", "Silver");
    let info = db.define_audience("gold", "tier = Gold").unwrap();
    assert_eq!((info.name.as_str(), info.size), ("gold", 1));
    assert_eq!(info.created, t0());
    db.define_audience("not_gold", "not in audience gold")
        .unwrap();
    assert_eq!(members(&db, "not_gold"), ["b"]);
    let names: Vec<String> = db.audiences().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["gold", "not_gold"]);

    // `in audience` in any rule, evaluated at the query's own now.
    let q = db.query("in audience gold or tier = Silver", t0()).unwrap();
    assert_eq!(q.len(), 2);

    // Refusals leave everything as it was.
    for bad in ["", "1abc", "a-b", "tier gold", &"x".repeat(65)] {
        assert!(
            matches!(
                db.define_audience(bad, "everyone"),
                Err(Error::InvalidInput(_))
            ),
            "{bad:?}"
        );
    }
    assert!(matches!(
        db.define_audience("x", "in audience nosuch"),
        Err(Error::Evaluation(m)) if m.contains("nosuch")
    ));
    assert!(matches!(
        db.define_audience("x", "tier = "),
        Err(Error::Rule(_))
    ));
    assert!(matches!(
        db.define_audience("gold", "in audience not_gold"),
        Err(Error::Evaluation(m)) if m.contains("cycle")
    ));
    assert!(matches!(
        db.define_audience("selfish", "in audience selfish"),
        Err(Error::Evaluation(m)) if m.contains("nosuch") || m.contains("selfish")
    ));
    match db.drop_audience("gold") {
        Err(Error::InvalidInput(m)) => assert!(m.contains("not_gold"), "{m}"),
        other => panic!("dropping an audience in use: {other:?}"),
    }
    assert!(matches!(
        db.drop_audience("nosuch"),
        Err(Error::NotFound(_))
    ));
    assert_eq!(db.audience("gold").unwrap().rule, "tier = Gold");
    assert_eq!(db.audiences().len(), 2);

    db.drop_audience("not_gold").unwrap();
    db.drop_audience("gold").unwrap();
    assert!(db.audiences().is_empty());
    assert!(matches!(db.audience("gold"), Err(Error::NotFound(_))));
    assert!(matches!(
        db.query("in audience gold", t0()),
        Err(Error::Evaluation(_))
    ));
}

#[test]
fn audiences_of_answers_from_kept_members() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    tier(&db, "a", "Gold");
    track(&db, "a", "viewed", t0() - HOUR);
    track(&db, "b", "viewed", t0() - 3 * DAY);
    db.define_audience("gold", "tier = Gold").unwrap();
    db.define_audience("viewers", "viewed in last 2 days")
        .unwrap();
    db.define_audience("everybody", "everyone").unwrap();
    assert_eq!(
        db.audiences_of("a").unwrap(),
        ["everybody", "gold", "viewers"]
    );
    assert_eq!(db.audiences_of("b").unwrap(), ["everybody"]);
    assert!(db.audiences_of("nobody").unwrap().is_empty());

    // A write moves the customer at once; time moves them when the audiences advance.
    track(&db, "b", "viewed", t0());
    assert_eq!(db.audiences_of("b").unwrap(), ["everybody", "viewers"]);
    clock.advance(2 * DAY - 1);
    db.advance_audiences().unwrap();
    assert_eq!(db.audiences_of("b").unwrap(), ["everybody", "viewers"]);
    assert_eq!(db.audiences_of("a").unwrap(), ["everybody", "gold"]);
    clock.advance(1);
    db.advance_audiences().unwrap();
    assert_eq!(db.audiences_of("b").unwrap(), ["everybody"]);

    // A new customer joins `everyone` audiences with their first write; a deleted one leaves.
    tier(&db, "c", "Gold");
    assert_eq!(db.audiences_of("c").unwrap(), ["everybody", "gold"]);
    db.delete_customer("c").unwrap();
    assert!(db.audiences_of("c").unwrap().is_empty());
    assert_eq!(db.audience("gold").unwrap().size, 1);
}

#[test]
fn a_diff_is_what_saving_then_reports() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    for (id, t) in [("a", "Gold"), ("b", "Silver"), ("c", "Bronze")] {
        tier(&db, id, t);
    }
    db.define_audience("top", "tier = Gold").unwrap();
    let start = db.feed_position();
    let diff = db.diff_audience("top", "tier in (Silver, Bronze)").unwrap();
    assert_eq!((diff.before, diff.after), (1, 2));
    assert_eq!(db.member_ids(&diff.entering).unwrap(), ["b", "c"]);
    assert_eq!(db.member_ids(&diff.leaving).unwrap(), ["a"]);
    assert_eq!(members(&db, "top"), ["a"], "a diff saves nothing");
    assert_eq!(db.feed_position(), start);

    db.define_audience("top", "tier in (Silver, Bronze)")
        .unwrap();
    let changes = db.changes_since(start, 100).unwrap();
    let mut seen: Vec<(String, bool)> = changes
        .iter()
        .map(|c| (c.customer.clone(), c.entered))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [("a".into(), false), ("b".into(), true), ("c".into(), true)]
    );
    assert!(changes.iter().all(|c| c.audience == "top"));
    let info = db.audience("top").unwrap();
    assert_eq!(info.rule, "tier in (Silver, Bronze)");
    assert_eq!(info.created, t0());

    // A diff for a new name: everyone it would hold enters.
    let d = db.diff_audience("fresh", "everyone").unwrap();
    assert_eq!((d.before, d.after, d.leaving.len()), (0, 3, 0));
    assert!(matches!(
        db.diff_audience("top", "in audience top"),
        Err(Error::Evaluation(_))
    ));
}

#[test]
fn members_at_an_earlier_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    track(&db, "a", "viewed", t0() - 10 * DAY);
    track(&db, "b", "viewed", t0() - DAY);
    db.define_audience("weekly", "viewed in last 7 days")
        .unwrap();
    assert_eq!(members(&db, "weekly"), ["b"]);
    let past = db.audience_members_at("weekly", t0() - 5 * DAY).unwrap();
    assert_eq!(db.member_ids(&past).unwrap(), ["a"]);
    assert!(matches!(
        db.audience_members_at("nosuch", t0()),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn the_feed_is_live_durable_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let mut config = Config::new(dir.path().join("db"));
    config.clock = clock.clone();
    config.feed_capacity = 3;
    let db = Db::open_with(config.clone()).unwrap();
    db.define_audience("viewers", "viewed in last 1 hour")
        .unwrap();
    let sub = db.subscribe();
    track(&db, "a", "viewed", t0());
    let c = sub
        .recv_timeout(Duration::from_secs(5))
        .expect("a live change");
    assert_eq!(
        (c.audience.as_str(), c.customer.as_str(), c.entered),
        ("viewers", "a", true)
    );
    assert_eq!(c.seq, 1);
    assert_eq!(c.at, t0());
    clock.advance(HOUR);
    db.advance_audiences().unwrap();
    let c = sub
        .recv_timeout(Duration::from_secs(5))
        .expect("an exit by time");
    assert_eq!((c.customer.as_str(), c.entered, c.seq), ("a", false, 2));
    assert_eq!(c.at, t0() + HOUR);
    for id in ["b", "c", "d"] {
        track(&db, id, "viewed", t0() + HOUR);
    }
    assert_eq!(db.feed_position(), 5);
    assert!(!sub.lagged());

    // Resume after a restart; positions go on; the log keeps its last 3 after a checkpoint.
    drop(db);
    let db = Db::open_with(config).unwrap();
    assert_eq!(db.feed_position(), 5);
    let kept: Vec<u64> = db
        .changes_since(0, 10)
        .unwrap()
        .iter()
        .map(|c| c.seq)
        .collect();
    assert_eq!(kept, [3, 4, 5]);
    assert!(matches!(
        db.changes_since(1, 10),
        Err(Error::InvalidInput(_))
    ));
    assert_eq!(db.changes_since(4, 10).unwrap().len(), 1);
    assert_eq!(members(&db, "viewers"), ["b", "c", "d"]);
    track(&db, "e", "viewed", t0() + HOUR);
    assert_eq!(db.changes_since(5, 10).unwrap()[0].seq, 6);
    assert!(db.verify().unwrap().is_ok());
}

#[test]
fn time_moves_audiences_exactly_to_the_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    track(&db, "a", "purchased", t0() - 1000);
    track(&db, "b", "viewed", t0() + 5000); // in the future: in no window yet
    db.define_audience("lapsed", "purchased ever and not purchased in last 1 day")
        .unwrap();
    db.define_audience("viewers", "viewed in last 1 day")
        .unwrap();
    assert!(members(&db, "lapsed").is_empty());
    assert!(members(&db, "viewers").is_empty());
    clock.set(t0() + 4999);
    db.advance_audiences().unwrap();
    assert!(members(&db, "viewers").is_empty());
    clock.set(t0() + 5000);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "viewers"), ["b"]);
    // `last 1 day` holds (now - 1 day, now]: the purchase at t0-1000 leaves it at t0-1000+1day.
    clock.set(t0() - 1000 + DAY - 1);
    db.advance_audiences().unwrap();
    assert!(members(&db, "lapsed").is_empty());
    clock.set(t0() - 1000 + DAY);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "lapsed"), ["a"]);
    // The next check: b's view leaving the window, or up to two seconds before it (a timer set
    // from the count rollups' two-second span of the view, never after the edge).
    let info = db.audience("viewers").unwrap();
    let edge = t0() + 5000 + DAY;
    let next = info.next_check.unwrap();
    assert!((edge - 1999..=edge).contains(&next), "{next} for {edge}");
    clock.set(next);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "viewers"), ["b"]);
    assert_eq!(db.audience("viewers").unwrap().next_check, Some(edge));
    clock.set(edge - 1);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "viewers"), ["b"]);
    clock.set(edge);
    db.advance_audiences().unwrap();
    assert!(members(&db, "viewers").is_empty());
}

/// `A then not B within T`: the saved audience gains the customer at exactly tA + T (its timer),
/// never gains one whose B came in time, and loses none when a B comes after the wait.
#[test]
fn a_then_not_b_enters_at_exactly_ta_plus_t() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    let a = t0() - 10 * 60_000;
    track(&db, "x", "added_to_cart", a);
    track(&db, "y", "added_to_cart", a);
    track(&db, "z", "added_to_cart", a);
    db.define_audience(
        "abandoned",
        "added_to_cart then not purchased within 1 hour in last 7 days",
    )
    .unwrap();
    assert!(members(&db, "abandoned").is_empty());
    assert_eq!(db.audience("abandoned").unwrap().next_check, Some(a + HOUR));
    // y buys in time, exactly at the end of the wait: that purchase counts.
    track(&db, "y", "purchased", a + HOUR);
    clock.set(a + HOUR - 1);
    db.advance_audiences().unwrap();
    assert!(members(&db, "abandoned").is_empty());
    // z buys a millisecond too late, and after now: it changes nothing.
    track(&db, "z", "purchased", a + HOUR + 1);
    clock.set(a + HOUR);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "abandoned"), ["x", "z"]);
    // A purchase within x's wait that arrives late (stamped in the past) takes x out.
    track(&db, "x", "purchased", a + 30 * 60_000);
    assert_eq!(members(&db, "abandoned"), ["z"]);
    // The cart leaves the 7-day window at a + 7 days.
    clock.set(a + 7 * DAY - 1);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "abandoned"), ["z"]);
    clock.set(a + 7 * DAY);
    db.advance_audiences().unwrap();
    assert!(members(&db, "abandoned").is_empty());
}

fn buy(db: &Db, id: &str, product: Value, ts: i64) {
    let props = vec![("product".into(), product)];
    db.ingest(vec![Message::track(id, "purchased", props, Some(ts))])
        .unwrap();
}

/// `distinct(product)`: a saved audience gains a customer when a new value arrives (not when a
/// repeat or the same number as a decimal does), loses them the millisecond a value leaves the
/// window, and `< 2` holds for a customer without purchases.
#[test]
fn distinct_values_follow_writes_and_time_to_the_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    let p = t0() - 89 * DAY;
    buy(&db, "x", Value::Str("A".into()), p);
    buy(&db, "x", Value::Str("B".into()), t0() - DAY);
    buy(&db, "y", Value::Int(5), t0() - DAY);
    tier(&db, "z", "Gold");
    db.define_audience("varied", "purchased distinct(product) >= 2 in last 90 days")
        .unwrap();
    db.define_audience("few", "purchased distinct(product) < 2 in last 90 days")
        .unwrap();
    assert_eq!(members(&db, "varied"), ["x"]);
    assert_eq!(members(&db, "few"), ["y", "z"]);
    // 5.0 is the value y has; the text "5" is another.
    buy(&db, "y", Value::Float(5.0), t0());
    assert_eq!(members(&db, "varied"), ["x"]);
    buy(&db, "y", Value::Str("5".into()), t0());
    assert_eq!(members(&db, "varied"), ["x", "y"]);
    assert_eq!(members(&db, "few"), ["z"]);
    // x's A leaves the window at p + 90 days.
    clock.set(p + 90 * DAY - 1);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "varied"), ["x", "y"]);
    clock.set(p + 90 * DAY);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "varied"), ["y"]);
    assert_eq!(members(&db, "few"), ["x", "z"]);
}

/// `last purchased before 180 days ago`: the saved audience gains a customer the millisecond
/// their last purchase passes 180 days (its timer), and loses them when they buy again;
/// `first purchased in last 30 days` loses a new buyer the millisecond their first purchase
/// turns 30 days old, and never gains a customer who bought before.
#[test]
fn first_and_last_move_with_time_to_the_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    let p = t0() - 100 * DAY;
    track(&db, "x", "purchased", p);
    track(&db, "y", "purchased", p - 10 * DAY);
    track(&db, "y", "purchased", p);
    db.define_audience("lapsed", "last purchased before 180 days ago")
        .unwrap();
    db.define_audience("new", "first purchased in last 30 days")
        .unwrap();
    assert!(members(&db, "lapsed").is_empty());
    // A first purchase now: new; y's is not its first.
    track(&db, "z", "purchased", t0());
    track(&db, "y", "purchased", t0());
    assert_eq!(members(&db, "new"), ["z"]);
    clock.set(p + 180 * DAY);
    db.advance_audiences().unwrap();
    assert!(members(&db, "lapsed").is_empty());
    clock.set(p + 180 * DAY + 1);
    db.advance_audiences().unwrap();
    assert_eq!(members(&db, "lapsed"), ["x"]);
    // x buys again: no longer lapsed.
    track(&db, "x", "purchased", p + 180 * DAY + 1);
    assert!(members(&db, "lapsed").is_empty());
    // z's first purchase turns 30 days old at t0 + 30 days: out at that millisecond.
    assert!(
        members(&db, "new").is_empty(),
        "p + 180 days is past t0 + 30 days"
    );
    let dir2 = tempfile::tempdir().unwrap();
    let clock2 = Clock::manual(t0());
    let db2 = open(dir2.path(), &clock2);
    track(&db2, "z", "purchased", t0());
    db2.define_audience("new", "first purchased in last 30 days")
        .unwrap();
    assert_eq!(members(&db2, "new"), ["z"]);
    clock2.set(t0() + 30 * DAY - 1);
    db2.advance_audiences().unwrap();
    assert_eq!(members(&db2, "new"), ["z"]);
    clock2.set(t0() + 30 * DAY);
    db2.advance_audiences().unwrap();
    assert!(members(&db2, "new").is_empty());
}

#[test]
fn in_audience_means_the_saved_rule_at_the_same_now() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    for (i, id) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        track(&db, id, "viewed", t0() - (i as i64) * DAY - 1);
        if i % 2 == 0 {
            tier(&db, id, "Gold");
        }
    }
    let rule = "viewed in last 2 days and not tier = Silver";
    db.define_audience("recent", rule).unwrap();
    db.define_audience("gold_recent", "tier = Gold and in audience recent")
        .unwrap();
    for now in [
        t0() - 3 * DAY,
        t0() - DAY,
        t0(),
        t0() + DAY - 2,
        t0() + DAY,
        t0() + 5 * DAY,
    ] {
        let saved = db
            .query("in audience gold_recent or not in audience recent", now)
            .unwrap();
        let inlined = db
            .query(&format!("(tier = Gold and ({rule})) or not ({rule})"), now)
            .unwrap();
        assert_eq!(saved.bitmap(), inlined.bitmap(), "at {now}");
        let a = db.internal_id("a").unwrap().unwrap();
        let why = db.why("a", "in audience gold_recent", now).unwrap();
        let member = db
            .query("in audience gold_recent", now)
            .unwrap()
            .bitmap()
            .contains(a);
        assert_eq!(why.root.holds, member, "why at {now}");
    }
    let explain = db.explain("in audience recent", t0()).unwrap();
    assert_eq!(explain.root.label, "in audience recent");
}

/// `bucket(exp) < 50`: never moves with time or events; moves when an identity merge gives the
/// customer another id (the id merged into decides: c96 is in bucket 99 of `exp`, merged-2 in 34,
/// c69 in 0, as Python's hashlib computes them).
#[test]
fn buckets_move_with_merges_only() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(t0());
    let db = open(dir.path(), &clock);
    track(&db, "c69", "viewed", t0());
    track(&db, "c96", "viewed", t0());
    db.define_audience("variant_a", "bucket(exp) < 50").unwrap();
    db.define_audience("variant_b", "not bucket(exp) < 50 and viewed ever")
        .unwrap();
    assert_eq!(members(&db, "variant_a"), ["c69"]);
    assert_eq!(members(&db, "variant_b"), ["c96"]);
    clock.set(t0() + 400 * DAY);
    db.advance_audiences().unwrap();
    track(&db, "c96", "purchased", t0() + 400 * DAY);
    assert_eq!(members(&db, "variant_a"), ["c69"]);
    assert_eq!(members(&db, "variant_b"), ["c96"]);
    // c96 is merged into the new id merged-2: now in bucket 34.
    assert!(db.alias("c96", "merged-2").unwrap());
    let mut a = members(&db, "variant_a");
    a.sort();
    assert_eq!(a, ["c69", "merged-2"]);
    assert!(members(&db, "variant_b").is_empty());
    // A customer new to the store (c34, bucket 49) enters at its first write, whatever it is.
    tier(&db, "c34", "Silver");
    let mut a = members(&db, "variant_a");
    a.sort();
    assert_eq!(a, ["c34", "c69", "merged-2"]);
    // As the saved audience says, so does a query.
    let q = db.query("bucket(exp) < 50", t0() + 400 * DAY).unwrap();
    let mut ids = db.member_ids(&q).unwrap();
    ids.sort();
    assert_eq!(ids, ["c34", "c69", "merged-2"]);
}

/// Many customers whose edges pass in the same clock step, a millisecond either side of one
/// instant, through both re-evaluation paths (customers one by one, and the bitmaps first, as
/// 2,048 customers or more are), with windows of hours and of days: after every step the members
/// are what a plain evaluator of the rules says, and each entry and exit is reported once.
#[test]
fn many_customers_cross_one_edge_in_the_same_step() {
    const N: usize = 3000;
    // The rules over a window of two units, and a plain evaluator of each.
    let rules = ["recent", "twice", "since", "gone"];
    let rule = |name: &str, unit: &str| match name {
        "recent" => format!("viewed in last 2 {unit}"),
        "twice" => format!("viewed at least 2 times in last 2 {unit}"),
        "since" => format!("viewed since 2 {unit} ago"),
        _ => format!("viewed ever and not viewed in last 2 {unit}"),
    };
    let holds = |name: &str, ts: &[i64], t: i64, w: i64| {
        let inside = |e: i64| t - w < e && e <= t;
        match name {
            "recent" => ts.iter().any(|&e| inside(e)),
            "twice" => ts.iter().filter(|&&e| inside(e)).count() >= 2,
            "since" => ts.iter().any(|&e| t - w <= e && e <= t),
            _ => ts.iter().any(|&e| e <= t) && !ts.iter().any(|&e| inside(e)),
        }
    };
    for (unit, unit_name, bulk_from) in [
        (HOUR, "hours", 2048),
        (HOUR, "hours", 0),
        (DAY, "days", 2048),
        (DAY, "days", 0),
    ] {
        let w = 2 * unit;
        let b = t0() - 3 * unit / 4;
        // Customer i: a view at b - 1, b or b + 1 ms; every third another a twelfth of a unit
        // later (give or take a millisecond); every fifth one in the future, at the edge of the
        // others' window.
        let views: Vec<Vec<i64>> = (0..N as i64)
            .map(|i| {
                let mut v = vec![b + i % 3 - 1];
                if i % 3 == 0 {
                    v.push(b + unit / 12 + i % 5 - 2);
                }
                if i % 5 == 0 {
                    v.push(b + w + i % 2);
                }
                v
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual(t0());
        let mut config = Config::new(dir.path().join("db"));
        config.clock = clock.clone();
        config.audience_bulk_from = bulk_from;
        let db = Db::open_with(config).unwrap();
        let msgs = views
            .iter()
            .enumerate()
            .flat_map(|(i, v)| {
                v.iter()
                    .map(move |&ts| Message::track(format!("c{i}"), "viewed", vec![], Some(ts)))
            })
            .collect();
        db.ingest(msgs).unwrap();
        for name in rules {
            db.define_audience(name, &rule(name, unit_name)).unwrap();
        }
        let expected = |t: i64| -> Vec<Vec<String>> {
            rules
                .iter()
                .map(|name| {
                    let mut ids: Vec<String> = (0..N)
                        .filter(|&i| holds(name, &views[i], t, w))
                        .map(|i| format!("c{i}"))
                        .collect();
                    ids.sort();
                    ids
                })
                .collect()
        };
        let kept =
            |db: &Db| -> Vec<Vec<String>> { rules.iter().map(|name| members(db, name)).collect() };
        assert_eq!(kept(&db), expected(t0()));
        let mut before = expected(t0());
        let edge = b + w;
        let later = b + unit / 12 + w;
        for t in [
            edge - 2,
            edge - 1,
            edge,
            edge + 1,
            edge + 2,
            later - 3,
            later,
            later + 3,
            later + 3 * unit,
        ] {
            clock.set(t);
            let changes = db.advance_audiences().unwrap();
            let now = expected(t);
            let at = format!(
                "{:+} ms from the edge, {unit_name}, bulk from {bulk_from}",
                t - edge
            );
            assert_eq!(kept(&db), now, "{at}");
            let flips: usize = before
                .iter()
                .zip(&now)
                .map(|(a, b)| {
                    let a: std::collections::BTreeSet<_> = a.iter().collect();
                    let b: std::collections::BTreeSet<_> = b.iter().collect();
                    a.symmetric_difference(&b).count()
                })
                .sum();
            assert_eq!(changes, flips, "{at}");
            before = now;
        }
        assert!(db.verify().unwrap().is_ok());
    }
}
