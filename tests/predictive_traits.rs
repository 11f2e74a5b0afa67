//! Predictive computed traits (issue 23): `p_alive`, `expected count in next T`, `clv(p) in next
//! T` from the kept purchase model, and `rfm(p)`:
//! - on the CDNOW sample against the PyPI package `lifetimes` (skipped, saying so, without it):
//!   the kept fit's parameters, every customer's value in `customer show`, and rules on them;
//! - `rfm(p)` against the plain evaluator of `tests/reference` (mid-rank quintiles), at *nows*
//!   that move events across the window's edges at ±1 ms, small and tied populations included;
//! - the expressions' grammar (round trip, errors with carets), the fit's errors, the kept fit
//!   across reopen, refits (on request, failing, and when the data has grown by a tenth), and
//!   saved audiences refusing predictive traits.

mod engines;
mod reference;

use std::collections::{BTreeSet, HashMap};

use audiencedb::ingest::Message;
use audiencedb::model::time::{parse_date, parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use audiencedb::rules::Computed;
use audiencedb::{Clock, Config, Customer, Db};

fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got} against {want} (tolerance {tolerance})"
    );
}

fn value_of(c: &Customer, name: &str) -> Option<Value> {
    c.computed
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not among {:?}", c.computed))
        .1
        .clone()
}

fn float_of(c: &Customer, name: &str) -> f64 {
    match value_of(c, name) {
        Some(Value::Float(x)) => x,
        other => panic!("{}: {name} is {other:?}", c.id),
    }
}

fn members(db: &Db, rule: &str, now: i64) -> BTreeSet<String> {
    let a = db
        .query(rule, now)
        .unwrap_or_else(|e| panic!("{rule}: {e}"));
    db.member_ids(&a).unwrap().into_iter().collect()
}

/// Whether a customer passes a rule, by the values `customer show` gives.
type Passes<'a> = dyn Fn(&Customer) -> bool + 'a;

