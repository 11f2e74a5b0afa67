//! `audiencedb repl` as an analyst uses it: the real binary in a pseudo-terminal, keys typed in,
//! and assertions on what the screen shows (a vt100 emulator keeps the screen); and the same
//! command fed from a pipe, as a script uses it.
//!
//! Waits are for expected text with a generous deadline, never fixed sleeps, so a loaded machine
//! only makes the tests slower.

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audiencedb::model::{time, Value};
use audiencedb::Db;
use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};

const ROWS: u16 = 60;
const COLS: u16 = 140;
const PATIENCE: Duration = Duration::from_secs(90);

/// Ten customers: c-01..c-08 Gold, c-09 and c-10 Silver; c-01..c-04 viewed product X on
/// 2026-03-01, c-02 and c-03 added to cart on 2026-03-05, c-01 purchased.
fn shop(dir: &Path) -> PathBuf {
    let path = dir.join("shop.db");
    let db = Db::open(&path).unwrap();
    let at = |s: &str| Some(time::parse_rfc3339(s).unwrap());
    for i in 1..=10 {
        let tier = if i <= 8 { "Gold" } else { "Silver" };
        let country = if i % 2 == 0 { "FI" } else { "SE" };
        db.identify(
            &format!("c-{i:02}"),
            vec![
                ("tier".into(), Some(Value::Str(tier.into()))),
                ("country".into(), Some(Value::Str(country.into()))),
            ],
        )
        .unwrap();
    }
    let product = || vec![("product".into(), Value::Str("X".into()))];
    for i in 1..=4 {
        let id = format!("c-{i:02}");
        db.track(&id, "viewed", product(), at("2026-03-01T10:00:00Z"))
            .unwrap();
    }
    for id in ["c-02", "c-03"] {
        db.track(id, "added_to_cart", product(), at("2026-03-05T10:00:00Z"))
            .unwrap();
    }
    db.track(
        "c-01",
        "purchased",
        vec![("amount".into(), Value::Float(59.9))],
        at("2026-03-02T10:00:00Z"),
    )
    .unwrap();
    drop(db);
    path
}

/// The binary running in a pseudo-terminal, and the screen it has drawn.
struct Terminal {
    screen: Arc<Mutex<vt100::Parser>>,
    keys: Box<dyn Write + Send>,
    child: Box<dyn Child + Send + Sync>,
    _master: Box<dyn MasterPty + Send>,
}

