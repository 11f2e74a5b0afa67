//! The synthetic shop (`audiencedb::gen`): deterministic bytes, valid messages that the importer
//! accepts, timestamps inside the period, about 50 events per customer, and data on which every
//! example rule of `rules.md` selects a real, non-trivial audience.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use audiencedb::gen::{generate, GenConfig, GenStats};
use audiencedb::ingest::{Body, Message};
use audiencedb::model::time::{parse_rfc3339, DAY_MS};
use audiencedb::model::Value;
use serde_json::Value as Json;

/// 2026-01-01T00:00:00Z: a fixed end, so the tests do not depend on the day they run.
const END: i64 = 1_767_225_600_000;

fn config(customers: u64, seed: u64) -> GenConfig {
    GenConfig {
        customers,
        seed,
        days: 365,
        end: END,
        both_ids_percent: 0,
    }
}

fn run(config: &GenConfig) -> (Vec<u8>, GenStats) {
    let mut out = Vec::new();
    let stats = generate(config, &mut out).expect("writing to a Vec cannot fail");
    (out, stats)
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(bytes)
        .expect("output is UTF-8")
        .lines()
        .filter(|l| !l.is_empty())
}

#[test]
fn same_config_same_bytes_any_thread_count() {
    let c = config(1_500, 11);
    let (a, sa) = run(&c);
    let (b, sb) = run(&c);
    assert_eq!(sa, sb);
    assert!(a == b, "two runs of one config differ");
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (t, _) = pool.install(|| run(&c));
        assert!(t == a, "{threads} threads change the output");
    }
    let (other_seed, _) = run(&config(1_500, 12));
    assert!(other_seed != a, "different seeds give the same shop");
    // A prefix of customers is the same shop whatever the total (ids may widen past 999,999).
    let (fewer, _) = run(&config(700, 11));
    assert!(a.starts_with(&fewer));
}

#[test]
fn every_line_is_a_valid_message_inside_the_period() {
    for (days, customers) in [(365, 2_000), (7, 300)] {
        let c = GenConfig {
            days,
            ..config(customers, 3)
        };
        let start = END - i64::from(days) * DAY_MS;
        let (bytes, stats) = run(&c);
        assert_eq!(*bytes.last().unwrap(), b'\n');
        let mut message_ids = HashSet::new();
        let mut customers_seen: Vec<String> = Vec::new();
        let (mut messages, mut events) = (0u64, 0u64);
        let mut last_ts: HashMap<String, i64> = HashMap::new();
        for line in lines(&bytes) {
            messages += 1;
            let json: Json = serde_json::from_str(line).expect("valid JSON");
            let obj = json.as_object().expect("an object");
            // What ingest.md requires: a type, a customer, a timestamp; the importer agrees.
            let msg = Message::from_json_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let id = match (obj.get("userId"), obj.get("anonymousId")) {
                (Some(Json::String(u)), None) => {
                    assert!(u.starts_with("c-") && u.len() == 8, "{u}");
                    u.clone()
                }
                (None, Some(Json::String(a))) => {
                    assert!(a.starts_with("anon-") && a.len() == 21, "{a}");
                    a.clone()
                }
                _ => panic!("one of userId and anonymousId: {line}"),
            };
            assert_eq!(msg.customer, id);
            let ts = parse_rfc3339(obj["timestamp"].as_str().expect("timestamp text"))
                .expect("RFC 3339");
            assert_eq!(msg.timestamp, Some(ts));
            assert!((start..END).contains(&ts), "outside the period: {line}");
            let mid = obj["messageId"].as_str().expect("messageId");
            assert_eq!(mid.len(), 16);
            assert!(
                message_ids.insert(mid.to_owned()),
                "duplicate messageId {mid}"
            );
            match (&msg.body, obj["type"].as_str()) {
                (Body::Track { event, properties }, Some("track")) => {
                    events += 1;
                    assert!(!event.is_empty() && !properties.is_empty(), "{line}");
                }
                (Body::Identify { traits }, Some("identify")) => {
                    assert!(!id.starts_with("anon-"), "anonymous ids have no profile");
                    assert!(!traits.is_empty());
                    if let Some((_, Some(v))) = traits.iter().find(|(k, _)| k == "signup_at") {
                        assert!(matches!(v, Value::Time(_)), "signup_at is a date-time");
                    }
                }
                _ => panic!("type and body disagree: {line}"),
            }
            // Customers come one after another, in id order, each in time order.
            if customers_seen.last() != Some(&id) {
                assert!(!customers_seen.contains(&id), "{id} is split up");
                if id.starts_with("c-") {
                    if let Some(prev) = customers_seen.iter().rev().find(|p| p.starts_with("c-")) {
                        assert!(*prev < id, "{prev} before {id}");
                    }
                    assert_eq!(obj["type"], "identify", "{id} starts with its profile");
                }
                customers_seen.push(id.clone());
            }
            let last = last_ts.entry(id).or_insert(i64::MIN);
            assert!(ts >= *last, "time goes back: {line}");
            *last = ts;
        }
        assert_eq!(stats.messages, messages);
        assert_eq!(stats.events, events);
        assert_eq!(stats.customers, customers);
        assert_eq!(customers_seen.len() as u64, customers);
        let anonymous = customers_seen
            .iter()
            .filter(|c| c.starts_with("anon-"))
            .count() as f64;
        let share = anonymous / customers as f64;
        assert!((0.05..0.15).contains(&share), "anonymous share {share}");
    }
}

