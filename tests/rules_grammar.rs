//! Every example rule parses, and printing it is a fixed point: the examples in
//! `grammar/examples.txt` and the Examples table of the language reference (`docs/RULES.md`).

use audiencedb::rules::{parse, print};

/// The rules of `grammar/examples.txt`: one per line, `  # meaning` after it.
fn grammar_examples() -> Vec<(usize, String)> {
    let text = include_str!("../grammar/examples.txt");
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(i, line)| {
            let rule = line.split_once("  # ").map_or(line, |(rule, _)| rule);
            (i + 1, rule.trim().to_string())
        })
        .collect()
}

/// The rules in the Examples table of `docs/RULES.md`: the first backquoted cell of each row after
/// the "## Examples" heading.
fn reference_examples() -> Vec<String> {
    let doc = include_str!("../docs/RULES.md");
    let Some(start) = doc.find("\n## Examples\n") else {
        return Vec::new();
    };
    doc[start + 1..]
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("## "))
        .filter_map(|line| {
            let cell = line.strip_prefix("| `")?;
            let (rule, _) = cell.split_once("` |")?;
            Some(rule.to_string())
        })
        .collect()
}

fn check(rule: &str, origin: &str) {
    let ast = parse(rule).unwrap_or_else(|e| panic!("{origin}: {rule}\n{}", e.render()));
    let printed = print(&ast);
    let again =
        parse(&printed).unwrap_or_else(|e| panic!("{origin}: reprinted {printed}\n{}", e.render()));
    assert_eq!(
        again, ast,
        "{origin}: {rule} printed as {printed} means something else"
    );
    assert_eq!(
        print(&again),
        printed,
        "{origin}: printing is not a fixed point"
    );
}

#[test]
fn every_grammar_example_parses_and_prints_stably() {
    let examples = grammar_examples();
    assert!(examples.len() > 50, "examples.txt lost its examples");
    for (line, rule) in examples {
        check(&rule, &format!("grammar/examples.txt:{line}"));
    }
}

#[test]
fn every_reference_example_parses_and_is_kept_in_the_grammar_examples() {
    let examples = reference_examples();
    assert!(
        examples.len() >= 9,
        "found only {} examples in the Examples table of docs/RULES.md",
        examples.len()
    );
    for rule in audiencedb::rules::SPEC_EXAMPLES {
        assert!(
            examples.iter().any(|e| e == rule),
            "the Examples table of docs/RULES.md lacks {rule}"
        );
    }
    let ours: Vec<String> = grammar_examples().into_iter().map(|(_, r)| r).collect();
    for rule in examples {
        check(&rule, "docs/RULES.md");
        assert!(
            ours.contains(&rule),
            "grammar/examples.txt lacks the docs/RULES.md example {rule}"
        );
    }
}

#[test]
fn canonical_forms() {
    for (input, canonical) in [
        (
            "viewed  product   X IN THE LAST 30 DAYS",
            "viewed product X in last 30 days",
        ),
        ("did viewed", "viewed"),
        ("did \"viewed\"", "viewed"),
        ("did 'Product Viewed'", "did \"Product Viewed\""),
        ("purchased exactly 1 times", "purchased exactly 1 time"),
        ("a = 1 and (b = 2 and c = 3)", "a = 1 and (b = 2 and c = 3)"),
        ("(a = 1 and b = 2) or c = 3", "a = 1 and b = 2 or c = 3"),
        ("(a = 1 or b = 2) and c = 3", "(a = 1 or b = 2) and c = 3"),
        ("not (a = 1)", "not a = 1"),
        ("not (a = 1 or b = 2)", "not (a = 1 or b = 2)"),
        ("purchased where (amount > 3)", "purchased where amount > 3"),
        ("x = 'say \"hi\"'", "x = \"say \\\"hi\\\"\""),
        (
            "signup_at > 2026-03-01T14:00:00+02:00",
            "signup_at > 2026-03-01T12:00:00.000Z",
        ),
        ("x = TRUE", "x = true"),
        ("x>=3", "x >= 3"),
        ("x in (a,b ,c)", "x in (a, b, c)"),
        ("x > 1 day ago", "x > 1 day ago"),
        ("x > 2 day ago", "x > 2 days ago"),
        (
            "did purchased between 2026-01-01 and 2026-01-02",
            "did purchased between 2026-01-01 and 2026-01-02",
        ),
        (
            "purchased at least 1 times between 2026-01-01 and 2026-01-02",
            "purchased at least 1 time between 2026-01-01 and 2026-01-02",
        ),
    ] {
        match parse(input) {
            Ok(rule) => assert_eq!(print(&rule), canonical, "{input}"),
            Err(e) => panic!("{input}\n{}", e.render()),
        }
    }
}

