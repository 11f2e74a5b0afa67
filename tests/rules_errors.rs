//! The exact messages of typical mistakes: each bad rule gets one error with its line and column,
//! the source line, a caret under the spot, what was expected and, for a near miss, a suggestion.

use audiencedb::rules::parse;

/// (what the mistake is, the rule, the rendered error).
const CASES: &[(&str, &str, &str)] = &[
    (
        "a distinct count compared with a decimal",
        "purchased distinct(product) >= 2.5",
        r#"error: expected a whole number after '>=', found '2.5'
 --> line 1, column 32
  |
1 | purchased distinct(product) >= 2.5
  |                                ^^^"#,
    ),
    (
        "a distinct count compared with a negative number",
        "purchased distinct(product) >= -1",
        r#"error: expected a whole number after '>=', found '-1'
 --> line 1, column 32
  |
1 | purchased distinct(product) >= -1
  |                                ^^"#,
    ),
    (
        "a distinct count without a property",
        "purchased distinct() > 1",
        r#"error: expected a property name after '(', found ')'
 --> line 1, column 20
  |
1 | purchased distinct() > 1
  |                    ^"#,
    ),
    (
        "a distinct count not closed",
        "purchased distinct(product >= 3",
        r#"error: expected ')', found '>='
 --> line 1, column 28
  |
1 | purchased distinct(product >= 3
  |                            ^^"#,
    ),
    (
        "a distinct count without a comparison",
        "purchased distinct(product)",
        r#"error: expected a comparison operator (=, !=, <, <=, >, >=) after ')', found the end of the rule
 --> line 1, column 28
  |
1 | purchased distinct(product)
  |                            ^"#,
    ),
    (
        "a distinct count after another frequency",
        "purchased count > 1 distinct(product) > 1",
        r#"error: expected 'and', 'or' or the end of the rule after '1', found 'distinct'
 --> line 1, column 21
  |
1 | purchased count > 1 distinct(product) > 1
  |                     ^^^^^^^^"#,
    ),
    (
        "a bucket compared with a decimal",
        "bucket(exp) < 49.5",
        r#"error: 'bucket(NAME)' is a whole number 0 to 99: compare it with whole numbers (`bucket(checkout) < 50`)
 --> line 1, column 15
  |
1 | bucket(exp) < 49.5
  |               ^^^^"#,
    ),
    (
        "a bucket compared with text",
        "bucket(exp) in (1, two)",
        r#"error: 'bucket(NAME)' is a whole number 0 to 99: compare it with whole numbers (`bucket(checkout) < 50`)
 --> line 1, column 20
  |
1 | bucket(exp) in (1, two)
  |                    ^^^"#,
    ),
    (
        "a bucket with contains",
        "bucket(exp) contains 5",
        r#"error: 'bucket(NAME)' is a whole number 0 to 99 that every customer has: compare it with =, !=, <, <=, >, >=, in, not in or between
 --> line 1, column 13
  |
1 | bucket(exp) contains 5
  |             ^^^^^^^^^^"#,
    ),
    (
        "a bucket without a test",
        "bucket(exp) and tier = Gold",
        r#"error: expected a comparison after 'bucket(NAME)' (=, !=, <, <=, >, >=, in, not in, between), found keyword 'and'
 --> line 1, column 13
  |
1 | bucket(exp) and tier = Gold
  |             ^^^"#,
    ),
    (
        "a bucket without a name",
        "bucket() < 5",
        r#"error: expected the name of a split in 'bucket(NAME)': letters, digits and `_`, not starting with a digit (`bucket(checkout_2026) < 50`), found ')'
 --> line 1, column 8
  |
1 | bucket() < 5
  |        ^"#,
    ),
    (
        "a bucket with a quoted name",
        "bucket(\"exp\") < 5",
        r#"error: expected the name of a split in 'bucket(NAME)': letters, digits and `_`, not starting with a digit (`bucket(checkout_2026) < 50`), found '"exp"'
 --> line 1, column 8
  |
1 | bucket("exp") < 5
  |        ^^^^^"#,
    ),
    (
        "a bucket not closed",
        "bucket(exp < 5",
        r#"error: expected 'and', 'or' or ')' to close the '(' at column 7 after 'exp', found '<'
 --> line 1, column 12
  |
1 | bucket(exp < 5
  |            ^"#,
    ),
    (
        "a frequency on first",
        "first purchased at least 2 times in last 30 days",
        r#"error: 'first' takes no frequency: it is about one event, the customer's first `purchased`; write the frequency as its own condition
 --> line 1, column 17
  |
1 | first purchased at least 2 times in last 30 days
  |                 ^^^^^^^^^^^^^^^^"#,
    ),
    (
        "last without an event",
        "last in last 7 days",
        r#"error: expected an event name (a name, or a quoted string) after 'last', found keyword 'in'
 --> line 1, column 6
  |
1 | last in last 7 days
  |      ^^"#,
    ),
    (
        "a sequence starting with last",
        "last viewed then purchased within 1 day",
        r#"error: a sequence cannot start with 'last': its steps are plain events (`A then B within T`)
 --> line 1, column 13
  |
1 | last viewed then purchased within 1 day
  |             ^^^^"#,
    ),
    (
        "a sequence without within",
        "added_to_cart then purchased in last 7 days",
        r#"error: a sequence needs 'within' and a length before its window: `A then B within 1 day in last 7 days`
 --> line 1, column 30
  |
1 | added_to_cart then purchased in last 7 days
  |                              ^^^^^^^^^^^^^^"#,
    ),
    (
        "a window on the first step of a sequence",
        "added_to_cart in last 7 days then purchased within 1 hour",
        r#"error: a step of a sequence takes no window: write one window at the end, after 'within T'; it applies to the first step
 --> line 1, column 15
  |
1 | added_to_cart in last 7 days then purchased within 1 hour
  |               ^^^^^^^^^^^^^^"#,
    ),
    (
        "a frequency on a step of a sequence",
        "viewed then purchased at least 2 times within 1 day",
        r#"error: a step of a sequence takes no frequency: each step is one event (`A then B within T`)
 --> line 1, column 23
  |
1 | viewed then purchased at least 2 times within 1 day
  |                       ^^^^^^^^^^^^^^^^"#,
    ),
    (
        "a sequence ending without within",
        "viewed then purchased",
        r#"error: expected 'then', 'with same' or 'within' and a length of time (a sequence needs one: `A then B within 1 day`) after 'purchased', found the end of the rule
 --> line 1, column 22
  |
1 | viewed then purchased
  |                      ^"#,
    ),
    (
        "then not after the second step",
        "visited then viewed then not purchased within 1 day",
        r#"error: 'then not' must follow the first step: a sequence with 'then not' has exactly two steps, `A then not B within T`
 --> line 1, column 26
  |
1 | visited then viewed then not purchased within 1 day
  |                          ^^^"#,
    ),
    (
        "within 0",
        "viewed then purchased within 0 days",
        r#"error: 'within 0' leaves no time between the steps; give a length of at least 1
 --> line 1, column 23
  |
1 | viewed then purchased within 0 days
  |                       ^^^^^^^^^^^^^"#,
    ),
    (
        "with without same",
        "viewed then purchased with product within 1 day",
        r#"error: expected 'same' after 'with', found 'product'
 --> line 1, column 28
  |
1 | viewed then purchased with product within 1 day
  |                            ^^^^^^^"#,
    ),
    (
        "missing value",
        "tier =",
        r#"error: expected a value after '=', found the end of the rule
 --> line 1, column 7
  |
1 | tier =
  |       ^"#,
    ),
    (
        "unclosed quote",
        "tier = \"Gold",
        r#"error: unclosed string: no closing " for this quote
 --> line 1, column 8
  |
1 | tier = "Gold
  |        ^"#,
    ),
    (
        "unclosed parenthesis",
        "(tier = Gold or age > 3",
        r#"error: expected ')' to close the '(' at column 1, found the end of the rule
 --> line 1, column 24
  |
1 | (tier = Gold or age > 3
  |                        ^"#,
    ),
    (
        "unclosed parenthesis on a later line",
        "a = 1 or\n  b = 2 and\n  (c = 3",
        r#"error: expected ')' to close the '(' at line 3, column 3, found the end of the rule
 --> line 3, column 9
  |
3 |   (c = 3
  |         ^"#,
    ),
    (
        "unmatched closing parenthesis",
        "tier = Gold)",
        r#"error: unmatched ')': there is no '(' before it
 --> line 1, column 12
  |
1 | tier = Gold)
  |            ^"#,
    ),
    (
        "a filter of two conditions without parentheses",
        "purchased where category = shoes and amount >= 60 in last 45 days",
        r#"error: expected 'and', 'or' or the end of the rule after '60', found keyword 'in'
 --> line 1, column 51
  |
1 | purchased where category = shoes and amount >= 60 in last 45 days
  |                                                   ^^
  = help: a `where` filter ends at its first 'and' or 'or'; to filter the event by every condition, put them in parentheses: `where (a = 1 and b >= 2) in last 30 days`"#,
    ),
    (
        "a second window after a windowed filter: no help about parentheses",
        "purchased where category = shoes in last 45 days and tier = Gold in last 3 days",
        r#"error: expected 'and', 'or' or the end of the rule after 'Gold', found keyword 'in'
 --> line 1, column 66
  |
1 | purchased where category = shoes in last 45 days and tier = Gold in last 3 days
  |                                                                  ^^"#,
    ),
    (
        "window without a number",
        "viewed in last days",
        r#"error: expected a number after 'last', found keyword 'days'
 --> line 1, column 16
  |
1 | viewed in last days
  |                ^^^^"#,
    ),
    (
        "frequency without a number",
        "purchased at least times",
        r#"error: expected a number after 'at least', found keyword 'times'
 --> line 1, column 20
  |
1 | purchased at least times
  |                    ^^^^^"#,
    ),
    (
        "frequency without times",
        "purchased at least 3",
        r#"error: expected 'times' after 'at least 3', found the end of the rule
 --> line 1, column 21
  |
1 | purchased at least 3
  |                     ^"#,
    ),
    (
        "dangling and",
        "tier = Gold and",
        r#"error: expected a condition after 'and', found the end of the rule
 --> line 1, column 16
  |
1 | tier = Gold and
  |                ^"#,
    ),
    (
        "dangling or in a where predicate",
        "purchased where (amount > 3 or)",
        r#"error: expected a property condition after 'or', found ')'
 --> line 1, column 31
  |
1 | purchased where (amount > 3 or)
  |                               ^"#,
    ),
    (
        "unknown unit",
        "viewed in last 30 fortnights",
        r#"error: expected a time unit (minutes, hours, days, weeks, months or years) after '30', found 'fortnights'
 --> line 1, column 19
  |
1 | viewed in last 30 fortnights
  |                   ^^^^^^^^^^"#,
    ),
    (
        "misspelt unit",
        "viewed in last 30 dyas",
        r#"error: unknown unit 'dyas', did you mean 'days'?
 --> line 1, column 19
  |
1 | viewed in last 30 dyas
  |                   ^^^^ expected a time unit (minutes, hours, days, weeks, months or years)"#,
    ),
    (
        "misspelt unit before ago",
        "signup_at > 3 hrs ago",
        r#"error: expected a time unit (minutes, hours, days, weeks, months or years) after '3', found 'hrs'
 --> line 1, column 15
  |
1 | signup_at > 3 hrs ago
  |               ^^^"#,
    ),
    (
        "bad date",
        "purchased since 2026-02-30",
        r#"error: invalid date '2026-02-30'
 --> line 1, column 17
  |
1 | purchased since 2026-02-30
  |                 ^^^^^^^^^^ expected a calendar date as YYYY-MM-DD"#,
    ),
    (
        "bad date-time",
        "x = 2026-01-01T25:00:00Z",
        r#"error: invalid date-time '2026-01-01T25:00:00Z'
 --> line 1, column 5
  |
1 | x = 2026-01-01T25:00:00Z
  |     ^^^^^^^^^^^^^^^^^^^^ expected an RFC 3339 date-time like 2026-03-01T12:00:00Z"#,
    ),
    (
        "misspelt keyword in a window",
        "viewed in lst 30 days",
        r#"error: unknown keyword 'lst', did you mean 'last'?
 --> line 1, column 11
  |
1 | viewed in lst 30 days
  |           ^^^ expected 'last' or 'the last'"#,
    ),
    (
        "misspelt keyword after a condition",
        "viewed ever adn tier = Gold",
        r#"error: unknown keyword 'adn', did you mean 'and'?
 --> line 1, column 13
  |
1 | viewed ever adn tier = Gold
  |             ^^^ expected 'and', 'or', or more of the event condition"#,
    ),
    (
        "misspelt window keyword after an event",
        "viewed evr",
        r#"error: unknown keyword 'evr', did you mean 'ever'?
 --> line 1, column 8
  |
1 | viewed evr
  |        ^^^ expected 'where', a frequency, a window, or a property and its value"#,
    ),
    (
        "misspelt frequency keyword",
        "purchased at lest 3 times",
        r#"error: unknown keyword 'lest', did you mean 'least'?
 --> line 1, column 14
  |
1 | purchased at lest 3 times
  |              ^^^^ expected 'least' or 'most'"#,
    ),
    (
        "keyword as a value",
        "source = last",
        r#"error: expected a value, found keyword 'last'; quote it to use it as a value: "last"
 --> line 1, column 10
  |
1 | source = last
  |          ^^^^"#,
    ),
    (
        "quoted event name without did",
        "\"Product Viewed\" ever",
        r#"error: a quoted event name needs 'did' before it: did "Product Viewed"
 --> line 1, column 1
  |
1 | "Product Viewed" ever
  | ^^^^^^^^^^^^^^^^"#,
    ),
    (
        "audience without a name",
        "in audience",
        r#"error: expected an audience name after 'audience', found the end of the rule
 --> line 1, column 12
  |
1 | in audience
  |            ^"#,
    ),
    (
        "unexpected character",
        "tier = Gold & age > 3",
        r#"error: unexpected character '&'
 --> line 1, column 13
  |
1 | tier = Gold & age > 3
  |             ^ expected 'and'"#,
    ),
    (
        "unknown escape",
        "x = \"a\\qb\"",
        r#"error: unknown escape '\q' in a string
 --> line 1, column 7
  |
1 | x = "a\qb"
  |       ^^ expected one of \" \' \\ \n \t \u{...}"#,
    ),
    (
        "unclosed list",
        "country in (FI, SE",
        r#"error: expected ',' or ')' to close the list opened at column 12, found the end of the rule
 --> line 1, column 19
  |
1 | country in (FI, SE
  |                   ^"#,
    ),
    (
        "empty rule",
        "",
        r#"error: expected a condition, found the end of the rule
 --> line 1, column 1
  |
1 | 
  | ^"#,
    ),
    (
        "relative time without ago",
        "signup_at > 30 days",
        r#"error: expected 'ago' after '30 days', found the end of the rule
 --> line 1, column 20
  |
1 | signup_at > 30 days
  |                    ^"#,
    ),
    (
        "aggregate of text",
        "purchased sum(amount) > lots",
        r#"error: expected a number after '>', found 'lots'
 --> line 1, column 25
  |
1 | purchased sum(amount) > lots
  |                         ^^^^"#,
    ),
    (
        "not without parentheses in where",
        "purchased where not a = 1",
        r#"error: expected a property condition after 'where', found keyword 'not'
 --> line 1, column 17
  |
1 | purchased where not a = 1
  |                 ^^^ expected a comparison like amount > 3, or a predicate in parentheses like (not a = 1)"#,
    ),
    (
        "empty window",
        "purchased in last 0 days",
        r#"error: a window of length 0 is always empty; give a length of at least 1
 --> line 1, column 11
  |
1 | purchased in last 0 days
  |           ^^^^^^^^^^^^^^"#,
    ),
    (
        "number too large",
        "age > 99999999999999999999",
        r#"error: the number 99999999999999999999 does not fit 64 bits; quote it to use it as text
 --> line 1, column 7
  |
1 | age > 99999999999999999999
  |       ^^^^^^^^^^^^^^^^^^^^"#,
    ),
    (
        "trait without a test",
        "address.city",
        r#"error: expected a comparison after trait 'address.city' (=, !=, <, <=, >, >=, in, not in, between, contains, is), found the end of the rule
 --> line 1, column 13
  |
1 | address.city
  |             ^"#,
    ),
    (
        "between without and",
        "age between 3",
        r#"error: expected 'and' after '3', found the end of the rule
 --> line 1, column 14
  |
1 | age between 3
  |              ^"#,
    ),
    (
        "is without set",
        "email is",
        r#"error: expected 'set' or 'not set' after 'is', found the end of the rule
 --> line 1, column 9
  |
1 | email is
  |         ^"#,
    ),
    (
        "misspelt not",
        "nto purchased in last 6 months",
        r#"error: unknown keyword 'nto', did you mean 'not'?
 --> line 1, column 1
  |
1 | nto purchased in last 6 months
  | ^^^ expected a condition"#,
    ),
    (
        "misspelt did",
        "dd \"Product Viewed\"",
        r#"error: unknown keyword 'dd', did you mean 'did'?
 --> line 1, column 1
  |
1 | dd "Product Viewed"
  | ^^ expected a condition"#,
    ),
    (
        "a symbol the language does not use",
        "tier = Gold; age > 3",
        r#"error: unexpected character ';'
 --> line 1, column 12
  |
1 | tier = Gold; age > 3
  |            ^ expected a word, a quoted string, '(', ')', ',' or a comparison operator"#,
    ),
];

#[test]
fn typical_mistakes_have_exact_messages() {
    let mut failures = Vec::new();
    for (what, rule, expected) in CASES {
        match parse(rule) {
            Ok(ast) => failures.push(format!("{what}: {rule:?} parsed as {ast}")),
            Err(e) if e.render() != *expected => failures.push(format!(
                "{what}: {rule:?}\n--- expected\n{expected}\n--- got\n{}",
                e.render()
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_error_knows_its_position_and_suggestion() {
    let e = parse("viewed in last 30 dyas").unwrap_err();
    assert_eq!((e.line(), e.column()), (1, 19));
    assert_eq!((e.span().start, e.span().end), (18, 22));
    assert_eq!(e.suggestion(), Some("days"));
    assert_eq!(
        e.to_string(),
        "line 1, column 19: unknown unit 'dyas', did you mean 'days'?"
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let e = parse("city = \"São Paulo\" adn x = 1").unwrap_err();
    assert_eq!(e.column(), 20);
    assert!(e
        .render()
        .ends_with("                   ^^^ expected 'and', 'or' or the end of the rule"));
}

#[test]
fn tabs_keep_the_caret_aligned() {
    let e = parse("\ttier =").unwrap_err();
    assert!(e.render().ends_with("  | \t      ^"), "{}", e.render());
}
