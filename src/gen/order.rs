//! Time order: the shop's messages as a real stream delivers them, every customer's interleaved by
//! timestamp, in bounded memory.
//!
//! Customers are generated in index order, as for customer order. Their lines are gathered into
//! runs of at most [`RUN_BYTES`]; each run is sorted by (timestamp, customer index, position in the
//! customer's own messages), which is a total order, so the output does not depend on the number
//! of threads or on the run size. One run goes straight out; several are written to temporary
//! files and merged. The files hold, per line, its key and its bytes:
//! `ts i64 | customer u64 | seq u32 | len u32 | line`, little-endian.
//!
//! This module owns ordering only; what the lines say is `messages`' business.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

/// Bytes of lines gathered before a run is sorted and set aside: bounds the generator's memory
/// at about this much plus an index of 40 bytes a line.
pub(crate) const RUN_BYTES: usize = 256 << 20;

/// One rendered line: its key and where it ends in the buffer it was rendered into.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line {
    pub ts: i64,
    pub customer: u64,
    pub seq: u32,
    pub end: usize,
}

/// Where a line sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    ts: i64,
    customer: u64,
    seq: u32,
}

/// Lines gathered for one run: their bytes back to back, and each line's key and range.
#[derive(Default)]
pub(crate) struct Run {
    bytes: Vec<u8>,
    lines: Vec<(Key, usize, usize)>,
}

impl Run {
    pub(crate) fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Adds the lines rendered into `buf`: for each, its timestamp, customer, position among the
    /// customer's messages, and where it ends in `buf` (lines are back to back from offset 0).
    pub(crate) fn add_lines(&mut self, buf: &[u8], lines: &[Line]) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(buf);
        let mut start = 0;
        for l in lines {
            let key = Key {
                ts: l.ts,
                customer: l.customer,
                seq: l.seq,
            };
            self.lines.push((key, base + start, base + l.end));
            start = l.end;
        }
    }

    fn sort(&mut self) {
        self.lines.sort_unstable_by_key(|&(key, _, _)| key);
    }
}

/// Collects runs and writes them out merged in time order.
pub(crate) struct Sorter {
    current: Run,
    spilled: Vec<File>,
    run_bytes: usize,
}

impl Sorter {
    /// A sorter that sets runs aside once they hold `run_bytes` ([`RUN_BYTES`] outside tests).
    pub(crate) fn new(run_bytes: usize) -> Sorter {
        Sorter {
            current: Run::default(),
            spilled: Vec::new(),
            run_bytes,
        }
    }

    /// The run being gathered; call [`Sorter::maybe_spill`] after adding to it.
    pub(crate) fn run(&mut self) -> &mut Run {
        &mut self.current
    }

    /// Sorts the current run and sets it aside in a temporary file once it is large enough.
    pub(crate) fn maybe_spill(&mut self) -> io::Result<()> {
        if self.current.len_bytes() < self.run_bytes {
            return Ok(());
        }
        let mut run = std::mem::take(&mut self.current);
        run.sort();
        let mut file = BufWriter::with_capacity(1 << 20, tempfile::tempfile()?);
        for &(key, start, end) in &run.lines {
            let line = &run.bytes[start..end];
            file.write_all(&key.ts.to_le_bytes())?;
            file.write_all(&key.customer.to_le_bytes())?;
            file.write_all(&key.seq.to_le_bytes())?;
            file.write_all(&(line.len() as u32).to_le_bytes())?;
            file.write_all(line)?;
        }
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        io::Seek::rewind(&mut file)?;
        self.spilled.push(file);
        Ok(())
    }

    /// Writes every line gathered, in time order.
    pub(crate) fn finish<W: Write>(mut self, out: &mut W) -> io::Result<()> {
        self.current.sort();
        if self.spilled.is_empty() {
            for &(_, start, end) in &self.current.lines {
                out.write_all(&self.current.bytes[start..end])?;
            }
            return Ok(());
        }
        // The last run stays in memory as one more source of the merge.
        let mut sources: Vec<Source> = self
            .spilled
            .into_iter()
            .map(|f| Source::File(BufReader::with_capacity(1 << 20, f), Vec::new()))
            .collect();
        sources.push(Source::Memory(self.current, 0));
        let mut heap = BinaryHeap::new();
        for (i, source) in sources.iter_mut().enumerate() {
            if let Some(key) = source.advance()? {
                heap.push(Reverse((key, i)));
            }
        }
        while let Some(Reverse((_, i))) = heap.pop() {
            out.write_all(sources[i].line())?;
            if let Some(key) = sources[i].advance()? {
                heap.push(Reverse((key, i)));
            }
        }
        Ok(())
    }
}

/// One sorted run being merged, positioned on its current line.
enum Source {
    File(BufReader<File>, Vec<u8>),
    /// A run in memory and the index of its next line.
    Memory(Run, usize),
}

impl Source {
    /// Moves to the next line; its key, or `None` at the end of the run.
    fn advance(&mut self) -> io::Result<Option<Key>> {
        match self {
            Source::File(reader, line) => {
                let mut head = [0u8; 24];
                match reader.read_exact(&mut head) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                    Err(e) => return Err(e),
                }
                let word = |at: usize, n: usize| -> u64 {
                    let mut b = [0u8; 8];
                    b[..n].copy_from_slice(&head[at..at + n]);
                    u64::from_le_bytes(b)
                };
                let key = Key {
                    ts: word(0, 8) as i64,
                    customer: word(8, 8),
                    seq: word(16, 4) as u32,
                };
                line.resize(word(20, 4) as usize, 0);
                reader.read_exact(line)?;
                Ok(Some(key))
            }
            Source::Memory(run, next) => {
                let key = run.lines.get(*next).map(|&(key, _, _)| key);
                *next += 1;
                Ok(key)
            }
        }
    }

    /// The current line (after an [`Source::advance`] that returned a key).
    fn line(&self) -> &[u8] {
        match self {
            Source::File(_, line) => line,
            Source::Memory(run, next) => {
                let (_, start, end) = run.lines[*next - 1];
                &run.bytes[start..end]
            }
        }
    }
}