#[test]
fn predictive_traits_on_cdnow_equal_lifetimes() {
    let Some(reference) = engines::lifetimes_reference() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The end of the 39-week calibration period.
    let now = parse_date("1997-09-30").unwrap();
    let open = || {
        Db::open_with(Config {
            clock: Clock::manual(now),
            ..Config::new(dir.path().join("db"))
        })
        .unwrap()
    };
    let db = open();
    engines::store_cdnow_transactions(&db, reference["transactions"].as_str().unwrap());
    let traits = [
        ("p_alive", "purchased p_alive"),
        ("next_10w", "purchased expected count in next 70 days"),
        ("next_39w", "purchased expected count in next 39 weeks"),
        ("clv_39w", "purchased clv(amount) in next 39 weeks"),
    ];
    for (name, expression) in traits {
        let info = db.define_trait(name, expression).unwrap();
        assert_eq!(info.expression, expression);
        let model = info.model.expect("a predictive trait keeps its model");
        for key in ["r", "alpha", "a", "b"] {
            close(
                model[key].as_f64().unwrap(),
                reference["bgnbd"][key].as_f64().unwrap(),
                1e-3,
                &format!("{name}: {key}"),
            );
        }
        assert_eq!(model["time_unit"], "weeks");
        assert_eq!(model["customers"], 2357);
        assert_eq!(model["fitted_at"], "1997-09-30T00:00:00.000Z");
        assert!(model["log_likelihood"].is_f64());
        if name == "clv_39w" {
            for key in ["p", "q", "v"] {
                let want = reference["gamma_gamma"][key].as_f64().unwrap();
                close(model[key].as_f64().unwrap(), want, 1e-3 * want, key);
            }
        } else {
            assert!(model["p"].is_null(), "{name}: {model}");
        }
    }

    // Every customer's values now: lifetimes' to 1e-3.
    let theirs = reference["customers"].as_array().unwrap();
    let mut ours: HashMap<String, Customer> = HashMap::new();
    for c in theirs {
        let id = c["id"].as_str().unwrap();
        let customer = db.customer(id).unwrap().unwrap();
        let what = |f: &str| format!("customer {id}: {f}");
        close(
            float_of(&customer, "p_alive"),
            c["p_alive"].as_f64().unwrap(),
            1e-3,
            &what("p_alive"),
        );
        close(
            float_of(&customer, "next_10w"),
            c["expected_10"].as_f64().unwrap(),
            1e-3,
            &what("expected in 10 weeks"),
        );
        let expected_39 = c["expected_39"].as_f64().unwrap();
        close(
            float_of(&customer, "next_39w"),
            expected_39,
            1e-3,
            &what("expected in 39 weeks"),
        );
        let clv = expected_39 * c["expected_value"].as_f64().unwrap();
        close(
            float_of(&customer, "clv_39w"),
            clv,
            1e-3 * clv.max(1.0),
            &what("clv"),
        );
        ours.insert(id.to_owned(), customer);
    }

    // Rules read the same values: each member passes by its `customer show` value, and nobody
    // else does.
    let rules: [(&str, &Passes<'_>); 4] = [
        ("p_alive < 0.3", &|c| float_of(c, "p_alive") < 0.3),
        ("p_alive >= 0.9 and next_39w > 1", &|c| {
            float_of(c, "p_alive") >= 0.9 && float_of(c, "next_39w") > 1.0
        }),
        ("clv_39w > 100 or not p_alive is set", &|c| {
            float_of(c, "clv_39w") > 100.0
        }),
        (
            "purchased at least 3 times and p_alive between 0.2 and 0.5",
            &|c| {
                let p = float_of(c, "p_alive");
                (0.2..=0.5).contains(&p)
                    && c.events.iter().filter(|e| e.timestamp <= now).count() >= 3
            },
        ),
    ];
    for (rule, passes) in rules {
        let want: BTreeSet<String> = ours
            .values()
            .filter(|c| passes(c))
            .map(|c| c.id.clone())
            .collect();
        assert_eq!(members(&db, rule, now), want, "{rule}");
        assert!(
            !want.is_empty() || rule.contains("not"),
            "{rule} picks nobody"
        );
    }
    // A customer's why shows the value and how it was derived.
    let why = db.why("1", "p_alive < 0.3", now).unwrap();
    assert!(
        why.root.reason.contains("p_alive is") && why.root.reason.contains("purchased p_alive"),
        "{}",
        why.root.reason
    );

    // `--now T`: a fit on the events up to T, the kept fit unchanged.
    let earlier = db
        .fit_trait_at("p_alive", parse_date("1997-06-30").unwrap())
        .unwrap();
    assert_eq!(earlier.fitted_at, parse_date("1997-06-30").unwrap());
    let kept = db.computed_trait("p_alive").unwrap().model.unwrap();
    assert_ne!(earlier.bgnbd.r, kept["r"].as_f64().unwrap());
    assert_eq!(kept["fitted_at"], "1997-09-30T00:00:00.000Z");

    // Reopen keeps the fit (the parameters as stored).
    drop(db);
    let db = open();
    let again = db.computed_trait("p_alive").unwrap().model.unwrap();
    for key in ["r", "alpha", "a", "b", "log_likelihood"] {
        close(
            again[key].as_f64().unwrap(),
            kept[key].as_f64().unwrap(),
            1e-9,
            key,
        );
    }
    let c = db.customer("1").unwrap().unwrap();
    close(
        float_of(&c, "p_alive"),
        float_of(&ours["1"], "p_alive"),
        1e-9,
        "p_alive after reopen",
    );
}

/// A shop of `n` customers with a spread of purchase patterns (deterministic), each purchase
/// with an `amount`, all before `end`.
fn shop(n: usize, end: i64) -> Vec<Message> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    for c in 0..n {
        let orders = 1 + (next() % 6) as i64;
        let first = end - (30 + (next() % 300) as i64) * DAY_MS;
        let span = (end - first) / DAY_MS;
        for k in 0..orders {
            let day = if k == 0 {
                0
            } else {
                (next() % span.max(1) as u64) as i64
            };
            let ts = first + day * DAY_MS + (next() % 1000) as i64 * 1000;
            let amount = 5.0 + (next() % 200) as f64;
            let mut props = vec![("amount".into(), Value::Float(amount))];
            if next() % 3 == 0 {
                props.push(("channel".into(), Value::Str("web".into())));
            }
            out.push(Message::track(
                format!("c{c}"),
                "purchased",
                props,
                Some(ts),
            ));
        }
    }
    out
}

