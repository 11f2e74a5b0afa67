//! The meta commands: one entry in [`COMMANDS`] and one function each. `.help` lists the table,
//! completion offers its names, and a mistyped name gets a "did you mean". A new command is one
//! more entry and one more function here. Each works through the session's backend only, so it
//! behaves alike in process and over a socket; a command that writes (`.save`, `.drop`) calls
//! `Session::refresh_names` after.

use std::io::Write;

use super::render;
use super::session::{Failure, Flow, Format, Session};
use crate::model::time;
use crate::rules::words;

/// A meta command: its name with the dot, other names for it, its arguments, one line on what it
/// does, and the function that runs it with the text after the name.
pub struct MetaCommand {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub args: &'static str,
    pub about: &'static str,
    pub run: fn(&mut Session, &str, &mut dyn Write) -> Result<Flow, Failure>,
}

/// Every meta command, in the order `.help` lists them.
pub const COMMANDS: &[MetaCommand] = &[
    MetaCommand {
        name: ".help",
        aliases: &[],
        args: "",
        about: "list the commands",
        run: help,
    },
    MetaCommand {
        name: ".now",
        aliases: &[],
        args: "[TIME|clock]",
        about:
            "show or set the evaluation time (a date or RFC 3339); `clock` follows the clock again",
        run: now,
    },
    MetaCommand {
        name: ".explain",
        aliases: &[],
        args: "RULE",
        about: "the rule's plan with each node's estimate, exact size and time",
        run: explain,
    },
    MetaCommand {
        name: ".why",
        aliases: &[],
        args: "ID RULE",
        about: "whether one customer is in the audience, clause by clause, and why",
        run: why,
    },
    MetaCommand {
        name: ".audiences",
        aliases: &[],
        args: "",
        about: "the saved audiences: name, size, when members last changed, rule",
        run: audiences,
    },
    MetaCommand {
        name: ".save",
        aliases: &[],
        args: "NAME RULE",
        about: "save RULE as audience NAME (replacing its rule: who entered and left)",
        run: save,
    },
    MetaCommand {
        name: ".load",
        aliases: &[],
        args: "NAME FILE",
        about: "load FILE's ids (one per line, made elsewhere) as audience NAME",
        run: load_list,
    },
    MetaCommand {
        name: ".drop",
        aliases: &[],
        args: "NAME",
        about: "drop a saved audience (refused while another audience uses it)",
        run: drop_audience,
    },
    MetaCommand {
        name: ".traits",
        aliases: &[],
        args: "",
        about: "the computed traits: name, expression, the saved audiences reading each",
        run: traits,
    },
    MetaCommand {
        name: ".trait",
        aliases: &[],
        args: "NAME EXPRESSION",
        about: "define computed trait NAME (`.trait aov purchased avg(amount) ever`)",
        run: define_trait,
    },
    MetaCommand {
        name: ".refit",
        aliases: &[],
        args: "NAME",
        about: "fit a prediction's model again (`.refit p_alive`); a failed fit keeps the last",
        run: refit_trait,
    },
    MetaCommand {
        name: ".top",
        aliases: &[],
        args: "EVENT PROPERTY [WINDOW] [limit N] [order customers|lift] [min K] for RULE",
        about: "the values of PROPERTY the audience of RULE did, in distinct customers, with lift",
        run: top,
    },
    MetaCommand {
        name: ".funnel",
        aliases: &[],
        args: "STEP then STEP [then STEP ...] within N UNIT [WINDOW] [for RULE]",
        about: "how many customers reach each step within the time, and how fast",
        run: funnel,
    },
    MetaCommand {
        name: ".experiment",
        aliases: &[],
        args: "NAME [SHARES e.g. 5,95] for RULE goal RULE",
        about: "an A/B report: RULE's customers split by bucket(NAME), rates of meeting the goal",
        run: experiment,
    },
    MetaCommand {
        name: ".recommend",
        aliases: &[],
        args: "ID EVENT PROPERTY [WINDOW] [limit N]",
        about: "values to show a customer: co-occurring with theirs, best first",
        run: recommend,
    },
    MetaCommand {
        name: ".recent",
        aliases: &[],
        args: "ID EVENT PROPERTY [limit N]",
        about: "a customer's distinct values of PROPERTY, latest first",
        run: recent,
    },
    MetaCommand {
        name: ".schema",
        aliases: &[],
        args: "",
        about: "the traits, events and properties the store holds",
        run: schema,
    },
    MetaCommand {
        name: ".format",
        aliases: &[],
        args: "[summary|count|ids|json]",
        about: "show or set how an audience is printed (summary: size, time, first 5 ids)",
        run: format,
    },
    MetaCommand {
        name: ".timing",
        aliases: &[],
        args: "[on|off]",
        about: "show or set whether summaries show the time taken",
        run: timing,
    },
    MetaCommand {
        name: ".quit",
        aliases: &[".exit"],
        args: "",
        about: "leave (Ctrl-D does too)",
        run: quit,
    },
];