impl Terminal {
    fn start(dir: &Path, args: &[&str]) -> Terminal {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_audiencedb"));
        cmd.args(args);
        cmd.cwd(dir);
        cmd.env("TERM", "xterm-256color");
        cmd.env("AUDIENCEDB_HISTORY", dir.join("history"));
        cmd.env_remove("NO_COLOR");
        cmd.env_remove("AUDIENCEDB_PATH");
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            NonZeroU16::new(ROWS).unwrap(),
            NonZeroU16::new(COLS).unwrap(),
            0,
        )));
        let mut output = pty.master.try_clone_reader().unwrap();
        let drawn = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = output.read(&mut buf) {
                drawn.lock().unwrap().process(&buf[..n]);
            }
        });
        let keys = pty.master.take_writer().unwrap();
        Terminal {
            screen,
            keys,
            child,
            _master: pty.master,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// The text of the row the cursor is on, and the cursor's column.
    fn cursor_row(&self) -> (String, usize) {
        let parser = self.screen.lock().unwrap();
        let screen = parser.screen();
        let (row, col) = screen.cursor_position();
        let text = screen
            .rows(0, COLS)
            .nth(usize::from(row))
            .unwrap_or_default();
        (text, usize::from(col))
    }

    /// Waits until `done` holds for the screen, or fails showing the screen.
    fn wait_until(&self, what: &str, done: impl Fn(&Terminal) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "waited {PATIENCE:?} for {what}; the screen shows:\n{}",
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_for(&self, text: &str) {
        self.wait_until(&format!("{text:?}"), |t| t.contents().contains(text));
    }

    /// Waits for an empty prompt with the cursor after it: the editor is reading keys.
    fn wait_prompt(&self) {
        self.wait_until("an empty prompt", |t| {
            let (row, col) = t.cursor_row();
            let row = row.trim_end();
            row.starts_with("audiencedb") && row.ends_with('>') && col == row.len() + 1
        });
    }

    /// Waits until the row being edited reads `text` between the prompt and the cursor (a dim
    /// hint may follow the cursor).
    fn wait_line(&self, text: &str) {
        self.wait_until(&format!("the line {text:?}"), |t| {
            let (row, col) = t.cursor_row();
            let typed: String = row.chars().take(col).collect();
            typed
                .split_once("> ")
                .is_some_and(|(_, line)| line.trim_end() == text.trim_end())
        });
    }

    fn send(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Types a line at a fresh prompt and presses Enter.
    fn enter(&mut self, line: &str) {
        self.wait_prompt();
        self.send(line);
        self.send("\r");
    }

    /// Leaves with `.quit` and waits for a clean exit.
    fn quit(mut self) {
        self.enter(".quit");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit {status:?}:\n{}", self.contents());
                return;
            }
            assert!(Instant::now() < deadline, "no exit:\n{}", self.contents());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn repl(dir: &Path, db: &Path) -> Terminal {
    Terminal::start(dir, &["--db", db.to_str().unwrap(), "repl"])
}

#[test]
fn a_rule_shows_its_size_sample_members_and_time_and_a_bad_rule_its_caret() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let mut t = repl(dir.path(), &db);
    t.wait_for("10 customers. Type a rule, or .help for the commands.");
    t.enter("tier = Gold");
    t.wait_for("8 customers in ");
    t.wait_for("  c-01, c-02, c-03, c-04, c-05, ... (3 more)");
    assert!(t.contents().contains(" ms\n"), "{}", t.contents());

    t.enter("viewed in lst 30 days");
    t.wait_for("error: unknown keyword 'lst', did you mean 'last'?");
    t.wait_for("^^^ expected");
    let screen = t.contents();
    let lines: Vec<&str> = screen.lines().collect();
    let source = lines
        .iter()
        .position(|l| l.starts_with("1 | viewed in lst 30 days"))
        .expect(&screen);
    let caret = lines[source + 1];
    let column = "1 | viewed in ".len();
    assert_eq!(&caret[column..column + 3], "^^^", "{screen}");
    assert_eq!(caret[..column].trim(), "|", "{screen}");
    t.quit();
}

#[test]
fn help_now_and_explain() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let mut t = repl(dir.path(), &db);
    t.enter(".help");
    for entry in [
        ".now [TIME|clock]",
        ".explain RULE",
        ".why ID RULE",
        ".schema",
        ".quit|.exit",
    ] {
        t.wait_for(entry);
    }

    // At 2026-03-10 the views of 2026-03-01 are in the last 30 days; at 2026-04-15 they are not.
    t.enter(".now 2026-03-10");
    t.wait_for("now: 2026-03-10T00:00:00.000Z (fixed");
    t.enter("viewed in last 30 days");
    t.wait_for("4 customers in ");
    t.enter(".now 2026-04-15T12:00:00+02:00");
    t.wait_for("now: 2026-04-15T10:00:00.000Z (fixed");
    t.wait_for("audiencedb @2026-04-15T10:00:00.000Z> ");
    t.enter("viewed in last 30 days");
    t.wait_for("0 customers in ");
    t.enter(".now yesterday");
    t.wait_for("error: .now \"yesterday\" is not a date");

    t.enter(".explain viewed in last 60 days and tier = Gold");
    t.wait_for("rule: viewed in last 60 days and tier = Gold");
    t.wait_for("now:  2026-04-15T10:00:00.000Z");
    t.wait_for("tier = Gold  estimate 8 (exact), actual 8");
    t.quit();
}

#[test]
fn tab_completes_keywords_and_the_stores_event_names() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let mut t = repl(dir.path(), &db);
    t.enter(".now 2026-03-10");
    t.wait_for("now: 2026-03-10");

    // An event name from the store: `added_` becomes `added_to_cart `.
    t.wait_prompt();
    t.send("added_\t");
    t.wait_line("added_to_cart");
    t.send("in last 30 days\r");
    t.wait_for("2 customers in ");
    assert!(t.contents().contains("  c-02, c-03\n"), "{}", t.contents());

    // A keyword: `la` becomes `last `; without it the rule would not parse.
    t.wait_prompt();
    t.send("viewed in la\t");
    t.wait_line("viewed in last");
    t.send("30 days and tier = Gold\r");
    t.wait_for("4 customers in ");
    assert!(!t.contents().contains("error"), "{}", t.contents());

    // A meta command.
    t.wait_prompt();
    t.send(".sch\t");
    t.wait_line(".schema");
    t.send("\r");
    t.wait_for("added_to_cart");
    t.wait_for("10 customers, 10 with a profile");
    t.quit();
}