fn at(t: &str) -> i64 {
    parse_rfc3339(t).unwrap()
}

#[test]
fn the_fit_is_kept_refitted_and_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = at("2026-06-01T00:00:00Z");
    let clock = Clock::manual(t0);
    let open = || {
        Db::open_with(Config {
            clock: clock.clone(),
            ..Config::new(dir.path().join("db"))
        })
        .unwrap()
    };
    let db = open();
    // Too few repeat customers: the error says how many are needed and how many there are.
    db.ingest(shop(12, t0)).unwrap();
    let e = db.define_trait("p_alive", "purchased p_alive").unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("at least 20") && text.contains("there are"),
        "{text}"
    );
    assert!(db.computed_traits().is_empty(), "nothing kept on error");

    // Enough data: defined, fitted at the clock's now.
    let mut all = shop(200, t0);
    all.retain(|m| !m.customer.ends_with('x'));
    db.ingest(all).unwrap();
    let info = db.define_trait("p_alive", "purchased p_alive").unwrap();
    let model = info.model.unwrap();
    assert_eq!(model["fitted_at"], "2026-06-01T00:00:00.000Z");
    let r0 = model["r"].as_f64().unwrap();
    // A trait without a model has none to refit.
    db.define_trait("orders", "purchased count").unwrap();
    assert!(db.computed_trait("orders").unwrap().model.is_none());
    let e = db.refit_trait("orders").unwrap_err().to_string();
    assert!(e.contains("keeps no purchase model"), "{e}");
    assert!(matches!(
        db.refit_trait("nope"),
        Err(audiencedb::Error::NotFound(_))
    ));

    // Saved audiences refuse predictive traits, saying why.
    for rule in ["p_alive < 0.3", "orders >= 1 and not p_alive > 0.5"] {
        let e = db.define_audience("leaving", rule).unwrap_err().to_string();
        assert!(
            e.contains("predictive trait p_alive") && e.contains("query it instead"),
            "{e}"
        );
    }
    assert!(db.audiences().is_empty());

    // Refit on request at a later now.
    let t1 = t0 + 10 * DAY_MS;
    clock.set(t1);
    let refitted = db.refit_trait("p_alive").unwrap().model.unwrap();
    assert_eq!(refitted["fitted_at"], "2026-06-11T00:00:00.000Z");

    // Grown by less than a tenth: no refit; by a tenth: refitted at the write.
    let count = |db: &Db| {
        db.schema()
            .events
            .iter()
            .find(|e| e.name == "purchased")
            .unwrap()
            .count
    };
    let before = count(&db);
    let t2 = t1 + DAY_MS;
    clock.set(t2);
    let few: Vec<Message> = (0..(before / 20))
        .map(|i| {
            Message::track(
                format!("c{}", i % 50),
                "purchased",
                vec![("amount".into(), Value::Float(20.0))],
                Some(t2 - 1000 - i as i64),
            )
        })
        .collect();
    db.ingest(few).unwrap();
    assert_eq!(
        db.computed_trait("p_alive").unwrap().model.unwrap()["fitted_at"],
        "2026-06-11T00:00:00.000Z"
    );
    let more: Vec<Message> = (0..(before / 10))
        .map(|i| {
            Message::track(
                format!("c{}", i % 80),
                "purchased",
                vec![("amount".into(), Value::Float(30.0))],
                Some(t2 - 2000 - i as i64),
            )
        })
        .collect();
    db.ingest(more).unwrap();
    let grown = db.computed_trait("p_alive").unwrap();
    assert_eq!(
        grown.model.as_ref().unwrap()["fitted_at"],
        "2026-06-12T00:00:00.000Z"
    );
    assert!(grown.refit_error.is_none());
    assert_ne!(grown.model.unwrap()["r"].as_f64().unwrap(), r0);

    // A refit that fails keeps the last good fit and says why: at a now before every repeat
    // purchase there are no repeat customers.
    clock.set(t0 - 400 * DAY_MS);
    let kept = db.computed_trait("p_alive").unwrap().model.unwrap();
    let e = db.refit_trait("p_alive").unwrap_err().to_string();
    assert!(
        e.contains("at least 20") && e.contains("the fit of 2026-06-12T00:00:00.000Z is kept"),
        "{e}"
    );
    let after = db.computed_trait("p_alive").unwrap();
    assert_eq!(after.model.unwrap(), kept);
    assert!(after.refit_error.unwrap().contains("at least 20"));

    // Reopen keeps the fit and the recorded failure.
    drop(db);
    clock.set(t2);
    let db = open();
    let reopened = db.computed_trait("p_alive").unwrap();
    for key in ["r", "alpha", "a", "b"] {
        close(
            reopened.model.as_ref().unwrap()[key].as_f64().unwrap(),
            kept[key].as_f64().unwrap(),
            1e-9,
            key,
        );
    }
    assert!(reopened.refit_error.is_some());
    // And the values it gives are the per-customer formula's: a rule and `customer show`
    // agree.
    let everyone: Vec<Customer> = (0..200)
        .filter_map(|c| db.customer(&format!("c{c}")).unwrap())
        .collect();
    let mut values: Vec<f64> = everyone.iter().map(|c| float_of(c, "p_alive")).collect();
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    let want: BTreeSet<String> = everyone
        .iter()
        .filter(|c| float_of(c, "p_alive") < median)
        .map(|c| c.id.clone())
        .collect();
    assert!(
        !want.is_empty() && want.len() < everyone.len(),
        "{values:?}"
    );
    assert_eq!(members(&db, &format!("p_alive < {median}"), t2), want);
}