/// The command called `word` (with its dot), in any case.
pub fn find(word: &str) -> Option<&'static MetaCommand> {
    COMMANDS.iter().find(|c| {
        c.name.eq_ignore_ascii_case(word) || c.aliases.iter().any(|a| a.eq_ignore_ascii_case(word))
    })
}

/// The answer to a command that does not exist, with the closest name when one is close.
pub fn unknown(word: &str) -> Failure {
    let names: Vec<&str> = COMMANDS
        .iter()
        .flat_map(|c| std::iter::once(c.name).chain(c.aliases.iter().copied()))
        .collect();
    match words::suggest(word, &names) {
        Some(name) => Failure(format!("unknown command {word}, did you mean {name}?")),
        None => Failure(format!("unknown command {word}; .help lists the commands")),
    }
}

fn usage(name: &str) -> Failure {
    let args = find(name).map_or("", |c| c.args);
    Failure(format!("usage: {name} {args}"))
}

fn help(_: &mut Session, _: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    writeln!(
        out,
        "Type a rule to see its audience, e.g. tier = Gold and viewed in last 7 days"
    )?;
    writeln!(
        out,
        "(a rule goes on over lines while a parenthesis or quote is open or it ends in and/or/not)."
    )?;
    writeln!(out, "Tab completes, Up recalls history, Ctrl-D leaves.\n")?;
    for c in COMMANDS {
        let mut name = c.name.to_owned();
        for alias in c.aliases {
            name.push('|');
            name.push_str(alias);
        }
        let head = format!("{name} {}", c.args);
        writeln!(out, "  {head:<34} {}", c.about)?;
    }
    Ok(Flow::Continue)
}

fn now(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    if arg.eq_ignore_ascii_case("clock") {
        session.now = None;
    } else if !arg.is_empty() {
        // The same parsing as `audiencedb query --now`.
        let t = time::parse_user_time(arg).ok_or_else(|| {
            Failure(format!(
                ".now {arg:?} is not a date (2026-03-01), an RFC 3339 time (2026-03-01T12:00:00Z) or `clock`"
            ))
        })?;
        session.now = Some(t);
    }
    match session.now {
        Some(t) => writeln!(
            out,
            "now: {} (fixed; `.now clock` follows the clock again)",
            time::format_rfc3339(t)
        )?,
        None => writeln!(
            out,
            "now: {} (the clock; `.now TIME` fixes it)",
            time::format_rfc3339(time::now())
        )?,
    }
    Ok(Flow::Continue)
}

fn explain(session: &mut Session, rule: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    if rule.is_empty() {
        return Err(usage(".explain"));
    }
    let now = session.now();
    let plan = session.backend.explain(rule, now)?;
    write!(out, "{plan}")?;
    Ok(Flow::Continue)
}

fn why(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let (id, rule) = split_id(arg).ok_or_else(|| usage(".why"))?;
    let now = session.now();
    let answer = session.backend.why(id, rule, now)?;
    write!(out, "{answer}")?;
    Ok(Flow::Continue)
}

/// `ID RULE` into its two parts; an id with spaces may be quoted with `"` or `'`.
fn split_id(arg: &str) -> Option<(&str, &str)> {
    let (id, rule) = match arg.chars().next()? {
        q @ ('"' | '\'') => {
            let end = arg[1..].find(q)? + 1;
            (&arg[1..end], &arg[end + 1..])
        }
        _ => arg.split_once(char::is_whitespace)?,
    };
    let rule = rule.trim();
    (!id.is_empty() && !rule.is_empty()).then_some((id, rule))
}

