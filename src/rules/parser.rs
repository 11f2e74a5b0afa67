//! Tokens → [`Rule`]: a predictive recursive-descent parser over the nom lexer's tokens.
//!
//! Every choice is made by looking at most two tokens ahead and nothing is ever re-parsed, so
//! parsing is linear in the length of the rule; recursion is bounded by [`MAX_DEPTH`]. The first
//! token that cannot continue the rule is the error, reported with what was expected there (the
//! furthest point reached, since the parser never backtracks).

use chrono::NaiveDate;

use super::ast::*;
use super::error::ParseError;
use super::lexer::{tokenize, Token, TokenKind};
use super::words::{self, WordShape};
use crate::model::time::{format_rfc3339, parse_rfc3339};

/// The deepest nesting of parentheses and `not` a rule may have.
pub const MAX_DEPTH: usize = 64;

/// The most steps a sequence may have.
pub const MAX_STEPS: usize = 16;

/// The longest rule, in bytes.
pub const MAX_RULE_LEN: usize = 64 * 1024;

/// Keywords that can follow an event name: `where`, and those starting a frequency or a window.
const EVENT_PART_KEYWORDS: &[&str] = &[
    "where", "at", "exactly", "count", "sum", "avg", "min", "max", "in", "ever", "since", "before",
    "between",
];

/// Keywords that can start a condition.
const START_KEYWORDS: &[&str] = &["not", "in", "did", "everyone"];

type PResult<T> = Result<T, ParseError>;

/// Parses one rule.
pub fn parse(source: &str) -> Result<Rule, ParseError> {
    let mut parser = Parser::over(source, "rule")?;
    let expr = parser.or_expr()?;
    parser.expect_end()?;
    Ok(Rule { expr })
}

/// Parses a computed trait's expression: `EVENT [PROPERTY VALUE] [where PREDICATE] REDUCER
/// [WINDOW]`, the reducer one of `count`, `sum(p)`, `avg(p)`, `min(p)`, `max(p)`,
/// `distinct(p)`, `top(p)`, `first time`, `last time`.
pub fn parse_computed(source: &str) -> Result<Computed, ParseError> {
    let mut parser = Parser::over(source, "expression")?;
    let computed = parser.computed()?;
    if parser.peek().kind != TokenKind::End {
        return Err(parser.unexpected(
            "a window (in last N days, ever, since, before, between) or the end of the expression",
            &["in", "ever", "since", "before", "between"],
            "keyword",
        ));
    }
    Ok(computed)
}

impl std::str::FromStr for Rule {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Rule, ParseError> {
        parse(text)
    }
}

