//! The purchase models against an implementation we did not write: the PyPI package
//! `lifetimes`, on the CDNOW sample it ships (2,357 customers' purchases). `scripts/test.sh`
//! installs the package into `target/server-venv`; `scripts/lifetimes_reference.py` prints its
//! summaries, fits and predictions for the 39-week calibration period, and the raw transactions
//! are stored here as `purchased` events (including the later ones, which a fit at the end of
//! the calibration period must not see).

mod engines;

use std::collections::HashMap;

use audiencedb::model::time::{parse_date, DAY_MS};
use audiencedb::model::Value;
use audiencedb::predict::{BgNbd, History, TimeUnit};
use audiencedb::query::histories::HistoryRequest;
use audiencedb::{Db, Message};

fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: {got} against {want} (tolerance {tolerance})"
    );
}

fn request(value: Option<&str>) -> HistoryRequest {
    HistoryRequest {
        event: "purchased".into(),
        value: value.map(str::to_owned),
        unit: TimeUnit::Weeks,
    }
}

#[test]
fn the_cdnow_sample_fits_as_lifetimes_and_the_paper_fit_it() {
    let Some(reference) = engines::lifetimes_reference() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let stored =
        engines::store_cdnow_transactions(&db, reference["transactions"].as_str().unwrap());
    assert_eq!(stored, 6919);
    // The end of the 39-week calibration period: purchases on that day count.
    let now = parse_date("1997-09-30").unwrap();

    // Every customer's history, counted as lifetimes counts it.
    let answer = db
        .purchase_histories(&request(Some("amount")), now)
        .unwrap();
    assert!(answer.warnings.is_empty(), "{:?}", answer.warnings);
    let ours: HashMap<String, History> = answer.histories.into_iter().collect();
    let theirs = reference["customers"].as_array().unwrap();
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours.len(), 2357);
    for c in theirs {
        let id = c["id"].as_str().unwrap();
        let h = &ours[id];
        let what = |field: &str| format!("customer {id}: {field}");
        assert_eq!(
            u64::from(h.frequency),
            c["frequency"].as_u64().unwrap(),
            "{}",
            what("frequency")
        );
        close(
            h.recency,
            c["recency"].as_f64().unwrap(),
            1e-9,
            &what("recency"),
        );
        close(h.age, c["T"].as_f64().unwrap(), 1e-9, &what("T"));
        close(
            h.monetary,
            c["monetary"].as_f64().unwrap(),
            1e-9,
            &what("monetary"),
        );
    }

    // The fit: lifetimes' parameters, and the paper's to its three decimals.
    let model = db.fit_purchases(&request(Some("amount")), now).unwrap();
    let bg = model.bgnbd;
    for (name, got) in [("r", bg.r), ("alpha", bg.alpha), ("a", bg.a), ("b", bg.b)] {
        close(got, reference["bgnbd"][name].as_f64().unwrap(), 1e-3, name);
    }
    for (got, paper, name) in [
        (bg.r, 0.243, "r"),
        (bg.alpha, 4.414, "alpha"),
        (bg.a, 0.793, "a"),
        (bg.b, 2.426, "b"),
    ] {
        close(
            got,
            paper,
            0.0005 + 1e-9,
            &format!("{name} against the paper"),
        );
    }
    let gg = model.gamma_gamma.unwrap();
    for (name, got) in [("p", gg.p), ("q", gg.q), ("v", gg.v)] {
        let want = reference["gamma_gamma"][name].as_f64().unwrap();
        close(got, want, 1e-3 * want, name);
    }
    assert_eq!((model.customers, model.repeat_customers), (2357, 946));
    // The paper's log-likelihood at its rounded parameters, and ours at least as high.
    let paper = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };
    let all: Vec<History> = ours.values().copied().collect();
    close(
        paper.log_likelihood(&all),
        -9582.4,
        0.1,
        "the paper's log-likelihood",
    );
    assert!(model.log_likelihood >= paper.log_likelihood(&all) - 1e-6);

    // Every customer's predictions.
    for c in theirs {
        let id = c["id"].as_str().unwrap();
        let h = &ours[id];
        let what = |field: &str| format!("customer {id}: {field}");
        close(
            bg.p_alive(h),
            c["p_alive"].as_f64().unwrap(),
            1e-3,
            &what("p_alive"),
        );
        for t in [10.0, 39.0] {
            let key = format!("expected_{t}");
            close(
                bg.expected_count(h, t),
                c[&key].as_f64().unwrap(),
                1e-3,
                &what(&key),
            );
        }
        close(
            gg.expected_value(h),
            c["expected_value"].as_f64().unwrap(),
            1e-3 * c["expected_value"].as_f64().unwrap(),
            &what("expected value"),
        );
    }

    let json = model.to_json();
    eprintln!("fitted: {json}");
    assert_eq!(json["time_unit"], "weeks");
    assert_eq!(json["customers"], 2357);
    assert_eq!(json["fitted_at"], "1997-09-30T00:00:00.000Z");
    for key in ["r", "alpha", "a", "b", "p", "q", "v", "log_likelihood"] {
        assert!(json[key].is_f64(), "{key}: {json}");
    }

    // A day later, the customers have aged by a day and nothing else moved (no purchases on
    // 1997-10-01 before midnight are in the sample's calibration).
    let later = now + DAY_MS;
    let next = db
        .purchase_histories(&request(None), later)
        .unwrap()
        .histories;
    let bought_on = |day: i64| {
        let text = std::fs::read_to_string(reference["transactions"].as_str().unwrap()).unwrap();
        let d = audiencedb::model::time::format_rfc3339(day);
        let key = d[..10].replace('-', "");
        text.lines()
            .any(|l| l.split_whitespace().nth(2) == Some(key.as_str()))
    };
    if !bought_on(later) {
        for (id, h) in next {
            close(
                h.age,
                ours[&id].age + 1.0 / 7.0,
                1e-9,
                &format!("{id}: age a day later"),
            );
            assert_eq!(h.frequency, ours[&id].frequency);
        }
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let day = parse_date("2026-01-01").unwrap();
    let mut messages = Vec::new();
    for c in 0..30 {
        for k in 0..(c % 3) {
            messages.push(Message::track(
                format!("c{c}"),
                "purchased",
                vec![
                    ("amount".into(), Value::Float(10.0 + c as f64)),
                    ("sku".into(), Value::Str(format!("s{k}").into())),
                ],
                Some(day + (k as i64) * 3 * DAY_MS),
            ));
        }
    }
    db.ingest(messages).unwrap();
    let now = day + 30 * DAY_MS;
    let err = |req: HistoryRequest| db.fit_purchases(&req, now).unwrap_err().to_string();

    // 10 customers buy on two days, 10 on one: too few repeat customers, and it says how many.
    let e = err(request(None));
    assert!(
        e.contains("at least 20 customers") && e.contains("there are 10"),
        "{e}"
    );
    let e = err(request(Some("sku")));
    assert!(e.contains("\"sku\"") && e.contains("never a number"), "{e}");
    for text in [
        "purchased in last 30 days",
        "purchased at least 2 times",
        "tier = Gold",
    ] {
        let e = err(HistoryRequest {
            event: text.into(),
            ..request(None)
        });
        assert!(e.contains("does not name purchases"), "{text}: {e}");
    }
    // An unknown event has no histories, and warns.
    let none = db
        .purchase_histories(
            &HistoryRequest {
                event: "purchsed".into(),
                ..request(None)
            },
            now,
        )
        .unwrap();
    assert!(none.histories.is_empty());
    assert!(!none.warnings.is_empty());
}
