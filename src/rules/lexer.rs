//! Rule text → tokens, with nom. A token is a bare word (keywords, names, numbers, dates and bare
//! values all lex alike; the parser tells them apart by position), a quoted string with its escapes
//! resolved, a parenthesis, a comma or a comparison operator. Every token keeps its byte span.
//!
//! The lexer is one left-to-right pass with at most two characters of lookahead, so it is linear.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1, take_while_m_n};
use nom::character::complete::{char, multispace0, one_of};
use nom::combinator::value;
use nom::error::ErrorKind;
use nom::{IResult, Parser};

use super::ast::{CmpOp, Span};
use super::error::ParseError;
use super::words::is_word_char;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A run of word characters; its text is the source at its span.
    Word,
    /// A quoted string, escapes resolved.
    Str(String),
    LParen,
    RParen,
    Comma,
    Op(CmpOp),
    /// The end of the rule: always the last token, with an empty span.
    End,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

/// Why a token did not lex. `at` is the remaining input where the problem starts.
#[derive(Debug)]
struct LexError<'a> {
    at: &'a str,
    problem: Problem,
}

#[derive(Debug)]
enum Problem {
    /// No token starts here (nom's own failure).
    NoToken,
    /// A quote with no closing quote; `at` is the opening quote.
    UnclosedString(char),
    /// A backslash not followed by a known escape; `at` is the backslash.
    BadEscape,
}

impl<'a> nom::error::ParseError<&'a str> for LexError<'a> {
    fn from_error_kind(at: &'a str, _: ErrorKind) -> Self {
        LexError {
            at,
            problem: Problem::NoToken,
        }
    }

    fn append(_: &'a str, _: ErrorKind, other: Self) -> Self {
        other
    }
}

type LexResult<'a, T> = IResult<&'a str, T, LexError<'a>>;

/// Splits `source` into tokens, ending with [`TokenKind::End`].
pub(crate) fn tokenize(source: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut rest = source;
    let offset = |rest: &str| source.len() - rest.len();
    loop {
        // multispace0 never fails on complete input.
        let (after_space, _) =
            multispace0::<&str, nom::error::Error<&str>>(rest).unwrap_or((rest, ""));
        rest = after_space;
        if rest.is_empty() {
            let end = source.len();
            tokens.push(Token {
                kind: TokenKind::End,
                span: Span::new(end, end),
            });
            return Ok(tokens);
        }
        let start = offset(rest);
        match token(rest) {
            Ok((after, kind)) => {
                rest = after;
                tokens.push(Token {
                    kind,
                    span: Span::new(start, offset(rest)),
                });
            }
            Err(nom::Err::Error(e) | nom::Err::Failure(e)) => {
                return Err(lex_error(source, offset(e.at), e.problem))
            }
            // Complete parsers never ask for more input; treat it as no token to be safe.
            Err(nom::Err::Incomplete(_)) => {
                return Err(lex_error(source, start, Problem::NoToken));
            }
        }
    }
}

fn lex_error(source: &str, at: usize, problem: Problem) -> ParseError {
    let c = source[at..].chars().next().unwrap_or(' ');
    match problem {
        Problem::NoToken => {
            let error = ParseError::new(
                source,
                Span::new(at, at + c.len_utf8()),
                format!("unexpected character '{}'", c.escape_debug()),
            );
            // Symbols from programming languages: name the word that means the same.
            match c {
                '&' => error.with_expected("'and'").with_suggestion("and"),
                '|' => error.with_expected("'or'").with_suggestion("or"),
                '!' => error.with_expected("'not' or '!='").with_suggestion("not"),
                _ => error.with_expected(
                    "a word, a quoted string, '(', ')', ',' or a comparison operator",
                ),
            }
        }
        Problem::UnclosedString(q) => ParseError::new(
            source,
            Span::new(at, at + 1),
            format!("unclosed string: no closing {q} for this quote"),
        ),
        Problem::BadEscape => {
            let len = source[at..]
                .char_indices()
                .nth(2)
                .map_or(source.len() - at, |(i, _)| i);
            ParseError::new(
                source,
                Span::new(at, at + len),
                format!("unknown escape '{}' in a string", &source[at..at + len]),
            )
            .with_expected(r#"one of \" \' \\ \n \t \u{...}"#)
        }
    }
}

fn token(input: &str) -> LexResult<'_, TokenKind> {
    alt((
        value(TokenKind::Word, take_while1(is_word_char)),
        string,
        value(TokenKind::LParen, char('(')),
        value(TokenKind::RParen, char(')')),
        value(TokenKind::Comma, char(',')),
        operator,
    ))
    .parse(input)
}

