//! The library in a few lines: open a database, record a profile and some events, read the
//! customer back, look at the schema, ask who is in an audience and why. Run with
//! `cargo run --example quickstart`.

use audiencedb::model::{time, Value};
use audiencedb::Db;

fn main() -> audiencedb::Result<()> {
    let dir = std::env::temp_dir().join(format!("audiencedb-quickstart-{}", std::process::id()));
    let db = Db::open(&dir)?;

    db.identify(
        "c-1001",
        vec![
            ("tier".into(), Some(Value::Str("Gold".into()))),
            ("country".into(), Some(Value::Str("FI".into()))),
            ("age".into(), Some(Value::Int(34))),
        ],
    )?;
    let now = time::now();
    for (product, minutes_ago) in [("X", 90), ("Y", 30)] {
        db.track(
            "c-1001",
            "viewed",
            vec![
                ("product".into(), Value::Str(product.into())),
                ("price".into(), Value::Float(59.9)),
            ],
            Some(now - minutes_ago * 60_000),
        )?;
    }

    let customer = db.customer("c-1001")?.expect("just stored");
    println!(
        "{}",
        serde_json::to_string_pretty(&customer.to_json()).unwrap_or_default()
    );
    for event in db.schema().events {
        println!(
            "{}: {} events by {} customers",
            event.name, event.count, event.customers
        );
    }

    // Who is in the audience, and why this customer is.
    let rule = "viewed product X in last 30 days and tier = Gold";
    let audience = db.query(rule, now)?;
    println!("{rule}: {:?}", db.member_ids(&audience)?);
    print!("{}", db.why("c-1001", rule, now)?);
    drop(db);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
