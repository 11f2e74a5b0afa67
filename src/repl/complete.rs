//! The line editor's helper: Tab completion of meta commands, the rule language's keywords and
//! the store's own event, trait and property names; hints (from history, else the one word that
//! completes the current one); colours for keywords, strings and commands; and the validator
//! that keeps a rule open across lines while it is unfinished.
//!
//! It knows the names through [`Names`], which the session refreshes from its backend's schema
//! and audience list; it never touches the database itself.

use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::commands::COMMANDS;
use super::render::Style;
use crate::rules::words::{self, KEYWORDS};
use crate::Schema;

/// The names a rule may use that the store holds, sorted and without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    pub events: Vec<String>,
    pub traits: Vec<String>,
    pub properties: Vec<String>,
    pub audiences: Vec<String>,
}

impl Names {
    pub fn new(schema: &Schema, audiences: impl IntoIterator<Item = String>) -> Names {
        let sorted = |mut v: Vec<String>| {
            v.sort_unstable();
            v.dedup();
            v
        };
        Names {
            events: sorted(schema.events.iter().map(|e| e.name.clone()).collect()),
            traits: sorted(
                schema
                    .traits
                    .iter()
                    .map(|t| t.name.clone())
                    .chain(schema.computed_traits.iter().map(|t| t.name.clone()))
                    .collect(),
            ),
            properties: sorted(
                schema
                    .events
                    .iter()
                    .flat_map(|e| e.properties.iter().map(|p| p.name.clone()))
                    .collect(),
            ),
            audiences: sorted(audiences.into_iter().collect()),
        }
    }