#[test]
fn an_unfinished_rule_goes_on_over_lines() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let mut t = repl(dir.path(), &db);
    t.enter(".now 2026-03-10");
    t.wait_for("now: 2026-03-10");
    // An open parenthesis and a trailing `or` keep the rule open; the closing line runs it.
    t.enter("tier = Gold and (");
    t.wait_until("a continuation line", |t| {
        let (row, col) = t.cursor_row();
        col == 0 && row.trim().is_empty()
    });
    t.send("added_to_cart or\r");
    t.wait_until("a second continuation line", |t| {
        let (row, col) = t.cursor_row();
        t.contents().contains("added_to_cart or") && col == 0 && row.trim().is_empty()
    });
    t.send("purchased)\r");
    t.wait_for("3 customers in ");
    t.wait_for("  c-01, c-02, c-03\n");
    assert!(!t.contents().contains("error"), "{}", t.contents());
    t.quit();
}

#[test]
fn lines_typed_while_a_rule_runs_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let mut t = repl(dir.path(), &db);
    // Three inputs in one write: the editor reads them all at once and must keep what follows
    // the first Enter for the next prompts.
    t.enter("tier = Silver\r.format count\rtier = Gold");
    t.wait_for("  c-09, c-10\n");
    t.wait_for("format: count");
    t.wait_for("\n8\n");
    t.quit();
}

#[test]
fn history_is_recalled_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let mut t = repl(dir.path(), &db);
    t.enter("tier = Silver and country = SE");
    t.wait_for("1 customer in ");
    t.quit();

    let mut t = repl(dir.path(), &db);
    t.wait_prompt();
    // The last entry is `.quit`; one more Up is the rule.
    t.send("\x1b[A");
    t.wait_line(".quit");
    t.send("\x1b[A");
    t.wait_line("tier = Silver and country = SE");
    t.send("\r");
    t.wait_for("1 customer in ");
    t.wait_for("  c-09\n");
    t.quit();
}

fn script(db: &Path, input: &str) -> std::process::Output {
    run_script(&["--db".as_ref(), db.as_os_str(), "repl".as_ref()], input)
}