/// `.top EVENT PROPERTY [WINDOW] [limit N] [order customers|lift] [min K] for RULE`.
fn top(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let request = parse_top(arg).ok_or_else(|| usage(".top"))?;
    let now = session.now();
    let answer = session.backend.top(&request, now)?;
    match session.format {
        Format::Json => writeln!(out, "{}", answer.json)?,
        _ => {
            out.write_all(crate::query::values::table(answer.audience, &answer.rows).as_bytes())?;
            for w in &answer.warnings {
                writeln!(out, "warning: {w}")?;
            }
        }
    }
    Ok(Flow::Continue)
}

/// The words of `.top` before `for` (event, property, then the window's words and the options in
/// any order) and the rule after it.
fn parse_top(arg: &str) -> Option<crate::query::TopRequest> {
    let (at, _) = arg.match_indices("for").find(|&(i, _)| {
        arg[..i].ends_with(char::is_whitespace) && arg[i + 3..].starts_with(char::is_whitespace)
    })?;
    let (head, rule) = (&arg[..at], arg[at + 3..].trim());
    let mut words = head.split_whitespace();
    let (event, property) = (words.next()?, words.next()?);
    let mut window = Vec::new();
    let (mut limit, mut order, mut min) = (None, None, None);
    while let Some(word) = words.next() {
        match word {
            "limit" => limit = Some(words.next()?.parse().ok()?),
            "min" => min = Some(words.next()?.parse().ok()?),
            "order" => {
                order = Some(match words.next()? {
                    "customers" => crate::query::TopOrder::Customers,
                    "lift" => crate::query::TopOrder::Lift,
                    _ => return None,
                })
            }
            w => window.push(w),
        }
    }
    if rule.is_empty() {
        return None;
    }
    let mut request = crate::query::TopRequest::new(rule, event, property);
    request.window = (!window.is_empty()).then(|| window.join(" "));
    request.limit = limit.unwrap_or(request.limit);
    request.order = order.unwrap_or_default();
    request.min_customers = min;
    Some(request)
}

/// `.funnel STEP then STEP ... within N UNIT [WINDOW] [for RULE]`.
fn funnel(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let request = parse_funnel(arg).ok_or_else(|| usage(".funnel"))?;
    let now = session.now();
    let answer = session.backend.funnel(&request, now)?;
    print_report(session, &answer, out)
}

/// `.experiment NAME [SHARES] for RULE goal RULE`.
fn experiment(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let request = parse_experiment(arg).ok_or_else(|| usage(".experiment"))??;
    let now = session.now();
    let answer = session.backend.experiment(&request, now)?;
    print_report(session, &answer, out)
}

fn print_report(
    session: &Session,
    answer: &super::backend::ReportAnswer,
    out: &mut dyn Write,
) -> Result<Flow, Failure> {
    match session.format {
        Format::Json => writeln!(out, "{}", answer.json)?,
        _ => {
            out.write_all(answer.table.as_bytes())?;
            for w in &answer.warnings {
                writeln!(out, "warning: {w}")?;
            }
        }
    }
    Ok(Flow::Continue)
}

/// The byte offset of the word `word` in `text` (surrounded by whitespace), the last one when
/// `last`.
fn word_at(text: &str, word: &str, last: bool) -> Option<usize> {
    let mut found = text.match_indices(word).filter(|&(i, _)| {
        i > 0
            && text[..i].ends_with(char::is_whitespace)
            && text[i + word.len()..].starts_with(char::is_whitespace)
    });
    if last {
        found.last().map(|(i, _)| i)
    } else {
        found.next().map(|(i, _)| i)
    }
}

/// The steps (split at `then`), the limit (the two words after the last `within`), the window
/// (the words after it, up to `for`) and the audience rule (after `for`).
fn parse_funnel(arg: &str) -> Option<crate::query::reports::FunnelRequest> {
    let at = word_at(arg, "within", true)?;
    let (head, tail) = (&arg[..at], &arg[at + "within".len()..]);
    let mut steps = Vec::new();
    let mut rest = head.trim();
    while let Some(i) = word_at(rest, "then", false) {
        steps.push(rest[..i].trim());
        rest = rest[i + "then".len()..].trim();
    }
    steps.push(rest);
    if steps.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (limit_and_window, rule) = match word_at(tail, "for", false) {
        Some(i) => (&tail[..i], Some(tail[i + "for".len()..].trim())),
        None => (tail, None),
    };
    let mut words = limit_and_window.split_whitespace();
    let within = format!("{} {}", words.next()?, words.next()?);
    let window: Vec<&str> = words.collect();
    let mut request = crate::query::reports::FunnelRequest::new(&steps, &within);
    request.window = (!window.is_empty()).then(|| window.join(" "));
    request.audience = match rule {
        Some("") => return None,
        other => other.map(str::to_owned),
    };
    Some(request)
}