#[test]
fn expressions_round_trip_and_bad_ones_point_at_the_mistake() {
    for text in [
        "purchased p_alive",
        "purchased where amount > 0 p_alive",
        "purchased channel web expected count in next 90 days",
        "purchased clv(amount) in next 365 days",
        "purchased clv(amount) in next 1 year",
        "purchased rfm(amount) in last 365 days",
        "purchased rfm(amount) ever",
        "purchased where amount >= 10 rfm(amount) since 2026-01-01",
    ] {
        let parsed = audiencedb::rules::parse_computed(text).unwrap();
        let printed = parsed.to_string();
        assert_eq!(
            audiencedb::rules::parse_computed(&printed).unwrap(),
            parsed,
            "{text} printed as {printed}"
        );
    }
    assert_eq!(
        audiencedb::rules::parse_computed("purchased rfm(amount)")
            .unwrap()
            .to_string(),
        "purchased rfm(amount)"
    );
    for (text, caret_at, words) in [
        ("purchased p_alive in last 90 days", 18, "takes no window"),
        ("purchased expected count", 24, "in next 90 days"),
        (
            "purchased expected count in last 90 days",
            28,
            "in next 90 days",
        ),
        (
            "purchased clv(amount) in next 0 days",
            22,
            "length of at least 1",
        ),
        ("purchased clv(amount) ever", 22, "in next"),
        ("purchased rfm() in last 30 days", 14, "property"),
        ("purchased clv(amount) in next 30 days ever", 38, ""),
    ] {
        let e = audiencedb::rules::parse_computed(text).unwrap_err();
        let shown = e.render();
        assert!(shown.contains(words), "{text}: {shown}");
        assert!(shown.contains('^'), "{text}: no caret in {shown}");
        assert_eq!(e.span().start, caret_at, "{text}: {shown}");
    }
}

/// Customers whose purchases sit at the window's edges (30 days before *now*, ±1 ms) and on
/// either side of midnight, with tied and distinct counts and sums.
fn rfm_shop(now: i64) -> Vec<Message> {
    let edge = now - 30 * DAY_MS;
    let p = |id: &str, ts: i64, amount: Value| {
        Message::track(id, "purchased", vec![("amount".into(), amount)], Some(ts))
    };
    let f = Value::Float;
    let mut out = vec![
        p("edge-in", edge, f(50.0)),
        p("edge-out", edge - 1, f(50.0)),
        p("edge-after", edge + 1, f(10.0)),
        p("today", now, f(5.0)),
        p("today", now - 1000, f(5.0)),
        p("future", now + 1, f(999.0)),
        p("text-amount", now - DAY_MS, Value::Str("12.50".into())),
        p("text-amount", now - 2 * DAY_MS, f(1.0)),
        p("midnight", now - now.rem_euclid(DAY_MS), f(30.0)),
        p("midnight", now - now.rem_euclid(DAY_MS) - 1, f(30.0)),
    ];
    for c in 0..17 {
        for k in 0..(1 + c % 4) {
            out.push(p(
                &format!("c{c}"),
                now - ((c * 7 + k * 3) % 29) as i64 * DAY_MS - (c as i64) * 60_000,
                f(((c * 13) % 40) as f64 + k as f64),
            ));
        }
    }
    out.push(Message::track(
        "viewer",
        "viewed",
        vec![("amount".into(), f(1.0))],
        Some(now - DAY_MS),
    ));
    out
}