/// The binary with `args`, `input` on its stdin, run to its end.
fn run_script(args: &[&std::ffi::OsStr], input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that fails before reading closes the pipe early: that is its answer to check.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn without_a_terminal_it_reads_stdin_and_prints_plain_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let input = ".now 2026-03-10\n.timing off\ntier = Gold\ncountry in (FI,\n  SE) and\nviewed product X in last 30 days\n.format ids\nadded_to_cart\n.format count\neveryone\n";
    let out = script(&db, input);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "now: 2026-03-10T00:00:00.000Z (fixed; `.now clock` follows the clock again)\n\
         timing: off\n\
         8 customers\n  c-01, c-02, c-03, c-04, c-05, ... (3 more)\n\
         4 customers\n  c-01, c-02, c-03, c-04\n\
         format: ids\n\
         c-02\nc-03\n\
         format: count\n\
         10\n"
    );
    assert!(out.stderr.is_empty());
    assert!(!stdout.contains('\x1b'), "no colours in a pipe");

    // Errors go to stderr with the caret, the other inputs still run, and the status is 1.
    let out = script(
        &db,
        ".format count\nviewed in lst 30 days\ntier = Gold\n.frobnicate\n.quit\ntier = Silver\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "format: count\n8\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr,
        "error: unknown keyword 'lst', did you mean 'last'?\n \
         --> line 1, column 11\n  |\n\
         1 | viewed in lst 30 days\n  |           ^^^ expected 'last' or 'the last'\n\
         error: unknown command .frobnicate; .help lists the commands\n\
         error: 2 of 5 inputs failed\n"
    );

    // Warnings come under the answer; they are not errors.
    let out = script(
        &db,
        ".format count\ntier = gold\nviewd in last 30 days\n.save typo viewd ever\n",
    );
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(
            "format: count\n0\nwarning: no customer has tier 'gold'; did you mean 'Gold'?\n\
             0\nwarning: no event 'viewd' in this store; did you mean 'viewed'?\n\
             saved audience typo: 0 customers"
        ),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("warning: no event 'viewd' in this store; did you mean 'viewed'?\n"),
        "{stdout}"
    );

    // A rule left open at the end of the input is run and its error says what is missing.
    let out = script(&db, "tier = Gold and\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("line 1, column 16"), "{stderr}");
}

#[test]
fn a_missing_database_is_a_friendly_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = script(&dir.path().join("nothing.db"), "tier = Gold\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: no database at "), "{stderr}");
}

#[test]
fn demo_on_a_terminal_opens_the_repl_on_the_shop_it_built() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let mut t = Terminal::start(
        dir.path(),
        &["--db", db.to_str().unwrap(), "demo", "--customers", "200"],
    );
    t.wait_for("Opening the REPL");
    t.enter("purchased ever or not purchased ever");
    t.wait_for("... (195 more)");
    t.quit();
}

#[test]
fn a_database_open_elsewhere_is_a_friendly_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = shop(dir.path());
    let _held = Db::open(&path).unwrap();
    let out = script(&path, "tier = Gold\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("is open in another process"), "{stderr}");
}

/// `audiencedb serve` on `db` in a child process, stopped with SIGTERM when dropped.
struct Server {
    child: std::process::Child,
    socket: PathBuf,
}

impl Server {
    fn start(db: &Path) -> Server {
        let socket = audiencedb::server::default_socket(db);
        let child = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
            .arg("--db")
            .arg(db)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Server { child, socket }
    }

    /// [`script`] through this server's socket (`repl --socket`).
    fn script(&self, input: &str) -> std::process::Output {
        let args = [
            "repl".as_ref(),
            "--socket".as_ref(),
            self.socket.as_os_str(),
        ];
        run_script(&args, input)
    }

    /// SIGTERM, then a clean exit.
    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: a signal to our own child, which has not been reaped yet.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let status = self.child.wait().unwrap();
            assert!(status.success(), "server exit {status:?}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let _ = self.child.wait();
        }
    }
}

#[test]
fn save_lists_and_completes_saved_audiences() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let mut t = repl(dir.path(), &db);
    t.enter(".audiences");
    t.wait_for("no saved audiences (save one: .save NAME RULE)");
    t.enter(".save golden tier = Gold");
    t.wait_for("saved audience golden: 8 customers");
    t.enter(".save golden tier = Gold and country = FI");
    t.wait_for("replaced the rule of audience golden: 4 customers (0 entered, 4 left)");
    t.enter(".save 9lives tier = Gold");
    t.wait_for("error: invalid input: audience name \"9lives\"");
    t.enter(".audiences");
    t.wait_for("golden            4  ");
    t.wait_for("tier = Gold and country = FI");

    // The new name completes after `in audience`, and the rule runs.
    t.wait_prompt();
    t.send("in audience gol\t");
    t.wait_line("in audience golden");
    t.send("and not country = SE\r");
    t.wait_for("  c-02, c-04, c-06, c-08\n");
    // ... and as the argument of `.drop`.
    t.wait_prompt();
    t.send(".drop go\t");
    t.wait_line(".drop golden");
    t.send("\r");
    t.wait_for("dropped audience golden (4 customers; its rule was: tier = Gold and country = FI)");
    t.enter("in audience golden");
    t.wait_for("error: cannot evaluate the rule:");
    t.quit();
}