/// The tree of a rule, fully bracketed, so a test can pin what a rule means structurally.
fn tree(expr: &audiencedb::rules::Expr) -> String {
    use audiencedb::rules::ExprKind::*;
    match &expr.kind {
        And(items) => format!(
            "(and {})",
            items.iter().map(tree).collect::<Vec<_>>().join(" ")
        ),
        Or(items) => format!(
            "(or {})",
            items.iter().map(tree).collect::<Vec<_>>().join(" ")
        ),
        Not(inner) => format!("(not {})", tree(inner)),
        Trait(cond) => format!("[trait {cond}]"),
        EventOrTrait(cond) => format!("[event or trait {cond}]"),
        Event(event) => {
            let mut parts = vec![format!("event {}", event.event.text)];
            if let Some(s) = &event.shorthand {
                parts.push(format!("{} = {}", s.property.text, s.value));
            }
            if let Some(p) = &event.predicate {
                parts.push(format!("where {p}"));
            }
            if let Some(f) = &event.frequency {
                parts.push(format!("freq {f}"));
            }
            if let Some(w) = &event.window {
                parts.push(format!("window {w}"));
            }
            format!("[{}]", parts.join("; "))
        }
        Sequence(seq) => {
            let mut parts: Vec<String> = seq.steps.iter().map(|s| format!("step {s}")).collect();
            if seq.negated {
                parts.push("negated".into());
            }
            if let Some(p) = &seq.same {
                parts.push(format!("same {}", p.text));
            }
            parts.push(format!("within {}", seq.within));
            if let Some(w) = &seq.window {
                parts.push(format!("window {w}"));
            }
            format!("[sequence {}]", parts.join("; "))
        }
        FirstLast(fl) => format!("[{} {}]", fl.keyword(), fl.event),
        Bucket(b) => format!("[bucket {} {}]", b.name.text, b.test),
        InAudience(name) => format!("[audience {}]", name.text),
        Everyone => "[everyone]".into(),
    }
}

#[test]
fn distinct_counts_mean_what_the_spec_says() {
    for (rule, meaning) in [
        (
            "purchased distinct(product) >= 3 in last 90 days",
            "[event purchased; freq distinct(product) >= 3; window in last 90 days]",
        ),
        (
            "viewed category shoes where price > 5 DISTINCT( item.sku ) != 0 ever",
            "[event viewed; category = shoes; where price > 5; freq distinct(item.sku) != 0; window ever]",
        ),
        // `distinct` stays a name and a value wherever no `(` follows it.
        ("distinct = 3", "[trait distinct = 3]"),
        ("purchased distinct 3", "[event purchased; distinct = 3]"),
        ("kind = distinct", "[trait kind = distinct]"),
        (
            "first distinct(a) = 0",
            "[event first; freq distinct(a) = 0]",
        ),
        (
            "distinct in last 7 days",
            "[event distinct; window in last 7 days]",
        ),
    ] {
        let ast = parse(rule).unwrap_or_else(|e| panic!("{rule}\n{}", e.render()));
        assert_eq!(tree(&ast.expr), meaning, "{rule}");
        check(rule, "distinct counts");
    }
}

#[test]
fn buckets_mean_what_the_spec_says() {
    for (rule, meaning) in [
        ("bucket(checkout_2026) < 50", "[bucket checkout_2026 < 50]"),
        (
            "in audience cart_abandoners and not BUCKET( holdout ) < 5",
            "(and [audience cart_abandoners] (not [bucket holdout < 5]))",
        ),
        ("bucket(x) between 0 and 99", "[bucket x between 0 and 99]"),
        (
            "bucket(x) not in (1, -2, 300)",
            "[bucket x not in (1, -2, 300)]",
        ),
        ("bucket(set) = 0", "[bucket set = 0]"),
        // `bucket` stays a name and a value wherever no `(` follows it.
        ("bucket = 3", "[trait bucket = 3]"),
        ("kind = bucket", "[trait kind = bucket]"),
        (
            "bucket in last 7 days",
            "[event bucket; window in last 7 days]",
        ),
        ("bucket in (a, b)", "[trait bucket in (a, b)]"),
    ] {
        let ast = parse(rule).unwrap_or_else(|e| panic!("{rule}\n{}", e.render()));
        assert_eq!(tree(&ast.expr), meaning, "{rule}");
        check(rule, "buckets");
    }
}

#[test]
fn first_and_last_mean_what_the_spec_says() {
    for (rule, meaning) in [
        (
            "first purchased in last 30 days",
            "[first purchased in last 30 days]",
        ),
        (
            "LAST purchased before 180 days ago",
            "[last purchased before 180 days ago]",
        ),
        (
            "first viewed product X where price > 3 since 2026-01-01 and tier = Gold",
            "(and [first viewed product X where price > 3 since 2026-01-01] [trait tier = Gold])",
        ),
        (
            "not last did \"Order Completed\" between 2026-01-01 and 2026-01-31",
            "(not [last did \"Order Completed\" between 2026-01-01 and 2026-01-31])",
        ),
        // `first` stays a name and a value wherever no event follows it.
        ("position = first", "[trait position = first]"),
        ("first = 1", "[trait first = 1]"),
        (
            "first in last 7 days",
            "[event first; window in last 7 days]",
        ),
        ("first", "[event first]"),
        ("did first purchased X", "[event first; purchased = X]"),
        ("first first in last 7 days", "[first first in last 7 days]"),
        ("in audience first", "[audience first]"),
    ] {
        let ast = parse(rule).unwrap_or_else(|e| panic!("{rule}\n{}", e.render()));
        assert_eq!(tree(&ast.expr), meaning, "{rule}");
        check(rule, "first and last");
    }
}

