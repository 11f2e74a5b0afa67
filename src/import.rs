//! File import: NDJSON messages and CSV profiles, read in batches, parsed in parallel, stored one
//! durable batch at a time. Bad lines are reported with their line numbers and skipped, or, in
//! strict mode, the whole file is checked first and nothing from it is stored if any line is bad.
//! A message that would take the schema past one of the database's limits (`Config::limits`)
//! is a bad line too: nothing of it is stored, and its batch's other messages are.

use std::io::{BufRead, Read};
use std::ops::Range;
use std::sync::mpsc;

use rayon::prelude::*;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::ingest::message::Message;
use crate::model::value::string_value;
use crate::model::Value;

/// The longest line accepted, in bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Messages per durable batch unless told otherwise. In a time-ordered stream a batch holds about
/// one message per customer it touches, and every batch writes those customers' profiles, ids and
/// a dirty-log record as small records all over sled's key space, whose dead copies sled keeps:
/// at 200,000 customers batches of 100,000 took 0.91 of the disk and 0.93 of the CPU of batches
/// of 20,000 (docs/BENCHMARKS.md, "Fewer checkpoints"), for about 50 MB more memory.
pub const DEFAULT_BATCH_SIZE: usize = 100_000;

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Stop at the first bad line and store nothing from the file.
    pub strict: bool,
    /// Messages per stored (and flushed) batch.
    pub batch_size: usize,
    /// The CSV column that holds the customer id.
    pub id_column: String,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            strict: false,
            batch_size: DEFAULT_BATCH_SIZE,
            id_column: "userId".into(),
        }
    }
}

/// One line that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// Lines (NDJSON) or records (CSV) read, blank lines excluded.
    pub read: u64,
    pub stored: u64,
    /// Bad lines skipped.
    pub skipped: u64,
    /// Messages whose `messageId` was already stored.
    pub duplicates: u64,
    /// Durable batches written.
    pub batches: u64,
    /// Merges of two customers into one (alias messages, messages with both ids).
    pub merges: u64,
}

impl ImportSummary {
    pub fn add(&mut self, other: &ImportSummary) {
        self.read += other.read;
        self.stored += other.stored;
        self.skipped += other.skipped;
        self.duplicates += other.duplicates;
        self.batches += other.batches;
        self.merges += other.merges;
    }
}

/// Callbacks an interface gives an import: where bad lines go, and progress.
pub trait ImportObserver {
    /// A bad line (skipped, or in strict mode the reason the import stops).
    fn bad_line(&mut self, error: &LineError);
    /// A batch is durable; `bytes` of input have been consumed so far.
    fn batch_stored(&mut self, _summary: &ImportSummary, _bytes: u64) {}
}

/// An observer that collects bad lines.
#[derive(Debug, Default)]
pub struct CollectErrors(pub Vec<LineError>);

impl ImportObserver for CollectErrors {
    fn bad_line(&mut self, error: &LineError) {
        self.0.push(error.clone());
    }
}

/// Raw lines read from input, with the number of the first and the bytes consumed. The lines'
/// text sits in one buffer (one allocation a chunk, not one a line).
struct Chunk {
    first_line: u64,
    text: String,
    /// Each line: its range in `text`, or why it was refused.
    lines: Vec<Result<Range<usize>, String>>,
    bytes: u64,
}

impl Chunk {
    /// Line `i`'s text, or why it was refused.
    fn line(&self, i: usize) -> Result<&str, &str> {
        match &self.lines[i] {
            Ok(r) => Ok(&self.text[r.clone()]),
            Err(e) => Err(e),
        }
    }
}