#[test]
fn rfm_equals_the_plain_evaluator() {
    let now = at("2026-03-15T10:30:00Z");
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::manual(now);
    let db = Db::open_with(Config {
        clock: clock.clone(),
        ..Config::new(dir.path().join("db"))
    })
    .unwrap();
    let messages = rfm_shop(now);
    let ids: BTreeSet<String> = messages.iter().map(|m| m.customer.to_string()).collect();
    db.ingest(messages).unwrap();
    let defs = [
        ("rfm30", "purchased rfm(amount) in last 30 days"),
        ("rfm_all", "purchased rfm(amount) ever"),
        (
            "rfm_big",
            "purchased where amount >= 20 rfm(amount) in last 30 days",
        ),
        ("rfm_none", "purchased rfm(nothing) in last 30 days"),
    ];
    let traits: Vec<(String, Computed)> = defs
        .iter()
        .map(|(n, e)| {
            db.define_trait(n, e).unwrap();
            (n.to_string(), audiencedb::rules::parse_computed(e).unwrap())
        })
        .collect();
    let edge = now - 30 * DAY_MS;
    for t in [
        now,
        now - 1,
        now + 1,
        edge + 30 * DAY_MS - 1,
        now + DAY_MS,
        now + 29 * DAY_MS,
    ] {
        let customers: Vec<Customer> = ids
            .iter()
            .filter_map(|id| db.customer(id).unwrap())
            .collect();
        for (name, expr) in &traits {
            let want: HashMap<String, Value> = reference::rfm_values(expr, &customers, t)
                .into_iter()
                .collect();
            // Each customer's value as a rule reads it: `rfm = "XYZ"` picks exactly those.
            let mut by_value: HashMap<String, BTreeSet<String>> = HashMap::new();
            for (id, v) in &want {
                let Value::Str(s) = v else { unreachable!() };
                by_value
                    .entry(s.to_string())
                    .or_default()
                    .insert(id.clone());
            }
            for (v, who) in &by_value {
                assert_eq!(
                    &members(&db, &format!("{name} = \"{v}\""), t),
                    who,
                    "{name} = {v} at {t}"
                );
            }
            let valued: BTreeSet<String> = want.keys().cloned().collect();
            assert_eq!(
                members(&db, &format!("{name} is set"), t),
                valued,
                "{name} at {t}"
            );
            // And against the reference evaluator for rules over it.
            let defs: Vec<(&str, &Computed)> = vec![(name.as_str(), expr)];
            for rule in [
                format!("{name} in (\"555\", \"111\", \"333\")"),
                format!("{name} contains \"5\" and not {name} contains \"1\""),
                format!("not {name} is set or {name} >= \"3\""),
                format!("{name} != \"333\""),
            ] {
                let parsed = audiencedb::rules::parse(&rule).unwrap();
                let expected: BTreeSet<String> =
                    reference::evaluate_computed(&parsed, t, &customers, &defs)
                        .unwrap()
                        .into_iter()
                        .collect();
                assert_eq!(members(&db, &rule, t), expected, "{rule} at {t}");
            }
        }
        // `customer show` gives the same values.
        if t == now {
            let expr = &traits[0].1;
            let want: HashMap<String, Value> = reference::rfm_values(expr, &customers, t)
                .into_iter()
                .collect();
            for c in &customers {
                assert_eq!(value_of(c, "rfm30"), want.get(&c.id).cloned(), "{}", c.id);
            }
            // The edges (`in last 30 days` is now − 30 days < t ≤ now): the event a
            // millisecond after the window's start counts, the one at it does not, the one
            // after now neither.
            assert!(want.contains_key("edge-after") && !want.contains_key("edge-in"));
            assert!(!want.contains_key("future") && !want.contains_key("viewer"));
        }
    }
    // Small populations: one customer scores the middle; all tied score 333.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open_with(Config {
        clock: Clock::manual(now),
        ..Config::new(dir.path().join("db"))
    })
    .unwrap();
    db.ingest(vec![Message::track(
        "solo",
        "purchased",
        vec![("amount".into(), Value::Float(3.0))],
        Some(now - DAY_MS),
    )])
    .unwrap();
    db.define_trait("rfm", "purchased rfm(amount) in last 30 days")
        .unwrap();
    assert_eq!(
        value_of(&db.customer("solo").unwrap().unwrap(), "rfm"),
        Some(Value::Str("333".into()))
    );
    assert_eq!(
        members(&db, "rfm = \"333\"", now),
        BTreeSet::from(["solo".to_owned()])
    );
    let e = db.define_audience("best", "rfm = \"555\"").unwrap_err();
    assert!(e.to_string().contains("predictive trait rfm"), "{e}");
}

