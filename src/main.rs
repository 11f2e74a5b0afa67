//! The `audiencedb` command line: a thin layer that parses arguments, calls the library and turns
//! its errors into friendly words. Exit status: 0 success, 1 bad input, 2 misuse.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use audiencedb::import::{self, ImportObserver, ImportOptions, ImportSummary, LineError};
use audiencedb::model::time;
use audiencedb::{gen, Config, Db, Error, SchemaLimits};
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
    #[command(flatten)]
    limits: LimitArgs,
    #[command(subcommand)]
    command: Command,
}

/// How far the schema may grow (`Config::limits`): a message that would add a name past a
/// limit is refused (a bad line in an import, `INVALID` on the socket) and nothing of it is
/// stored; names already stored are always accepted.
#[derive(clap::Args)]
struct LimitArgs {
    /// The most distinct event names the database takes.
    #[arg(long, global = true, value_name = "N", default_value_t = SchemaLimits::default().event_names)]
    max_event_names: usize,
    /// The most distinct property names one event name takes.
    #[arg(long, global = true, value_name = "N", default_value_t = SchemaLimits::default().properties_per_event)]
    max_properties_per_event: usize,
    /// The most distinct property names over all events.
    #[arg(long, global = true, value_name = "N", default_value_t = SchemaLimits::default().property_names)]
    max_property_names: usize,
    /// The most distinct trait names.
    #[arg(long, global = true, value_name = "N", default_value_t = SchemaLimits::default().trait_names)]
    max_trait_names: usize,
    /// The most ids one customer may have once merged (alias messages, messages with both
    /// anonymousId and userId); a merge past it is refused.
    #[arg(long, global = true, value_name = "N", default_value_t = audiencedb::db::DEFAULT_MAX_IDS_PER_CUSTOMER)]
    max_ids_per_customer: usize,
    /// Allow merging two customers that both have a userId (refused by default).
    #[arg(long, global = true)]
    allow_known_merge: bool,
}

