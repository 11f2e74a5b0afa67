//! The printer and the parser agree on every AST: `parse(print(ast)) == ast` for generated ASTs
//! covering every construct, and `print` of a parsed rule is a fixed point.
//!
//! Equality ignores spans (a `Span` equals every other), so generated nodes use default spans.

use audiencedb::rules::words::{is_bare_text, is_keyword};
use audiencedb::rules::*;
use chrono::NaiveDate;
use proptest::prelude::*;

fn sp() -> Span {
    Span::default()
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => "[A-Za-z_][A-Za-z0-9_]{0,8}".prop_filter("not a keyword", |s| !is_keyword(s)),
        // `first` is a keyword only before an event at the start of a condition.
        1 => prop::sample::select(vec!["first".to_owned(), "First".to_owned()]),
    ]
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(name(), 1..=3).prop_map(|segments| Path {
        text: segments.join("."),
        span: sp(),
    })
}

fn op() -> impl Strategy<Value = CmpOp> {
    prop::sample::select(CmpOp::ALL.to_vec())
}

fn unit() -> impl Strategy<Value = Unit> {
    prop::sample::select(Unit::ALL.to_vec())
}

fn duration(min: u32) -> impl Strategy<Value = Duration> {
    (min..=100_000u32, unit()).prop_map(|(amount, unit)| Duration { amount, unit })
}

fn number() -> impl Strategy<Value = Number> {
    prop_oneof![
        any::<i64>().prop_map(|value| Number::Int {
            value,
            text: value.to_string()
        }),
        // Leading zeros are kept as written.
        (any::<bool>(), 0usize..3, 0i64..1_000_000).prop_map(|(negative, zeros, abs)| {
            let sign = if negative { "-" } else { "" };
            let text = format!("{sign}{}{abs}", "0".repeat(zeros));
            Number::Int {
                value: if negative { -abs } else { abs },
                text,
            }
        }),
        (any::<bool>(), 0u64..1_000_000, "[0-9]{1,4}").prop_map(|(negative, int, frac)| {
            let sign = if negative { "-" } else { "" };
            Number::Decimal {
                text: format!("{sign}{int}.{frac}"),
            }
        }),
    ]
}

fn date() -> impl Strategy<Value = NaiveDate> {
    (0i64..47_000).prop_map(|days| {
        NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|d| d.checked_add_days(chrono::Days::new(days.unsigned_abs())))
            .unwrap_or_default()
    })
}

fn date_time() -> impl Strategy<Value = i64> {
    0i64..4_102_444_800_000
}

/// A value; `N unit ago` only where `allow_ago`.
fn literal(allow_ago: bool) -> impl Strategy<Value = Literal> {
    let plain = prop_oneof![
        "(?s).{0,10}".prop_map(|text| LiteralKind::Str { text, quoted: true }),
        "[A-Za-zé_][A-Za-z0-9_.:@/+-]{0,10}"
            .prop_filter("reads as a bare string", |s| is_bare_text(s))
            .prop_map(|text| LiteralKind::Str {
                text,
                quoted: false
            }),
        number().prop_map(LiteralKind::Number),
        any::<bool>().prop_map(LiteralKind::Bool),
        date().prop_map(LiteralKind::Date),
        date_time().prop_map(LiteralKind::DateTime),
    ];
    let kind = if allow_ago {
        prop_oneof![4 => plain, 1 => duration(0).prop_map(LiteralKind::Ago)].boxed()
    } else {
        plain.boxed()
    };
    kind.prop_map(|kind| Literal { kind, span: sp() })
}

fn test() -> impl Strategy<Value = Test> {
    prop_oneof![
        (op(), literal(true)).prop_map(|(op, value)| Test::Compare { op, value }),
        (any::<bool>(), prop::collection::vec(literal(true), 1..4))
            .prop_map(|(negated, values)| Test::In { negated, values }),
        (literal(true), literal(true)).prop_map(|(low, high)| Test::Between { low, high }),
        literal(true).prop_map(Test::Contains),
        any::<bool>().prop_map(|negated| Test::IsSet { negated }),
    ]
}

fn condition() -> impl Strategy<Value = TraitCondition> {
    (path(), test()).prop_map(|(path, test)| TraitCondition {
        path,
        test,
        span: sp(),
    })
}