/// The name, the shares (default 50,50), the audience rule (after `for`, up to the last `goal`)
/// and the goal rule; a bad list of shares is its own error.
fn parse_experiment(
    arg: &str,
) -> Option<Result<crate::query::reports::ExperimentRequest, crate::Error>> {
    let at = word_at(arg, "for", false)?;
    let mut head = arg[..at].split_whitespace();
    let name = head.next()?;
    let shares = head.next();
    if head.next().is_some() {
        return None;
    }
    let rest = &arg[at + "for".len()..];
    let goal_at = word_at(rest, "goal", true)?;
    let (audience, goal) = (
        rest[..goal_at].trim(),
        rest[goal_at + "goal".len()..].trim(),
    );
    if audience.is_empty() || goal.is_empty() {
        return None;
    }
    let mut request = crate::query::reports::ExperimentRequest::new(name, audience, goal);
    if let Some(shares) = shares {
        match crate::query::reports::parse_variants(shares) {
            Ok(v) => request.variants = v,
            Err(e) => return Some(Err(e)),
        }
    }
    Some(Ok(request))
}

/// `ID EVENT PROPERTY [WINDOW] [limit N]`: the parts, the window's words joined.
fn value_args(arg: &str) -> Option<(&str, &str, &str, Option<String>, usize)> {
    let mut words = arg.split_whitespace();
    let (id, event, property) = (words.next()?, words.next()?, words.next()?);
    let (mut window, mut limit) = (Vec::new(), 10);
    while let Some(word) = words.next() {
        match word {
            "limit" => limit = words.next()?.parse().ok()?,
            w => window.push(w),
        }
    }
    let window = (!window.is_empty()).then(|| window.join(" "));
    Some((id, event, property, window, limit))
}

/// `.recommend ID EVENT PROPERTY [WINDOW] [limit N]`: one value a line, best first.
fn recommend(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let (id, event, property, window, limit) =
        value_args(arg).ok_or_else(|| usage(".recommend"))?;
    let now = session.now();
    let values = session
        .backend
        .recommend(id, (event, property, window.as_deref()), limit, now)?;
    for v in &values {
        writeln!(out, "{v}")?;
    }
    if values.is_empty() {
        writeln!(out, "(no value)")?;
    }
    Ok(Flow::Continue)
}

/// `.recent ID EVENT PROPERTY [limit N]`: one value a line, latest first.
fn recent(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let (id, event, property, window, limit) = value_args(arg).ok_or_else(|| usage(".recent"))?;
    if window.is_some() {
        return Err(usage(".recent"));
    }
    let now = session.now();
    let values = session.backend.recent(id, (event, property), limit, now)?;
    for v in &values {
        writeln!(out, "{v}")?;
    }
    if values.is_empty() {
        writeln!(out, "(no value)")?;
    }
    Ok(Flow::Continue)
}

fn schema(session: &mut Session, _: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let schema = session.backend.schema()?;
    out.write_all(render::schema(&schema).as_bytes())?;
    Ok(Flow::Continue)
}

fn audiences(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    if !arg.is_empty() {
        return Err(usage(".audiences"));
    }
    let all = session.backend.audiences()?;
    out.write_all(render::audiences(&all).as_bytes())?;
    Ok(Flow::Continue)
}

fn save(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let (name, rule) = arg
        .split_once(char::is_whitespace)
        .map(|(n, r)| (n, r.trim()))
        .filter(|(_, r)| !r.is_empty())
        .ok_or_else(|| usage(".save"))?;
    let saved = session.backend.save_audience(name, rule)?;
    out.write_all(render::saved(session.style, &saved).as_bytes())?;
    // The saved rule (its reading pinned) can still name what the store has never seen.
    let warnings = session.backend.check(&saved.info.rule)?;
    out.write_all(render::warnings(session.style, &warnings).as_bytes())?;
    refresh_after_write(session);
    Ok(Flow::Continue)
}