#[test]
fn about_fifty_events_per_customer_with_a_heavy_tail() {
    let (bytes, stats) = run(&config(2_000, 5));
    let per_customer = stats.events as f64 / stats.customers as f64;
    assert!(
        (40.0..60.0).contains(&per_customer),
        "{per_customer} events per customer"
    );
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for line in lines(&bytes) {
        if line.starts_with("{\"type\":\"track\"") {
            let id = line.split('"').nth(7).unwrap();
            *counts.entry(id).or_default() += 1;
        }
    }
    let mut sorted: Vec<u64> = counts.values().copied().collect();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let max = *sorted.last().unwrap();
    assert!(median < 30, "most customers are light: median {median}");
    assert!(max >= 500, "a few are heavy: max {max}");
}

#[test]
fn bad_configs_and_failing_writers_are_errors() {
    let zero_days = GenConfig {
        days: 0,
        ..config(10, 1)
    };
    let err = generate(&zero_days, Vec::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let too_early = GenConfig {
        end: 5 * DAY_MS,
        ..config(10, 1)
    };
    assert!(generate(&too_early, Vec::new()).is_err());
    let (empty, stats) = run(&config(0, 1));
    assert!(empty.is_empty());
    assert_eq!(stats, GenStats::default());

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let err = generate(&config(50, 1), Broken).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

#[test]
fn progress_reports_running_totals() {
    let c = config(3_000, 4);
    let mut reports: Vec<GenStats> = Vec::new();
    let stats =
        audiencedb::gen::generate_with_progress(&c, io::sink(), |s| reports.push(*s)).unwrap();
    assert!(!reports.is_empty());
    assert!(reports.windows(2).all(|w| w[0].messages < w[1].messages));
    assert_eq!(reports.last(), Some(&stats));
    assert_eq!(stats, run(&c).1);
}

#[test]
fn default_config_is_a_year_ending_at_midnight_utc() {
    let c = GenConfig::new(100, 9);
    assert_eq!(c.days, 365);
    assert_eq!(c.end % DAY_MS, 0);
    assert!(c.end <= audiencedb::model::time::now());
    assert_eq!(c.start(), c.end - 365 * DAY_MS);
}

/// Whether a customer belongs to an audience.
type Member<'a> = dyn Fn(&Customer) -> bool + 'a;

/// One customer as the rules see it: current traits and events.
#[derive(Default)]
struct Customer {
    traits: serde_json::Map<String, Json>,
    events: Vec<(i64, String, Json)>,
}

impl Customer {
    fn trait_str(&self, name: &str) -> Option<&str> {
        self.traits.get(name).and_then(Json::as_str)
    }

    /// Events named `event` with now − window < ts ≤ now (window `None`: ever), matching `pred`.
    fn count(&self, event: &str, window: Option<i64>, pred: impl Fn(&Json) -> bool) -> usize {
        let from = window.map_or(i64::MIN, |w| END - w);
        self.events
            .iter()
            .filter(|(ts, e, p)| e == event && *ts > from && *ts <= END && pred(p))
            .count()
    }

    fn did(&self, event: &str, window: Option<i64>) -> bool {
        self.count(event, window, |_| true) > 0
    }
}

fn customers(bytes: &[u8]) -> HashMap<String, Customer> {
    let mut out: HashMap<String, Customer> = HashMap::new();
    for line in lines(bytes) {
        let json: Json = serde_json::from_str(line).unwrap();
        let id = json
            .get("userId")
            .or_else(|| json.get("anonymousId"))
            .and_then(Json::as_str)
            .unwrap()
            .to_owned();
        let c = out.entry(id).or_default();
        if json["type"] == "identify" {
            for (k, v) in json["traits"].as_object().unwrap() {
                c.traits.insert(k.clone(), v.clone());
            }
        } else {
            let ts = parse_rfc3339(json["timestamp"].as_str().unwrap()).unwrap();
            let event = json["event"].as_str().unwrap().to_owned();
            c.events.push((ts, event, json["properties"].clone()));
        }
    }
    out
}

#[test]
fn every_rules_md_example_has_a_real_audience() {
    let (bytes, stats) = run(&config(5_000, 2026));
    let all = customers(&bytes);
    assert_eq!(all.len() as u64, stats.customers);
    let day = DAY_MS;
    let audience = |f: &dyn Fn(&Customer) -> bool| all.values().filter(|c| f(c)).count();

    let unsubscribed = |c: &Customer| c.traits.get("newsletter") == Some(&Json::Bool(false));
    let spent = |c: &Customer| -> f64 {
        c.events
            .iter()
            .filter(|(ts, e, _)| e == "purchased" && *ts > END - 365 * day)
            .filter_map(|(_, _, p)| p["amount"].as_f64()) // text amounts are left out
            .sum()
    };
    let examples: [(&str, &Member); 9] = [
        ("viewed product X in last 30 days and tier = Gold", &|c| {
            c.count("viewed", Some(30 * day), |p| p["product"] == "X") > 0
                && c.trait_str("tier") == Some("Gold")
        }),
        ("purchased at least 3 times in last 90 days", &|c| {
            c.count("purchased", Some(90 * day), |_| true) >= 3
        }),
        ("purchased ever and not purchased in last 6 months", &|c| {
            c.did("purchased", None) && !c.did("purchased", Some(180 * day))
        }),
        (
            "added_to_cart in last 1 day and not purchased in last 1 day",
            &|c| c.did("added_to_cart", Some(day)) && !c.did("purchased", Some(day)),
        ),
        (
            "visited at least 3 times in last 7 days and not purchased in last 7 days",
            &|c| {
                c.count("visited", Some(7 * day), |_| true) >= 3
                    && !c.did("purchased", Some(7 * day))
            },
        ),
        ("purchased sum(amount) > 500 in last 365 days", &|c| {
            spent(c) > 500.0
        }),
        (
            "purchased where category = kids ever and not in audience unsubscribed",
            &|c| c.count("purchased", None, |p| p["category"] == "kids") > 0 && !unsubscribed(c),
        ),
        (
            "not visited before 7 days ago and visited in last 7 days",
            &|c| {
                !c.events
                    .iter()
                    .any(|(ts, e, _)| e == "visited" && *ts < END - 7 * day)
                    && c.did("visited", Some(7 * day))
            },
        ),
        (
            "country in (FI, SE) and (device = mobile or source = facebook)",
            &|c| {
                matches!(c.trait_str("country"), Some("FI" | "SE"))
                    && (c.trait_str("device") == Some("mobile")
                        || c.trait_str("source") == Some("facebook"))
            },
        ),
    ];
    for (rule, member) in examples {
        let size = audience(member);
        // Non-trivial: real people, but not everyone.
        assert!(
            size >= 10 && size < all.len() / 2,
            "{rule}: {size} of {}",
            all.len()
        );
    }
    // The audience that the kids rule subtracts exists and overlaps kids buyers.
    assert!(audience(&|c| unsubscribed(c)) > 0);
    assert!(
        audience(&|c| {
            unsubscribed(c) && c.count("purchased", None, |p| p["category"] == "kids") > 0
        }) > 0
    );
    // The odd inputs that rules must handle are there: text amounts, dotted trait paths,
    // tier changes (a second identify), missing ages and emails.
    assert!(all.values().any(|c| c
        .events
        .iter()
        .any(|(_, e, p)| e == "purchased" && p["amount"].is_string())));
    assert!(all.values().any(|c| c.traits.get("address").is_some()));
    assert!(all
        .values()
        .any(|c| !c.traits.is_empty() && !c.traits.contains_key("age")));
    assert!(all
        .values()
        .any(|c| !c.traits.is_empty() && !c.traits.contains_key("email")));
    let identifies = lines(&bytes)
        .filter(|l| l.starts_with("{\"type\":\"identify\""))
        .count();
    let profiles = all.values().filter(|c| !c.traits.is_empty()).count();
    assert!(identifies > profiles, "some customers change tier later");
}

#[test]
fn the_importer_stores_every_generated_message_once() {
    use audiencedb::import::{import_ndjson, CollectErrors, ImportOptions};

    let (bytes, stats) = run(&config(300, 8));
    let dir = tempfile::tempdir().unwrap();
    let db = audiencedb::Db::open(dir.path().join("db")).unwrap();
    let options = ImportOptions {
        strict: true,
        ..ImportOptions::default()
    };
    let mut errors = CollectErrors::default();
    let summary = import_ndjson(&db, &bytes[..], &options, &mut errors).unwrap();
    assert!(errors.0.is_empty(), "{:?}", errors.0.first());
    assert_eq!(summary.read, stats.messages);
    assert_eq!(summary.stored, stats.messages);
    let first_id = lines(&bytes)
        .find_map(|l| l.strip_prefix("{\"type\":\"identify\",\"userId\":\""))
        .and_then(|rest| rest.split('"').next())
        .expect("an identified customer");
    let first = db.customer(first_id).unwrap().expect("the first customer");
    assert!(first
        .traits
        .is_some_and(|t| t.iter().any(|(k, _)| k == "tier")));
    // Re-sending the same shop is recognised by messageId and changes nothing.
    let again = import_ndjson(&db, &bytes[..], &options, &mut errors).unwrap();
    assert_eq!(again.duplicates, stats.messages);
    assert_eq!(again.stored, 0);
}

#[test]
fn both_ids_puts_a_device_id_beside_a_share_of_user_ids() {
    let plain = config(400, 9);
    let both = GenConfig {
        both_ids_percent: 20,
        ..config(400, 9)
    };
    let (plain_bytes, plain_stats) = run(&plain);
    let (both_bytes, both_stats) = run(&both);
    assert_eq!(plain_stats, both_stats, "the same shop, the same messages");
    let (mut user, mut paired) = (0u64, 0u64);
    let dir = tempfile::tempdir().unwrap();
    let db = audiencedb::Db::open(dir.path().join("db")).unwrap();
    let mut messages = Vec::new();
    let mut devices: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for line in lines(&both_bytes) {
        let json: Json = serde_json::from_str(line).unwrap();
        if let Some(Json::String(u)) = json.get("userId") {
            user += 1;
            if let Some(Json::String(a)) = json.get("anonymousId") {
                paired += 1;
                assert!(a.starts_with("anon-") && a.len() == 21, "{a}");
                devices.entry(u.clone()).or_default().insert(a.clone());
            }
        }
        messages.push(Message::from_json_line(line).unwrap());
    }
    let share = paired as f64 / user as f64;
    assert!((0.15..0.25).contains(&share), "{paired} of {user}");
    assert!(devices.values().all(|d| d.len() <= 2));
    let report = db.ingest(messages).unwrap();
    assert_eq!(
        report.merges,
        devices.values().map(|d| d.len() as u64).sum::<u64>()
    );
    // Device ids join their customers: no customer more than without them.
    let plain_customers: HashSet<String> = lines(&plain_bytes)
        .map(|l| Message::from_json_line(l).unwrap().customer.to_string())
        .collect();
    assert_eq!(db.totals().customers, plain_customers.len() as u64);
    assert!(db.verify().unwrap().is_ok());
}