#[test]
fn sequences_mean_what_the_spec_says() {
    for (rule, meaning) in [
        (
            "added_to_cart then purchased within 1 day",
            "[sequence step added_to_cart; step purchased; within 1 day]",
        ),
        (
            "added_to_cart then not purchased within 1 hour in last 7 days",
            "[sequence step added_to_cart; step purchased; negated; within 1 hour; window in last 7 days]",
        ),
        (
            "viewed then not purchased with same product within 1 day in last 7 days",
            "[sequence step viewed; step purchased; negated; same product; within 1 day; window in last 7 days]",
        ),
        (
            "visited then viewed product X then purchased within 7 days",
            "[sequence step visited; step viewed product X; step purchased; within 7 days]",
        ),
        (
            "did a where x = 1 then b then c within 2 minutes and tier = Gold",
            "(and [sequence step a where x = 1; step b; step c; within 2 minutes] [trait tier = Gold])",
        ),
        (
            "not a then b within 1 day or c",
            "(or (not [sequence step a; step b; within 1 day]) [event c])",
        ),
    ] {
        let ast = parse(rule).unwrap_or_else(|e| panic!("{rule}\n{}", e.render()));
        assert_eq!(tree(&ast.expr), meaning, "{rule}");
        check(rule, "sequences");
    }
}

#[test]
fn the_spec_examples_mean_what_the_spec_says() {
    for (rule, meaning) in [
        (
            "viewed product X in last 30 days and tier = Gold",
            "(and [event viewed; product = X; window in last 30 days] [trait tier = Gold])",
        ),
        (
            "purchased at least 3 times in last 90 days",
            "[event purchased; freq at least 3 times; window in last 90 days]",
        ),
        (
            "purchased ever and not purchased in last 6 months",
            "(and [event purchased; window ever] (not [event purchased; window in last 6 months]))",
        ),
        (
            "added_to_cart in last 1 day and not purchased in last 1 day",
            "(and [event added_to_cart; window in last 1 day] (not [event purchased; window in last 1 day]))",
        ),
        (
            "visited at least 3 times in last 7 days and not purchased in last 7 days",
            "(and [event visited; freq at least 3 times; window in last 7 days] (not [event purchased; window in last 7 days]))",
        ),
        (
            "purchased sum(amount) > 500 in last 365 days",
            "[event purchased; freq sum(amount) > 500; window in last 365 days]",
        ),
        (
            "purchased where category = kids ever and not in audience unsubscribed",
            "(and [event purchased; where category = kids; window ever] (not [audience unsubscribed]))",
        ),
        (
            "not visited before 7 days ago and visited in last 7 days",
            "(and (not [event visited; window before 7 days ago]) [event visited; window in last 7 days])",
        ),
        (
            "country in (FI, SE) and (device = mobile or source = facebook)",
            "(and [trait country in (FI, SE)] (or [trait device = mobile] [trait source = facebook]))",
        ),
        // Precedence and the ambiguities of grammar/README.md.
        (
            "not a = 1 and b = 2 or c = 3",
            "(or (and (not [trait a = 1]) [trait b = 2]) [trait c = 3])",
        ),
        (
            "viewed where a = 1 and tier = Gold",
            "(and [event viewed; where a = 1] [trait tier = Gold])",
        ),
        (
            "purchased between 2026-01-01 and 2026-01-31",
            "[event or trait purchased between 2026-01-01 and 2026-01-31]",
        ),
        (
            "not viewed between 30 days ago and 2026-01-31T12:00:00Z",
            "(not [event or trait viewed between 30 days ago and 2026-01-31T12:00:00.000Z])",
        ),
        // Only time points at both ends, and only a plain name, read as an event too.
        (
            "age between 25 and 34",
            "[trait age between 25 and 34]",
        ),
        (
            "signup_at between 2026-01-01 and 40",
            "[trait signup_at between 2026-01-01 and 40]",
        ),
        (
            "address.since between 2026-01-01 and 2026-01-31",
            "[trait address.since between 2026-01-01 and 2026-01-31]",
        ),
        (
            "did purchased between 2026-01-01 and 2026-01-31 and x = 1",
            "(and [event purchased; window between 2026-01-01 and 2026-01-31] [trait x = 1])",
        ),
        (
            "tier",
            "[event tier]",
        ),
        (
            "country not in (FI) or not in audience x",
            "(or [trait country not in (FI)] (not [audience x]))",
        ),
    ] {
        let parsed = parse(rule).unwrap_or_else(|e| panic!("{rule}\n{}", e.render()));
        assert_eq!(tree(&parsed.expr), meaning, "{rule}");
    }
}