#[test]
fn values_kept_between_rules_follow_writes_and_time() {
    // The first rule derives the model's values per candidate, the second builds the cache of
    // every customer's history, later ones read it; a write of the event makes it stale (the
    // next rule per candidate again, then rebuilt); a *now* before the latest purchase never
    // reads it. Every answer equals the per-customer values `customer show` derives.
    let dir = tempfile::tempdir().unwrap();
    let t0 = at("2026-06-01T00:00:00Z");
    let clock = Clock::manual(t0);
    let db = Db::open_with(Config {
        clock: clock.clone(),
        ..Config::new(dir.path().join("db"))
    })
    .unwrap();
    db.ingest(shop(200, t0)).unwrap();
    db.define_trait("p_alive", "purchased p_alive").unwrap();
    db.define_trait("next_30d", "purchased expected count in next 30 days")
        .unwrap();
    db.define_trait(
        "clv",
        "purchased where amount > 20 clv(amount) in next 1 year",
    )
    .unwrap();
    let ids: Vec<String> = (0..201).map(|c| format!("c{c}")).collect();
    let check = |now: i64, round: &str| {
        clock.set(now);
        let customers: Vec<Customer> = ids
            .iter()
            .filter_map(|id| db.customer(id).unwrap())
            .collect();
        for (rule, name, threshold) in [
            ("p_alive < {}", "p_alive", 0.5),
            ("next_30d >= {}", "next_30d", 0.2),
            ("clv > {}", "clv", 30.0),
        ] {
            let rule = rule.replace("{}", &threshold.to_string());
            let want: BTreeSet<String> = customers
                .iter()
                .filter(|c| match value_of(c, name) {
                    Some(Value::Float(x)) => {
                        if rule.contains('<') {
                            x < threshold
                        } else if rule.contains(">=") {
                            x >= threshold
                        } else {
                            x > threshold
                        }
                    }
                    _ => false,
                })
                .map(|c| c.id.clone())
                .collect();
            for run in 0..3 {
                assert_eq!(members(&db, &rule, now), want, "{round}: {rule}, run {run}");
            }
        }
    };
    check(t0, "defined");
    check(t0 + 3 * DAY_MS + 5, "three days on");
    // A new purchase: the cache is stale.
    db.ingest(vec![Message::track(
        "c7",
        "purchased",
        vec![("amount".into(), Value::Float(80.0))],
        Some(t0 + 4 * DAY_MS),
    )])
    .unwrap();
    check(t0 + 4 * DAY_MS + 1, "after a purchase");
    // Before that purchase: the cache (read up to it) is not used.
    check(t0 + 4 * DAY_MS - 1, "just before it");
    // A customer deleted: stale again.
    db.delete_customer("c3").unwrap();
    check(t0 + 5 * DAY_MS, "after a delete");
    // A new customer with one purchase.
    db.ingest(vec![Message::track(
        "c200",
        "purchased",
        vec![("amount".into(), Value::Float(50.0))],
        Some(t0 + 5 * DAY_MS),
    )])
    .unwrap();
    check(t0 + 6 * DAY_MS, "a new customer");
}

