//! The `audiencedb` command line: a thin layer that parses arguments, calls the library and turns
//! its errors into friendly words. Exit status: 0 success, 1 bad input, 2 misuse.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use audiencedb::ingest::import::{self, ImportObserver, ImportOptions, ImportSummary, LineError};
use audiencedb::{Db, Error};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "audiencedb",
    version,
    about = "An embedded customer data platform"
)]
struct Cli {
    /// The database folder.
    #[arg(
        long,
        global = true,
        env = "AUDIENCEDB_PATH",
        default_value = "audiencedb.db"
    )]
    db: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import NDJSON messages or CSV profiles ('-' reads stdin).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Stop at the first bad line and store nothing from that file.
        #[arg(long)]
        strict: bool,
        /// The CSV column holding the customer id.
        #[arg(long, default_value = "userId")]
        id_column: String,
        /// The input format; by default `.csv` files are CSV and everything else NDJSON.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Messages per durable batch.
        #[arg(long, default_value_t = 20_000)]
        batch_size: usize,
        /// Print a line on stdout after each durable batch (for scripts and crash tests).
        #[arg(long, hide = true)]
        report_batches: bool,
    },
    /// Show, export or delete one customer.
    Customer {
        #[command(subcommand)]
        action: CustomerAction,
    },
    /// Show the traits, events and properties the store holds.
    Schema {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check that the indexes equal a rebuild from the stored data.
    Verify,
    /// Show the time to open, the size on disk and where the bytes go.
    Stats,
    /// Rebuild the indexes from the stored data.
    RebuildIndexes,
}

#[derive(Subcommand)]
enum CustomerAction {
    /// Print the profile and recent events.
    Show { id: String },
    /// Print all stored data as JSON.
    Export { id: String },
    /// Delete the profile, every event and every index entry.
    Delete { id: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Ndjson,
    Csv,
}

/// An error for the user: the message, and the exit status.
struct Failure(String, u8);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure(friendly(&e), 1)
    }
}

fn friendly(e: &Error) -> String {
    match e {
        Error::Locked { path } => format!(
            "{} is open in another process (a running `audiencedb serve`?); stop it or use its socket",
            path.display()
        ),
        other => other.to_string(),
    }
}

fn main() -> ExitCode {
    // Die quietly when the reader of our output goes away (`audiencedb ... | head`), as
    // command-line tools do, instead of panicking on a failed print.
    // SAFETY: setting a signal's disposition to the default at start-up, before any threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

fn open(path: &Path) -> Result<Db, Failure> {
    Ok(Db::open(path)?)
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Import {
            files,
            strict,
            id_column,
            format,
            batch_size,
            report_batches,
        } => {
            let db = open(&cli.db)?;
            let options = ImportOptions {
                strict,
                batch_size,
                id_column,
            };
            let started = Instant::now();
            let mut total = ImportSummary::default();
            let mut failed = None;
            for file in &files {
                match import_file(&db, file, format, &options, report_batches) {
                    Ok(s) => total.add(&s),
                    Err(e) => {
                        failed = Some(Failure(format!("{}: {}", file.display(), friendly(&e)), 1));
                        break;
                    }
                }
            }
            db.checkpoint()?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "read {}, stored {}, skipped {}, duplicates {} in {:.2} s ({:.0} messages/s)",
                total.read,
                total.stored,
                total.skipped,
                total.duplicates,
                secs,
                total.read as f64 / secs.max(1e-9)
            );
            match failed {
                Some(f) => Err(f),
                None => Ok(()),
            }
        }
        Command::Customer { action } => {
            let db = open(&cli.db)?;
            match action {
                CustomerAction::Show { id } => {
                    let c = db
                        .customer(&id)?
                        .ok_or_else(|| Failure(format!("no customer {id:?}"), 1))?;
                    print_customer(&c);
                }
                CustomerAction::Export { id } => {
                    let json = db.export_customer(&id)?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&json).unwrap_or_default()
                    );
                }
                CustomerAction::Delete { id } => {
                    let n = db.delete_customer(&id)?;
                    println!("deleted customer {id:?} and {n} events");
                }
            }
            Ok(())
        }
        Command::Schema { json } => {
            let db = open(&cli.db)?;
            let schema = db.schema();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&schema).unwrap_or_default()
                );
            } else {
                print_schema(&schema);
            }
            Ok(())
        }
        Command::Verify => {
            let db = open(&cli.db)?;
            let started = Instant::now();
            let report = db.verify()?;
            println!(
                "checked {} customers, {} events, {} bitmaps in {:.2} s",
                report.customers,
                report.events,
                report.bitmaps,
                started.elapsed().as_secs_f64()
            );
            if report.is_ok() {
                println!("ok: the indexes equal a rebuild from the stored events");
                Ok(())
            } else {
                for p in &report.problems {
                    println!("problem: {p}");
                }
                Err(Failure(
                    "the indexes differ from the stored data; run `audiencedb rebuild-indexes`"
                        .into(),
                    1,
                ))
            }
        }
        Command::Stats => {
            let started = Instant::now();
            let db = open(&cli.db)?;
            let opened = started.elapsed();
            let schema = db.schema();
            let events: u64 = schema.events.iter().map(|e| e.count).sum();
            let on_disk = db.size_on_disk()?;
            println!("opened in {:.3} s", opened.as_secs_f64());
            println!(
                "{} customers, {} profiles, {} events, {} bitmaps",
                schema.customers,
                schema.profiles,
                events,
                db.read().indexes.bitmap_count()
            );
            println!(
                "{} bytes on disk ({:.1} per event)",
                on_disk,
                on_disk as f64 / events.max(1) as f64
            );
            println!(
                "{:<16} {:>10} {:>14} {:>14}",
                "records", "count", "key bytes", "value bytes"
            );
            for s in db.record_stats()? {
                println!(
                    "{:<16} {:>10} {:>14} {:>14}",
                    s.kind, s.records, s.key_bytes, s.value_bytes
                );
            }
            Ok(())
        }
        Command::RebuildIndexes => {
            let db = open(&cli.db)?;
            let started = Instant::now();
            let report = db.rebuild_indexes()?;
            println!(
                "rebuilt {} bitmaps over {} customers and {} events in {:.2} s",
                report.bitmaps,
                report.customers,
                report.events,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

/// Shows bad lines on stderr, a progress bar on a terminal, and batch lines when asked.
struct CliObserver {
    name: String,
    bar: Option<ProgressBar>,
    report_batches: bool,
    shown_errors: u64,
}

const MAX_SHOWN_ERRORS: u64 = 100;

impl ImportObserver for CliObserver {
    fn bad_line(&mut self, e: &LineError) {
        self.shown_errors += 1;
        if self.shown_errors <= MAX_SHOWN_ERRORS {
            let msg = format!("{}:{}: {}", self.name, e.line, e.reason);
            match &self.bar {
                Some(bar) => bar.suspend(|| eprintln!("{msg}")),
                None => eprintln!("{msg}"),
            }
        } else if self.shown_errors == MAX_SHOWN_ERRORS + 1 {
            eprintln!(
                "{}: more bad lines; only the first {MAX_SHOWN_ERRORS} are shown",
                self.name
            );
        }
    }

    fn batch_stored(&mut self, s: &ImportSummary, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
            bar.set_message(format!("{} stored", s.stored));
        }
        if self.report_batches {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "batch {} stored, {} messages in all",
                s.batches, s.stored
            );
            let _ = out.flush();
        }
    }
}

