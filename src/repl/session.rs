//! One REPL session's state (the evaluation time, the output format, timing on or off, the names
//! known for completion, the [`Backend`] it talks to) and what happens to one complete input: a
//! meta command goes to its entry in [`super::commands::COMMANDS`], anything else is a rule run
//! through the backend.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use super::backend::{Backend, BackendError};
use super::commands;
use super::complete::Names;
use super::render::{self, Style, SAMPLE_MEMBERS};
use crate::model::time::{self, Timestamp};
use crate::Error;

/// What the loop does after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// An input that failed: the message for the user, without the `error:` heading. A parse error's
/// message goes on with the source line and the caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::Rule(parse) => {
                let drawn = parse.render();
                Failure(drawn.strip_prefix("error: ").unwrap_or(&drawn).to_owned())
            }
            other => Failure(other.to_string()),
        }
    }
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Db(e) => e.into(),
            BackendError::Socket(e) => Failure(e.to_string()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(format!("writing the output: {e}"))
    }
}

/// How a rule's audience is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The size, the time taken and the first few members.
    Summary,
    /// The size alone.
    Count,
    /// Every member's id, sorted, one per line.
    Ids,
    /// `{"count", "now", "elapsed_ms", "ids"}` as `audiencedb query --format json`.
    Json,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Summary, Format::Count, Format::Ids, Format::Json];

    pub fn name(self) -> &'static str {
        match self {
            Format::Summary => "summary",
            Format::Count => "count",
            Format::Ids => "ids",
            Format::Json => "json",
        }
    }

    pub fn parse(word: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(word))
    }
}

/// The state of one session over one database, in process or behind a socket.
pub struct Session<'a> {
    pub(super) backend: Box<dyn Backend + 'a>,
    /// The fixed evaluation time, or `None` for the clock at each rule.
    pub(super) now: Option<Timestamp>,
    pub(super) format: Format,
    /// Whether summaries show the time taken.
    pub(super) timing: bool,
    pub(super) style: Style,
    names: Rc<RefCell<Names>>,
}

impl<'a> Session<'a> {
    /// A session over `backend`, with the names completion offers read from it (which fails
    /// only when a socket does).
    pub fn new(backend: impl Backend + 'a, style: Style) -> Result<Session<'a>, BackendError> {
        let mut session = Session {
            backend: Box::new(backend),
            now: None,
            format: Format::Summary,
            timing: true,
            style,
            names: Rc::default(),
        };
        session.refresh_names()?;
        Ok(session)
    }

    /// The names completion offers, shared with the line editor's helper.
    pub fn names(&self) -> Rc<RefCell<Names>> {
        Rc::clone(&self.names)
    }

    /// The database behind the session.
    pub fn backend(&mut self) -> &mut dyn Backend {
        &mut *self.backend
    }

    /// Reads the event, trait, property and audience names again: a command that writes calls
    /// this after writing.
    pub fn refresh_names(&mut self) -> Result<(), BackendError> {
        let schema = self.backend.schema()?;
        let audiences = self.backend.audiences()?;
        *self.names.borrow_mut() = Names::new(&schema, audiences.into_iter().map(|a| a.name));
        Ok(())
    }

    /// The evaluation time for the next rule.
    pub fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(time::now)
    }

    /// The prompt, which shows a fixed evaluation time so that nobody forgets it is set.
    pub fn prompt(&self) -> String {
        match self.now {
            None => "audiencedb> ".to_owned(),
            Some(t) => format!("audiencedb @{}> ", time::format_rfc3339(t)),
        }
    }

    /// Handles one complete input (a rule may span lines). Results go to `out`.
    pub fn handle(&mut self, input: &str, out: &mut dyn Write) -> Result<Flow, Failure> {
        let text = input.trim();
        if text.is_empty() {
            return Ok(Flow::Continue);
        }
        if text.starts_with('.') {
            let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
            let command = commands::find(word).ok_or_else(|| commands::unknown(word))?;
            return (command.run)(self, rest.trim(), out);
        }
        self.run_rule(text, out)?;
        Ok(Flow::Continue)
    }

    /// Evaluates a rule at the session's now and prints the audience in the session's format.
    pub(super) fn run_rule(&mut self, rule: &str, out: &mut dyn Write) -> Result<(), Failure> {
        let now = self.now();
        let warnings = match self.format {
            Format::Summary => {
                let (answer, sample) = self.backend.sample(rule, now, SAMPLE_MEMBERS)?;
                let elapsed = self.timing.then_some(answer.elapsed);
                out.write_all(
                    render::summary(self.style, answer.size, &sample, elapsed).as_bytes(),
                )?;
                answer.warnings
            }
            Format::Count => {
                let (answer, _) = self.backend.sample(rule, now, 0)?;
                writeln!(out, "{}", answer.size)?;
                answer.warnings
            }
            Format::Ids => {
                self.backend
                    .each_id(rule, now, &mut |id| writeln!(out, "{id}"))?
                    .warnings
            }
            Format::Json => {
                let mut ids = Vec::new();
                let answer = self.backend.each_id(rule, now, &mut |id| {
                    ids.push(id.to_owned());
                    Ok(())
                })?;
                let json = render::json(
                    answer.size,
                    answer.now,
                    answer.elapsed,
                    &ids,
                    &answer.warnings,
                );
                out.write_all(json.as_bytes())?;
                // In the JSON above.
                Vec::new()
            }
        };
        out.write_all(render::warnings(self.style, &warnings).as_bytes())?;
        Ok(())
    }
}
