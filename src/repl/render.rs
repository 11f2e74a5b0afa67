//! How the REPL's answers look: an audience in each output format, the schema table, errors, and
//! the few colours used on a terminal. Pure formatting: nothing here reads the database.

use std::fmt::Write as _;
use std::time::Duration;

use super::backend::Saved;
use crate::model::time::{self, Timestamp};
use crate::{AudienceInfo, Schema};

/// How many members a summary shows.
pub const SAMPLE_MEMBERS: usize = 5;

/// Colours on or off: on only when the output is a terminal and `NO_COLOR` is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    pub const PLAIN: Style = Style { color: false };

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }

    pub fn yellow(self, text: &str) -> String {
        self.paint("1;33", text)
    }

    pub fn red(self, text: &str) -> String {
        self.paint("1;31", text)
    }

    pub fn green(self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn cyan(self, text: &str) -> String {
        self.paint("36", text)
    }

    pub fn magenta(self, text: &str) -> String {
        self.paint("35", text)
    }
}

/// A duration as people read it: milliseconds below a second, seconds above.
pub fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1000.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

/// "1 customer", "12 customers".
pub fn customers(n: u64) -> String {
    if n == 1 {
        "1 customer".to_owned()
    } else {
        format!("{n} customers")
    }
}

/// The default answer to a rule: the size, the time taken (unless `elapsed` is `None`), and
/// the first members in id order, with how many more there are.
///
/// ```text
/// 12 customers in 0.45 ms
///   c-01, c-02, c-03, c-04, c-05, ... (7 more)
/// ```
pub fn summary(style: Style, size: u64, sample: &[String], elapsed: Option<Duration>) -> String {
    let mut out = style.bold(&customers(size));
    if let Some(d) = elapsed {
        let _ = write!(out, " {}", style.dim(&format!("in {}", duration(d))));
    }
    out.push('\n');
    if !sample.is_empty() {
        let _ = write!(out, "  {}", sample.join(", "));
        let more = size.saturating_sub(sample.len() as u64);
        if more > 0 {
            let _ = write!(out, ", ... ({more} more)");
        }
        out.push('\n');
    }
    out
}