fn predicate() -> impl Strategy<Value = Predicate> {
    let leaf = condition().prop_map(|c| Predicate {
        kind: PredicateKind::Cond(c),
        span: sp(),
    });
    leaf.prop_recursive(4, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(PredicateKind::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(PredicateKind::Or),
            inner.prop_map(|p| PredicateKind::Not(Box::new(p))),
        ]
        .prop_map(|kind| Predicate { kind, span: sp() })
    })
}

fn frequency() -> impl Strategy<Value = Frequency> {
    prop_oneof![
        any::<u64>().prop_map(FrequencyKind::AtLeast),
        any::<u64>().prop_map(FrequencyKind::AtMost),
        (0u64..3).prop_map(FrequencyKind::Exactly),
        (op(), any::<u64>()).prop_map(|(op, count)| FrequencyKind::Count { op, count }),
        (
            prop::sample::select(AggregateFn::ALL.to_vec()),
            path(),
            op(),
            number()
        )
            .prop_map(|(func, property, op, value)| FrequencyKind::Aggregate {
                func,
                property,
                op,
                value
            }),
        (path(), op(), any::<u64>()).prop_map(|(property, op, count)| FrequencyKind::Distinct {
            property,
            op,
            count
        }),
    ]
    .prop_map(|kind| Frequency { kind, span: sp() })
}

fn time_point() -> impl Strategy<Value = TimePoint> {
    prop_oneof![
        date().prop_map(TimeKind::Date),
        date_time().prop_map(TimeKind::DateTime),
        duration(0).prop_map(TimeKind::Ago),
    ]
    .prop_map(|kind| TimePoint { kind, span: sp() })
}

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![
        duration(1).prop_map(WindowKind::Last),
        Just(WindowKind::Ever),
        time_point().prop_map(WindowKind::Since),
        time_point().prop_map(WindowKind::Before),
        (time_point(), time_point()).prop_map(|(a, b)| WindowKind::Between(a, b)),
    ]
    .prop_map(|kind| Window { kind, span: sp() })
}

fn event() -> impl Strategy<Value = EventCondition> {
    let event_name = prop_oneof![name(), "(?s).{1,12}"];
    let shorthand = (path(), literal(false)).prop_map(|(property, value)| Shorthand {
        property,
        value,
        span: sp(),
    });
    (
        event_name,
        prop::option::of(shorthand),
        prop::option::of(predicate()),
        prop::option::of(frequency()),
        prop::option::of(window()),
    )
        .prop_map(
            |(text, shorthand, predicate, frequency, window)| EventCondition {
                event: Name { text, span: sp() },
                shorthand,
                predicate,
                frequency,
                window,
                span: sp(),
            },
        )
}

/// A step of a sequence: an event condition without a frequency or a window.
fn step() -> impl Strategy<Value = EventCondition> {
    event().prop_map(|mut e| {
        e.frequency = None;
        e.window = None;
        e
    })
}

fn sequence() -> impl Strategy<Value = Sequence> {
    (
        prop::collection::vec(step(), 2..5),
        any::<bool>(),
        prop::option::of(path()),
        duration(1),
        prop::option::of(window()),
    )
        .prop_map(|(mut steps, negated, same, within, window)| {
            if negated {
                steps.truncate(2);
            }
            Sequence {
                steps,
                negated,
                same,
                within,
                window,
                span: sp(),
            }
        })
}

/// `first EVENT ...` / `last EVENT ...`: an event condition without a frequency.
fn first_last() -> impl Strategy<Value = FirstLast> {
    (any::<bool>(), event()).prop_map(|(last, mut event)| {
        event.frequency = None;
        FirstLast {
            last,
            event,
            span: sp(),
        }
    })
}