impl LimitArgs {
    fn limits(&self) -> SchemaLimits {
        SchemaLimits {
            event_names: self.max_event_names,
            properties_per_event: self.max_properties_per_event,
            property_names: self.max_property_names,
            trait_names: self.max_trait_names,
        }
    }
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
        #[arg(long, default_value_t = audiencedb::import::DEFAULT_BATCH_SIZE)]
        batch_size: usize,
        /// Print a line on stdout after each durable batch (for scripts and crash tests).
        #[arg(long, hide = true)]
        report_batches: bool,
    },
    /// Write a realistic synthetic shop as NDJSON to stdout.
    Gen {
        /// Customer ids to generate (about 50 events each).
        #[arg(long)]
        customers: u64,
        /// Same seed, same shop.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Days of history.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// The end of the period (a date or RFC 3339 time); by default the start of today, UTC.
        #[arg(long)]
        end: Option<String>,
        /// `time`: every message in timestamp order, customers interleaved, as a tracking stream
        /// delivers them; `customer`: customer after customer.
        #[arg(long, value_enum, default_value_t = GenOrder::Time)]
        order: GenOrder,
        /// Percent of identified customers' messages that also carry an anonymousId (one of the
        /// customer's two devices), which the import merges into the customer.
        #[arg(long, value_name = "PERCENT", default_value_t = 0)]
        both_ids: u8,
    },
    /// Build a demo shop at the database path (or reuse it), save a few audiences on it, show
    /// what it holds, and open the REPL on it (on a terminal).
    Demo {
        /// Customer ids in the demo shop.
        #[arg(long, default_value_t = 20_000)]
        customers: u64,
    },
    /// Evaluate a rule: who is in the audience it describes.
    Query {
        /// The evaluation time, RFC 3339 or a date (midnight UTC); by default the clock.
        #[arg(long)]
        now: Option<String>,
        /// What to print: the number of members, their ids (sorted, one per line), or JSON.
        #[arg(long, value_enum, default_value = "count")]
        format: QueryFormat,
        /// Print the plan with each node's estimated and exact size and time instead.
        #[arg(long)]
        explain: bool,
        /// Tell, clause by clause, whether this customer satisfies the rule and why.
        #[arg(long, value_name = "ID", conflicts_with = "explain")]
        why: Option<String>,
        /// The rule, e.g. "viewed product X in last 30 days and tier = Gold" (several words are
        /// joined with spaces).
        #[arg(required = true, num_args = 1..)]
        rule: Vec<String>,
    },
    /// Save, list, show, drop, export and compare saved audiences.
    Audience {
        #[command(subcommand)]
        action: AudienceAction,
    },
    /// Define, list, show and drop computed traits: names whose values derive from events
    /// (`trait define aov "purchased avg(amount) ever"`), usable in every rule.
    Trait {
        #[command(subcommand)]
        action: TraitAction,
    },
    /// Explore the database interactively: rules, `.explain`, `.why`, `.now` (`.help` lists all).
    /// Without a terminal, reads rules and commands line by line from stdin.
    Repl {
        /// The history file; by default $AUDIENCEDB_HISTORY, else
        /// $XDG_STATE_HOME/audiencedb/repl_history (or ~/.local/state/audiencedb/repl_history).
        #[arg(long)]
        history: Option<PathBuf>,
        /// Keep no history (whatever --history or AUDIENCEDB_HISTORY say).
        #[arg(long)]
        no_history: bool,
        /// Work through a running `audiencedb serve` on this socket instead of opening the
        /// folder (which the server holds).
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
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
    /// Check that the indexes equal a rebuild from the stored data; with --erased, also that
    /// no byte of an erased customer is left in any file of the folder.
    Verify {
        /// The id of a customer deleted and erased (`customer delete --erase`, or `compact`
        /// after `customer delete`): look for it in every stored record and every file.
        #[arg(long, value_name = "ID")]
        erased: Option<String>,
        /// More of the customer's values to look for (email, names, property values), with
        /// --erased; may be given many times.
        #[arg(long, value_name = "TEXT", requires = "erased")]
        also: Vec<String>,
    },
    /// Rewrite the folder with only its live records, so that no byte of any deleted customer
    /// is left in its files (run it with no server on the folder).
    Compact,
    /// Show the time to open, the size on disk and where the bytes go.
    Stats,
    /// Rebuild the indexes from the stored data.
    RebuildIndexes,
    /// Serve the database on a Unix socket in the Redis protocol (redis-cli -s PATH).
    Serve(ServeArgs),
    /// The values of one event property that the customers matching a rule did, counted in
    /// distinct customers, with their share, everyone's count and the lift.
    Top {
        /// The audience's rule, e.g. "purchased product X" (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        rule: Vec<String>,
        /// The event whose values are counted.
        #[arg(long)]
        event: String,
        /// The property of the event whose values are counted.
        #[arg(long, value_name = "PROPERTY")]
        by: String,
        /// Count only events in this window, written as in rules ("in last 90 days", "since
        /// 2026-01-01", ...); by default every event up to now.
        #[arg(long)]
        window: Option<String>,
        /// The most rows printed.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// The evaluation time, RFC 3339 or a date (midnight UTC); by default the clock.
        #[arg(long)]
        now: Option<String>,
        /// Rank by customers, or by lift (among values with --min-customers customers).
        #[arg(long, value_enum, default_value = "customers")]
        order: TopOrderArg,
        /// Leave out values with fewer customers of the audience (default 1, or 5 by lift).
        #[arg(long, value_name = "K")]
        min_customers: Option<u64>,
        /// A table, or `{"audience", "rows": [{"value", "customers", "share", "everyone",
        /// "lift"}]}`.
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// Print one SQL query that returns the rule's members (their ids) over the tables of
    /// `export tables`, in ClickHouse's or DuckDB's dialect, at a fixed now.
    Sql {
        /// The rule (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        rule: Vec<String>,
        /// clickhouse or duckdb.
        #[arg(long, value_enum)]
        dialect: DialectArg,
        /// The evaluation time the query is written for, RFC 3339 or a date (midnight UTC); by
        /// default the clock.
        #[arg(long)]
        now: Option<String>,
    },
    /// Write the store out for other systems.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// How many customers reach each step of a journey within a time limit: customers, the
    /// conversion from the previous and the first step, and the median time from the previous.
    Funnel {
        /// The steps, in order: event conditions as rules write them, each in quotes when it
        /// has more than one word ("viewed product X", "purchased where amount >= 50").
        #[arg(required = true, num_args = 2..)]
        steps: Vec<String>,
        /// The longest time from the first step to the last reached ("1 hour", "7 days").
        #[arg(long)]
        within: String,
        /// The window of the first step, written as in rules ("in last 30 days"); by default
        /// every event up to now.
        #[arg(long)]
        window: Option<String>,
        /// Count only the customers matching this rule at now; by default everyone.
        #[arg(long, value_name = "RULE")]
        audience: Option<String>,
        /// The evaluation time, RFC 3339 or a date (midnight UTC); by default the clock.
        #[arg(long)]
        now: Option<String>,
        /// A table, or `{"steps": [{"step", "customers", "from_previous", "from_first",
        /// "median_ms"}]}`.
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// An A/B report: the audience split by bucket(NAME) into variants, each variant's
    /// customers meeting the goal, and each later variant against the first (difference, 95%
    /// interval, p-value of the two-proportion z-test).
    Experiment {
        /// The split's name, as `bucket(NAME)` takes it.
        name: String,
        /// The rule of the customers in the experiment.
        #[arg(long, value_name = "RULE")]
        audience: String,
        /// The rule a customer meets when they converted.
        #[arg(long, value_name = "RULE")]
        goal: String,
        /// Each variant's share of the buckets in percent, the first taking the lowest
        /// buckets ("50,50"; "5,95" is a 5% holdout).
        #[arg(long, default_value = "50,50")]
        variants: String,
        /// The evaluation time, RFC 3339 or a date (midnight UTC); by default the clock.
        #[arg(long)]
        now: Option<String>,
        /// A table, or `{"variants": [{"share", "customers", "converted", "rate",
        /// "difference", "ci_low", "ci_high", "p_value"}]}`.
        #[arg(long, value_enum, default_value = "table")]
        format: TableFormat,
    },
    /// Values to show one customer: those that co-occur with theirs in other customers, scored
    /// by cosine similarity (README); the most popular ones for a customer with none.
    Recommend {
        /// The customer's id.
        id: String,
        #[command(flatten)]
        values: ValuesArgs,
        /// Read only events in this window, written as in rules; by default every event up
        /// to now.
        #[arg(long)]
        window: Option<String>,
    },
}

#[derive(Subcommand)]
enum ExportWhat {
    /// The store as six flat tables in NDJSON or Parquet (customers, traits, trait_items, events,
    /// properties, property_items) with schema.clickhouse.sql, load.clickhouse.sql and
    /// load.duckdb.sql beside them, which create the tables and load the files.
    Tables {
        /// The folder to write into (created if missing; the files in it are replaced).
        dir: PathBuf,
        /// The file format.
        #[arg(long, value_enum, default_value = "ndjson")]
        format: TablesFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum DialectArg {
    Clickhouse,
    Duckdb,
}

#[derive(Clone, Copy, ValueEnum)]
enum TablesFormat {
    Ndjson,
    Parquet,
}

#[derive(clap::Args)]
struct ValuesArgs {
    /// The event whose values are read.
    #[arg(long)]
    event: String,
    /// The property of the event whose values are read.
    #[arg(long, value_name = "PROPERTY")]
    by: String,
    /// The most values printed.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// The time to read at, RFC 3339 or a date (midnight UTC); by default the clock. Events
    /// after it count nowhere.
    #[arg(long)]
    now: Option<String>,
    /// A table, or JSON.
    #[arg(long, value_enum, default_value = "table")]
    format: TableFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum TopOrderArg {
    Customers,
    Lift,
}

#[derive(Clone, Copy, ValueEnum)]
enum TableFormat {
    Table,
    Json,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// The socket path; by default the database folder's path with `.sock` added.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Permission bits of the socket file, in octal.
    #[arg(long, default_value = "600")]
    socket_mode: String,
    /// Clients connected at once; one more is refused with an error.
    #[arg(long, default_value_t = 512)]
    max_clients: usize,
    /// Seconds a client may stay silent before it is closed (0: never).
    #[arg(long, default_value_t = 300)]
    idle_timeout: u64,
    /// Seconds a request may take to arrive whole once its first byte has come; a client that
    /// takes longer is closed (0: no bound).
    #[arg(long, default_value_t = 10)]
    request_timeout: u64,
    /// The longest argument of a request (bytes, or with K, M, G).
    #[arg(long, default_value = "16MiB")]
    max_arg_size: String,
    /// The most bytes of arguments in one request.
    #[arg(long, default_value = "64MiB")]
    max_request_size: String,
    /// The most arguments in one request.
    #[arg(long, default_value_t = 65_536)]
    max_args: u64,
}

#[derive(Subcommand)]
enum CustomerAction {
    /// Print the profile and recent events.
    Show { id: String },
    /// Print all stored data as JSON.
    Export { id: String },
    /// The customer's distinct values of one event property, latest first ("recently viewed").
    Recent {
        id: String,
        #[command(flatten)]
        values: ValuesArgs,
    },
    /// Delete the profile, every event and every index entry.
    Delete {
        id: String,
        /// Then compact the folder, so that no byte of the customer is left in its files
        /// (`audiencedb compact`); without it, old versions of the records stay in the
        /// storage engine's files until a compaction.
        #[arg(long)]
        erase: bool,
    },
}

#[derive(Subcommand)]
enum TraitAction {
    /// Define NAME as EXPRESSION: `EVENT [PROPERTY VALUE | where PREDICATE] REDUCER [WINDOW]`,
    /// the reducer one of count, sum(p), avg(p), min(p), max(p), distinct(p), top(p), first
    /// time, last time, rfm(p) (`purchased count in last 90 days`), or a prediction: p_alive,
    /// expected count in next T, clv(p) in next T (fitted on the events up to now).
    Define {
        name: String,
        #[arg(required = true, num_args = 1..)]
        expression: Vec<String>,
    },
    /// List the computed traits.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one computed trait: its expression, when defined, the saved audiences reading it,
    /// and a prediction's kept model.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
        /// `json` or `text` (the default).
        #[arg(long)]
        format: Option<String>,
        /// Show the model fitted on the events up to this time instead of the kept fit (which
        /// stays as it is).
        #[arg(long)]
        now: Option<String>,
    },
    /// Fit a prediction's model again on the events up to now (a failed fit keeps the last
    /// good one and says why).
    Refit { name: String },
    /// Drop a computed trait (refused while a saved audience reads it).
    Drop { name: String },
}

#[derive(Subcommand)]
enum AudienceAction {
    /// Save RULE under NAME (replacing the rule saved there): its members are kept from now on.
    Define {
        name: String,
        #[arg(required = true, num_args = 1..)]
        rule: Vec<String>,
    },
    /// List the saved audiences with their sizes.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one saved audience: rule, size, when it last changed.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Load a member list made elsewhere (a warehouse's segment) as audience NAME: FILE holds
    /// external ids, one per line (`-`: standard input). Usable in rules as `in audience NAME`;
    /// ids not seen yet join when their customer arrives. Loading again replaces the ids.
    Load { name: String, file: PathBuf },
    /// Drop a saved audience (refused while other audiences use it).
    Drop { name: String },
    /// Print the members' ids.
    Export {
        name: String,
        #[arg(long, value_enum, default_value = "ids")]
        format: ExportFormat,
    },
    /// Print the members as kept now, or at an earlier time with --at (the rule evaluated then).
    Members {
        name: String,
        /// A past time, RFC 3339 or a date.
        #[arg(long)]
        at: Option<String>,
        #[arg(long, value_enum, default_value = "count")]
        format: QueryFormat,
    },
    /// Before saving a new rule: the size now and after, and who would enter and leave.
    Diff {
        name: String,
        #[arg(required = true, num_args = 1..)]
        rule: Vec<String>,
        /// Print every entering (+) and leaving (-) id, not only the first ten of each.
        #[arg(long)]
        all: bool,
    },
    /// Print the stored change feed (entries and exits) as NDJSON, after position --after.
    Changes {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    Ids,
    Csv,
    Ndjson,
}

/// The order `gen` writes messages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GenOrder {
    Time,
    Customer,
}

#[derive(Clone, Copy, ValueEnum)]
enum QueryFormat {
    Count,
    Ids,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Ndjson,
    Csv,
}

// The importer frees on one thread what its parser threads allocated; glibc's allocator is slow
// at exactly that, mimalloc is not (import throughput in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's own setter, linked in with it (the `mimalloc` crate exposes it only with a
// feature that needs one more crate).
extern "C" {
    fn mi_option_set(option: libc::c_int, value: libc::c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `mimalloc.h` (the options enum, counted from 0).
const MI_OPTION_PURGE_DELAY: libc::c_int = 15;

/// Tells mimalloc to keep the memory an import frees for its next batches instead of handing
/// it back to the kernel a second later: each batch's messages and events are freed in bulk and
/// allocated again, and every page handed back had to be faulted in and zeroed again (about a
/// tenth of a time-ordered import's CPU; `docs/BENCHMARKS.md`, "Import speed on real streams").
/// The price: the process keeps its peak memory until it exits. Only the `import` command, a
/// process that ends when its files are in, asks for it.
fn keep_freed_memory() {
    // SAFETY: a plain store into mimalloc's table of options (an index within it), made before
    // the import opens the database and starts any thread; mimalloc reads it at its next purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Asks the kernel not to back this process's memory with transparent huge pages. mimalloc
/// advises huge pages for its arenas, and on a machine whose memory is full of page cache (a
/// database machine's usual state) each first touch of a 2 MiB page zeroes it whole and can
/// stall on compaction: the open of a 1M-customer folder spent 0.2–4.5 s of system time that
/// way, 0.5–1.2 s with this, and an import of the 100k shop 10–11.5 s, 1.7–2.1 s with this
/// (`docs/BENCHMARKS.md`, "Open of a 1M folder without huge pages").
fn no_huge_pages() {
    // SAFETY: a process-wide flag with integer arguments; it fails harmlessly (EINVAL) on a
    // kernel without transparent huge pages, and no memory changes meaning.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// An error for the user: the message, and the exit status.
struct Failure(String, u8);

impl From<Error> for Failure {
    /// Exit status 1 for what the caller can fix (input, a missing thing, a full disk, a damaged
    /// or busy folder), 3 for a fault of the database itself.
    fn from(e: Error) -> Self {
        let status = if matches!(e, Error::Internal(_)) {
            3
        } else {
            1
        };
        Failure(friendly(&e), status)
    }
}

fn friendly(e: &Error) -> String {
    match e {
        // The rendered parse error has its own "error: " heading, source line and caret.
        Error::Rule(parse) => {
            let drawn = parse.render();
            drawn.strip_prefix("error: ").unwrap_or(&drawn).to_owned()
        }
        e if e.is_no_space() => format!("{}: free some space and try again", no_space(e)),
        Error::Locked { path } => format!(
            "{} is open in another process (a running `audiencedb serve`?); stop it or use its socket",
            path.display()
        ),
        Error::Internal(m) => format!(
            "internal error: {m} (a fault of audiencedb, not of your input: please report it)"
        ),
        other => other.to_string(),
    }
}

/// What a full disk (or quota) error says, without advice.
fn no_space(e: &Error) -> String {
    match e {
        Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            "no space left on device (ENOSPC)".into()
        }
        Error::Io(io) => io.to_string(),
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
    no_huge_pages();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// A time given on the command line, or the clock.
fn parse_now(now: Option<&str>) -> Result<time::Timestamp, Failure> {
    match now {
        None => Ok(time::now()),
        Some(text) => time::parse_user_time(text).ok_or_else(|| {
            Failure(
                format!("--now {text:?} is not a date (2026-03-01) or an RFC 3339 time (2026-03-01T12:00:00Z)"),
                2,
            )
        }),
    }
}

/// Prints an audience's members in the asked format.
/// A rule's warnings on stderr, one `warning: ...` line each; the exit status stays 0.
fn print_warnings(warnings: &[audiencedb::query::Warning]) {
    for w in warnings {
        eprintln!("warning: {w}");
    }
}

fn print_audience(
    db: &Db,
    audience: &audiencedb::query::Audience,
    format: QueryFormat,
) -> Result<(), Failure> {
    let now = audience.now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e: std::io::Error| Failure(format!("writing the output: {e}"), 1);
    match format {
        QueryFormat::Count => writeln!(out, "{}", audience.len()).map_err(io)?,
        QueryFormat::Ids => {
            db.for_each_member_id(audience, |id| writeln!(out, "{id}").map_err(Error::from))?
        }
        QueryFormat::Json => {
            write!(
                out,
                "{{\"count\":{},\"now\":{},\"elapsed_ms\":{:.3},\"ids\":[",
                audience.len(),
                serde_json::Value::String(time::format_rfc3339(now)),
                audience.elapsed().as_secs_f64() * 1e3
            )
            .map_err(io)?;
            let mut first = true;
            db.for_each_member_id(audience, |id| {
                let sep = if std::mem::take(&mut first) { "" } else { "," };
                write!(out, "{sep}{}", serde_json::Value::String(id.to_owned()))
                    .map_err(Error::from)
            })?;
            writeln!(out, "]}}").map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// Opens a database that must already exist (queries never create one).
fn open_existing(path: &Path, limits: &LimitArgs) -> Result<Db, Failure> {
    // A compaction interrupted between its renames leaves the folder beside the path, and the
    // open puts it back.
    if !Db::exists(path) {
        return Err(Failure(
            format!(
                "no database at {} (import data first, or give --db PATH)",
                path.display()
            ),
            1,
        ));
    }
    open(path, limits)
}

fn open(path: &Path, limits: &LimitArgs) -> Result<Db, Failure> {
    let mut config = Config::new(path);
    config.limits = limits.limits();
    config.max_ids_per_customer = limits.max_ids_per_customer;
    config.allow_known_merge = limits.allow_known_merge;
    // Testing and measuring only: the write log's fold bounds (tests/durability.rs kills an
    // import while it folds).
    let knob = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
    };
    if let Some(n) = knob("AUDIENCEDB_FOLD_EVENTS") {
        config.fold_events = n;
    }
    if let Some(n) = knob("AUDIENCEDB_FOLD_BYTES") {
        config.fold_bytes = n;
    }
    if let Some(n) = knob("AUDIENCEDB_FOLD_BATCH_BYTES") {
        config.fold_batch_bytes = n;
    }
    let db = Db::open_with(config)?;
    // Testing only: a full disk after this many commits (tests/disk_full.rs, where a tmpfs
    // cannot be mounted).
    if let Some(n) = std::env::var_os("AUDIENCEDB_INJECT_NO_SPACE_AFTER_COMMITS") {
        if let Some(n) = n.to_str().and_then(|n| n.parse().ok()) {
            db.inject_no_space_after_commits(n);
        }
    }
    Ok(db)
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
            keep_freed_memory();
            let db = open(&cli.db, &cli.limits)?;
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
                    Err((e, stored)) => {
                        // The batches acknowledged before the failure are durable: count them.
                        total.add(&stored);
                        failed = Some(import_failure(file, &e, &total));
                        break;
                    }
                }
            }
            // The index snapshot is derived data: every stored message is already durable, and
            // the customers it touched are in the dirty log, which the next open recomputes.
            // So a failed snapshot is a warning, not a failed import (docs/DURABILITY.md).
            let checkpoint = if failed.is_none() {
                db.final_checkpoint()
            } else {
                Ok(())
            };
            let secs = started.elapsed().as_secs_f64();
            let merges = if total.merges > 0 {
                format!(", merges {}", total.merges)
            } else {
                String::new()
            };
            eprintln!(
                "read {}, stored {}, skipped {}, duplicates {}{merges} in {:.2} s ({:.0} messages/s)",
                total.read,
                total.stored,
                total.skipped,
                total.duplicates,
                secs,
                total.read as f64 / secs.max(1e-9)
            );
            if let Err(e) = checkpoint {
                let cause = if e.is_no_space() {
                    no_space(&e)
                } else {
                    friendly(&e)
                };
                eprintln!(
                    "warning: every message above is stored, but the index snapshot could not be \
                     written: {cause}; the next open recomputes the indexes of the customers this \
                     import touched"
                );
            }
            match failed {
                Some(f) => Err(f),
                None => Ok(()),
            }
        }
        Command::Gen {
            customers,
            seed,
            days,
            end,
            order,
            both_ids,
        } => {
            let mut config = gen_config(customers, seed, days, end.as_deref())?;
            config.both_ids_percent = both_ids;
            let bar = progress_bar(customers, "customers");
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let order = match order {
                GenOrder::Time => gen::Order::Time,
                GenOrder::Customer => gen::Order::Customer,
            };
            let stats = gen::generate_ordered(&config, order, out, |s| {
                if let Some(bar) = &bar {
                    bar.set_position(s.customers);
                }
            })
            .map_err(|e| Failure(format!("gen: {e}"), 1))?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            eprintln!(
                "generated {} customers, {} messages, {} events",
                stats.customers, stats.messages, stats.events
            );
            Ok(())
        }
        Command::Demo { customers } => demo(&cli.db, &cli.limits, customers),
        Command::Query {
            now,
            format,
            explain,
            why,
            rule,
        } => {
            let now = parse_now(now.as_deref())?;
            // Parse before opening, so a typo is answered even without a database.
            let prepared = audiencedb::query::PreparedRule::new(&rule.join(" "))?;
            // Closed, not dropped: the process exits next, and freeing the indexes first would
            // only cost time (about 5% of a `query` process at 1M customers).
            let db = std::mem::ManuallyDrop::new(open_existing(&cli.db, &cli.limits)?);
            let answered = (|| -> Result<(), Failure> {
                if let Some(id) = why {
                    print!("{}", db.why_prepared(&id, &prepared, now)?);
                    print_warnings(&db.check(prepared.text())?);
                } else if explain {
                    // The explain text ends with the warnings.
                    print!("{}", db.explain_prepared(&prepared, now)?);
                } else {
                    let audience = db.query_prepared(&prepared, now)?;
                    print_audience(&db, &audience, format)?;
                    print_warnings(audience.warnings());
                }
                Ok(())
            })();
            let closed = db.close();
            answered?;
            Ok(closed?)
        }
        Command::Audience { action } => audience_command(&cli.db, &cli.limits, action),
        Command::Trait { action } => trait_command(&cli.db, &cli.limits, action),
        Command::Repl {
            history,
            no_history,
            socket,
        } => {
            let history = history
                .or_else(audiencedb::repl::default_history_path)
                .filter(|_| !no_history);
            if let Some(socket) = socket {
                let server = audiencedb::repl::Remote::connect(&socket)
                    .map_err(|e| Failure(e.to_string(), 1))?;
                return repl(server, history);
            }
            let db = open_existing(&cli.db, &cli.limits).map_err(|f| locked_hint(&cli.db, f))?;
            repl(&db, history)
        }
        Command::Customer {
            action: CustomerAction::Delete { id, erase: true },
        } => {
            let db = open_existing(&cli.db, &cli.limits)?;
            let ids = db.ids_of(&id).unwrap_or_default();
            let (deleted, report) = db.erase_customer(&id)?;
            match deleted {
                Some(n) => println!("deleted customer {id:?} and {n} events"),
                None => {
                    println!("no customer {id:?} is stored; compacting to erase what deletes left")
                }
            }
            print_compaction(&cli.db, &report);
            print_merged_ids(&id, &ids);
            Ok(())
        }
        Command::Compact => {
            let db = open_existing(&cli.db, &cli.limits)?;
            let report = db.compact()?;
            print_compaction(&cli.db, &report);
            Ok(())
        }
        Command::Customer { action } => {
            let db = open(&cli.db, &cli.limits)?;
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
                CustomerAction::Recent { id, values } => {
                    let now = parse_now(values.now.as_deref())?;
                    let (recent, warnings) =
                        db.recent(&id, &values.event, &values.by, values.limit, now)?;
                    match values.format {
                        TableFormat::Json => {
                            let json: Vec<_> = recent.iter().map(|r| r.to_json()).collect();
                            println!("{}", serde_json::Value::Array(json));
                        }
                        TableFormat::Table => {
                            for r in &recent {
                                println!(
                                    "{}  {}",
                                    time::format_rfc3339(r.at),
                                    plain_value(&r.value)
                                );
                            }
                        }
                    }
                    print_warnings(&warnings);
                }
                CustomerAction::Delete { id, .. } => {
                    let ids = db.ids_of(&id).unwrap_or_default();
                    let n = db.delete_customer(&id)?;
                    println!("deleted customer {id:?} and {n} events");
                    print_merged_ids(&id, &ids);
                }
            }
            Ok(())
        }
        Command::Schema { json } => {
            let db = open(&cli.db, &cli.limits)?;
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
        Command::Verify { erased, also } => {
            let db = open(&cli.db, &cli.limits)?;
            if let Some(id) = &erased {
                if db.internal_id(id)?.is_some() {
                    return Err(Failure(
                        format!(
                            "customer {id:?} is stored: erase it first (audiencedb customer delete --erase {id})"
                        ),
                        1,
                    ));
                }
            }
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
                match erased {
                    Some(id) => verify_erased(db, &id, &also),
                    None => Ok(()),
                }
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
            let db = open(&cli.db, &cli.limits)?;
            let opened = started.elapsed();
            let totals = db.totals();
            let events = totals.events;
            let on_disk = db.size_on_disk()?;
            println!("opened in {:.3} s", opened.as_secs_f64());
            println!(
                "{} customers, {} profiles, {} events, {} bitmaps",
                totals.customers,
                totals.profiles,
                events,
                db.bitmap_count()
            );
            println!(
                "{} bytes on disk ({:.1} per event)",
                on_disk,
                on_disk as f64 / events.max(1) as f64
            );
            let stats = db.record_stats()?;
            let width = stats
                .iter()
                .map(|s| s.kind.len())
                .max()
                .unwrap_or(0)
                .max(16);
            println!(
                "{:<width$} {:>10} {:>14} {:>14}",
                "records", "count", "key bytes", "value bytes"
            );
            for s in stats {
                println!(
                    "{:<width$} {:>10} {:>14} {:>14}",
                    s.kind, s.records, s.key_bytes, s.value_bytes
                );
            }
            Ok(())
        }
        Command::Serve(args) => serve(&cli.db, &cli.limits, args),
        Command::Recommend { id, values, window } => {
            let now = parse_now(values.now.as_deref())?;
            let db = open_existing(&cli.db, &cli.limits)?;
            let r = db.recommend(
                &id,
                &values.event,
                &values.by,
                window.as_deref(),
                values.limit,
                now,
            )?;
            match values.format {
                TableFormat::Json => println!("{}", r.to_json()),
                TableFormat::Table => {
                    if r.popular {
                        println!(
                            "(no {} by {id:?} in the window: the most popular values)",
                            values.event
                        );
                    }
                    for v in &r.values {
                        println!("{:.6}  {}", v.score, plain_value(&v.value));
                    }
                }
            }
            print_warnings(&r.warnings);
            Ok(())
        }
        Command::Top {
            rule,
            event,
            by,
            window,
            limit,
            now,
            order,
            min_customers,
            format,
        } => {
            let now = parse_now(now.as_deref())?;
            let rule = rule.join(" ");
            // Parse before opening, so a typo is answered even without a database.
            audiencedb::query::PreparedRule::new(&rule)?;
            let db = open_existing(&cli.db, &cli.limits)?;
            let mut request = audiencedb::query::TopRequest::new(&rule, &event, &by);
            request.window = window;
            request.limit = limit;
            request.order = match order {
                TopOrderArg::Customers => audiencedb::query::TopOrder::Customers,
                TopOrderArg::Lift => audiencedb::query::TopOrder::Lift,
            };
            request.min_customers = min_customers;
            let top = db.top(&request, now)?;
            match format {
                TableFormat::Table => print!("{top}"),
                TableFormat::Json => println!("{}", top.to_json()),
            }
            print_warnings(&top.warnings);
            Ok(())
        }
        Command::Sql { rule, dialect, now } => {
            let now = parse_now(now.as_deref())?;
            let rule = rule.join(" ");
            audiencedb::query::PreparedRule::new(&rule)?;
            let db = open_existing(&cli.db, &cli.limits)?;
            let dialect = match dialect {
                DialectArg::Clickhouse => audiencedb::query::sql::Dialect::ClickHouse,
                DialectArg::Duckdb => audiencedb::query::sql::Dialect::DuckDb,
            };
            println!("{}", db.sql(&rule, dialect, now)?);
            Ok(())
        }
        Command::Export {
            what: ExportWhat::Tables { dir, format },
        } => {
            let db = open_existing(&cli.db, &cli.limits)?;
            let format = match format {
                TablesFormat::Ndjson => audiencedb::tables::TablesFormat::Ndjson,
                TablesFormat::Parquet => audiencedb::tables::TablesFormat::Parquet,
            };
            let report = audiencedb::tables::export_tables(&db, &dir, time::now(), format)?;
            for (table, rows) in audiencedb::tables::TABLES.iter().zip(report.rows) {
                println!("{table:<15} {rows:>12} rows");
            }
            println!(
                "wrote {} rows to {} in {:.2} s ({:.0} rows/s); load them with {}",
                report.total_rows(),
                dir.display(),
                report.elapsed.as_secs_f64(),
                report.total_rows() as f64 / report.elapsed.as_secs_f64().max(1e-9),
                dir.join("load.clickhouse.sql").display()
            );
            Ok(())
        }
        Command::Funnel {
            steps,
            within,
            window,
            audience,
            now,
            format,
        } => {
            let now = parse_now(now.as_deref())?;
            let db = open_existing(&cli.db, &cli.limits)?;
            let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
            let mut request = audiencedb::query::reports::FunnelRequest::new(&steps, &within);
            request.window = window;
            request.audience = audience;
            let funnel = db.funnel(&request, now)?;
            match format {
                TableFormat::Table => print!("{funnel}"),
                TableFormat::Json => println!("{}", funnel.to_json()),
            }
            print_warnings(&funnel.warnings);
            Ok(())
        }
        Command::Experiment {
            name,
            audience,
            goal,
            variants,
            now,
            format,
        } => {
            let now = parse_now(now.as_deref())?;
            let mut request =
                audiencedb::query::reports::ExperimentRequest::new(&name, &audience, &goal);
            request.variants = audiencedb::query::reports::parse_variants(&variants)?;
            let db = open_existing(&cli.db, &cli.limits)?;
            let report = db.experiment(&request, now)?;
            match format {
                TableFormat::Table => print!("{report}"),
                TableFormat::Json => println!("{}", report.to_json()),
            }
            print_warnings(&report.warnings);
            Ok(())
        }
        Command::RebuildIndexes => {
            let db = open(&cli.db, &cli.limits)?;
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

/// A value as rules write it: strings without quotes.
fn plain_value(v: &audiencedb::model::Value) -> String {
    match v {
        audiencedb::model::Value::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

fn print_compaction(path: &Path, r: &audiencedb::erase::CompactReport) {
    println!(
        "compacted {} in {:.2} s: {} records ({} event blocks compressed again, {}), {} feed \
         changes kept without their customer's id; {} -> {} bytes",
        path.display(),
        r.seconds,
        r.records,
        r.blocks,
        if r.dictionary {
            "with a dictionary trained on the remaining blocks"
        } else {
            "without a dictionary"
        },
        r.feed_changes_erased,
        r.bytes_before,
        r.bytes_after
    );
}

/// `verify --erased ID --also TEXT...`: looks for each string in every stored record and in
/// every byte of every file of the folder.
fn verify_erased(db: Db, id: &str, also: &[String]) -> Result<(), Failure> {
    let path = db.path().to_owned();
    let mut needles: Vec<&str> = vec![id];
    needles.extend(also.iter().map(String::as_str).filter(|s| !s.is_empty()));
    for n in &needles {
        if n.len() < 6 {
            eprintln!(
                "warning: {n:?} is short ({} bytes): it may turn up by chance in binary data",
                n.len()
            );
        }
    }
    let bytes: Vec<&[u8]> = needles.iter().map(|n| n.as_bytes()).collect();
    let report = audiencedb::erase::find_traces(db, &bytes)?;
    for t in &report.traces {
        println!("trace: {:?} in {}", needles[t.needle], t.place);
    }
    if report.traces.is_empty() {
        println!(
            "ok: none of {} strings in {} stored records or in {} files ({} bytes) of {}",
            needles.len(),
            report.records,
            report.files,
            report.bytes,
            path.display()
        );
        Ok(())
    } else {
        Err(Failure(
            format!(
                "{} traces of the erased customer are left; run `audiencedb compact` (with no \
                 server on the folder) to remove them",
                report.traces.len()
            ),
            1,
        ))
    }
}

fn serve(db: &Path, limits: &LimitArgs, args: ServeArgs) -> Result<(), Failure> {
    use audiencedb::server::{self, ServeOptions, Server};
    let size = |flag: &str, text: &str| {
        server::parse_size(text).ok_or_else(|| {
            Failure(
                format!("{flag} {text:?}: expected bytes, or a number with K, M or G"),
                2,
            )
        })
    };
    let mut options = ServeOptions::new(args.socket.unwrap_or_else(|| server::default_socket(db)));
    options.socket_mode = u32::from_str_radix(&args.socket_mode, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            Failure(
                format!(
                    "--socket-mode {:?}: expected octal permission bits such as 600",
                    args.socket_mode
                ),
                2,
            )
        })?;
    options.max_clients = args.max_clients;
    options.idle_timeout =
        (args.idle_timeout > 0).then(|| std::time::Duration::from_secs(args.idle_timeout));
    options.request_timeout =
        (args.request_timeout > 0).then(|| std::time::Duration::from_secs(args.request_timeout));
    options.limits.max_bulk = size("--max-arg-size", &args.max_arg_size)?;
    options.limits.max_request = size("--max-request-size", &args.max_request_size)?;
    options.limits.max_args = args.max_args;
    options.schema_limits = limits.limits();
    options.max_ids_per_customer = limits.max_ids_per_customer;
    options.allow_known_merge = limits.allow_known_merge;
    // A client that hangs up before reading its reply must not kill the server (main() restores
    // the default SIGPIPE for the printing commands).
    // SAFETY: setting a signal's disposition, before the server starts its threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let server = Server::start(db, options).map_err(|e| match e {
        server::ServerError::Db(e) => Failure::from(e),
        other => Failure(other.to_string(), 1),
    })?;
    if server.removed_stale_socket() {
        eprintln!("removed a stale socket file left by a server that did not stop cleanly");
    }
    eprintln!(
        "serving {} on {} (redis-cli -s {}); SIGTERM or Ctrl-C stops",
        db.display(),
        server.socket().display(),
        server.socket().display()
    );
    let summary = server
        .run_until_signalled()
        .map_err(|e| Failure(e.to_string(), 1))?;
    eprintln!(
        "stopped: {} connections, {} commands, {} errors",
        summary.connections, summary.commands, summary.errors
    );
    Ok(())
}

fn gen_config(
    customers: u64,
    seed: u64,
    days: u32,
    end: Option<&str>,
) -> Result<gen::GenConfig, Failure> {
    let mut config = gen::GenConfig::new(customers, seed);
    config.days = days;
    if let Some(end) = end {
        config.end = time::parse_user_time(end).ok_or_else(|| {
            Failure(
                format!("--end {end:?}: expected a date (2026-03-01) or an RFC 3339 time"),
                2,
            )
        })?;
    }
    Ok(config)
}

/// A progress bar on a terminal, nothing otherwise.
fn progress_bar(len: u64, unit: &str) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        ProgressBar::new(len).with_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{eta}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        )
    })
}

/// Runs the REPL; in a script, exit status 1 when an input failed (each was reported).
fn repl(backend: impl audiencedb::repl::Backend, history: Option<PathBuf>) -> Result<(), Failure> {
    let outcome = audiencedb::repl::run(backend, history.as_deref()).map_err(|e| match e {
        audiencedb::repl::BackendError::Db(e) => Failure::from(e),
        other => Failure(other.to_string(), 1),
    })?;
    if outcome.failed > 0 && !std::io::stdin().is_terminal() {
        return Err(Failure(
            format!("{} of {} inputs failed", outcome.failed, outcome.inputs),
            1,
        ));
    }
    Ok(())
}

/// A folder held by another process: when a server's socket sits at the default place, the
/// message names it and the `repl --socket` that uses it.
fn locked_hint(path: &Path, failure: Failure) -> Failure {
    use std::os::unix::fs::FileTypeExt;
    if !failure.0.contains("is open in another process") {
        return failure;
    }
    let socket = audiencedb::server::default_socket(path);
    let is_socket = std::fs::metadata(&socket).is_ok_and(|m| m.file_type().is_socket());
    let msg = if is_socket {
        format!(
            "{} is open in another process, probably the server answering on {}; use it with\n  audiencedb --db {} repl --socket {}",
            path.display(),
            socket.display(),
            path.display(),
            socket.display()
        )
    } else {
        format!(
            "{} is open in another process; stop it, or if it is `audiencedb serve --socket PATH`, use `audiencedb repl --socket PATH`",
            path.display()
        )
    };
    Failure(msg, failure.1)
}

/// The audiences the demo saves, in the rule language over the generated shop's events and
/// traits (`audiencedb gen`). `unsubscribed` is the audience the rule language's example names.
const DEMO_AUDIENCES: [(&str, &str); 6] = [
    ("gold_viewers", "tier = Gold and viewed in last 30 days"),
    (
        "lapsed_buyers",
        "purchased ever and not purchased in last 6 months",
    ),
    (
        "cart_abandoners",
        "added_to_cart in last 7 days and not purchased in last 7 days",
    ),
    (
        "high_spenders",
        "purchased sum(amount) > 500 in last 365 days",
    ),
    (
        "new_visitors",
        "not visited before 7 days ago and visited in last 7 days",
    ),
    ("unsubscribed", "newsletter = false"),
];

/// Saves the demo audiences that are not saved yet (one saved under a demo name by someone
/// else is left as it is), and says what it did.
fn save_demo_audiences(db: &Db) -> Result<(), Failure> {
    println!("\nsaved audiences:");
    for (name, rule) in DEMO_AUDIENCES {
        let (verb, info) = match db.audience(name) {
            Ok(info) => ("kept ", info),
            Err(Error::NotFound(_)) => ("saved", db.define_audience(name, rule)?),
            Err(e) => return Err(e.into()),
        };
        println!(
            "  {verb} {:<16} {:>7} customers  {}",
            info.name, info.size, info.rule
        );
    }
    Ok(())
}

/// Builds the demo shop: generates it straight into the importer through a pipe.
fn demo(path: &Path, limits: &LimitArgs, customers: u64) -> Result<(), Failure> {
    let db = open(path, limits)?;
    if db.schema().customers == 0 {
        eprintln!(
            "building a demo shop of {customers} customers in {} ...",
            path.display()
        );
        let config = gen::GenConfig::new(customers, 1);
        // Customer order: until event storage appends without rewriting (issue 18), a
        // time-ordered import of the demo takes about twice as long and four times the disk.
        let (reader, writer) = std::io::pipe().map_err(Error::from)?;
        let started = Instant::now();
        let bar = progress_bar(customers, "customers");
        let producer = std::thread::spawn(move || {
            let out = std::io::BufWriter::with_capacity(1 << 20, writer);
            gen::generate_with_progress(&config, out, |s| {
                if let Some(bar) = &bar {
                    bar.set_position(s.customers);
                }
            })
        });
        let mut errors = import::CollectErrors::default();
        let summary = import::import_ndjson(
            &db,
            std::io::BufReader::with_capacity(1 << 20, reader),
            &ImportOptions::default(),
            &mut errors,
        )?;
        producer
            .join()
            .map_err(|_| Failure("the generator failed".into(), 1))?
            .map_err(|e| Failure(format!("gen: {e}"), 1))?;
        db.final_checkpoint()?;
        eprintln!(
            "stored {} messages in {:.1} s",
            summary.stored,
            started.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("reusing the demo shop in {}", path.display());
    }
    print_schema(&db.schema());
    save_demo_audiences(&db)?;
    // On a terminal the demo ends in the REPL; in a pipe it prints the audiences and exits.
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let now = time::now();
    println!(
        "\nthe rule language's example audiences at {}:",
        time::format_rfc3339(now)
    );
    for rule in audiencedb::rules::SPEC_EXAMPLES {
        let audience = db.query(rule, now)?;
        println!(
            "  {:>7} customers  {:>8.2} ms  {rule}",
            audience.len(),
            audience.elapsed().as_secs_f64() * 1e3
        );
    }
    if interactive {
        println!(
            "\nOpening the REPL: type one of these rules, `.audiences`, `.explain RULE`, or `.help`."
        );
        return repl(&db, audiencedb::repl::default_history_path());
    }
    println!("\nsaved audiences as kept now:");
    for a in db.audiences() {
        println!("  {:<16} {:>7} customers  {}", a.name, a.size, a.rule);
    }
    let db_arg = path.display();
    println!("\nTry:");
    println!("  audiencedb --db {db_arg} customer show c-000001");
    println!(
        "  audiencedb --db {db_arg} query --format ids \"tier = Gold and viewed in last 7 days\""
    );
    println!(
        "  audiencedb --db {db_arg} query --explain \"purchased at least 3 times in last 90 days\""
    );
    println!("  audiencedb --db {db_arg} query --why c-000001 \"purchased ever and not purchased in last 6 months\"");
    println!("  audiencedb --db {db_arg} audience members gold_viewers --format ids");
    println!("  audiencedb --db {db_arg} query \"added_to_cart then not purchased within 1 hour in last 7 days\"");
    println!("  audiencedb --db {db_arg} funnel visited viewed added_to_cart purchased --within \"7 days\" --window \"in last 30 days\"");
    println!("  audiencedb --db {db_arg} experiment checkout_2026 --audience \"viewed in last 30 days\" --goal \"purchased in last 30 days\"");
    println!("  audiencedb --db {db_arg} sql --dialect clickhouse \"tier = Gold and viewed in last 7 days\"");
    println!("  audiencedb --db {db_arg} repl     (.audiences, .save NAME RULE)");
    Ok(())
}

/// Shows bad lines on stderr, a progress bar on a terminal, and batch lines when asked.
struct CliObserver {
    name: String,
    bar: Option<ProgressBar>,
    report_batches: bool,
    shown_errors: u64,
    /// The summary at the last durable batch.
    stored: ImportSummary,
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
        self.stored = *s;
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

/// The failure of an import that stopped at `file`: what went wrong, and, when the database
/// was the trouble, what is stored (`total`, every batch acknowledged before it) and what is not.
fn import_failure(file: &Path, e: &Error, total: &ImportSummary) -> Failure {
    let mut msg = format!("{}: {}", file.display(), friendly(e));
    if e.is_no_space() || matches!(e, Error::Storage(_) | Error::Corrupt(_)) {
        msg.push_str(&format!(
            "\nthe import stopped: the {} messages stored before it ({} batches) are durable, \
             the batch being written and the rest of the input are not stored; run the same \
             import again to resume (stored messages are skipped as duplicates)",
            total.stored, total.batches
        ));
    }
    Failure(msg, 1)
}

/// Imports one file. On failure, also the summary of what was stored before it: every batch
/// acknowledged so far, all durable.
fn import_file(
    db: &Db,
    file: &Path,
    format: Option<Format>,
    options: &ImportOptions,
    report_batches: bool,
) -> Result<ImportSummary, (Error, ImportSummary)> {
    let none = |e: std::io::Error| (Error::from(e), ImportSummary::default());
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
        Some(std::fs::metadata(file).map_err(none)?.len())
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
        stored: ImportSummary::default(),
    };
    let result = match (format, stdin) {
        (Format::Ndjson, true) => import::import_ndjson(
            db,
            std::io::BufReader::with_capacity(1 << 20, std::io::stdin()),
            options,
            &mut observer,
        ),
        (Format::Ndjson, false) => {
            let f = std::io::BufReader::with_capacity(
                1 << 20,
                std::fs::File::open(file).map_err(none)?,
            );
            import::import_ndjson(db, f, options, &mut observer)
        }
        (Format::Csv, true) => {
            import::import_csv(db, std::io::stdin().lock(), options, &mut observer)
        }
        (Format::Csv, false) => import::import_csv(
            db,
            std::fs::File::open(file).map_err(none)?,
            options,
            &mut observer,
        ),
    };
    if let Some(bar) = &observer.bar {
        bar.finish_and_clear();
    }
    result.map_err(|e| (e, observer.stored))
}

fn print_customer(c: &audiencedb::Customer) {
    println!("customer {} (internal #{})", c.id, c.internal_id);
    if c.ids.len() > 1 {
        println!("  ids: {}", c.ids.join(", "));
    }
    match &c.traits {
        Some(traits) => {
            for (k, v) in traits {
                println!("  {k} = {v}");
            }
        }
        None => println!("  (no profile: known from events only)"),
    }
    for (k, v) in &c.computed {
        match v {
            Some(v) => println!("  {k} = {v}  (computed)"),
            None => println!("  {k} is not set  (computed)"),
        }
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
            time::format_rfc3339(e.timestamp),
            e.name,
            props.join(" ")
        );
    }
}

/// Names the other ids of a merged customer that a delete removed with it.
fn print_merged_ids(id: &str, ids: &[String]) {
    let others: Vec<&str> = ids
        .iter()
        .map(String::as_str)
        .filter(|i| *i != id)
        .collect();
    if !others.is_empty() {
        println!(
            "  with every id merged into it: {} (check them with `verify --erased {id} --also ID`)",
            others.join(", ")
        );
    }
}

fn print_schema(s: &audiencedb::Schema) {
    print!("{}", audiencedb::repl::render::schema(s));
}

/// The ids of a list file (`-`: standard input), as `audience::ids_of_list_file` reads them.
fn read_id_list(file: &Path) -> Result<Vec<String>, Failure> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| Failure(format!("reading the ids from standard input: {e}"), 1))?;
        s
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Failure(format!("reading {}: {e}", file.display()), 1))?
    };
    Ok(audiencedb::audience::ids_of_list_file(&text))
}

/// A kept purchase model's parameters, one per line.
fn print_model(m: &serde_json::Value) {
    let num = |k: &str| match m[k].as_f64() {
        Some(x) if x != 0.0 && x.abs() < 1e-3 => format!("{x:.3e}"),
        Some(x) => format!("{x:.6}"),
        None => "-".to_owned(),
    };
    println!(
        "model       BG/NBD r {} alpha {} a {} b {}",
        num("r"),
        num("alpha"),
        num("a"),
        num("b")
    );
    if m["p"].is_number() {
        println!(
            "            Gamma-Gamma p {} q {} v {}",
            num("p"),
            num("q"),
            num("v")
        );
    }
    println!(
        "            in {}, {} customers ({} repeat), log-likelihood {}, fitted at {}",
        m["time_unit"].as_str().unwrap_or("?"),
        m["customers"],
        m["repeat_customers"],
        num("log_likelihood"),
        m["fitted_at"].as_str().unwrap_or("?")
    );
}

fn trait_command(path: &Path, limits: &LimitArgs, action: TraitAction) -> Result<(), Failure> {
    let db = open_existing(path, limits)?;
    let stamp = |t: time::Timestamp| time::format_rfc3339(t);
    match action {
        TraitAction::Define { name, expression } => {
            let info = db.define_trait(&name, &expression.join(" "))?;
            println!("defined computed trait {} = {}", info.name, info.expression);
        }
        TraitAction::List { json } => {
            let all = db.computed_traits();
            if json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else if all.is_empty() {
                println!(
                    "no computed traits (define one: audiencedb trait define NAME \"EXPRESSION\")"
                );
            } else {
                println!("{:<24} expression", "trait");
                for t in all {
                    println!("{:<24} {}", t.name, t.expression);
                }
            }
        }
        TraitAction::Show {
            name,
            json,
            format,
            now,
        } => {
            let json = match format.as_deref() {
                None => json,
                Some("json") => true,
                Some("text") => json,
                Some(other) => {
                    return Err(Failure(
                        format!("--format {other:?}: expected json or text"),
                        2,
                    ))
                }
            };
            let mut t = db.computed_trait(&name)?;
            if now.is_some() {
                let at = parse_now(now.as_deref())?;
                t.model = Some(db.fit_trait_at(&name, at)?.to_json());
                t.refit_error = None;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&t).unwrap_or_default());
            } else {
                println!("trait       {}", t.name);
                println!("expression  {}", t.expression);
                println!("defined     {}", stamp(t.created));
                println!(
                    "used by     {}",
                    if t.used_by.is_empty() {
                        "no saved audience".to_owned()
                    } else {
                        t.used_by.join(", ")
                    }
                );
                if let Some(m) = &t.model {
                    print_model(m);
                }
                if let Some(e) = &t.refit_error {
                    println!("last refit  failed: {e}");
                }
            }
        }
        TraitAction::Refit { name } => {
            let t = db.refit_trait(&name)?;
            println!("refitted computed trait {}", t.name);
            if let Some(m) = &t.model {
                print_model(m);
            }
        }
        TraitAction::Drop { name } => {
            db.drop_trait(&name)?;
            println!("dropped computed trait {name}");
        }
    }
    Ok(())
}

