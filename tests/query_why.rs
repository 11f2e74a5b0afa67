//! `why` agrees with `query` for every customer of a generated shop, and its "next change by
//! time alone" is exact: the answer is unchanged a millisecond before it and flipped at it.

use audiencedb::gen::{generate, GenConfig};
use audiencedb::import::{import_ndjson, CollectErrors, ImportOptions};
use audiencedb::model::time::DAY_MS;
use audiencedb::Db;

/// The spec's examples that need no saved audience, and one with a relative date-time.
fn rules() -> Vec<&'static str> {
    audiencedb::rules::SPEC_EXAMPLES
        .into_iter()
        .filter(|r| !r.contains("in audience"))
        .chain(["signup_at > 200 days ago and viewed in last 2 days"])
        .collect()
}

#[test]
fn why_agrees_with_query_and_finds_the_next_change() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    let mut config = GenConfig::new(150, 7);
    config.end = 20_000 * DAY_MS; // 2024-10-04
    config.days = 120;
    let mut ndjson = Vec::new();
    generate(&config, &mut ndjson).unwrap();
    let mut errors = CollectErrors::default();
    import_ndjson(&db, &ndjson[..], &ImportOptions::default(), &mut errors).unwrap();
    assert!(errors.0.is_empty());

    let now = config.end - DAY_MS / 3 + 17;
    let everyone = db.query("everyone", now).unwrap();
    let ids = db.member_ids(&everyone).unwrap();
    assert_eq!(ids.len(), 150);
    let mut changes = 0;
    for rule in rules() {
        let members = db.member_ids(&db.query(rule, now).unwrap()).unwrap();
        for id in &ids {
            let why = db.why(id, rule, now).unwrap();
            let member = members.binary_search(id).is_ok();
            assert_eq!(why.root.holds, member, "{id} for {rule}:\n{why}");
            if let Some(t) = why.next_change {
                changes += 1;
                assert!(t > now);
                let before = db.why(id, rule, t - 1).unwrap().root.holds;
                let at = db.why(id, rule, t).unwrap().root.holds;
                assert_eq!(
                    before, member,
                    "{id} for {rule}: changed before {t}:\n{why}"
                );
                assert_ne!(at, member, "{id} for {rule}: no change at {t}:\n{why}");
            }
        }
    }
    assert!(changes > 20, "too few changes to test: {changes}");
}