/// The JSON answer, the same object as `audiencedb query --format json`.
pub fn json(
    size: u64,
    now: Timestamp,
    elapsed: Duration,
    ids: &[String],
    warnings: &[String],
) -> String {
    let value = serde_json::json!({
        "count": size,
        "now": time::format_rfc3339(now),
        "elapsed_ms": (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        "ids": ids,
        "warnings": warnings,
    });
    format!("{value}\n")
}

/// A rule's warnings under its answer: a yellow `warning:` heading on each.
pub fn warnings(style: Style, warnings: &[String]) -> String {
    warnings
        .iter()
        .map(|w| format!("{} {w}\n", style.yellow("warning:")))
        .collect()
}

/// An error: a red `error:` heading, then the message (which for a parse error goes on with the
/// source line and the caret under the spot).
pub fn error(style: Style, message: &str) -> String {
    format!("{} {message}\n", style.red("error:"))
}

/// The saved audiences as `.audiences` lists them: name, size, when a member last entered or
/// left, and the rule; then the time the members are exact at.
///
/// ```text
/// audience         members  members changed           rule
/// gold_viewers          18  2026-11-20T10:00:00.000Z  tier = Gold and viewed in last 30 days
/// members as of 2026-11-20T10:00:03.000Z
/// ```
pub fn audiences(all: &[AudienceInfo]) -> String {
    if all.is_empty() {
        return "no saved audiences (save one: .save NAME RULE)\n".to_owned();
    }
    let width = all.iter().map(|a| a.name.len()).max().unwrap_or(0).max(8);
    let mut out = format!(
        "{:<width$}  {:>9}  {:<24}  rule\n",
        "audience", "members", "members changed"
    );
    for a in all {
        let changed = a
            .members_changed
            .map_or_else(|| "never".to_owned(), time::format_rfc3339);
        let _ = writeln!(
            out,
            "{:<width$}  {:>9}  {changed:<24}  {}",
            a.name, a.size, a.rule
        );
    }
    if let Some(as_of) = all.iter().map(|a| a.as_of).max() {
        let _ = writeln!(out, "members as of {}", time::format_rfc3339(as_of));
    }
    out
}

/// What `.save` did: the size, and for a replaced rule who entered and left.
pub fn saved(style: Style, s: &Saved) -> String {
    let size = style.bold(&customers(s.info.size));
    match s.replaced {
        None => format!("saved audience {}: {size}\n", s.info.name),
        Some(r) => {
            let mut out = format!(
                "replaced the rule of audience {}: {size} ({} entered, {} left)\n",
                s.info.name, r.entered, r.left
            );
            if r.previewed_size != s.info.size {
                let _ = writeln!(
                    out,
                    "(entered and left were counted just before saving, at {} members: the store changed meanwhile)",
                    r.previewed_size
                );
            }
            out
        }
    }
}

/// The traits, events and properties the store holds, with their types and counts: what
/// `audiencedb schema` and the REPL's `.schema` print.
pub fn schema(s: &Schema) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} customers, {} with a profile",
        s.customers, s.profiles
    );
    let _ = writeln!(out, "\ntraits:");
    for t in &s.traits {
        let _ = writeln!(
            out,
            "  {:<24} {:<20} {:>9} customers  {}",
            t.name,
            t.types.join("|"),
            t.customers,
            if t.indexed {
                format!("indexed, {} values", t.distinct_values)
            } else if t.types.iter().all(|ty| matches!(*ty, "datetime" | "float")) {
                "compared by scan (dates and decimals have no value index)".into()
            } else {
                "not indexed (too many values)".into()
            }
        );
    }
    if !s.computed_traits.is_empty() {
        let _ = writeln!(out, "\ncomputed traits:");
        for t in &s.computed_traits {
            let _ = writeln!(out, "  {:<24} {}", t.name, t.expression);
        }
    }
    let _ = writeln!(out, "\nevents:");
    for e in &s.events {
        let _ = writeln!(
            out,
            "  {:<24} {:>10} events {:>9} customers",
            e.name, e.count, e.customers
        );
        for p in &e.properties {
            let _ = writeln!(
                out,
                "      {:<20} {:<20} {:>10} {}",
                p.name,
                p.types.join("|"),
                p.count,
                if p.indexed { "indexed" } else { "" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_shows_size_time_and_sample() {
        let ids: Vec<String> = (1..=5).map(|i| format!("c-{i}")).collect();
        let text = summary(Style::PLAIN, 7, &ids, Some(Duration::from_micros(450)));
        assert_eq!(
            text,
            "7 customers in 0.45 ms\n  c-1, c-2, c-3, c-4, c-5, ... (2 more)\n"
        );
        assert_eq!(
            summary(Style::PLAIN, 1, &ids[..1], None),
            "1 customer\n  c-1\n"
        );
        assert_eq!(summary(Style::PLAIN, 0, &[], None), "0 customers\n");
    }

    #[test]
    fn audiences_and_saves_are_tabled() {
        use super::super::backend::Replaced;
        assert_eq!(
            audiences(&[]),
            "no saved audiences (save one: .save NAME RULE)\n"
        );
        let info = AudienceInfo {
            name: "gold".into(),
            rule: "tier = Gold".into(),
            list_ids: None,
            size: 8,
            created: 0,
            rule_changed: 0,
            members_changed: None,
            as_of: 86_400_000,
            timers: 0,
            next_check: None,
        };
        assert_eq!(
            audiences(std::slice::from_ref(&info)),
            "audience    members  members changed           rule\n\
             gold              8  never                     tier = Gold\n\
             members as of 1970-01-02T00:00:00.000Z\n"
        );
        let mut saved_one = Saved {
            info,
            replaced: None,
        };
        assert_eq!(
            saved(Style::PLAIN, &saved_one),
            "saved audience gold: 8 customers\n"
        );
        saved_one.replaced = Some(Replaced {
            entered: 1,
            left: 3,
            previewed_size: 8,
        });
        assert_eq!(
            saved(Style::PLAIN, &saved_one),
            "replaced the rule of audience gold: 8 customers (1 entered, 3 left)\n"
        );
    }

    #[test]
    fn colours_only_when_asked() {
        assert_eq!(Style::PLAIN.red("error:"), "error:");
        assert_eq!(Style { color: true }.red("x"), "\x1b[1;31mx\x1b[0m");
        assert_eq!(duration(Duration::from_millis(2500)), "2.50 s");
    }
}