/// Reads up to `max` lines; a line longer than [`MAX_LINE_BYTES`] or not UTF-8 is an error
/// entry, and its rest is skipped without being held in memory.
fn read_lines<R: BufRead>(r: &mut R, max: usize, next_line: &mut u64) -> Result<Option<Chunk>> {
    let mut lines = Vec::with_capacity(max);
    let mut bytes = 0u64;
    let first_line = *next_line;
    let mut text: Vec<u8> = Vec::new();
    while lines.len() < max {
        let start = text.len();
        let n = r
            .by_ref()
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut text)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        *next_line += 1;
        if text.last() != Some(&b'\n') && text.len() - start > MAX_LINE_BYTES {
            text.truncate(start);
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = r.by_ref().take(1 << 16).read_until(b'\n', &mut rest)?;
                bytes += m as u64;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            lines.push(Err(format!("line longer than {MAX_LINE_BYTES} bytes")));
            continue;
        }
        while text.len() > start && matches!(text.last(), Some(b'\n' | b'\r')) {
            text.pop();
        }
        lines.push(Ok(start..text.len()));
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let text = match String::from_utf8(text) {
        Ok(text) => text,
        // Rare: some line is not UTF-8. Only the valid lines are kept, each checked alone.
        Err(e) => {
            let bytes = e.into_bytes();
            let mut kept = String::with_capacity(bytes.len());
            for line in lines.iter_mut() {
                if let Ok(range) = line {
                    *line = match std::str::from_utf8(&bytes[range.clone()]) {
                        Ok(valid) => {
                            let start = kept.len();
                            kept.push_str(valid);
                            Ok(start..kept.len())
                        }
                        Err(_) => Err("the line is not valid UTF-8".into()),
                    };
                }
            }
            kept
        }
    };
    Ok(Some(Chunk {
        first_line,
        text,
        lines,
        bytes,
    }))
}

/// Whether a line holds nothing but white space (JSON's, or Unicode's as `str::trim` sees it).
fn is_blank(line: &str) -> bool {
    match line.as_bytes().first() {
        None => true,
        // A message starts with `{`: the common case needs no scan.
        Some(b'{') => false,
        Some(_) => line.trim().is_empty(),
    }
}

/// Parses a chunk in parallel: blank lines are dropped, bad ones become errors.
fn parse_chunk(chunk: &Chunk) -> Vec<(u64, Result<Message, String>)> {
    (0..chunk.lines.len())
        .into_par_iter()
        .filter_map(|i| {
            let no = chunk.first_line + i as u64;
            match chunk.line(i) {
                Ok(l) if is_blank(l) => None,
                Ok(l) => Some((no, Message::from_json_line(l))),
                Err(e) => Some((no, Err(e.to_owned()))),
            }
        })
        .collect()
}

/// Imports NDJSON messages from a reader that cannot be read twice. In strict mode the input is
/// first spooled to a temporary file and checked whole.
pub fn import_ndjson<R: BufRead + Send>(
    db: &Db,
    mut input: R,
    options: &ImportOptions,
    observer: &mut dyn ImportObserver,
) -> Result<ImportSummary> {
    if options.strict {
        let mut spool = tempfile::tempfile()?;
        std::io::copy(&mut input, &mut spool)?;
        use std::io::Seek;
        spool.seek(std::io::SeekFrom::Start(0))?;
        let mut check = std::io::BufReader::new(spool.try_clone()?);
        check_ndjson(db, &mut check, options, observer)?;
        spool.seek(std::io::SeekFrom::Start(0))?;
        return store_ndjson(db, std::io::BufReader::new(spool), options, observer);
    }
    store_ndjson(db, input, options, observer)
}

/// Strict mode's first pass: every line must parse, and the messages must keep the schema
/// within the database's limits.
fn check_ndjson<R: BufRead>(
    db: &Db,
    input: &mut R,
    options: &ImportOptions,
    observer: &mut dyn ImportObserver,
) -> Result<()> {
    let mut next_line = 1;
    let mut limits = db.limit_check();
    while let Some(chunk) = read_lines(input, options.batch_size.max(1), &mut next_line)? {
        for (line, parsed) in parse_chunk(&chunk) {
            let refused = match parsed {
                Ok(m) => limits.admit(&m).map_err(|e| e.to_string()),
                Err(reason) => Err(reason),
            };
            if let Err(reason) = refused {
                return Err(strict_failure(observer, LineError { line, reason }));
            }
        }
    }
    Ok(())
}