fn load_list(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let (name, file) = arg
        .split_once(char::is_whitespace)
        .map(|(n, f)| (n, f.trim()))
        .filter(|(_, f)| !f.is_empty())
        .ok_or_else(|| usage(".load"))?;
    let text =
        std::fs::read_to_string(file).map_err(|e| Failure(format!("reading {file}: {e}")))?;
    let ids = crate::audience::ids_of_list_file(&text);
    let info = session.backend.load_audience(name, &ids)?;
    writeln!(
        out,
        "loaded list {}: {} ids naming {}",
        info.name,
        info.list_ids.unwrap_or_default(),
        render::customers(info.size)
    )?;
    refresh_after_write(session);
    Ok(Flow::Continue)
}

fn drop_audience(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    if arg.is_empty() || arg.contains(char::is_whitespace) {
        return Err(usage(".drop"));
    }
    let info = session.backend.drop_audience(arg)?;
    writeln!(
        out,
        "dropped audience {} ({}; its rule was: {})",
        info.name,
        render::customers(info.size),
        info.rule
    )?;
    refresh_after_write(session);
    Ok(Flow::Continue)
}

fn traits(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    if !arg.is_empty() {
        return Err(usage(".traits"));
    }
    let all = session.backend.traits()?;
    if all.is_empty() {
        writeln!(
            out,
            "no computed traits (define one: .trait NAME EXPRESSION)"
        )?;
    }
    for t in all {
        let used = if t.used_by.is_empty() {
            String::new()
        } else {
            format!("  (used by {})", t.used_by.join(", "))
        };
        writeln!(out, "{:<24} {}{used}", t.name, t.expression)?;
    }
    Ok(Flow::Continue)
}

fn define_trait(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let (name, expression) = arg
        .split_once(char::is_whitespace)
        .map(|(n, e)| (n, e.trim()))
        .filter(|(_, e)| !e.is_empty())
        .ok_or_else(|| usage(".trait"))?;
    let info = session.backend.define_trait(name, expression)?;
    writeln!(
        out,
        "defined computed trait {} = {}",
        info.name, info.expression
    )?;
    refresh_after_write(session);
    Ok(Flow::Continue)
}

fn refit_trait(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    let name = arg.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(usage(".refit"));
    }
    let info = session.backend.refit_trait(name)?;
    let fitted = info
        .model
        .as_ref()
        .and_then(|m| m["fitted_at"].as_str())
        .unwrap_or("?")
        .to_owned();
    writeln!(out, "refitted {} (fitted at {fitted})", info.name)?;
    Ok(Flow::Continue)
}

/// After a write that succeeded: completion learns the names. A failure here (a server gone
/// since) is not the write's; the next input reports it.
fn refresh_after_write(session: &mut Session) {
    let _ = session.refresh_names();
}

fn format(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    if !arg.is_empty() {
        session.format = Format::parse(arg).ok_or_else(|| usage(".format"))?;
    }
    writeln!(out, "format: {}", session.format.name())?;
    Ok(Flow::Continue)
}

fn timing(session: &mut Session, arg: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
    match arg.to_ascii_lowercase().as_str() {
        "" => {}
        "on" => session.timing = true,
        "off" => session.timing = false,
        _ => return Err(usage(".timing")),
    }
    let state = if session.timing { "on" } else { "off" };
    writeln!(out, "timing: {state}")?;
    Ok(Flow::Continue)
}

fn quit(_: &mut Session, _: &str, _: &mut dyn Write) -> Result<Flow, Failure> {
    Ok(Flow::Quit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_from_rules() {
        assert_eq!(split_id("c-1 tier = Gold"), Some(("c-1", "tier = Gold")));
        assert_eq!(
            split_id("\"Ann Lee\" tier = Gold"),
            Some(("Ann Lee", "tier = Gold"))
        );
        assert_eq!(split_id("c-1"), None);
        assert_eq!(split_id("\"open tier = Gold"), None);
        assert_eq!(split_id(""), None);
    }

    #[test]
    fn names_are_found_and_misspellings_suggested() {
        assert_eq!(find(".EXIT").map(|c| c.name), Some(".quit"));
        assert!(find(".nope").is_none());
        assert_eq!(
            unknown(".shema").0,
            "unknown command .shema, did you mean .schema?"
        );
        assert_eq!(
            unknown(".frobnicate").0,
            "unknown command .frobnicate; .help lists the commands"
        );
    }
}
