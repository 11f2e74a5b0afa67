//! The rule language front end: rule text → typed AST → canonical rule text.
//!
//! It owns the grammar (see `grammar/rules.ebnf`), the syntax tree, the printer and parse errors
//! with positions. It knows nothing about storage, indexes or evaluation: a rule that parses may
//! still name an unknown trait, event or audience, which later layers decide about.
//!
//! One rule through this layer:
//! 1. `lexer`: nom splits the text into words, quoted strings, operators and punctuation.
//! 2. `parser`: a predictive recursive-descent parser builds the [`ast::Rule`], or one
//!    [`ParseError`] at the first token that cannot continue the rule.
//! 3. `printer`: the AST prints back as canonical text; `parse(print(ast)) == ast`.
//!
//! ```
//! use audiencedb::rules::{parse, ExprKind};
//!
//! let rule = parse("viewed product X IN THE LAST 30 days AND tier = Gold").unwrap();
//! assert!(matches!(rule.expr.kind, ExprKind::And(_)));
//! assert_eq!(rule.to_string(), "viewed product X in last 30 days and tier = Gold");
//!
//! let error = parse("viewed in lst 30 days").unwrap_err();
//! assert_eq!(error.to_string(), "line 1, column 11: unknown keyword 'lst', did you mean 'last'?");
//! ```

pub mod ast;
mod error;
mod lexer;
mod parser;
mod printer;
pub mod words;

pub use ast::*;
pub use error::ParseError;
pub use parser::{parse, parse_computed, MAX_DEPTH, MAX_RULE_LEN, MAX_STEPS};
pub use printer::{print, quote};

/// The nine rules that open the Examples table of the language reference (`docs/RULES.md`), in
/// its order: what the demo, the benches and the tests run.
pub const SPEC_EXAMPLES: [&str; 9] = [
    "viewed product X in last 30 days and tier = Gold",
    "purchased at least 3 times in last 90 days",
    "purchased ever and not purchased in last 6 months",
    "added_to_cart in last 1 day and not purchased in last 1 day",
    "visited at least 3 times in last 7 days and not purchased in last 7 days",
    "purchased sum(amount) > 500 in last 365 days",
    "purchased where category = kids ever and not in audience unsubscribed",
    "not visited before 7 days ago and visited in last 7 days",
    "country in (FI, SE) and (device = mobile or source = facebook)",
];

/// The one example of [`SPEC_EXAMPLES`] that names a saved audience, with that audience's
/// natural rule written out: for runs where no audience has been saved.
pub const SPEC_EXAMPLE_INLINED: &str =
    "purchased where category = kids ever and not newsletter = false";