/// Reports the bad line that stops a strict import, and the error it ends with.
fn strict_failure(observer: &mut dyn ImportObserver, error: LineError) -> Error {
    observer.bad_line(&error);
    Error::BadLine {
        line: error.line,
        reason: format!("{} (strict import: nothing was stored)", error.reason),
    }
}

/// Reads, parses and stores, with reading and parsing of the next batch overlapping the storing
/// of this one.
fn store_ndjson<R: BufRead + Send>(
    db: &Db,
    mut input: R,
    options: &ImportOptions,
    observer: &mut dyn ImportObserver,
) -> Result<ImportSummary> {
    let batch_size = options.batch_size.max(1);
    // The next batch is parsed on threads of its own: on rayon's shared pool, the storing of
    // this batch (whose per-customer work runs there) would queue behind the parsing.
    let parsers = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("audiencedb-parse-{i}"))
        .build()
        .map_err(|e| Error::from(std::io::Error::other(e)))?;
    let (tx, rx) = mpsc::sync_channel::<Result<(Chunk, Vec<(u64, Result<Message, String>)>)>>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut next_line = 1;
            loop {
                let item = match read_lines(&mut input, batch_size, &mut next_line) {
                    Ok(Some(chunk)) => {
                        let parsed = parsers.install(|| parse_chunk(&chunk));
                        Ok((chunk, parsed))
                    }
                    Ok(None) => break,
                    Err(e) => Err(e),
                };
                let stop = item.is_err();
                if tx.send(item).is_err() || stop {
                    break;
                }
            }
        });
        let mut summary = ImportSummary::default();
        let mut bytes = 0u64;
        for item in rx {
            let (chunk, parsed) = item?;
            bytes += chunk.bytes;
            let mut messages = Vec::with_capacity(parsed.len());
            let mut lines = Vec::with_capacity(parsed.len());
            for (line, result) in parsed {
                summary.read += 1;
                match result {
                    Ok(m) => {
                        messages.push(m);
                        lines.push(line);
                    }
                    Err(reason) => {
                        summary.skipped += 1;
                        observer.bad_line(&LineError { line, reason });
                    }
                }
            }
            store_batch(db, messages, &lines, options, &mut summary, observer)?;
            observer.batch_stored(&summary, bytes);
        }
        Ok(summary)
    })
}

/// Stores one batch (`lines[i]` is where `messages[i]` came from). A message over a schema limit
/// is a bad line, skipped; in strict mode, where the first pass checked the limits, it fails the
/// import.
fn store_batch(
    db: &Db,
    messages: Vec<Message>,
    lines: &[u64],
    options: &ImportOptions,
    summary: &mut ImportSummary,
    observer: &mut dyn ImportObserver,
) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let report = if options.strict {
        db.ingest(messages)?
    } else {
        let (report, refused) = db.ingest_lenient(messages)?;
        for (i, e) in refused {
            summary.skipped += 1;
            observer.bad_line(&LineError {
                line: lines.get(i).copied().unwrap_or(0),
                reason: e.to_string(),
            });
        }
        report
    };
    summary.stored += report.stored;
    summary.duplicates += report.duplicates;
    summary.merges += report.merges;
    summary.batches += 1;
    Ok(())
}