#[test]
fn repl_over_a_running_servers_socket() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let server = Server::start(&db);
    let socket = server.socket.to_str().unwrap().to_owned();

    // The folder is the server's: `repl` says so and names the socket.
    let out = script(&db, "tier = Gold\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("repl --socket {socket}")),
        "{stderr}"
    );

    let mut t = Terminal::start(dir.path(), &["repl", "--socket", &socket]);
    t.wait_for(&format!("on the server at {socket}: 10 customers."));
    t.enter(".now 2026-03-10");
    t.wait_for("now: 2026-03-10");
    t.enter("tier = Gold and viewed in last 30 days");
    t.wait_for("4 customers in ");
    t.wait_for("  c-01, c-02, c-03, c-04\n");
    t.enter(".explain viewed in last 60 days and tier = Gold");
    t.wait_for("tier = Gold  estimate 8 (exact), actual 8");
    t.enter(".save carts added_to_cart ever");
    t.wait_for("saved audience carts: 2 customers");
    t.wait_prompt();
    t.send("in audience ca\t");
    t.wait_line("in audience carts");
    t.send("\r");
    t.wait_for("2 customers in ");
    t.enter("viewed in lst 30 days");
    t.wait_for("error: unknown keyword 'lst', did you mean 'last'?");
    t.wait_for("^^^ expected");
    t.quit();
    server.stop();
}