/// `bucket(NAME) TEST`: a comparison, `in`/`not in` or `between` of whole numbers.
fn bucket() -> impl Strategy<Value = Bucket> {
    let int = (-200i64..200).prop_map(|value| Literal {
        kind: LiteralKind::Number(Number::Int {
            value,
            text: value.to_string(),
        }),
        span: sp(),
    });
    let test = prop_oneof![
        (op(), int.clone()).prop_map(|(op, value)| Test::Compare { op, value }),
        (any::<bool>(), prop::collection::vec(int.clone(), 1..4))
            .prop_map(|(negated, values)| Test::In { negated, values }),
        (int.clone(), int).prop_map(|(low, high)| Test::Between { low, high }),
    ];
    let name = prop_oneof![
        4 => name(),
        // Keywords are names inside the parentheses.
        1 => prop::sample::select(vec!["set".to_owned(), "in".to_owned(), "bucket".to_owned()]),
    ];
    (name, test).prop_map(|(text, test)| Bucket {
        name: Name { text, span: sp() },
        test,
        span: sp(),
    })
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        // `NAME between A and B` with time points reads two ways and parses as EventOrTrait.
        condition().prop_map(|c| if c.reads_as_event_too() {
            ExprKind::EventOrTrait(c)
        } else {
            ExprKind::Trait(c)
        }),
        event().prop_map(|e| ExprKind::Event(Box::new(e))),
        sequence().prop_map(|s| ExprKind::Sequence(Box::new(s))),
        first_last().prop_map(|f| ExprKind::FirstLast(Box::new(f))),
        bucket().prop_map(|b| ExprKind::Bucket(Box::new(b))),
        name().prop_map(|text| ExprKind::InAudience(Name { text, span: sp() })),
        Just(ExprKind::Everyone),
    ]
    .prop_map(|kind| Expr { kind, span: sp() });
    leaf.prop_recursive(6, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(ExprKind::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(ExprKind::Or),
            inner.prop_map(|e| ExprKind::Not(Box::new(e))),
        ]
        .prop_map(|kind| Expr { kind, span: sp() })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_of_print_is_the_same_ast(expr in expr()) {
        let rule = Rule { expr };
        let text = print(&rule);
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{text}\n{}", e.render())))?;
        prop_assert_eq!(&parsed, &rule, "printed as {}", text);
        prop_assert_eq!(print(&parsed), text);
    }
}

#[test]
fn spans_point_at_the_source() {
    let text = "viewed product X in last 30 days and tier = Gold";
    let rule = parse(text).unwrap();
    let ExprKind::And(items) = &rule.expr.kind else {
        panic!("not an and: {rule:?}")
    };
    let slice = |s: Span| &text[s.start..s.end];
    assert_eq!(slice(rule.expr.span), text);
    assert_eq!(slice(items[0].span), "viewed product X in last 30 days");
    assert_eq!(slice(items[1].span), "tier = Gold");
    let ExprKind::Event(event) = &items[0].kind else {
        panic!()
    };
    assert_eq!(slice(event.event.span), "viewed");
    let shorthand = event.shorthand.as_ref().unwrap();
    assert_eq!(slice(shorthand.span), "product X");
    assert_eq!(slice(shorthand.value.span), "X");
    assert_eq!(
        slice(event.window.as_ref().unwrap().span),
        "in last 30 days"
    );
    let ExprKind::Trait(cond) = &items[1].kind else {
        panic!()
    };
    assert_eq!(slice(cond.path.span), "tier");
}

#[test]
fn the_ast_is_typed() {
    let rule = parse("purchased where category = kids sum(amount) >= 19.90 between 2026-01-01 and 2026-01-31T12:00:00Z").unwrap();
    let ExprKind::Event(event) = rule.expr.kind else {
        panic!()
    };
    assert_eq!(event.event.text, "purchased");
    let Some(Frequency {
        kind:
            FrequencyKind::Aggregate {
                func,
                property,
                op,
                value,
            },
        ..
    }) = event.frequency
    else {
        panic!()
    };
    assert_eq!(
        (func, property.text.as_str(), op),
        (AggregateFn::Sum, "amount", CmpOp::Ge)
    );
    assert_eq!(
        value,
        Number::Decimal {
            text: "19.90".into()
        }
    );
    let Some(Window {
        kind: WindowKind::Between(from, to),
        ..
    }) = event.window
    else {
        panic!()
    };
    assert_eq!(
        from.kind,
        TimeKind::Date(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap())
    );
    assert_eq!(to.kind, TimeKind::DateTime(1_769_860_800_000));
}