/// Reads a CSV cell as a typed value: whole numbers without leading zeros, plain decimals,
/// `true`/`false`, RFC 3339 date-times; anything else (a zip code `00120`, say) stays text.
pub fn csv_value(cell: &str) -> Value {
    let t = cell.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    let plain_number = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && !digits.starts_with('.')
        && !digits.ends_with('.')
        && !(digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0."));
    if plain_number {
        if let Ok(i) = t.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = t.parse::<f64>() {
            if f.is_finite() {
                return Value::Float(f);
            }
        }
    }
    if t.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if t.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    string_value(cell)
}

/// Imports profiles from CSV with a header row: the id column is the customer, every other
/// column a trait. An empty cell leaves that trait as it is.
pub fn import_csv<R: Read>(
    db: &Db,
    input: R,
    options: &ImportOptions,
    observer: &mut dyn ImportObserver,
) -> Result<ImportSummary> {
    let quotes = std::rc::Rc::new(std::cell::Cell::new(QuoteState::default()));
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(QuoteWatch {
            inner: input,
            state: quotes.clone(),
        });
    let headers = reader
        .headers()
        .map_err(|e| Error::BadLine {
            line: 1,
            reason: format!("bad CSV header: {e}"),
        })?
        .clone();
    let id_col = headers
        .iter()
        .position(|h| h == options.id_column)
        .ok_or_else(|| Error::BadLine {
            line: 1,
            reason: format!(
                "the header has no {:?} column (choose one with --id-column)",
                options.id_column
            ),
        })?;
    let mut summary = ImportSummary::default();
    let mut pending: Vec<Message> = Vec::new();
    let mut pending_lines: Vec<u64> = Vec::new();
    let mut all_ok = Vec::new();
    let mut limits = options.strict.then(|| db.limit_check());
    let mut records = reader.records().peekable();
    // A quote never closed swallows the rest of the input into the last record (or the
    // header): that record is reported as such.
    let mut reported = false;
    while let Some(record) = records.next() {
        let (line, result) = match record {
            Ok(rec) => {
                let line = rec.position().map_or(0, |p| p.line());
                (line, csv_message(&headers, &rec, id_col))
            }
            Err(e) => (
                e.position().map_or(0, |p| p.line()),
                Err(format!("bad CSV record: {e}")),
            ),
        };
        let (line, result) = match records.peek().is_none().then(|| unclosed_quote(&quotes)) {
            Some(Some(error)) => {
                reported = true;
                (error.line, Err(error.reason))
            }
            _ => (line, result),
        };
        summary.read += 1;
        let result = match (result, &mut limits) {
            (Ok(m), Some(limits)) => limits.admit(&m).map(|()| m).map_err(|e| e.to_string()),
            (result, _) => result,
        };
        match result {
            Ok(m) if options.strict => all_ok.push((m, line)),
            Ok(m) => {
                pending.push(m);
                pending_lines.push(line);
                if pending.len() >= options.batch_size.max(1) {
                    let lines = std::mem::take(&mut pending_lines);
                    let batch = std::mem::take(&mut pending);
                    store_batch(db, batch, &lines, options, &mut summary, observer)?;
                    observer.batch_stored(&summary, 0);
                }
            }
            Err(reason) => {
                let error = LineError { line, reason };
                if options.strict {
                    return Err(strict_failure(observer, error));
                }
                observer.bad_line(&error);
                summary.skipped += 1;
            }
        }
    }
    if let Some(error) = unclosed_quote(&quotes).filter(|_| !reported) {
        // In the header: there are no records.
        return Err(Error::BadLine {
            line: error.line,
            reason: format!("bad CSV header: {}", error.reason),
        });
    }
    for (m, line) in all_ok {
        pending.push(m);
        pending_lines.push(line);
    }
    let size = options.batch_size.max(1);
    for (batch, lines) in pending.chunks(size).zip(pending_lines.chunks(size)) {
        store_batch(db, batch.to_vec(), lines, options, &mut summary, observer)?;
        observer.batch_stored(&summary, 0);
    }
    Ok(summary)
}

/// Where a CSV reader is in the quoting, as the `csv` crate reads it (RFC 4180: a cell that
/// starts with `"` runs to the next `"` not doubled; a quote elsewhere is a plain character).
#[derive(Debug, Clone, Copy, Default)]
struct QuoteState {
    /// The line being read (1-based, as the `csv` crate counts: by `\n`).
    line: u64,
    /// The line of the last byte read.
    last_line: u64,
    cell: Quoting,
    /// The line of the quote that opened the quoted cell being read.
    opened: u64,
    /// The end of the input was read.
    eof: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Quoting {
    #[default]
    Start,
    Plain,
    Quoted,
    /// A `"` in a quoted cell: the end of the cell, or the first of a doubled one.
    QuoteInQuoted,
}

impl QuoteState {
    fn scan(&mut self, bytes: &[u8]) {
        if self.line == 0 {
            self.line = 1;
        }
        for &b in bytes {
            let end_of_cell = matches!(b, b',' | b'\r' | b'\n');
            self.cell = match (self.cell, b) {
                (Quoting::Start, b'"') => {
                    self.opened = self.line;
                    Quoting::Quoted
                }
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::Quoted, _) => Quoting::Quoted,
                (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                (_, _) if end_of_cell => Quoting::Start,
                _ => Quoting::Plain,
            };
            self.last_line = self.line;
            if b == b'\n' {
                self.line += 1;
            }
        }
    }
}

/// Passes the CSV input through, following its quoting, to tell where a quote that is never
/// closed was opened.
struct QuoteWatch<R> {
    inner: R,
    state: std::rc::Rc<std::cell::Cell<QuoteState>>,
}

impl<R: Read> Read for QuoteWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut state = self.state.get();
        state.scan(&buf[..n]);
        state.eof |= n == 0 && !buf.is_empty();
        self.state.set(state);
        Ok(n)
    }
}