fn operator(input: &str) -> LexResult<'_, TokenKind> {
    // Two-character operators first, so `<=` is not read as `<` then `=`.
    alt((
        value(TokenKind::Op(CmpOp::Le), tag("<=")),
        value(TokenKind::Op(CmpOp::Ge), tag(">=")),
        value(TokenKind::Op(CmpOp::Ne), tag("!=")),
        value(TokenKind::Op(CmpOp::Lt), tag("<")),
        value(TokenKind::Op(CmpOp::Gt), tag(">")),
        value(TokenKind::Op(CmpOp::Eq), tag("=")),
    ))
    .parse(input)
}

/// `"..."` or `'...'` with escapes `\" \' \\ \n \t \u{X..}`. Once a quote opened, every problem
/// is a failure (no other token could start with a quote).
fn string(input: &str) -> LexResult<'_, TokenKind> {
    let (mut rest, quote) = one_of("\"'").parse(input)?;
    let mut text = String::new();
    loop {
        let (after, chunk) = take_while(|c| c != quote && c != '\\').parse(rest)?;
        text.push_str(chunk);
        rest = after;
        if let Ok((after, _)) = char::<&str, LexError>(quote).parse(rest) {
            return Ok((after, TokenKind::Str(text)));
        }
        if rest.is_empty() {
            return Err(nom::Err::Failure(LexError {
                at: input,
                problem: Problem::UnclosedString(quote),
            }));
        }
        // At a backslash.
        let (after, c) = escape(rest).map_err(|_| {
            nom::Err::Failure(LexError {
                at: rest,
                problem: Problem::BadEscape,
            })
        })?;
        text.push(c);
        rest = after;
    }
}

fn escape(input: &str) -> LexResult<'_, char> {
    let (rest, _) = char('\\').parse(input)?;
    alt((
        value('"', char('"')),
        value('\'', char('\'')),
        value('\\', char('\\')),
        value('\n', char('n')),
        value('\t', char('t')),
        unicode_escape,
    ))
    .parse(rest)
}

fn unicode_escape(input: &str) -> LexResult<'_, char> {
    let (rest, _) = tag("u{").parse(input)?;
    let (rest, hex) = take_while_m_n(1, 6, |c: char| c.is_ascii_hexdigit()).parse(rest)?;
    let (rest, _) = char('}').parse(rest)?;
    match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
        Some(c) => Ok((rest, c)),
        None => Err(nom::Err::Error(LexError {
            at: input,
            problem: Problem::BadEscape,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<TokenKind> {
        tokenize(s).unwrap().into_iter().map(|t| t.kind).collect()
    }

    #[test]
    fn lexes_words_operators_and_strings() {
        use TokenKind::*;
        assert_eq!(
            kinds(r#"a<=-3 b!='x\"y' (c,d)"#),
            vec![
                Word,
                Op(CmpOp::Le),
                Word,
                Word,
                Op(CmpOp::Ne),
                Str("x\"y".into()),
                LParen,
                Word,
                Comma,
                Word,
                RParen,
                End
            ]
        );
        assert_eq!(kinds(r#""\u{e9}\n\t\\""#), vec![Str("é\n\t\\".into()), End]);
    }

    #[test]
    fn reports_lex_errors() {
        let e = tokenize("tier = \"Gold").unwrap_err();
        assert_eq!(e.column(), 8);
        let e = tokenize("a & b").unwrap_err();
        assert_eq!(e.message(), "unexpected character '&'");
        let e = tokenize(r#"a = "x\q""#).unwrap_err();
        assert_eq!(e.column(), 7);
    }
}