/// Purchases at instants that put a day's first event inside the same 2-second unit as a *now*
/// under test (the per-day counts keep only 2-second units), on either side of midnight.
fn edge_purchases(t0: i64) -> Vec<Message> {
    let day = |d: i64, ms: i64| t0 + d * DAY_MS + ms;
    let buy = |who: &str, ts: i64| {
        Message::track(
            who,
            "purchased",
            vec![("amount".into(), Value::Float(40.0))],
            Some(ts),
        )
    };
    vec![
        buy("e1", day(-20, 0)),
        buy("e1", day(-9, 36_000_000 + 1_700)),
        buy("e1", day(-9, 36_000_000 + 1_900)),
        buy("e2", day(-30, 5)),
        buy("e2", day(-1, DAY_MS - 1)),
        buy("e2", day(0, 0)),
        buy("e3", day(0, 1_001)),
        buy("e4", day(-40, 7)),
        buy("e4", day(-3, 12_345)),
        buy("e4", day(-3, 12_346)),
    ]
}

/// The *nows* around each edge purchase: the instant itself and ±1 ms, its 2-second unit's
/// ends, and the day's ends.
fn edge_nows(t0: i64) -> Vec<i64> {
    let mut nows = Vec::new();
    for m in edge_purchases(t0) {
        let ts = m.timestamp.unwrap();
        let unit = ts - ts.rem_euclid(2_000);
        let start = ts - ts.rem_euclid(DAY_MS);
        nows.extend([ts - 1, ts, ts + 1, unit, unit + 1_999, start - 1, start]);
    }
    nows.sort_unstable();
    nows.dedup();
    nows
}

#[test]
fn histories_from_the_day_counts_equal_those_from_the_blocks() {
    // Without a value and a filter, the histories come from the per-day counts; with a value
    // (`amount`) from each customer's blocks. Their frequency, recency and age must agree at
    // every *now*, including ones inside the 2-second unit of a day's first purchase.
    let dir = tempfile::tempdir().unwrap();
    let t0 = at("2026-06-01T00:00:00Z");
    let db = Db::open_with(Config {
        clock: Clock::manual(t0),
        ..Config::new(dir.path().join("db"))
    })
    .unwrap();
    db.ingest(shop(150, t0 - 2 * DAY_MS)).unwrap();
    db.ingest(edge_purchases(t0)).unwrap();
    db.delete_customer("c5").unwrap();
    let req = |value: Option<&str>| audiencedb::query::histories::HistoryRequest {
        event: "purchased".into(),
        value: value.map(str::to_owned),
        unit: audiencedb::predict::TimeUnit::Days,
    };
    let mut nows = edge_nows(t0);
    nows.extend([t0 - 400 * DAY_MS, t0 - 100 * DAY_MS, t0 + 3 * DAY_MS]);
    for now in nows {
        let counted = db.purchase_histories(&req(None), now).unwrap().histories;
        let read = db
            .purchase_histories(&req(Some("amount")), now)
            .unwrap()
            .histories;
        let key = |hs: Vec<(String, audiencedb::predict::History)>| -> Vec<_> {
            hs.into_iter()
                .map(|(id, h)| (id, h.frequency, h.recency.to_bits(), h.age.to_bits()))
                .collect()
        };
        assert_eq!(key(counted), key(read), "at {now}");
    }
}

