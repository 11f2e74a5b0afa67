//! The one error a rule that does not parse gets: where (line, column, span), what is wrong, what
//! was expected there, and a suggestion for an obvious misspelling.

use std::fmt::Write as _;

use super::ast::Span;

/// Why a rule did not parse. Lines and columns are 1-based; columns count characters, not bytes.
/// Boxed inside so that `Result<_, ParseError>` stays one pointer wide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {}, column {}: {}", .0.line, .0.column, .0.message)]
pub struct ParseError(Box<Details>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Details {
    message: String,
    expected: Option<String>,
    suggestion: Option<String>,
    /// A sentence on how to write what the user probably meant, for a common mistake.
    help: Option<String>,
    span: Span,
    line: usize,
    column: usize,
    /// The source line holding `span.start`, for [`ParseError::render`].
    line_text: String,
    /// Characters of the line before the spot, and the width of the caret underline.
    caret_offset: usize,
    caret_width: usize,
}

impl ParseError {
    /// Builds an error about `span` of `source`.
    pub(crate) fn new(source: &str, span: Span, message: impl Into<String>) -> ParseError {
        // Spans come from the lexer and always sit on character boundaries; clamp anyway so a
        // bad span can never panic here.
        let start = floor_boundary(source, span.start.min(source.len()));
        let end = floor_boundary(source, span.end.clamp(start, source.len()));
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let caret_offset = source[line_start..start].chars().count();
        let caret_width = source[start..end.min(line_end)].chars().count().max(1);
        ParseError(Box::new(Details {
            message: message.into(),
            expected: None,
            suggestion: None,
            help: None,
            span: Span::new(start, end),
            line,
            column: caret_offset + 1,
            line_text: source[line_start..line_end]
                .trim_end_matches('\r')
                .to_string(),
            caret_offset,
            caret_width,
        }))
    }

    pub(crate) fn with_expected(mut self, expected: impl Into<String>) -> ParseError {
        self.0.expected = Some(expected.into());
        self
    }

    pub(crate) fn with_suggestion(mut self, suggestion: impl Into<String>) -> ParseError {
        self.0.suggestion = Some(suggestion.into());
        self
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> ParseError {
        self.0.help = Some(help.into());
        self
    }

    /// How to write what the user probably meant, for a common mistake (shown by [`render`]
    /// under the caret).
    ///
    /// [`render`]: ParseError::render
    pub fn help(&self) -> Option<&str> {
        self.0.help.as_deref()
    }

    /// One sentence: what is wrong, usually "expected X, found Y".
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// What the parser would have accepted at the spot, when the message does not already say.
    pub fn expected(&self) -> Option<&str> {
        self.0.expected.as_deref()
    }

    /// The word the user probably meant, for a misspelt keyword or unit.
    pub fn suggestion(&self) -> Option<&str> {
        self.0.suggestion.as_deref()
    }

    /// The offending bytes; empty at the end of the rule.
    pub fn span(&self) -> Span {
        self.0.span
    }

    /// 1-based line of the spot.
    pub fn line(&self) -> usize {
        self.0.line
    }

    /// 1-based column of the spot, in characters.
    pub fn column(&self) -> usize {
        self.0.column
    }

    /// The error as a compiler prints it: the message, the source line and a caret under the spot.
    ///
    /// ```text
    /// error: unknown keyword 'lst', did you mean 'last'?
    ///  --> line 1, column 11
    ///   |
    /// 1 | viewed in lst 30 days
    ///   |           ^^^ expected 'the' or 'last'
    /// ```
    pub fn render(&self) -> String {
        let d = &self.0;
        let number = d.line.to_string();
        let pad = " ".repeat(number.len());
        // Keep tabs in the caret line's indent so the caret lines up under tabbed text.
        let indent: String = d
            .line_text
            .chars()
            .take(d.caret_offset)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let mut out = String::new();
        let _ = writeln!(out, "error: {}", d.message);
        let _ = writeln!(out, "{pad}--> line {}, column {}", d.line, d.column);
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{number} | {}", d.line_text);
        let _ = write!(out, "{pad} | {indent}{}", "^".repeat(d.caret_width));
        if let Some(expected) = &d.expected {
            let _ = write!(out, " expected {expected}");
        }
        if let Some(help) = &d.help {
            let _ = write!(out, "\n{pad} = help: {help}");
        }
        out
    }
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