fn import_file(
    db: &Db,
    file: &Path,
    format: Option<Format>,
    options: &ImportOptions,
    report_batches: bool,
) -> Result<ImportSummary, Error> {
    let stdin = file == Path::new("-");
    let format = format.unwrap_or(
        if file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
        {
            Format::Csv
        } else {
            Format::Ndjson
        },
    );
    let len = if stdin {
        None
    } else {
        Some(std::fs::metadata(file)?.len())
    };
    let bar = (std::io::stderr().is_terminal()).then(|| {
        let bar = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ({eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_prefix(file.display().to_string());
        bar
    });
    let mut observer = CliObserver {
        name: file.display().to_string(),
        bar,
        report_batches,
        shown_errors: 0,
    };
    let result = match (format, stdin) {
        (Format::Ndjson, true) => import::import_ndjson(
            db,
            std::io::BufReader::with_capacity(1 << 20, std::io::stdin()),
            options,
            &mut observer,
        ),
        (Format::Ndjson, false) => {
            let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(file)?);
            import::import_ndjson(db, f, options, &mut observer)
        }
        (Format::Csv, true) => {
            import::import_csv(db, std::io::stdin().lock(), options, &mut observer)
        }
        (Format::Csv, false) => {
            import::import_csv(db, std::fs::File::open(file)?, options, &mut observer)
        }
    };
    if let Some(bar) = &observer.bar {
        bar.finish_and_clear();
    }
    result
}

fn print_customer(c: &audiencedb::Customer) {
    println!("customer {} (internal #{})", c.id, c.internal_id);
    match &c.traits {
        Some(traits) => {
            for (k, v) in traits {
                println!("  {k} = {v}");
            }
        }
        None => println!("  (no profile: known from events only)"),
    }
    println!("  {} events", c.events.len());
    let shown = c.events.len().saturating_sub(20);
    for e in &c.events[shown..] {
        let props: Vec<String> = e
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "  {}  {}  {}",
            audiencedb::model::time::format_rfc3339(e.timestamp),
            e.name,
            props.join(" ")
        );
    }
}

fn print_schema(s: &audiencedb::Schema) {
    println!("{} customers, {} with a profile", s.customers, s.profiles);
    println!("\ntraits:");
    for t in &s.traits {
        println!(
            "  {:<24} {:<20} {:>9} customers  {}",
            t.name,
            t.types.join("|"),
            t.customers,
            if t.indexed {
                format!("indexed, {} values", t.distinct_values)
            } else {
                "not indexed (too many values)".into()
            }
        );
    }
    println!("\nevents:");
    for e in &s.events {
        println!(
            "  {:<24} {:>10} events {:>9} customers",
            e.name, e.count, e.customers
        );
        for p in &e.properties {
            println!(
                "      {:<20} {:<20} {:>10} {}",
                p.name,
                p.types.join("|"),
                p.count,
                if p.indexed { "indexed" } else { "" }
            );
        }
    }
}