/// The error for a quoted cell still open at the end of the input, once it is read.
fn unclosed_quote(state: &std::cell::Cell<QuoteState>) -> Option<LineError> {
    let s = state.get();
    (s.eof && s.cell == Quoting::Quoted).then(|| LineError {
        line: s.opened,
        reason: format!(
            "a quoted cell opened on this line is never closed, so the rest of the input \
             (to line {}) was read as part of it and not imported; close the quote (a quote \
             inside a quoted cell is written twice: \"\")",
            s.last_line
        ),
    })
}

fn csv_message(
    headers: &csv::StringRecord,
    rec: &csv::StringRecord,
    id_col: usize,
) -> Result<Message, String> {
    let id = rec.get(id_col).unwrap_or("").trim();
    crate::ingest::message::check_customer_id(id)?;
    let mut traits = Vec::with_capacity(rec.len());
    for (i, (name, cell)) in headers.iter().zip(rec.iter()).enumerate() {
        if i == id_col || cell.is_empty() {
            continue;
        }
        if name.is_empty() {
            return Err(format!("column {} has no name", i + 1));
        }
        traits.push((name.into(), Some(csv_value(cell))));
    }
    Ok(Message::identify(id, traits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_typed_conservatively() {
        assert_eq!(csv_value("34"), Value::Int(34));
        assert_eq!(csv_value("-3"), Value::Int(-3));
        assert_eq!(csv_value("19.90"), Value::Float(19.9));
        assert_eq!(csv_value("0.5"), Value::Float(0.5));
        assert_eq!(csv_value("00120"), Value::Str("00120".into()));
        assert_eq!(csv_value("1e5"), Value::Str("1e5".into()));
        assert_eq!(csv_value("TRUE"), Value::Bool(true));
        assert_eq!(csv_value("Gold"), Value::Str("Gold".into()));
        assert_eq!(
            csv_value("2025-02-03T10:00:00Z"),
            Value::Time(1_738_576_800_000)
        );
    }

    #[test]
    fn over_long_lines_are_errors_without_losing_the_next_line() {
        let mut input = Vec::new();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\nnext\n");
        let mut next = 1;
        let chunk = read_lines(&mut &input[..], 10, &mut next).unwrap().unwrap();
        assert_eq!(chunk.lines.len(), 2);
        assert!(chunk.line(0).unwrap_err().contains("longer than"));
        assert_eq!(chunk.line(1), Ok("next"));
        assert_eq!(next, 3);
    }
}
