//! The REPL for analysts (`audiencedb repl`): an interface over a database, either open in this
//! process (the library API: `Db::query`, `explain`, `why`, `schema`, `member_page` and the
//! saved-audience calls) or held by a running server and reached through its socket
//! (`audiencedb repl --socket PATH`). It never reaches into storage.
//!
//! - this module: the two loops. On a terminal, a rustyline editor with history kept across
//!   sessions, completion, hints, colours and multi-line rules; otherwise inputs are read line by
//!   line from stdin and answered without prompts or colours, so scripts can pipe rules in.
//! - `session`: the session's state and what one complete input does.
//! - `backend`: the [`Backend`] trait the session talks to, implemented by `&Db` and by
//!   [`Remote`] (a server's socket), so every rule and command answers alike on both.
//! - `commands`: the meta commands (`.help`, `.now`, `.explain`, `.audiences`, `.save`, ...), one
//!   table entry each.
//! - `complete`: the line editor's helper: completion, hints, highlighting, validation.
//! - `render`: how answers and errors look.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let db = audiencedb::Db::open("shop.db")?;
//! let rules = "tier = Gold\n.explain purchased ever\n.save gold tier = Gold\n";
//! let mut out = Vec::new();
//! let outcome = audiencedb::repl::run_script(&db, rules.as_bytes(), &mut out, &mut std::io::sink())?;
//! assert_eq!(outcome.failed, 0);
//!
//! // The same over a running server's socket.
//! let server = audiencedb::repl::Remote::connect("shop.db.sock".as_ref())?;
//! audiencedb::repl::run_script(server, rules.as_bytes(), &mut out, &mut std::io::sink())?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod commands;
mod complete;
pub mod render;
mod session;

pub use backend::{Answer, Backend, BackendError, Remote, Replaced, Saved, TopAnswer};
pub use commands::{MetaCommand, COMMANDS};
pub use complete::needs_more;
pub use session::{Failure, Flow, Format, Session};

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use rustyline::error::ReadlineError;
use rustyline::history::FileHistory;
use rustyline::{ColorMode, CompletionType, Config, Editor};

use crate::Error;
use complete::ReplHelper;
use render::Style;

/// Where the history lives unless the caller says: `$AUDIENCEDB_HISTORY`, else
/// `$XDG_STATE_HOME/audiencedb/repl_history`, else `~/.local/state/audiencedb/repl_history`. One
/// history for every database, as a shell keeps one for every folder. `None` when there is no
/// home either.
pub fn default_history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AUDIENCEDB_HISTORY").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(state.join("audiencedb").join("repl_history"))
}

/// How many inputs a session handled and how many of them failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    pub inputs: u64,
    pub failed: u64,
}

/// Runs the REPL on `backend` (`&Db`, or a [`Remote`]): interactive when stdin is a terminal, a
/// script reader otherwise. `history` is the history file of the interactive mode (`None`: none
/// kept).
pub fn run(backend: impl Backend, history: Option<&Path>) -> Result<Outcome, BackendError> {
    if std::io::stdin().is_terminal() {
        interactive(backend, history)
    } else {
        let stdin = std::io::stdin().lock();
        let mut stdout = std::io::stdout().lock();
        run_script(backend, stdin, &mut stdout, &mut std::io::stderr())
    }
}

/// Reads inputs line by line (a rule continues over lines while [`needs_more`] says so) and
/// answers each on `out`, errors on `err`, without prompts or colours. `.quit` or the end of the
/// input ends it.
pub fn run_script(
    backend: impl Backend,
    input: impl BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Outcome, BackendError> {
    let mut session = Session::new(backend, Style::PLAIN)?;
    let mut outcome = Outcome::default();
    let mut pending = String::new();
    let mut step = |text: &str, outcome: &mut Outcome| -> Result<Flow, Error> {
        if text.trim().is_empty() {
            return Ok(Flow::Continue);
        }
        outcome.inputs += 1;
        let flow = match session.handle(text, out) {
            Ok(flow) => flow,
            Err(Failure(message)) => {
                outcome.failed += 1;
                out.flush()?;
                err.write_all(render::error(Style::PLAIN, &message).as_bytes())?;
                Flow::Continue
            }
        };
        out.flush()?;
        Ok(flow)
    };
    for line in input.lines() {
        let line = line.map_err(Error::from)?;
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(&line);
        if needs_more(&pending) {
            continue;
        }
        if step(&std::mem::take(&mut pending), &mut outcome)? == Flow::Quit {
            return Ok(outcome);
        }
    }
    // An unfinished rule at the end of the input is run as it is: its parse error says what is
    // missing.
    step(&pending, &mut outcome)?;
    Ok(outcome)
}

fn readline_error(e: ReadlineError) -> Error {
    match e {
        ReadlineError::Io(e) => Error::from(e),
        other => Error::from(std::io::Error::other(other.to_string())),
    }
}

/// The interactive loop on a terminal.
fn interactive(backend: impl Backend, history: Option<&Path>) -> Result<Outcome, BackendError> {
    let style = Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut session = Session::new(backend, style)?;
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .history_ignore_space(true)
        .history_ignore_dups(true)
        .and_then(|c| c.max_history_size(10_000))
        .map_err(readline_error)?
        .color_mode(if style.color {
            ColorMode::Enabled
        } else {
            ColorMode::Disabled
        })
        .build();
    let mut editor: Editor<ReplHelper, FileHistory> =
        Editor::with_config(config).map_err(readline_error)?;
    editor.set_helper(Some(ReplHelper::new(session.names(), style)));

    let mut history = history.filter(|p| !p.as_os_str().is_empty());
    if let Some(path) = history {
        if let Err(e) = load_history(&mut editor, path) {
            eprintln!(
                "note: history {} cannot be used ({e}); this session's is not kept",
                path.display()
            );
            history = None;
        }
    }

    let customers = session.backend().schema()?.customers;
    println!(
        "audiencedb {} on {}: {}. Type a rule, or .help for the commands.",
        env!("CARGO_PKG_VERSION"),
        session.backend().location(),
        render::customers(customers)
    );
    let mut outcome = Outcome::default();
    loop {
        let prompt = session.prompt();
        let styled = style.green(&prompt);
        let line = match editor.readline(&(prompt.as_str(), styled.as_str())) {
            Ok(line) => line,
            // Ctrl-C drops the line being typed, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(readline_error(e).into()),
        };
        if line.trim().is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line.as_str());
        if let Some(path) = history {
            // Appended as it is typed, so a killed session loses nothing.
            if let Err(e) = editor.append_history(path) {
                eprintln!(
                    "note: cannot write the history {} ({e}); it is no longer kept",
                    path.display()
                );
                history = None;
            }
        }
        outcome.inputs += 1;
        let mut stdout = std::io::stdout().lock();
        let flow = session.handle(&line, &mut stdout);
        let _ = stdout.flush();
        drop(stdout);
        match flow {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => break,
            Err(Failure(message)) => {
                outcome.failed += 1;
                eprint!("{}", render::error(style, &message));
            }
        }
    }
    Ok(outcome)
}

/// Loads the history file, creating its folder; a file that does not exist yet is no error.
fn load_history(editor: &mut Editor<ReplHelper, FileHistory>, path: &Path) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match editor.load_history(path) {
        Ok(()) => Ok(()),
        Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(readline_error(e)),
    }
}
