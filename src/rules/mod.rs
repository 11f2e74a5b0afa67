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
