//! Running the `audiencedb` binary as a user does, for the CLI tests: the process's output, and
//! its standard output or error when it must succeed or fail.

#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::process::{Command, Output};

/// `audiencedb --db DB ARGS...`, run to its end.
pub fn run(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_audiencedb"))
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The standard output of a run that must succeed.
pub fn ok(db: &Path, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// The standard error of a run that must fail.
pub fn fails(db: &Path, args: &[&str]) -> String {
    let out = run(db, args);
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}