fn audience_command(
    path: &Path,
    limits: &LimitArgs,
    action: AudienceAction,
) -> Result<(), Failure> {
    let db = open_existing(path, limits)?;
    let stamp = |t: time::Timestamp| time::format_rfc3339(t);
    match action {
        AudienceAction::Define { name, rule } => {
            let started = Instant::now();
            let rule = rule.join(" ");
            let info = db.define_audience(&name, &rule)?;
            print_warnings(&db.check(&info.rule).unwrap_or_default());
            println!(
                "saved audience {}: {} members as of {} ({:.1} ms)",
                info.name,
                info.size,
                stamp(info.as_of),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        AudienceAction::List { json } => {
            let all = db.audiences();
            if json {
                println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            } else if all.is_empty() {
                println!("no saved audiences (save one: audiencedb audience define NAME RULE)");
            } else {
                println!("{:<24} {:>10}  rule", "audience", "members");
                for a in all {
                    println!("{:<24} {:>10}  {}", a.name, a.size, a.rule);
                }
            }
        }
        AudienceAction::Show { name, json } => {
            let a = db.audience(&name)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&a).unwrap_or_default());
            } else {
                println!("audience        {}", a.name);
                println!("rule            {}", a.rule);
                println!("members         {} (as of {})", a.size, stamp(a.as_of));
                println!("created         {}", stamp(a.created));
                println!("rule saved      {}", stamp(a.rule_changed));
                println!(
                    "members changed {}",
                    a.members_changed.map_or("never".to_owned(), stamp)
                );
                println!(
                    "next time check {} ({} customers waiting)",
                    a.next_check.map_or("none".to_owned(), stamp),
                    a.timers
                );
            }
        }
        AudienceAction::Load { name, file } => {
            let started = Instant::now();
            let ids = read_id_list(&file)?;
            let info = db.load_audience(&name, ids)?;
            println!(
                "loaded list {}: {} ids naming {} customers as of {} ({:.1} ms)",
                info.name,
                info.list_ids.unwrap_or_default(),
                info.size,
                stamp(info.as_of),
                started.elapsed().as_secs_f64() * 1e3
            );
        }
        AudienceAction::Drop { name } => {
            db.drop_audience(&name)?;
            println!("dropped audience {name}");
        }
        AudienceAction::Export { name, format } => {
            let members = db.audience_members(&name)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let io = |e: std::io::Error| Failure(format!("writing the output: {e}"), 1);
            if let ExportFormat::Csv = format {
                writeln!(out, "id").map_err(io)?;
            }
            db.for_each_member_id(&members, |id| {
                match format {
                    ExportFormat::Ids => writeln!(out, "{id}"),
                    ExportFormat::Csv => {
                        let needs_quotes = id.contains([',', '"', '\n', '\r']);
                        if needs_quotes {
                            writeln!(out, "\"{}\"", id.replace('"', "\"\""))
                        } else {
                            writeln!(out, "{id}")
                        }
                    }
                    ExportFormat::Ndjson => {
                        writeln!(out, "{}", serde_json::json!({"audience": name, "id": id}))
                    }
                }
                .map_err(Error::from)
            })?;
            out.flush().map_err(io)?;
        }
        AudienceAction::Members { name, at, format } => {
            let members = match at {
                Some(text) => {
                    let at = time::parse_user_time(&text).ok_or_else(|| {
                        Failure(
                            format!(
                                "--at {text:?}: expected a date (2026-03-01) or an RFC 3339 time"
                            ),
                            2,
                        )
                    })?;
                    db.audience_members_at(&name, at)?
                }
                None => db.audience_members(&name)?,
            };
            print_audience(&db, &members, format)?;
        }
        AudienceAction::Diff { name, rule, all } => {
            let d = db.diff_audience(&name, &rule.join(" "))?;
            print_warnings(&db.check(&d.rule).unwrap_or_default());
            println!(
                "{}: {} members now, {} with the new rule (+{} entering, -{} leaving), as of {} ({:.1} ms)",
                d.name,
                d.before,
                d.after,
                d.entering.len(),
                d.leaving.len(),
                stamp(d.now),
                d.elapsed.as_secs_f64() * 1e3
            );
            let limit = if all { usize::MAX } else { 10 };
            for (sign, side) in [('+', &d.entering), ('-', &d.leaving)] {
                let ids = db.member_page(side, None, limit)?;
                for id in &ids {
                    println!("{sign}{id}");
                }
                if (ids.len() as u64) < side.len() {
                    println!(
                        "{sign}... and {} more (--all lists them)",
                        side.len() - ids.len() as u64
                    );
                }
            }
        }
        AudienceAction::Changes { after, limit } => {
            for c in db.changes_since(after, limit)? {
                println!("{}", c.to_json());
            }
        }
    }
    Ok(())
}
