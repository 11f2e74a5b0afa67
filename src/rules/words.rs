//! The vocabulary of the language: keywords, time units, what a plain name and a bare-word value
//! are, and the edit distance behind "did you mean". Shared by the parser and the printer so that
//! what one writes the other reads.

use super::ast::Unit;

/// Every keyword, lower case. Keywords are case-insensitive and never names or bare values.
pub const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "the", "last", "ever", "since", "before", "between", "where", "at",
    "least", "most", "exactly", "time", "times", "count", "sum", "avg", "min", "max", "is", "set",
    "contains", "audience", "everyone", "ago", "did", "true", "false", "minute", "minutes", "hour",
    "hours", "day", "days", "week", "weeks", "month", "months", "year", "years", "then", "within",
    "with",
];

/// The unit words, singular and plural, for suggestions.
pub const UNIT_WORDS: &[&str] = &[
    "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks", "month", "months",
    "year", "years",
];

/// Whether `word` is a keyword, in any case.
pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// The unit a word names, singular or plural, in any case.
pub fn unit(word: &str) -> Option<Unit> {
    Unit::ALL
        .into_iter()
        .find(|u| u.singular().eq_ignore_ascii_case(word) || u.plural().eq_ignore_ascii_case(word))
}

/// Whether `c` may appear in a bare word: letters and digits of any script and `_ - . : + @ /`.
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+' | '@' | '/')
}

/// `[A-Za-z_][A-Za-z0-9_]*`: the name of an event, property segment or audience.
pub fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Names joined by single dots: a trait or property path.
pub fn is_path(word: &str) -> bool {
    word.split('.').all(is_name)
}

/// What a bare word (not a keyword) reads as, by its shape alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordShape {
    /// `-?[0-9]+`
    Int,
    /// `-?[0-9]+.[0-9]+`
    Decimal,
    /// `DDDD-DD-DD`
    Date,
    /// `DDDD-DD-DDT...`: must be a valid RFC 3339 date-time.
    DateTime,
    /// Anything else: a string.
    Text,
}

/// Classifies a bare word by shape. A word that starts like a date is a date or a date-time (and
/// an error if it is not a valid one), so a typo in a date is never silently read as text.
pub fn shape(word: &str) -> WordShape {
    let b = word.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() >= 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
    {
        return if b.len() == 10 {
            WordShape::Date
        } else if b[10] == b'T' || b[10] == b't' {
            WordShape::DateTime
        } else {
            WordShape::Text
        };
    }
    let unsigned = word.strip_prefix('-').unwrap_or(word);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match frac {
        None if all_digits(int) => WordShape::Int,
        Some(f) if all_digits(int) && all_digits(f) => WordShape::Decimal,
        _ => WordShape::Text,
    }
}

/// Whether `text` can be written as a bare word and read back as the same string.
pub fn is_bare_text(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(is_word_char)
        && !is_keyword(text)
        && shape(text) == WordShape::Text
}

/// Optimal-string-alignment distance: edits are insert, delete, substitute and swap of neighbours,
/// so `dyas` is one edit from `days`. Case-insensitive. Quadratic, but only ever run on one word
/// against the short keyword list.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The candidate closest to `word`, if it is close enough to be an obvious misspelling: one edit
/// for words up to four letters, two for longer ones. Words longer than 20 characters are never
/// misspelt keywords.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let len = word.chars().count();
    if len == 0 || len > 20 {
        return None;
    }
    let limit = if len <= 4 { 1 } else { 2 };
    candidates
        .iter()
        .filter(|c| !c.eq_ignore_ascii_case(word))
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(shape("12"), WordShape::Int);
        assert_eq!(shape("-3"), WordShape::Int);
        assert_eq!(shape("19.90"), WordShape::Decimal);
        assert_eq!(shape("2026-03-01"), WordShape::Date);
        assert_eq!(shape("2026-03-01T12:00:00Z"), WordShape::DateTime);
        for text in [
            "sku-123",
            "1.",
            ".5",
            "-",
            "1e5",
            "2026-03-01x",
            "+5",
            "1.2.3",
        ] {
            assert_eq!(shape(text), WordShape::Text, "{text}");
        }
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("dyas", "days"), 1);
        assert_eq!(edit_distance("lst", "last"), 1);
        assert_eq!(edit_distance("LAST", "last"), 0);
        assert_eq!(suggest("lst", KEYWORDS), Some("last"));
        assert_eq!(suggest("dyas", UNIT_WORDS), Some("days"));
        assert_eq!(suggest("fortnight", UNIT_WORDS), None);
    }

    #[test]
    fn bare_text() {
        assert!(is_bare_text("sku-123"));
        assert!(is_bare_text("Gold"));
        assert!(!is_bare_text("last"));
        assert!(!is_bare_text("12"));
        assert!(!is_bare_text("two words"));
        assert!(!is_bare_text(""));
    }
}