    /// Every keyword and name starting with `prefix` (ignoring case), sorted, once each.
    pub fn words_starting(&self, prefix: &str) -> Vec<String> {
        // `first` is a keyword only before an event (`first purchased in last 30 days`),
        // `bucket` and `distinct` only before `(`.
        let mut out: Vec<String> = KEYWORDS
            .iter()
            .copied()
            .chain(["first", "bucket", "distinct"])
            .chain(self.events.iter().map(String::as_str))
            .chain(self.traits.iter().map(String::as_str))
            .chain(self.properties.iter().map(String::as_str))
            .filter(|w| starts_with_ignore_case(w, prefix))
            .map(str::to_owned)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn starts_with_ignore_case(word: &str, prefix: &str) -> bool {
    word.len() >= prefix.len()
        && word.is_char_boundary(prefix.len())
        && word[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// How deep `input` leaves parentheses open, and where a quote it leaves open starts.
fn open_at_end(input: &str) -> (i64, Option<usize>) {
    let mut depth = 0i64;
    let mut quote: Option<(char, usize)> = None;
    let mut chars = input.char_indices();
    while let Some((i, c)) = chars.next() {
        match quote {
            Some((q, _)) => {
                if c == '\\' {
                    chars.next();
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some((c, i)),
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            },
        }
    }
    (depth, quote.map(|(_, i)| i))
}

/// Whether `input` is an unfinished rule that goes on on the next line: a parenthesis left open,
/// a quote left open, or a last word `and`, `or` or `not`.
pub fn needs_more(input: &str) -> bool {
    let (depth, quote) = open_at_end(input);
    if quote.is_some() || depth > 0 {
        return true;
    }
    let last = input
        .trim_end()
        .rsplit(|c: char| !words::is_word_char(c))
        .next()
        .unwrap_or("");
    ["and", "or", "not"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(last))
}

/// Where the word being typed at `pos` starts, and the word.
fn current_word(line: &str, pos: usize) -> (usize, &str) {
    let before = &line[..pos];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !words::is_word_char(*c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    (start, &before[start..])
}

/// The meta command being typed: `Some(start)` when everything before `pos` is one `.word`.
fn command_start(line: &str, pos: usize) -> Option<usize> {
    let before = &line[..pos];
    let trimmed = before.trim_start();
    (trimmed.starts_with('.') && !trimmed.contains(char::is_whitespace))
        .then(|| pos - trimmed.len())
}

/// Whether the word at `start` names a saved audience: it follows `in audience`, or it is the
/// first argument of `.save` or `.drop`.
fn wants_audience(line: &str, start: usize) -> bool {
    let before = &line[..start];
    let words: Vec<&str> = before.split_whitespace().collect();
    let ends_with_space = before.ends_with(char::is_whitespace);
    match words.as_slice() {
        [command] if ends_with_space => {
            command.eq_ignore_ascii_case(".save") || command.eq_ignore_ascii_case(".drop")
        }
        [.., a, b] if ends_with_space => {
            b.eq_ignore_ascii_case("audience")
                && a.rsplit(|c: char| !words::is_word_char(c))
                    .next()
                    .is_some_and(|w| w.eq_ignore_ascii_case("in"))
        }
        _ => false,
    }
}

/// What the editor asks while a line is typed.
pub struct ReplHelper {
    names: Rc<RefCell<Names>>,
    history: HistoryHinter,
    style: Style,
}

impl ReplHelper {
    pub fn new(names: Rc<RefCell<Names>>, style: Style) -> ReplHelper {
        ReplHelper {
            names,
            history: HistoryHinter::new(),
            style,
        }
    }

    /// The candidates for the word at `pos`: `(start, candidates)`.
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        if let Some(start) = command_start(line, pos) {
            let typed = &line[start..pos];
            let found = COMMANDS
                .iter()
                .flat_map(|c| std::iter::once(c.name).chain(c.aliases.iter().copied()))
                .filter(|name| starts_with_ignore_case(name, typed))
                .map(str::to_owned)
                .collect();
            return (start, found);
        }
        if let Some(quote) = open_at_end(&line[..pos]).1 {
            // Inside a quote only an event name makes sense (`did "Product Vi`): the candidate
            // replaces the opening quote too and is written quoted.
            let typed = &line[quote + 1..pos];
            let names = self.names.borrow();
            let found = names
                .events
                .iter()
                .filter(|e| starts_with_ignore_case(e, typed))
                .cloned()
                .collect();
            return (quote, found);
        }
        let (start, word) = current_word(line, pos);
        if wants_audience(line, start) {
            let names = self.names.borrow();
            let found = names
                .audiences
                .iter()
                .filter(|a| starts_with_ignore_case(a, word))
                .cloned()
                .collect();
            return (start, found);
        }
        if word.is_empty() {
            return (pos, Vec::new());
        }
        (start, self.names.borrow().words_starting(word))
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, found) = self.candidates(line, pos);
        // One candidate is the word: finish it with a space, as a shell does. An event name that
        // is not a plain name is written quoted, as the language requires (`did "Product Viewed"`).
        let space = if found.len() == 1 { " " } else { "" };
        let quoted = open_at_end(&line[..pos]).1.is_some();
        let pairs = found
            .into_iter()
            .map(|w| Pair {
                replacement: if !quoted && (words::is_path(&w) || w.starts_with('.')) {
                    format!("{w}{space}")
                } else {
                    format!("{}{space}", crate::rules::quote(&w))
                },
                display: w,
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;

    /// The rest of the last matching history entry, else the rest of the one word that completes
    /// the current one (once three characters are typed: fewer match too much by chance).
    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
        if pos < line.len() {
            return None;
        }
        if let Some(h) = self.history.hint(line, pos, ctx) {
            return Some(h);
        }
        let (start, found) = self.candidates(line, pos);
        let typed = &line[start..pos];
        // Inside a quote the candidate is an event name, and the hint closes the quote.
        let (typed, close) = match typed.chars().next() {
            Some(q @ ('"' | '\'')) => (&typed[1..], Some(q)),
            _ => (typed, None),
        };
        match found.as_slice() {
            [only]
                if typed.len() >= 3
                    && only.len() > typed.len()
                    && only.is_char_boundary(typed.len()) =>
            {
                let mut hint = only[typed.len()..].to_owned();
                hint.extend(close);
                Some(hint)
            }
            _ => None,
        }
    }
}

impl Highlighter for ReplHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.style.color {
            return Cow::Borrowed(line);
        }
        Cow::Owned(highlight(self.style, line))
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(self.style.dim(hint))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.style.color
    }
}

/// Colours a line without changing its width: a leading meta command magenta, keywords cyan,
/// quoted strings green.
fn highlight(style: Style, line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let mut rest = line;
    let trimmed = line.trim_start();
    if trimmed.starts_with('.') {
        let start = line.len() - trimmed.len();
        let end = line[start..]
            .find(char::is_whitespace)
            .map_or(line.len(), |i| start + i);
        out.push_str(&line[..start]);
        out.push_str(&style.magenta(&line[start..end]));
        rest = &line[end..];
    }
    while let Some(c) = rest.chars().next() {
        if c == '"' || c == '\'' {
            let mut end = rest.len();
            let mut escaped = false;
            for (i, d) in rest.char_indices().skip(1) {
                if escaped {
                    escaped = false;
                } else if d == '\\' {
                    escaped = true;
                } else if d == c {
                    end = i + 1;
                    break;
                }
            }
            out.push_str(&style.green(&rest[..end]));
            rest = &rest[end..];
        } else if words::is_word_char(c) {
            let end = rest
                .find(|d: char| !words::is_word_char(d))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if words::is_keyword(word) {
                out.push_str(&style.cyan(word));
            } else {
                out.push_str(word);
            }
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if needs_more(ctx.input()) {
            ValidationResult::Incomplete
        } else {
            ValidationResult::Valid(None)
        })
    }
}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfinished_rules_go_on() {
        for input in [
            "country in (FI,",
            "(tier = Gold or",
            "tier = Gold and",
            "tier = Gold OR ",
            "not",
            "did \"Product",
            "source = 'it\\'s",
        ] {
            assert!(needs_more(input), "{input}");
        }
        for input in [
            "tier = Gold",
            "country in (FI, SE)",
            "did \"Product Viewed\"",
            "brand = android",
            "name = 'a(b'",
            "viewed in lst 30 days",
            ".now",
            "",
        ] {
            assert!(!needs_more(input), "{input}");
        }
    }

    #[test]
    fn words_and_names_complete() {
        let names = Names {
            events: vec!["purchased".into(), "viewed".into()],
            traits: vec!["tier".into(), "tags".into()],
            properties: vec!["product".into()],
            audiences: vec!["gold_viewers".into(), "lapsed".into()],
        };
        assert_eq!(names.words_starting("pu"), ["purchased"]);
        assert_eq!(names.words_starting("LA"), ["last"]);
        assert_eq!(names.words_starting("fi"), ["first"]);
        assert_eq!(names.words_starting("bu"), ["bucket"]);
        assert_eq!(names.words_starting("dist"), ["distinct"]);
        assert_eq!(
            names.words_starting("t"),
            ["tags", "the", "then", "tier", "time", "times", "true"]
        );
        let helper = ReplHelper::new(Rc::new(RefCell::new(names)), Style::PLAIN);
        assert_eq!(
            helper.candidates("tier = Gold and vi", 18),
            (16, vec!["viewed".to_owned()])
        );
        assert_eq!(
            helper.candidates(".ex", 3),
            (
                0,
                vec![
                    ".explain".to_owned(),
                    ".experiment".to_owned(),
                    ".exit".to_owned()
                ]
            )
        );
        assert_eq!(helper.candidates("tier = ", 7), (7, Vec::new()));

        // Audience names after `in audience` and as the argument of `.save` and `.drop`.
        let audiences = |line: &str| helper.candidates(line, line.len());
        assert_eq!(
            audiences("tier = Gold and not in audience go"),
            (32, vec!["gold_viewers".to_owned()])
        );
        assert_eq!(
            audiences("(IN AUDIENCE "),
            (13, vec!["gold_viewers".to_owned(), "lapsed".to_owned()])
        );
        assert_eq!(audiences(".drop l"), (6, vec!["lapsed".to_owned()]));
        assert_eq!(audiences(".save go"), (6, vec!["gold_viewers".to_owned()]));
        // The rule after the name completes as a rule.
        assert_eq!(audiences(".save x pu"), (8, vec!["purchased".to_owned()]));
        assert_eq!(audiences("audience go"), (9, Vec::new()));
    }

    #[test]
    fn names_that_are_not_plain_are_completed_quoted() {
        let names = Names {
            events: vec!["Product Viewed".into()],
            traits: vec!["address.city".into()],
            properties: vec![],
            audiences: vec![],
        };
        let helper = ReplHelper::new(Rc::new(RefCell::new(names)), Style::PLAIN);
        let history = rustyline::history::DefaultHistory::new();
        let ctx = Context::new(&history);
        let (start, pairs) = helper.complete("did Prod", 8, &ctx).unwrap();
        assert_eq!(start, 4);
        assert_eq!(pairs[0].replacement, "\"Product Viewed\" ");
        let (start, pairs) = helper.complete("did \"Product V", 14, &ctx).unwrap();
        assert_eq!(start, 4);
        assert_eq!(pairs[0].replacement, "\"Product Viewed\" ");
        assert_eq!(
            helper.hint("did \"Product V", 14, &ctx).as_deref(),
            Some("iewed\"")
        );
        assert_eq!(helper.hint("addr", 4, &ctx).as_deref(), Some("ess.city"));
        assert_eq!(helper.hint("ad", 2, &ctx), None);
        let (_, pairs) = helper.complete("addr", 4, &ctx).unwrap();
        assert_eq!(pairs[0].replacement, "address.city ");
    }

    #[test]
    fn highlighting_keeps_the_text() {
        let style = Style { color: true };
        let line = ".why c-1 viewed in last 30 days and name = \"a b\"";
        let coloured = highlight(style, line);
        let plain: String = strip_escapes(&coloured);
        assert_eq!(plain, line);
        assert!(coloured.contains("\x1b[36mlast\x1b[0m"));
    }

    fn strip_escapes(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
