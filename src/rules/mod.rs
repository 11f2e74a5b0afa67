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
pub use parser::{parse, MAX_DEPTH, MAX_RULE_LEN};
pub use printer::print;