struct Parser<'a> {
    source: &'a str,
    /// Invariant: ends with exactly one [`TokenKind::End`], and `pos` never moves past it.
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `source` (a `what`: rule or expression), refused with a caret
    /// at the limit when it is longer than [`MAX_RULE_LEN`] bytes.
    fn over(source: &'a str, what: &str) -> Result<Parser<'a>, ParseError> {
        if source.len() > MAX_RULE_LEN {
            let mut at = MAX_RULE_LEN;
            while !source.is_char_boundary(at) {
                at -= 1;
            }
            return Err(ParseError::new(
                source,
                Span::new(at, at),
                format!(
                    "the {what} is too long: {} bytes, the limit is {MAX_RULE_LEN}",
                    source.len()
                ),
            ));
        }
        Ok(Parser {
            source,
            tokens: tokenize(source)?,
            pos: 0,
            depth: 0,
        })
    }

    // ---- token access -------------------------------------------------------------------------

    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> &Token {
        let last = self.tokens.len() - 1;
        &self.tokens[(self.pos + n).min(last)]
    }

    /// Consumes the current token (never the end) and returns its span.
    fn advance(&mut self) -> Span {
        let token = self.peek();
        let span = token.span;
        if token.kind != TokenKind::End {
            self.pos += 1;
        }
        span
    }

    fn text(&self, token: &Token) -> &'a str {
        &self.source[token.span.start..token.span.end]
    }

    /// The end of the last token consumed.
    fn last_end(&self) -> usize {
        match self.pos.checked_sub(1) {
            Some(i) => self.tokens[i].span.end,
            None => 0,
        }
    }

    /// From the start of `start` to the end of the last token consumed.
    fn span_from(&self, start: Span) -> Span {
        Span::new(start.start, self.last_end().max(start.start))
    }

    fn is_kw(&self, token: &Token, keyword: &str) -> bool {
        token.kind == TokenKind::Word && self.text(token).eq_ignore_ascii_case(keyword)
    }

    fn at_kw(&self, keyword: &str) -> bool {
        self.is_kw(self.peek(), keyword)
    }

    fn eat_kw(&mut self, keyword: &str) -> Option<Span> {
        if self.at_kw(keyword) {
            Some(self.advance())
        } else {
            None
        }
    }

    /// Consumes `keyword` or fails, suggesting it for a near miss.
    fn expect_kw(&mut self, keyword: &str) -> PResult<Span> {
        match self.eat_kw(keyword) {
            Some(span) => Ok(span),
            None => Err(self.unexpected(&format!("'{keyword}'"), &[keyword], "keyword")),
        }
    }

    /// Consumes the first of `keywords` present, or fails.
    fn expect_one_of(&mut self, keywords: &[&str], what: &str) -> PResult<(usize, Span)> {
        for (i, k) in keywords.iter().enumerate() {
            if let Some(span) = self.eat_kw(k) {
                return Ok((i, span));
            }
        }
        Err(self.unexpected(what, keywords, "keyword"))
    }

    fn expect_ago(&mut self, duration: Duration) -> PResult<()> {
        if self.eat_kw("ago").is_none() {
            return Err(self.unexpected(&format!("'ago' after '{duration}'"), &["ago"], "keyword"));
        }
        Ok(())
    }

    fn enter(&mut self, at: Span) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ParseError::new(
                self.source,
                at,
                format!(
                    "the rule is nested too deeply: more than {MAX_DEPTH} levels of parentheses and 'not'"
                ),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ---- errors -------------------------------------------------------------------------------

    /// How the current token reads in a message.
    fn found(&self) -> String {
        let token = self.peek();
        match &token.kind {
            TokenKind::End => "the end of the rule".into(),
            TokenKind::Word if words::is_keyword(self.text(token)) => {
                format!("keyword '{}'", self.text(token))
            }
            _ => format!("'{}'", shorten(self.text(token))),
        }
    }

    /// "expected WHAT after 'PREV', found X", or "unknown NOUN 'x', did you mean 'y'?" when the
    /// current token is a near miss of one of `candidates`.
    fn unexpected(&self, what: &str, candidates: &[&str], noun: &str) -> ParseError {
        let token = self.peek();
        if token.kind == TokenKind::Word {
            let word = self.text(token);
            if let Some(s) = words::suggest(word, candidates) {
                return ParseError::new(
                    self.source,
                    token.span,
                    format!("unknown {noun} '{word}', did you mean '{s}'?"),
                )
                .with_expected(what)
                .with_suggestion(s);
            }
        }
        let after = match self.pos.checked_sub(1) {
            Some(_) if what.contains(" after ") => String::new(),
            Some(i) => format!(" after '{}'", shorten(self.text(&self.tokens[i]))),
            None => String::new(),
        };
        self.expected(&format!("{what}{after}"))
    }

    /// "expected WHAT, found X" at the current token.
    fn expected(&self, what: &str) -> ParseError {
        ParseError::new(
            self.source,
            self.peek().span,
            format!("expected {what}, found {}", self.found()),
        )
    }

    /// "expected WHAT, found X" about the token just consumed.
    fn expected_at_previous(&self, what: &str) -> ParseError {
        let i = self.pos.saturating_sub(1);
        let token = &self.tokens[i];
        ParseError::new(
            self.source,
            token.span,
            format!("expected {what}, found '{}'", shorten(self.text(token))),
        )
    }

    fn error_at(&self, span: Span, message: String) -> ParseError {
        ParseError::new(self.source, span, message)
    }

    fn expect_end(&self) -> PResult<()> {
        if self.peek().kind == TokenKind::End {
            return Ok(());
        }
        if self.peek().kind == TokenKind::RParen {
            return Err(self.error_at(
                self.peek().span,
                "unmatched ')': there is no '(' before it".into(),
            ));
        }
        let err = self.unexpected(
            "'and', 'or' or the end of the rule",
            &["and", "or"],
            "keyword",
        );
        // `did E where a = 1 and b = 2 in last 30 days`: the `and` ended the filter, so the
        // window is left over. Say how to keep both conditions in the filter.
        let window_next = ["in", "ever", "since", "before"]
            .iter()
            .any(|k| self.at_kw(k));
        let tokens = &self.tokens[..self.pos];
        let filter_then_and = tokens
            .iter()
            .rposition(|t| self.is_kw(t, "where"))
            .is_some_and(|w| {
                let after = &tokens[w..];
                let joined = after
                    .iter()
                    .any(|t| self.is_kw(t, "and") || self.is_kw(t, "or"));
                // A window already given after the filter (`in` before a list is not one).
                let windowed = after.iter().enumerate().any(|(i, t)| {
                    ["ever", "since", "before"].iter().any(|k| self.is_kw(t, k))
                        || (self.is_kw(t, "in")
                            && after.get(i + 1).is_none_or(|n| n.kind != TokenKind::LParen))
                });
                joined && !windowed
            });
        if window_next && filter_then_and {
            return Err(err.with_help(
                "a `where` filter ends at its first 'and' or 'or'; to filter the event by every \
                 condition, put them in parentheses: `where (a = 1 and b >= 2) in last 30 days`",
            ));
        }
        Err(err)
    }

    // ---- boolean structure --------------------------------------------------------------------

    fn or_expr(&mut self) -> PResult<Expr> {
        let first = self.and_expr()?;
        if !self.at_kw("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("or").is_some() {
            items.push(self.and_expr()?);
        }
        Ok(nary(items, ExprKind::Or))
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let first = self.unary()?;
        if !self.at_kw("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("and").is_some() {
            items.push(self.unary()?);
        }
        Ok(nary(items, ExprKind::And))
    }

    fn unary(&mut self) -> PResult<Expr> {
        if let Some(not) = self.eat_kw("not") {
            self.enter(not)?;
            let inner = self.unary()?;
            self.leave();
            return Ok(Expr {
                span: not.to(inner.span),
                kind: ExprKind::Not(Box::new(inner)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Expr> {
        let token = self.peek().clone();
        match &token.kind {
            TokenKind::LParen => {
                self.advance();
                self.enter(token.span)?;
                let inner = self.or_expr()?;
                self.close_paren(token.span)?;
                self.leave();
                Ok(inner)
            }
            TokenKind::Str(text) => Err(self
                .error_at(
                    token.span,
                    format!(
                        "a quoted event name needs 'did' before it: did {}",
                        shorten(self.text(&token))
                    ),
                )
                .with_suggestion(format!("did \"{}\"", text.escape_default()))),
            TokenKind::Word => {
                let word = self.text(&token);
                if let Some(last) = self.first_or_last() {
                    self.first_last(last, token.span)
                } else if word.eq_ignore_ascii_case("bucket")
                    && self.peek_at(1).kind == TokenKind::LParen
                {
                    self.bucket(token.span)
                } else if word.eq_ignore_ascii_case("everyone") {
                    self.advance();
                    Ok(Expr {
                        kind: ExprKind::Everyone,
                        span: token.span,
                    })
                } else if word.eq_ignore_ascii_case("in") {
                    self.advance();
                    self.expect_kw("audience")?;
                    let name = self.plain_name("an audience name")?;
                    Ok(Expr {
                        span: token.span.to(name.span),
                        kind: ExprKind::InAudience(name),
                    })
                } else if word.eq_ignore_ascii_case("did") {
                    self.advance();
                    let event = self.event_name()?;
                    let cond = self.event_condition(event, token.span)?;
                    self.event_or_sequence(cond)
                } else if words::is_keyword(word) {
                    Err(self.unexpected("a condition", START_KEYWORDS, "keyword"))
                } else if self.starts_trait_test(1) {
                    let cond = self.trait_condition()?;
                    let span = cond.span;
                    let kind = if cond.reads_as_event_too() {
                        ExprKind::EventOrTrait(cond)
                    } else {
                        ExprKind::Trait(cond)
                    };
                    Ok(Expr { span, kind })
                } else if words::is_name(word) {
                    let event = self.event_name()?;
                    let cond = self.event_condition(event, token.span);
                    // `nto purchased ever`: an "event" that does not parse, or is followed by
                    // nonsense, whose name is a near miss of a keyword was most likely that keyword.
                    let ends_well = cond.is_ok() && self.at_condition_end();
                    let suggestion = match ends_well {
                        true => None,
                        false => words::suggest(word, START_KEYWORDS),
                    };
                    if let Some(s) = suggestion {
                        return Err(self
                            .error_at(
                                token.span,
                                format!("unknown keyword '{word}', did you mean '{s}'?"),
                            )
                            .with_expected("a condition")
                            .with_suggestion(s));
                    }
                    self.event_or_sequence(cond?)
                } else if words::is_path(word) {
                    self.advance();
                    Err(self.expected(&format!(
                        "a comparison after trait '{word}' (=, !=, <, <=, >, >=, in, not in, between, contains, is)"
                    )))
                } else {
                    Err(self.expected(
                        "a condition (a trait, an event, 'in audience', 'everyone', 'not' or '(')",
                    ))
                }
            }
            _ => Err(self.unexpected("a condition", &[], "keyword")),
        }
    }

    /// `bucket(NAME) TEST`, the current token being `bucket` and the next `(`. `bucket` is not a
    /// keyword: before anything but `(` it stays a trait, an event or a value, so saved rules
    /// that use the word keep parsing (`bucket (` started no condition before).
    fn bucket(&mut self, start: Span) -> PResult<Expr> {
        self.advance();
        let open = self.advance();
        let token = self.peek().clone();
        let text = self.text(&token);
        if token.kind != TokenKind::Word || !words::is_name(text) {
            return Err(self.expected(
                "the name of a split in 'bucket(NAME)': letters, digits and `_`, not starting \
                 with a digit (`bucket(checkout_2026) < 50`)",
            ));
        }
        let name = Name {
            text: text.to_string(),
            span: token.span,
        };
        self.advance();
        self.close_paren(open)?;
        if !self.starts_trait_test(0) {
            return Err(self.unexpected(
                "a comparison after 'bucket(NAME)' (=, !=, <, <=, >, >=, in, not in, between)",
                &["in", "not", "between"],
                "keyword",
            ));
        }
        let test_start = self.peek().span;
        let test = self.trait_test()?;
        let values: Vec<&Literal> =
            match &test {
                Test::Compare { value, .. } => vec![value],
                Test::In { values, .. } => values.iter().collect(),
                Test::Between { low, high } => vec![low, high],
                Test::Contains(_) | Test::IsSet { .. } => return Err(self.error_at(
                    self.span_from(test_start),
                    "'bucket(NAME)' is a whole number 0 to 99 that every customer has: compare \
                     it with =, !=, <, <=, >, >=, in, not in or between"
                        .into(),
                )),
            };
        if let Some(v) = values
            .into_iter()
            .find(|v| !matches!(v.kind, LiteralKind::Number(Number::Int { .. })))
        {
            return Err(self.error_at(
                v.span,
                "'bucket(NAME)' is a whole number 0 to 99: compare it with whole numbers \
                 (`bucket(checkout) < 50`)"
                    .into(),
            ));
        }
        let span = self.span_from(start);
        Ok(Expr {
            span,
            kind: ExprKind::Bucket(Box::new(Bucket { name, test, span })),
        })
    }

    /// Whether the current token starts `first EVENT ...` (`Some(false)`) or `last EVENT ...`
    /// (`Some(true)`). `last` is a keyword and cannot start any other condition. `first` is not:
    /// it starts a `first` condition only when an event follows it (a quoted name, `did`, or a
    /// name or path that is not a keyword), so `first` stays a value (`position = first`), a
    /// trait (`first = 1`) and an event (`first in last 7 days`) everywhere else.
    fn first_or_last(&self) -> Option<bool> {
        let token = self.peek();
        if self.is_kw(token, "last") {
            return Some(true);
        }
        if !self.is_kw(token, "first") || self.starts_trait_test(1) {
            return None;
        }
        let next = self.peek_at(1);
        let event_follows = match &next.kind {
            TokenKind::Str(_) => true,
            TokenKind::Word => {
                let text = self.text(next);
                // `first distinct(p) = 0` is the event `first` with a distinct count: no
                // event name is followed by `(`.
                let distinct = text.eq_ignore_ascii_case("distinct")
                    && self.peek_at(2).kind == TokenKind::LParen;
                text.eq_ignore_ascii_case("did")
                    || (words::is_path(text) && !words::is_keyword(text) && !distinct)
            }
            _ => false,
        };
        event_follows.then_some(false)
    }

    /// `first EVENT ...` or `last EVENT ...` (see [`Parser::first_or_last`]): an event
    /// condition, `did` allowed before its name, with a window and no frequency.
    fn first_last(&mut self, last: bool, start: Span) -> PResult<Expr> {
        let keyword = if last { "last" } else { "first" };
        self.advance();
        self.eat_kw("did");
        if !matches!(self.peek().kind, TokenKind::Str(_) | TokenKind::Word) {
            return Err(self.expected(&format!(
                "an event name after '{keyword}' (`{keyword} purchased in last 30 days`)"
            )));
        }
        let event = self.event_name()?;
        let cond = self.event_condition(event, start)?;
        if let Some(f) = &cond.frequency {
            return Err(self.error_at(
                f.span,
                format!(
                    "'{keyword}' takes no frequency: it is about one event, the customer's \
                     {keyword} `{}`; write the frequency as its own condition",
                    cond.event.text
                ),
            ));
        }
        if self.at_kw("then") {
            return Err(self.error_at(
                self.peek().span,
                format!(
                    "a sequence cannot start with '{keyword}': its steps are plain events (`A \
                     then B within T`)"
                ),
            ));
        }
        let span = self.span_from(start);
        Ok(Expr {
            span,
            kind: ExprKind::FirstLast(Box::new(FirstLast {
                last,
                event: EventCondition { span, ..cond },
                span,
            })),
        })
    }

    /// Whether the current token may follow a complete condition.
    fn at_condition_end(&self) -> bool {
        matches!(self.peek().kind, TokenKind::End | TokenKind::RParen)
            || self.at_kw("then")
            || self.at_kw("and")
            || self.at_kw("or")
    }

    fn close_paren(&mut self, open: Span) -> PResult<()> {
        if self.peek().kind == TokenKind::RParen {
            self.advance();
            return Ok(());
        }
        let (line, column) = {
            let e = ParseError::new(self.source, open, "");
            (e.line(), e.column())
        };
        let opened = if line == 1 {
            format!("column {column}")
        } else {
            format!("line {line}, column {column}")
        };
        if self.peek().kind == TokenKind::End {
            return Err(self.expected(&format!("')' to close the '(' at {opened}")));
        }
        Err(self.unexpected(
            &format!("'and', 'or' or ')' to close the '(' at {opened}"),
            &["and", "or"],
            "keyword",
        ))
    }

    /// Whether the token `n` ahead starts a trait test: an operator, `in (`, `not in`, `between`,
    /// `contains` or `is`. This is what tells `tier = Gold` from an event named `tier`.
    fn starts_trait_test(&self, n: usize) -> bool {
        let token = self.peek_at(n);
        match token.kind {
            TokenKind::Op(_) => true,
            TokenKind::Word => {
                let next = self.peek_at(n + 1);
                (self.is_kw(token, "in") && next.kind == TokenKind::LParen)
                    || (self.is_kw(token, "not") && self.is_kw(next, "in"))
                    || ["between", "contains", "is"]
                        .iter()
                        .any(|k| self.is_kw(token, k))
            }
            _ => false,
        }
    }

    // ---- names and values ---------------------------------------------------------------------

    /// A plain name that is not a keyword.
    fn plain_name(&mut self, what: &str) -> PResult<Name> {
        let token = self.peek().clone();
        let text = self.text(&token);
        if token.kind == TokenKind::Word && words::is_name(text) && !words::is_keyword(text) {
            self.advance();
            return Ok(Name {
                text: text.to_string(),
                span: token.span,
            });
        }
        Err(self.unexpected(what, &[], "keyword"))
    }

    /// An event name: a plain name, or a quoted string.
    fn event_name(&mut self) -> PResult<Name> {
        let token = self.peek().clone();
        if let TokenKind::Str(text) = &token.kind {
            if text.is_empty() {
                return Err(self.error_at(token.span, "an event name cannot be empty".into()));
            }
            self.advance();
            return Ok(Name {
                text: text.clone(),
                span: token.span,
            });
        }
        self.plain_name("an event name (a name, or a quoted string)")
    }

    fn path(&mut self, what: &str) -> PResult<Path> {
        let token = self.peek().clone();
        let text = self.text(&token);
        if token.kind == TokenKind::Word && words::is_path(text) && !words::is_keyword(text) {
            self.advance();
            return Ok(Path {
                text: text.to_string(),
                span: token.span,
            });
        }
        Err(self.unexpected(what, &[], "keyword"))
    }

    /// A value. With `allow_ago`, `N unit ago` is a value too.
    fn value(&mut self, allow_ago: bool) -> PResult<Literal> {
        let token = self.peek().clone();
        let kind = match &token.kind {
            TokenKind::Str(text) => LiteralKind::Str {
                text: text.clone(),
                quoted: true,
            },
            TokenKind::Word => {
                let word = self.text(&token);
                if word.eq_ignore_ascii_case("true") {
                    LiteralKind::Bool(true)
                } else if word.eq_ignore_ascii_case("false") {
                    LiteralKind::Bool(false)
                } else if words::is_keyword(word) {
                    return Err(self
                        .error_at(
                            token.span,
                            format!(
                                "expected a value, found keyword '{word}'; quote it to use it as a value: \"{word}\""
                            ),
                        )
                        .with_suggestion(format!("\"{word}\"")));
                } else {
                    match words::shape(word) {
                        WordShape::Int if allow_ago && self.ago_follows() => {
                            let duration = self.duration("a number")?;
                            self.expect_ago(duration)?;
                            return Ok(Literal {
                                kind: LiteralKind::Ago(duration),
                                span: self.span_from(token.span),
                            });
                        }
                        WordShape::Int => match word.parse::<i64>() {
                            Ok(value) => LiteralKind::Number(Number::Int {
                                value,
                                text: word.to_string(),
                            }),
                            Err(_) => {
                                return Err(self.error_at(
                                    token.span,
                                    format!(
                                        "the number {} does not fit 64 bits; quote it to use it as text",
                                        shorten(word)
                                    ),
                                ))
                            }
                        },
                        WordShape::Decimal => LiteralKind::Number(Number::Decimal {
                            text: word.to_string(),
                        }),
                        WordShape::Date => LiteralKind::Date(self.date(&token)?),
                        WordShape::DateTime => LiteralKind::DateTime(self.date_time(&token)?),
                        WordShape::Text => LiteralKind::Str {
                            text: word.to_string(),
                            quoted: false,
                        },
                    }
                }
            }
            _ => return Err(self.unexpected("a value", &[], "keyword")),
        };
        self.advance();
        Ok(Literal {
            kind,
            span: token.span,
        })
    }

    /// Whether the current integer starts `N unit ago`: a word, then `ago`, follows it. The unit
    /// may be misspelt; [`Parser::duration`] then says so.
    fn ago_follows(&self) -> bool {
        self.peek_at(1).kind == TokenKind::Word
            && (words::unit(self.text(self.peek_at(1))).is_some()
                || self.is_kw(self.peek_at(2), "ago"))
    }

    fn date(&self, token: &Token) -> PResult<NaiveDate> {
        let word = self.text(token);
        NaiveDate::parse_from_str(word, "%Y-%m-%d")
            .ok()
            .filter(|_| word.len() == 10)
            .ok_or_else(|| {
                self.error_at(token.span, format!("invalid date '{}'", shorten(word)))
                    .with_expected("a calendar date as YYYY-MM-DD")
            })
    }

    fn date_time(&self, token: &Token) -> PResult<i64> {
        let word = self.text(token);
        let ts = parse_rfc3339(word).ok_or_else(|| {
            self.error_at(token.span, format!("invalid date-time '{}'", shorten(word)))
                .with_expected("an RFC 3339 date-time like 2026-03-01T12:00:00Z")
        })?;
        // The printer writes UTC; an offset may push the instant out of the years 0000-9999,
        // which could then not be written back as a date-time.
        if parse_rfc3339(&format_rfc3339(ts)) != Some(ts) {
            return Err(self.error_at(
                token.span,
                format!(
                    "the date-time '{}' is outside the years 0000 to 9999 in UTC",
                    shorten(word)
                ),
            ));
        }
        Ok(ts)
    }

    /// A whole number ≥ 0, for counts.
    fn count(&mut self, what: &str) -> PResult<u64> {
        let token = self.peek().clone();
        let word = self.text(&token);
        if token.kind == TokenKind::Word
            && !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_digit())
        {
            return match word.parse::<u64>() {
                Ok(n) => {
                    self.advance();
                    Ok(n)
                }
                Err(_) => Err(self.error_at(
                    token.span,
                    format!("the number {} is too large", shorten(word)),
                )),
            };
        }
        Err(self.expected(what))
    }

    /// `N unit`, with N a whole number and N·unit within an `i64` of milliseconds.
    fn duration(&mut self, what: &str) -> PResult<Duration> {
        let start = self.peek().span;
        let amount = self.count(what)?;
        let unit_token = self.peek().clone();
        let unit = match words::unit(self.text(&unit_token)) {
            Some(unit) if unit_token.kind == TokenKind::Word => unit,
            _ => {
                return Err(self.unexpected(
                    "a time unit (minutes, hours, days, weeks, months or years)",
                    words::UNIT_WORDS,
                    "unit",
                ))
            }
        };
        self.advance();
        let duration = u32::try_from(amount)
            .ok()
            .map(|amount| Duration { amount, unit })
            .filter(|d| d.millis().is_some());
        duration.ok_or_else(|| {
            self.error_at(
                start.to(unit_token.span),
                "this length of time is too long".into(),
            )
        })
    }

    // ---- trait conditions ---------------------------------------------------------------------

    fn trait_condition(&mut self) -> PResult<TraitCondition> {
        let path = self.path("a trait or property name")?;
        let test = self.trait_test()?;
        Ok(TraitCondition {
            span: self.span_from(path.span),
            path,
            test,
        })
    }

    /// The test of a trait condition, after its path: `= v`, `in (...)`, `not in (...)`,
    /// `between a and b`, `contains v`, `is [not] set`.
    fn trait_test(&mut self) -> PResult<Test> {
        let token = self.peek().clone();
        let test = match token.kind {
            TokenKind::Op(op) => {
                self.advance();
                Test::Compare {
                    op,
                    value: self.value(true)?,
                }
            }
            TokenKind::Word if self.is_kw(&token, "in") => {
                self.advance();
                Test::In {
                    negated: false,
                    values: self.value_list()?,
                }
            }
            TokenKind::Word if self.is_kw(&token, "not") => {
                self.advance();
                self.expect_kw("in")?;
                Test::In {
                    negated: true,
                    values: self.value_list()?,
                }
            }
            TokenKind::Word if self.is_kw(&token, "between") => {
                self.advance();
                let low = self.value(true)?;
                self.expect_kw("and")?;
                let high = self.value(true)?;
                Test::Between { low, high }
            }
            TokenKind::Word if self.is_kw(&token, "contains") => {
                self.advance();
                Test::Contains(self.value(true)?)
            }
            TokenKind::Word if self.is_kw(&token, "is") => {
                self.advance();
                let negated = self.eat_kw("not").is_some();
                if self.eat_kw("set").is_none() {
                    let what = if negated {
                        "'set'"
                    } else {
                        "'set' or 'not set'"
                    };
                    return Err(self.unexpected(what, &["set", "not"], "keyword"));
                }
                Test::IsSet { negated }
            }
            _ => {
                return Err(self.unexpected(
                    "a comparison (=, !=, <, <=, >, >=, in, not in, between, contains, is)",
                    &["in", "not", "between", "contains", "is"],
                    "keyword",
                ))
            }
        };
        Ok(test)
    }

    fn value_list(&mut self) -> PResult<Vec<Literal>> {
        if self.peek().kind != TokenKind::LParen {
            return Err(self.expected("'(' and a list of values"));
        }
        let open = self.advance();
        let mut values = vec![self.value(true)?];
        loop {
            match self.peek().kind {
                TokenKind::Comma => {
                    self.advance();
                    values.push(self.value(true)?);
                }
                TokenKind::RParen => {
                    self.advance();
                    return Ok(values);
                }
                TokenKind::End => {
                    let e = ParseError::new(self.source, open, "");
                    return Err(self.expected(&format!(
                        "',' or ')' to close the list opened at column {}",
                        e.column()
                    )));
                }
                _ => return Err(self.expected("',' or ')'")),
            }
        }
    }

    // ---- sequences ----------------------------------------------------------------------------

    /// The event condition just parsed, or the sequence it starts when `then` follows.
    fn event_or_sequence(&mut self, first: EventCondition) -> PResult<Expr> {
        if !self.at_kw("then") {
            return Ok(Expr {
                span: first.span,
                kind: ExprKind::Event(Box::new(first)),
            });
        }
        self.plain_step(&first)?;
        let start = first.span;
        let mut steps = vec![first];
        let mut negated = false;
        while let Some(then) = self.eat_kw("then") {
            if let Some(not) = self.eat_kw("not") {
                if steps.len() > 1 {
                    return Err(self.error_at(
                        not,
                        "'then not' must follow the first step: a sequence with 'then not' has \
                             exactly two steps, `A then not B within T`"
                            .into(),
                    ));
                }
                negated = true;
            } else if negated {
                return Err(self.error_at(
                    then,
                    "a sequence with 'then not' has exactly two steps, `A then not B within T`"
                        .into(),
                ));
            }
            if steps.len() >= MAX_STEPS {
                return Err(
                    self.error_at(then, format!("a sequence has at most {MAX_STEPS} steps"))
                );
            }
            let step_start = self.peek().span;
            // `did` may come before a step, as before any event condition.
            self.eat_kw("did");
            let name = self.event_name()?;
            let step = self.event_condition(name, step_start)?;
            self.plain_step(&step)?;
            steps.push(step);
        }
        let same = match self.eat_kw("with") {
            Some(_) => {
                if !(self.peek().kind == TokenKind::Word
                    && self.text(self.peek()).eq_ignore_ascii_case("same"))
                {
                    return Err(self.unexpected("'same' after 'with'", &["same"], "keyword"));
                }
                self.advance();
                Some(self.path("a property name after 'with same'")?)
            }
            None => None,
        };
        if !self.at_kw("within") {
            let what = if same.is_some() {
                "'within' and a length of time"
            } else {
                "'then', 'with same' or 'within' and a length of time (a sequence needs one: \
                 `A then B within 1 day`)"
            };
            return Err(self.unexpected(what, &["within", "then", "with"], "keyword"));
        }
        let within_start = self.advance();
        let within = self.duration("a number after 'within'")?;
        if within.amount == 0 {
            return Err(self.error_at(
                self.span_from(within_start),
                "'within 0' leaves no time between the steps; give a length of at least 1".into(),
            ));
        }
        let window = self.window()?;
        self.check_event_tail(false, window.is_none())?;
        let span = self.span_from(start);
        Ok(Expr {
            span,
            kind: ExprKind::Sequence(Box::new(Sequence {
                steps,
                negated,
                same,
                within,
                window,
                span,
            })),
        })
    }

    /// Refuses a frequency or a window on a step of a sequence.
    fn plain_step(&self, step: &EventCondition) -> PResult<()> {
        if let Some(f) = &step.frequency {
            return Err(self.error_at(
                f.span,
                "a step of a sequence takes no frequency: each step is one event (`A then B \
                 within T`)"
                    .into(),
            ));
        }
        if let Some(w) = &step.window {
            let ends = !["then", "with", "within"].iter().any(|k| self.at_kw(k));
            let message = if ends {
                "a sequence needs 'within' and a length before its window: `A then B within 1 \
                 day in last 7 days`"
            } else {
                "a step of a sequence takes no window: write one window at the end, after \
                 'within T'; it applies to the first step"
            };
            return Err(self.error_at(w.span, message.into()));
        }
        Ok(())
    }

    // ---- event conditions ---------------------------------------------------------------------

    fn event_condition(&mut self, event: Name, start: Span) -> PResult<EventCondition> {
        let shorthand = self.shorthand()?;
        let predicate = match self.eat_kw("where") {
            Some(_) => Some(self.where_predicate()?),
            None => None,
        };
        let frequency = self.frequency()?;
        let window = self.window()?;
        self.check_event_tail(frequency.is_none() && window.is_none(), window.is_none())?;
        Ok(EventCondition {
            span: self.span_from(start),
            event,
            shorthand,
            predicate,
            frequency,
            window,
        })
    }

    /// A computed trait's expression (see [`parse_computed`]).
    fn computed(&mut self) -> PResult<Computed> {
        let start = self.peek().span;
        self.eat_kw("did");
        if !matches!(self.peek().kind, TokenKind::Str(_) | TokenKind::Word) {
            return Err(self.expected(
                "an event name to start the expression (`purchased avg(amount) in last 365 days`)",
            ));
        }
        let event = self.event_name()?;
        let shorthand = if self.at_reducer() {
            None
        } else {
            self.shorthand()?
        };
        let predicate = match self.eat_kw("where") {
            Some(_) => Some(self.where_predicate()?),
            None => None,
        };
        let reducer = self.reducer()?;
        let window = if reducer.is_model() {
            if ["in", "ever", "since", "before", "between"]
                .iter()
                .any(|k| self.at_kw(k))
            {
                return Err(self.error_at(
                    self.peek().span,
                    format!(
                        "{} reads every matching event up to now: it takes no window",
                        reducer.text()
                    ),
                ));
            }
            None
        } else {
            self.window()?
        };
        let span = self.span_from(start);
        Ok(Computed {
            event: EventCondition {
                event,
                shorthand,
                predicate,
                frequency: None,
                window,
                span,
            },
            reducer,
            span,
        })
    }

    /// Whether a reducer starts here: `count`, `p_alive`, `expected count`, `first time`,
    /// `last time`, or one of `sum avg min max distinct top clv rfm` right before `(`.
    fn at_reducer(&self) -> bool {
        let paren = self.peek_at(1).kind == TokenKind::LParen;
        self.at_kw("count")
            || self.at_kw("p_alive")
            || (self.at_kw("expected") && self.is_kw(self.peek_at(1), "count"))
            || (["first", "last"].iter().any(|k| self.at_kw(k))
                && self.is_kw(self.peek_at(1), "time"))
            || (paren
                && ["sum", "avg", "min", "max", "distinct", "top", "clv", "rfm"]
                    .iter()
                    .any(|k| self.at_kw(k)))
    }

    /// The reducer of a computed trait's expression.
    fn reducer(&mut self) -> PResult<Reducer> {
        const REDUCERS: &[&str] = &[
            "count", "sum", "avg", "min", "max", "distinct", "top", "first", "last", "p_alive",
            "expected", "clv", "rfm",
        ];
        if !self.at_reducer() {
            return Err(self.unexpected(
                "a reducer: count, sum(p), avg(p), min(p), max(p), distinct(p), top(p), first \
                 time, last time, p_alive, expected count in next T, clv(p) in next T or rfm(p)",
                REDUCERS,
                "reducer",
            ));
        }
        let word = self.text(self.peek()).to_ascii_lowercase();
        self.advance();
        let mut property = || -> PResult<Path> {
            self.advance();
            let property = self.path("a property name")?;
            if self.peek().kind != TokenKind::RParen {
                return Err(self.expected("')'"));
            }
            self.advance();
            Ok(property)
        };
        Ok(match word.as_str() {
            "count" => Reducer::Count,
            "p_alive" => Reducer::PAlive,
            "expected" => {
                self.advance();
                Reducer::Expected {
                    horizon: self.horizon()?,
                }
            }
            "clv" => {
                let property = property()?;
                Reducer::Clv {
                    property,
                    horizon: self.horizon()?,
                }
            }
            "rfm" => Reducer::Rfm(property()?),
            "distinct" => Reducer::Distinct(property()?),
            "top" => Reducer::Top(property()?),
            "first" | "last" => {
                self.advance();
                if word == "first" {
                    Reducer::FirstTime
                } else {
                    Reducer::LastTime
                }
            }
            _ => {
                let func = AggregateFn::ALL
                    .into_iter()
                    .find(|f| f.keyword() == word)
                    .expect("at_reducer saw an aggregate");
                Reducer::Aggregate {
                    func,
                    property: property()?,
                }
            }
        })
    }

    /// `in next N UNIT`: how far ahead `expected count` and `clv(p)` look.
    fn horizon(&mut self) -> PResult<Duration> {
        let start = self.peek().span;
        if self.eat_kw("in").is_none() || self.eat_kw("next").is_none() {
            return Err(self
                .error_at(
                    self.peek().span,
                    format!(
                        "expected count and clv(p) need how far ahead to look, as in `in next 90 \
                         days`; found {}",
                        self.found()
                    ),
                )
                .with_expected("'in next' and a length of time"));
        }
        let duration = self.duration("a number after 'next'")?;
        if duration.amount == 0 {
            return Err(self.error_at(
                self.span_from(start),
                "a horizon of length 0 expects nothing; give a length of at least 1".into(),
            ));
        }
        Ok(duration)
    }

    /// `PROPERTY VALUE`: a non-keyword path right after the event name.
    fn shorthand(&mut self) -> PResult<Option<Shorthand>> {
        let token = self.peek().clone();
        let text = self.text(&token);
        if token.kind != TokenKind::Word || words::is_keyword(text) || !words::is_path(text) {
            return Ok(None);
        }
        if self.at_distinct() {
            return Ok(None);
        }
        let property = self.path("a property name")?;
        let value = match self.value(false) {
            Ok(value) => value,
            Err(e) => {
                // `viewed evr`: more likely a misspelt keyword than a property with no value.
                return Err(match words::suggest(text, EVENT_PART_KEYWORDS) {
                    Some(s) => self
                        .error_at(
                            token.span,
                            format!("unknown keyword '{text}', did you mean '{s}'?"),
                        )
                        .with_expected(
                            "'where', a frequency, a window, or a property and its value",
                        )
                        .with_suggestion(s),
                    None => e,
                });
            }
        };
        Ok(Some(Shorthand {
            span: property.span.to(value.span),
            property,
            value,
        }))
    }

    /// After an event condition: a near miss of a keyword that could still follow gets a
    /// suggestion here, where the event's context is known.
    fn check_event_tail(&self, frequency_possible: bool, window_possible: bool) -> PResult<()> {
        let token = self.peek();
        if token.kind != TokenKind::Word || words::is_keyword(self.text(token)) {
            return Ok(());
        }
        let mut candidates = vec!["and", "or"];
        if frequency_possible {
            candidates.extend([
                "at", "exactly", "count", "sum", "avg", "min", "max", "distinct",
            ]);
        }
        if window_possible {
            candidates.extend(["in", "ever", "since", "before", "between"]);
        }
        match words::suggest(self.text(token), &candidates) {
            Some(_) => Err(self.unexpected(
                "'and', 'or', or more of the event condition",
                &candidates,
                "keyword",
            )),
            None => Ok(()),
        }
    }

    /// `where COMPARISON` or `where ( PREDICATE )`.
    fn where_predicate(&mut self) -> PResult<Predicate> {
        match &self.peek().kind {
            TokenKind::LParen => self.pred_unary(),
            TokenKind::Word if !words::is_keyword(self.text(self.peek())) => {
                let cond = self.trait_condition()?;
                Ok(Predicate {
                    span: cond.span,
                    kind: PredicateKind::Cond(cond),
                })
            }
            _ => Err(self
                .expected("a property condition after 'where'")
                .with_expected(
                    "a comparison like amount > 3, or a predicate in parentheses like (not a = 1)",
                )),
        }
    }

    fn pred_or(&mut self) -> PResult<Predicate> {
        let first = self.pred_and()?;
        if !self.at_kw("or") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("or").is_some() {
            items.push(self.pred_and()?);
        }
        Ok(pred_nary(items, PredicateKind::Or))
    }

    fn pred_and(&mut self) -> PResult<Predicate> {
        let first = self.pred_unary()?;
        if !self.at_kw("and") {
            return Ok(first);
        }
        let mut items = vec![first];
        while self.eat_kw("and").is_some() {
            items.push(self.pred_unary()?);
        }
        Ok(pred_nary(items, PredicateKind::And))
    }

    fn pred_unary(&mut self) -> PResult<Predicate> {
        let token = self.peek().clone();
        if self.is_kw(&token, "not") {
            self.advance();
            self.enter(token.span)?;
            let inner = self.pred_unary()?;
            self.leave();
            return Ok(Predicate {
                span: token.span.to(inner.span),
                kind: PredicateKind::Not(Box::new(inner)),
            });
        }
        if token.kind == TokenKind::LParen {
            self.advance();
            self.enter(token.span)?;
            let inner = self.pred_or()?;
            self.close_paren(token.span)?;
            self.leave();
            return Ok(inner);
        }
        if token.kind == TokenKind::Word && !words::is_keyword(self.text(&token)) {
            let cond = self.trait_condition()?;
            return Ok(Predicate {
                span: cond.span,
                kind: PredicateKind::Cond(cond),
            });
        }
        Err(self.unexpected("a property condition", &["not"], "keyword"))
    }

    fn frequency(&mut self) -> PResult<Option<Frequency>> {
        let start = self.peek().span;
        let kind = if self.eat_kw("at").is_some() {
            let (which, _) = self.expect_one_of(&["least", "most"], "'least' or 'most'")?;
            let which_word = if which == 0 { "at least" } else { "at most" };
            let n = self.times(which_word)?;
            if which == 0 {
                FrequencyKind::AtLeast(n)
            } else {
                FrequencyKind::AtMost(n)
            }
        } else if self.eat_kw("exactly").is_some() {
            FrequencyKind::Exactly(self.times("exactly")?)
        } else if self.eat_kw("count").is_some() {
            let op = self.operator()?;
            let count = self.count(&format!("a whole number after '{op}'"))?;
            FrequencyKind::Count { op, count }
        } else if self.at_distinct() {
            self.advance();
            self.advance();
            let property = self.path("a property name")?;
            if self.peek().kind != TokenKind::RParen {
                return Err(self.expected("')'"));
            }
            self.advance();
            let op = self.operator()?;
            let count = self.count(&format!("a whole number after '{op}'"))?;
            FrequencyKind::Distinct {
                property,
                op,
                count,
            }
        } else if let Some(func) = AggregateFn::ALL
            .into_iter()
            .find(|f| self.at_kw(f.keyword()))
        {
            self.advance();
            if self.peek().kind != TokenKind::LParen {
                return Err(self.expected(&format!(
                    "'(' and a property name after '{}'",
                    func.keyword()
                )));
            }
            self.advance();
            let property = self.path("a property name")?;
            if self.peek().kind != TokenKind::RParen {
                return Err(self.expected("')'"));
            }
            self.advance();
            let op = self.operator()?;
            let is_number = self.peek().kind == TokenKind::Word
                && matches!(
                    words::shape(self.text(self.peek())),
                    WordShape::Int | WordShape::Decimal
                );
            let value = match self.value(false)? {
                Literal {
                    kind: LiteralKind::Number(n),
                    ..
                } if is_number => n,
                _ => return Err(self.expected_at_previous(&format!("a number after '{op}'"))),
            };
            FrequencyKind::Aggregate {
                func,
                property,
                op,
                value,
            }
        } else {
            return Ok(None);
        };
        Ok(Some(Frequency {
            kind,
            span: self.span_from(start),
        }))
    }

    /// Whether `distinct(` is next: `distinct` is no keyword (saved rules may use the word as a
    /// property, trait or event), so it starts a distinct count only right before `(`, which no
    /// property shorthand can.
    fn at_distinct(&self) -> bool {
        let token = self.peek();
        token.kind == TokenKind::Word
            && self.text(token).eq_ignore_ascii_case("distinct")
            && self.peek_at(1).kind == TokenKind::LParen
    }

    /// `N time(s)` after `at least`, `at most` or `exactly`.
    fn times(&mut self, after: &str) -> PResult<u64> {
        let n = self.count(&format!("a number after '{after}'"))?;
        self.expect_one_of(&["times", "time"], &format!("'times' after '{after} {n}'"))?;
        Ok(n)
    }

    fn operator(&mut self) -> PResult<CmpOp> {
        if let TokenKind::Op(op) = self.peek().kind {
            self.advance();
            return Ok(op);
        }
        Err(self.unexpected(
            "a comparison operator (=, !=, <, <=, >, >=)",
            &[],
            "keyword",
        ))
    }

    fn window(&mut self) -> PResult<Option<Window>> {
        let start = self.peek().span;
        let kind = if self.eat_kw("in").is_some() {
            if self.eat_kw("the").is_none() && !self.at_kw("last") {
                return Err(self.unexpected("'last' or 'the last'", &["last", "the"], "keyword"));
            }
            self.expect_kw("last")?;
            let duration = self.duration("a number after 'last'")?;
            if duration.amount == 0 {
                return Err(self.error_at(
                    self.span_from(start),
                    "a window of length 0 is always empty; give a length of at least 1".into(),
                ));
            }
            WindowKind::Last(duration)
        } else if self.eat_kw("ever").is_some() {
            WindowKind::Ever
        } else if self.eat_kw("since").is_some() {
            WindowKind::Since(self.time_point("since")?)
        } else if self.eat_kw("before").is_some() {
            WindowKind::Before(self.time_point("before")?)
        } else if self.eat_kw("between").is_some() {
            let from = self.time_point("between")?;
            self.expect_kw("and")?;
            let to = self.time_point("and")?;
            WindowKind::Between(from, to)
        } else {
            return Ok(None);
        };
        Ok(Some(Window {
            kind,
            span: self.span_from(start),
        }))
    }

    /// A date, a date-time or `N unit ago`.
    fn time_point(&mut self, after: &str) -> PResult<TimePoint> {
        let token = self.peek().clone();
        let what = format!(
            "a date (2026-01-31), a date-time (2026-01-31T12:00:00Z) or 'N days ago' after '{after}'"
        );
        if token.kind != TokenKind::Word {
            return Err(self.expected(&what));
        }
        let kind = match words::shape(self.text(&token)) {
            WordShape::Date => {
                let date = self.date(&token)?;
                self.advance();
                TimeKind::Date(date)
            }
            WordShape::DateTime => {
                let ts = self.date_time(&token)?;
                self.advance();
                TimeKind::DateTime(ts)
            }
            WordShape::Int => {
                let duration = self.duration(&what)?;
                self.expect_ago(duration)?;
                TimeKind::Ago(duration)
            }
            _ => return Err(self.expected(&what)),
        };
        Ok(TimePoint {
            kind,
            span: self.span_from(token.span),
        })
    }
}

fn nary(items: Vec<Expr>, make: fn(Vec<Expr>) -> ExprKind) -> Expr {
    let span = match (items.first(), items.last()) {
        (Some(a), Some(b)) => a.span.to(b.span),
        _ => Span::default(),
    };
    Expr {
        kind: make(items),
        span,
    }
}

fn pred_nary(items: Vec<Predicate>, make: fn(Vec<Predicate>) -> PredicateKind) -> Predicate {
    let span = match (items.first(), items.last()) {
        (Some(a), Some(b)) => a.span.to(b.span),
        _ => Span::default(),
    };
    Predicate {
        kind: make(items),
        span,
    }
}

/// Long source text cut for messages.
fn shorten(text: &str) -> String {
    const MAX: usize = 30;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_at_the_edges_of_four_digit_years() {
        for rule in [
            "x = 0001-01-01",
            "x = 9999-12-31",
            "x = 0000-01-01T00:00:00Z",
            "x = 9999-12-31T23:59:59.999Z",
        ] {
            let printed = parse(rule).map(|r| r.to_string());
            assert_eq!(
                printed.as_deref().map(|p| p.get(..14)),
                Ok(rule.get(..14)),
                "{rule}"
            );
        }
        for rule in [
            "x = 9999-12-31T23:59:59-23:59",
            "x = 0000-01-01T00:00:00+01:00",
        ] {
            let e = parse(rule).unwrap_err();
            assert!(e.message().contains("outside the years"), "{rule}: {e}");
        }
    }
}
