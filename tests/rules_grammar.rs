//! Every example rule parses, and printing it is a fixed point: the examples in
//! `grammar/examples.txt` and the Examples table of the spec (`../shared/spec/rules.md`, when the
//! spec is checked out beside the crate).

use std::path::Path;

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

/// The rules in the spec's Examples table: the first backquoted cell of each row after the
/// "## Examples" heading.
fn spec_examples(spec: &str) -> Vec<String> {
    let Some(start) = spec.find("## Examples") else {
        return Vec::new();
    };
    spec[start..]
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
fn every_spec_example_parses_and_is_kept_in_the_grammar_examples() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/spec/rules.md");
    let Ok(spec) = std::fs::read_to_string(&path) else {
        eprintln!("{} is absent: skipping the spec's examples", path.display());
        return;
    };
    let examples = spec_examples(&spec);
    assert!(
        examples.len() >= 9,
        "found only {} examples in the spec",
        examples.len()
    );
    let ours: Vec<String> = grammar_examples().into_iter().map(|(_, r)| r).collect();
    for rule in examples {
        check(&rule, "rules.md");
        assert!(
            ours.contains(&rule),
            "grammar/examples.txt lacks the spec example {rule}"
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
