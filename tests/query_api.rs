//! The query engine's library surface: prepared rules, pages of members on both the lookup
//! path (small audiences) and the id-map scan (large ones), and its errors.

use audiencedb::model::Value;
use audiencedb::query::PreparedRule;
use audiencedb::{Db, Error};

fn shop() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db")).unwrap();
    for i in 0..300 {
        let tier = if i % 50 == 0 { "Gold" } else { "Silver" };
        db.identify(
            &format!("c-{i:04}"),
            vec![("tier".into(), Some(Value::Str(tier.into())))],
        )
        .unwrap();
        db.track(&format!("c-{i:04}"), "viewed", vec![], Some(60_000 * i))
            .unwrap();
    }
    (dir, db)
}

fn all_pages(db: &Db, audience: &audiencedb::query::Audience, size: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    loop {
        let page = db
            .member_page(audience, out.last().map(String::as_str), size)
            .unwrap();
        assert!(page.len() <= size);
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[test]
fn pages_cover_the_members_in_order() {
    let (_dir, db) = shop();
    // 6 Gold customers of 300: the lookup path. 294 Silver: the scan path.
    for (rule, expected) in [
        ("tier = Gold", 6),
        ("tier = Silver", 294),
        ("everyone", 300),
    ] {
        let audience = db.query(rule, 100_000_000).unwrap();
        assert_eq!(audience.len(), expected, "{rule}");
        let ids = db.member_ids(&audience).unwrap();
        assert_eq!(ids.len(), expected as usize);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{rule}: not sorted");
        for size in [1, 7, 1000] {
            assert_eq!(
                all_pages(&db, &audience, size),
                ids,
                "{rule}, pages of {size}"
            );
        }
        assert!(db.member_page(&audience, None, 0).unwrap().is_empty());
        let internal: Vec<u32> = ids
            .iter()
            .map(|id| db.internal_id(id).unwrap().unwrap())
            .collect();
        assert!(internal.iter().all(|i| audience.bitmap().contains(*i)));
    }
}

#[test]
fn a_prepared_rule_runs_at_many_nows() {
    let (_dir, db) = shop();
    let prepared = db.prepare("viewed in last 10 minutes").unwrap();
    assert_eq!(prepared.text(), "viewed in last 10 minutes");
    // One view a minute from 0: a 10-minute window ending at now holds 10 of them (the view
    // exactly 10 minutes before now is outside).
    for now in [540_000, 3_030_000, 299 * 60_000] {
        let a = db.query_prepared(&prepared, now).unwrap();
        assert_eq!(a.now(), now);
        assert_eq!(a.len(), 10, "at {now}");
    }
    // Before the first view, and long after the last one.
    assert_eq!(db.query_prepared(&prepared, -1).unwrap().len(), 0);
    assert_eq!(db.query_prepared(&prepared, 309 * 60_000).unwrap().len(), 0);
    assert_eq!(
        db.query_prepared(&prepared, 309 * 60_000 - 1)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn errors_are_typed() {
    let (_dir, db) = shop();
    match db.query("tier = ", 0) {
        Err(Error::Rule(e)) => assert_eq!(e.line(), 1),
        other => panic!("expected a rule error, got {other:?}"),
    }
    assert!(matches!(
        PreparedRule::new("viewed in lst 3 days"),
        Err(Error::Rule(_))
    ));
    match db.query("in audience vip", 0) {
        Err(Error::Evaluation(msg)) => assert!(msg.contains("vip")),
        other => panic!("expected an evaluation error, got {other:?}"),
    }
    assert!(matches!(
        db.why("nobody", "everyone", 0),
        Err(Error::NotFound(_))
    ));
}
