//! Robustness: limits on nesting and length give clear errors, pathological inputs parse in linear
//! time (these finish at once; `benches/parse.rs` guards their speed), and nothing panics.

use audiencedb::rules::{parse, print, ExprKind, MAX_DEPTH, MAX_RULE_LEN};
use proptest::prelude::*;

fn nested_parens(depth: usize) -> String {
    format!("{}tier = Gold{}", "(".repeat(depth), ")".repeat(depth))
}

#[test]
fn nesting_up_to_the_limit_parses() {
    assert!(parse(&nested_parens(MAX_DEPTH)).is_ok());
    let nots = format!("{}tier = Gold", "not ".repeat(MAX_DEPTH));
    assert!(parse(&nots).is_ok());
    let pred = format!(
        "purchased where {}a = 1{}",
        "(".repeat(MAX_DEPTH),
        ")".repeat(MAX_DEPTH)
    );
    assert!(parse(&pred).is_ok());
}

#[test]
fn deeper_nesting_is_a_clear_error() {
    let e = parse(&nested_parens(200)).unwrap_err();
    assert_eq!(
        e.message(),
        "the rule is nested too deeply: more than 64 levels of parentheses and 'not'"
    );
    assert_eq!(
        e.column(),
        MAX_DEPTH + 1,
        "points at the first '(' too many"
    );
    let e = parse(&format!("{}tier = Gold", "not ".repeat(200))).unwrap_err();
    assert!(e.message().contains("nested too deeply"), "{e}");
    let e = parse(&format!(
        "purchased where {}a = 1{}",
        "(".repeat(200),
        ")".repeat(200)
    ))
    .unwrap_err();
    assert!(e.message().contains("nested too deeply"), "{e}");
}

#[test]
fn a_thousand_open_parentheses_fail_fast() {
    let e = parse(&"(".repeat(1000)).unwrap_err();
    assert!(e.message().contains("nested too deeply"), "{e}");
    let e = parse(&"(".repeat(30_000)).unwrap_err();
    assert!(e.message().contains("nested too deeply"), "{e}");
}

#[test]
fn ten_thousand_term_chains_parse() {
    let and_chain = vec!["x"; 10_000].join(" and ");
    assert!(and_chain.len() <= MAX_RULE_LEN);
    let rule = parse(&and_chain).unwrap();
    match &rule.expr.kind {
        ExprKind::And(items) => assert_eq!(items.len(), 10_000),
        other => panic!("not an and chain: {other:?}"),
    }
    assert_eq!(print(&rule), and_chain);
    let or_chain = vec!["a=1"; 9_000].join(" or ");
    assert!(or_chain.len() <= MAX_RULE_LEN);
    assert!(parse(&or_chain).is_ok());
    let list = format!("x in ({})", vec!["1"; 20_000].join(","));
    assert!(parse(&list).is_ok());
}

#[test]
fn long_rules_are_refused_with_a_clear_error() {
    let rule = format!("tier = \"{}\"", "x".repeat(MAX_RULE_LEN));
    let e = parse(&rule).unwrap_err();
    assert_eq!(
        e.message(),
        format!(
            "the rule is too long: {} bytes, the limit is 65536",
            rule.len()
        )
    );
    // Multi-byte characters around the limit never split a character.
    let rule = "é".repeat(MAX_RULE_LEN);
    assert!(parse(&rule).is_err());
}

#[test]
fn pathological_inputs_finish() {
    for input in [
        "not ".repeat(16_000),
        "a ".repeat(30_000),
        "x = ".repeat(15_000),
        "\"".repeat(60_000),
        format!("\"{}", "\\\\".repeat(30_000)),
        "( ) ".repeat(15_000),
        "a and (".repeat(9_000),
        "in audience ".repeat(5_000),
        "viewed product X in last 30 days ".repeat(1_900),
        "x between 1 and ".repeat(4_000),
        "purchased where (a = 1 or ".repeat(2_000),
        "\u{0}\u{1}é€𝄞".repeat(5_000),
    ] {
        assert!(parse(&input).is_err(), "{}", &input[..40]);
    }
}

/// Words and symbols of the language, for generating near-rules.
const VOCABULARY: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "the",
    "last",
    "ever",
    "since",
    "before",
    "between",
    "where",
    "at",
    "least",
    "most",
    "exactly",
    "time",
    "times",
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "is",
    "set",
    "contains",
    "audience",
    "everyone",
    "ago",
    "did",
    "true",
    "false",
    "days",
    "week",
    "(",
    ")",
    ",",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "tier",
    "Gold",
    "viewed",
    "product",
    "amount",
    "30",
    "-3",
    "19.90",
    "2026-01-01",
    "2026-01-01T00:00:00Z",
    "\"q\"",
    "'s'",
    "a.b",
    "sku-1",
    "\"",
    "\\",
    "é",
];

const EXAMPLES: &str = include_str!("../grammar/examples.txt");

fn example_rules() -> Vec<&'static str> {
    EXAMPLES
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l.split_once("  # ").map_or(l, |(rule, _)| rule).trim())
        .collect()
}

/// Parsing never panics; whatever parses prints to text that parses to the same rule.
fn check_no_panic_and_round_trip(input: &str) -> Result<(), TestCaseError> {
    if let Ok(rule) = parse(input) {
        let printed = print(&rule);
        let again = parse(&printed)
            .map_err(|e| TestCaseError::fail(format!("{input:?} printed as {printed:?}: {e}")))?;
        prop_assert_eq!(&again, &rule, "{:?} printed as {:?}", input, printed);
        prop_assert_eq!(print(&again), printed);
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![
        prop::sample::select(VOCABULARY).prop_map(|w| format!(" {w} ")),
        prop::sample::select(VOCABULARY).prop_map(str::to_string),
        any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete(at, len)),
        (any::<usize>(), word).prop_map(|(at, w)| Mutation::Insert(at, w)),
        (any::<usize>(), 1usize..20).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(rule: &str, mutations: &[Mutation]) -> String {
    let mut chars: Vec<char> = rule.chars().collect();
    for m in mutations {
        let n = chars.len().max(1);
        match m {
            Mutation::Delete(at, len) => {
                let at = at % n;
                let end = (at + len).min(chars.len());
                chars.drain(at.min(end)..end);
            }
            Mutation::Insert(at, w) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, w.chars());
            }
            Mutation::Duplicate(at, len) => {
                let at = at % n;
                let end = (at + len).min(chars.len());
                let copy: Vec<char> = chars[at.min(end)..end].to_vec();
                chars.splice(end..end, copy);
            }
            Mutation::Truncate(at) => chars.truncate(at % n),
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_text_never_panics(input in any::<String>()) {
        check_no_panic_and_round_trip(&input)?;
    }

    #[test]
    fn vocabulary_soup_never_panics(words in prop::collection::vec(prop::sample::select(VOCABULARY), 0..30)) {
        check_no_panic_and_round_trip(&words.join(" "))?;
    }

    #[test]
    fn mutated_examples_never_panic(
        index in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let rules = example_rules();
        let rule = rules[index.index(rules.len())];
        check_no_panic_and_round_trip(&apply(rule, &mutations))?;
    }
}