/// Over the socket, a script gets the same answers as in process, word for word.
#[test]
fn a_script_over_the_socket_answers_as_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let input = ".now 2026-03-10\n.timing off\ntier = Gold\n.save buyers purchased ever\n\
                 .save buyers purchased ever or added_to_cart ever\n.audiences\n.drop nope\n\
                 .format ids\nin audience buyers\n.format json\ncountry = FI and in audience buyers\n\
                 .format count\neveryone\ntier = gold\n.format json\nviewd\n.format summary\nteir = Gold\n\
                 .why c-02 in audience buyers\n.explain tier = Silver\n\
                 viewed in lst 30 days\n.drop buyers\n";
    let local = script(&db, input);
    let server = Server::start(&db);
    let remote = server.script(input);
    server.stop();

    let stdout = String::from_utf8(remote.stdout).unwrap();
    let stderr = String::from_utf8(remote.stderr).unwrap();
    assert_eq!(remote.status.code(), Some(1), "{stdout}{stderr}");
    // Only the times taken and the audiences' clock differ.
    let steady = |s: &str| -> String {
        s.lines()
            .filter(|l| !l.starts_with("members as of "))
            .map(|l| {
                let l = match l.find("\"elapsed_ms\":") {
                    Some(i) => format!("{}{}", &l[..i], &l[l[i..].find(',').unwrap() + i + 1..]),
                    None => l.to_owned(),
                };
                match l.find(" bitmaps ") {
                    Some(i) => l[..i].to_owned(),
                    None => l,
                }
            })
            .map(|l| {
                // "members changed" is when the define ran.
                if l.starts_with("buyers ") {
                    l.split_whitespace()
                        .enumerate()
                        .filter(|(i, _)| *i != 2)
                        .map(|(_, w)| w)
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let local_out = String::from_utf8(local.stdout).unwrap();
    assert_eq!(steady(&stdout), steady(&local_out));
    assert_eq!(stderr, String::from_utf8(local.stderr).unwrap());
    for expected in [
        "saved audience buyers: 1 customer\n",
        "replaced the rule of audience buyers: 3 customers (2 entered, 0 left)\n",
        "\nc-01\nc-02\nc-03\nformat: json\n{\"count\":1,",
        "\"ids\":[\"c-02\"],\"now\":\"2026-03-10T00:00:00.000Z\",\"warnings\":[]}\n",
        "0\nwarning: no customer has tier 'gold'; did you mean 'Gold'?\n",
        "\"warnings\":[\"no event 'viewd' in this store; did you mean 'viewed'?\"]}\n",
        "0 customers\nwarning: no trait 'teir' in this store; did you mean 'tier'?\n",
        "customer \"c-02\" is in the audience",
        "dropped audience buyers (3 customers; its rule was: purchased ever or added_to_cart ever)\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert!(
        stderr.contains("error: not found: audience \"nope\"\n"),
        "{stderr}"
    );
    assert!(stderr.contains("^^^ expected 'last'"), "{stderr}");
    assert!(
        stderr.ends_with("error: 2 of 22 inputs failed\n"),
        "{stderr}"
    );

    // No server: a clear error, status 1.
    let out = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .args(["repl", "--socket"])
        .arg(dir.path().join("none.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: cannot connect to "), "{stderr}");
    assert!(
        stderr.contains("is `audiencedb serve` running there?"),
        "{stderr}"
    );
}

#[test]
fn demo_saves_its_audiences_once_and_runs_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.db");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_audiencedb"))
            .arg("--db")
            .arg(&db)
            .args(["demo", "--customers", "200"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let names = [
        "gold_viewers",
        "lapsed_buyers",
        "cart_abandoners",
        "high_spenders",
        "new_visitors",
        "unsubscribed",
    ];
    let first = run();
    for name in names {
        assert!(
            first.contains(&format!("  saved {name} ")),
            "{name}:\n{first}"
        );
    }
    // The example that names a saved audience runs as written.
    assert!(
        first.contains("customers  not in audience unsubscribed")
            || first.contains("and not in audience unsubscribed"),
        "{first}"
    );
    let second = run();
    for name in names {
        assert!(
            second.contains(&format!("  kept  {name} ")),
            "{name}:\n{second}"
        );
    }
    assert!(!second.contains("  saved "), "{second}");
    let db = Db::open(&db).unwrap();
    let saved: Vec<String> = db.audiences().into_iter().map(|a| a.name).collect();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(saved, expected);
    // Each has members on the generated shop: the rules use its real names.
    for a in db.audiences() {
        if a.name != "new_visitors" {
            assert!(a.size > 0, "{a:?}");
        }
    }
}

/// `.top` in a script, in process and through a server's socket: the same words.
#[test]
fn values_in_a_script_in_process_and_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let input = ".now 2026-03-10\n\
                 .top viewed product for tier = Gold\n\
                 .top viewed product in last 30 days limit 1 order lift min 1 for everyone\n\
                 .top viewd product for everyone\n\
                 .top viewed product in lst 3 days for everyone\n\
                 .top viewed product\n\
                 .top purchased amount for everyone\n\
                 .recommend c-02 added_to_cart product\n\
                 .recommend c-01 viewed product in last 30 days limit 3\n\
                 .recent c-03 viewed product\n\
                 .recent c-03 viewed product ever\n\
                 .format json\n\
                 .top added_to_cart product for viewed product X\n";
    let local = script(&db, input);
    let server = Server::start(&db);
    let remote = server.script(input);
    server.stop();
    let stdout = String::from_utf8(local.stdout).unwrap();
    let stderr = String::from_utf8(local.stderr).unwrap();
    assert_eq!(String::from_utf8(remote.stdout).unwrap(), stdout);
    assert_eq!(local.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(remote.status.code(), Some(1));
    for expected in [
        "audience: 8 customers\n\
         value  customers    share   everyone     lift\n\
         X              4   50.00%          4     1.25\n",
        "audience: 10 customers\n\
         value  customers    share   everyone     lift\n\
         X              4   40.00%          4     1.00\n",
        "(no value)\nwarning: no event 'viewd' in this store; did you mean 'viewed'?\n",
        // c-02 added X to the cart, the only value: nothing else co-occurs.
        "(no value)\n(no value)\nX\n",
        "{\"audience\":4,\"rows\":[{\"customers\":2,\"everyone\":2,\"lift\":2.5,\"share\":0.5,\
         \"value\":\"X\"}]}\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    for expected in [
        "unknown keyword",
        "usage: .top EVENT PROPERTY",
        "usage: .recent ID EVENT PROPERTY",
        "property 'amount' of event 'purchased' holds float values",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
}

/// `.funnel` and `.experiment` print the same tables in process and through a server.
#[test]
fn reports_in_a_script_in_process_and_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let input = ".now 2026-03-10\n\
                 .funnel viewed then added_to_cart within 7 days in last 30 days for tier = Gold\n\
                 .experiment checkout_2026 20,80 for viewed ever goal added_to_cart ever\n\
                 .funnel viewed within 7 days\n\
                 .experiment checkout_2026 5,96 for everyone goal viewed\n";
    let local = script(&db, input);
    let server = Server::start(&db);
    let remote = server.script(input);
    server.stop();
    let stdout = String::from_utf8(local.stdout).unwrap();
    let stderr = String::from_utf8(local.stderr).unwrap();
    assert_eq!(String::from_utf8(remote.stdout).unwrap(), stdout);
    assert_eq!(String::from_utf8(remote.stderr).unwrap(), stderr);
    // c-01..c-04 viewed X on 1 March; c-02 and c-03 added it to the cart four days later.
    assert!(
        stdout.contains("viewed                 4")
            && stdout.contains("added_to_cart          2         50.00%"),
        "{stdout}"
    );
    assert!(stdout.contains("95% interval"), "{stdout}");
    for expected in ["a funnel has 2 to 32 steps", "are not a split"] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
}

/// `.load NAME FILE`: a list of ids made elsewhere, in process and through a server alike.
#[test]
fn a_member_list_is_loaded_from_the_repl() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "c-01\nc-09\n\nnobody-yet\n").unwrap();
    let input = format!(
        ".format count\n.load vips {}\nin audience vips and tier = Gold\n.load vips\n",
        ids.display()
    );
    let expect = "format: count\nloaded list vips: 3 ids naming 2 customers\n1\n";
    let out = script(&db, &input);
    assert_eq!(String::from_utf8_lossy(&out.stdout), expect);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("usage: .load NAME FILE"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Server::start(&db);
    std::fs::write(&ids, "c-02\nc-10\nnobody-yet\n").unwrap();
    let out = server.script(&input);
    assert_eq!(String::from_utf8_lossy(&out.stdout), expect);
    server.stop();
}

#[test]
fn computed_traits_are_defined_listed_and_used_from_the_repl() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop(dir.path());
    let input = ".format count\n.trait views viewed count ever\n.traits\nviews >= 1\n.trait views viewed count\n.trait tier viewed count\n.trait\n.refit views\n.refit\n";
    let expect = "format: count\ndefined computed trait views = viewed count ever\nviews                    viewed count ever\n4\n";
    let out = script(&db, input);
    assert_eq!(String::from_utf8_lossy(&out.stdout), expect);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already defined"), "{err}");
    assert!(err.contains("stored trait"), "{err}");
    assert!(err.contains("usage: .trait NAME EXPRESSION"), "{err}");
    assert!(
        err.contains("views") && err.contains("keeps no purchase model"),
        "{err}"
    );
    assert!(err.contains("usage: .refit NAME"), "{err}");
    // Over the socket: the same answers (the trait is defined already).
    let server = Server::start(&db);
    let out = server
        .script(".format count\n.traits\nviews >= 1\n.trait seen viewed last time\n.refit views\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "format: count\nviews                    viewed count ever\n4\ndefined computed trait seen = viewed last time\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keeps no purchase model"), "{err}");
    server.stop();
}