#[test]
fn kept_values_follow_days_refits_writes_and_edges() {
    // Each rule runs three times: per candidate, then from the kept histories and values. The
    // kept values are for one fit and one day of *now*: a *now* one millisecond into the next
    // day, a refit (no write), back to an earlier day and a write must each give what a fresh
    // evaluation gives, here `customer show`'s values filtered, with thresholds at customers'
    // exact values.
    let dir = tempfile::tempdir().unwrap();
    let t0 = at("2026-06-01T00:00:00Z");
    let clock = Clock::manual(t0 + 5);
    let db = Db::open_with(Config {
        clock: clock.clone(),
        ..Config::new(dir.path().join("db"))
    })
    .unwrap();
    db.ingest(shop(250, t0 - 2 * DAY_MS)).unwrap();
    db.ingest(edge_purchases(t0)).unwrap();
    db.define_trait("p_alive", "purchased p_alive").unwrap();
    db.define_trait("next_30d", "purchased expected count in next 30 days")
        .unwrap();
    db.define_trait("clv", "purchased clv(amount) in next 1 year")
        .unwrap();
    let mut ids: Vec<String> = (0..250).map(|c| format!("c{c}")).collect();
    ids.extend(["e1", "e2", "e3", "e4", "nobody"].map(str::to_owned));
    let check = |now: i64, round: &str| {
        clock.set(now);
        let customers: Vec<Customer> = ids
            .iter()
            .filter_map(|id| db.customer(id).unwrap())
            .collect();
        for name in ["p_alive", "next_30d", "clv"] {
            let values: Vec<(String, Option<f64>)> = customers
                .iter()
                .map(|c| {
                    let v = match value_of(c, name) {
                        Some(Value::Float(x)) => Some(x),
                        None => None,
                        other => panic!("{name}: {other:?}"),
                    };
                    (c.id.clone(), v)
                })
                .collect();
            let mut sorted: Vec<f64> = values.iter().filter_map(|(_, v)| *v).collect();
            sorted.sort_by(f64::total_cmp);
            assert!(sorted.len() > 100, "{round}: {name} has values");
            let (lo, mid, hi) = (
                sorted[sorted.len() / 5],
                sorted[sorted.len() / 2],
                sorted[sorted.len() * 4 / 5],
            );
            type Test = Box<dyn Fn(Option<f64>) -> bool>;
            let tests: Vec<(String, Test)> = vec![
                (
                    format!("{name} < {mid}"),
                    Box::new(move |v| v.is_some_and(|x| x < mid)),
                ),
                (
                    format!("{name} <= {mid}"),
                    Box::new(move |v| v.is_some_and(|x| x <= mid)),
                ),
                (
                    format!("{name} > {lo}"),
                    Box::new(move |v| v.is_some_and(|x| x > lo)),
                ),
                (
                    format!("{name} >= {hi}"),
                    Box::new(move |v| v.is_some_and(|x| x >= hi)),
                ),
                (
                    format!("{name} between {lo} and {hi}"),
                    Box::new(move |v| v.is_some_and(|x| lo <= x && x <= hi)),
                ),
                (format!("{name} = {mid}"), Box::new(move |v| v == Some(mid))),
                (
                    format!("{name} != {mid}"),
                    Box::new(move |v| v.is_some_and(|x| x != mid)),
                ),
                (format!("{name} is not set"), Box::new(|v| v.is_none())),
                (
                    format!("not {name} < {mid}"),
                    Box::new(move |v| !v.is_some_and(|x| x < mid)),
                ),
            ];
            for (rule, pass) in tests {
                let want: BTreeSet<String> = values
                    .iter()
                    .filter(|(_, v)| pass(*v))
                    .map(|(id, _)| id.clone())
                    .collect();
                for run in 0..3 {
                    assert_eq!(members(&db, &rule, now), want, "{round}: {rule}, run {run}");
                }
            }
        }
    };
    // Before the end of the latest purchase's 2-second unit the kept histories are not used.
    check(t0 + 5, "defined");
    check(t0 + 2_000, "after the latest purchase's unit");
    check(t0 + DAY_MS - 1, "the day's last millisecond");
    check(t0 + DAY_MS, "the next day's first");
    check(t0 + 3_000, "back to the first day");
    // A refit at a later clock, no write: the model changes, the histories do not.
    clock.set(t0 + 40 * DAY_MS);
    let before = db.computed_trait("p_alive").unwrap().model.unwrap();
    db.refit_trait("p_alive").unwrap();
    db.refit_trait("next_30d").unwrap();
    db.refit_trait("clv").unwrap();
    let after = db.computed_trait("p_alive").unwrap().model.unwrap();
    assert_ne!(before["r"], after["r"], "the refit moved the fit");
    check(t0 + 3_000, "after a refit");
    check(t0 + DAY_MS, "after a refit, the next day");
    // A purchase: the kept histories and values are stale.
    db.ingest(vec![Message::track(
        "c9",
        "purchased",
        vec![("amount".into(), Value::Float(120.0))],
        Some(t0 + DAY_MS + 10),
    )])
    .unwrap();
    check(t0 + DAY_MS + 10, "at the new purchase");
    check(t0 + DAY_MS + 11, "just after it");
    check(t0 + 3 * DAY_MS, "two days on");
}
