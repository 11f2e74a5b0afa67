//! The synthetic shop behind `audiencedb gen`: deterministic, realistic customer data as
//! Segment-spec NDJSON (`identify` and `track` messages, see `ingest.md`).
//!
//! This module owns *making up data* and nothing else: it knows the message format, never the
//! storage. The same [`GenConfig`] and [`Order`] always produce the same bytes, whatever the number
//! of threads: every customer draws from its own ChaCha8 stream keyed by the seed and numbered by
//! the customer's index, and customers are generated in parallel chunks in index order. They are
//! written customer after customer ([`Order::Customer`]), or merged into one stream in timestamp
//! order ([`Order::Time`], what `audiencedb gen` writes by default: how real streams arrive),
//! sorted in bounded memory by `order`.
//! (The distributions use the platform's `ln`, `exp` and `cos`; the bytes are the same for every
//! run of one build, and across platforms whose maths library rounds alike.)
//!
//! What the data holds (details in the submodules):
//! - a catalog of 1,000 products in 20 categories with Zipf popularity; one popular shoe is
//!   literally product `X` (the rule examples use it);
//! - identified customers `c-000001`, ... with one `identify` (tier, country, age, email, tags,
//!   signup_at, device, source, `address.city`, newsletter, first_name) and sometimes a later one
//!   changing tier or unsubscribing (`newsletter = false`, the natural definition of the
//!   `unsubscribed` audience in the rule examples); about 10% of ids are anonymous visitors
//!   `anon-...`;
//! - sessions of `visited`, `searched`, `viewed`, `added_to_cart`, `removed_from_cart` and
//!   `purchased` events with shop-like funnel rates, weekly campaigns with `email_opened` and
//!   `email_clicked`; heavy-tailed engagement (about 50 events per id on average, a few ids with
//!   thousands), churned customers, cart abandoners at the end, new visitors in the last week;
//! - every timestamp in `[end - days, end)` (only the `signup_at` trait may be earlier), each
//!   customer's messages in time order with the profile first (in either order of the output),
//!   unique opaque `messageId`s.
//!
//! Submodules: `random` (streams and distributions), `shop` (catalog, campaigns, calendar),
//! `behaviour` (one customer's profile and plan), `messages` (plan to NDJSON), `render` (JSON
//! and timestamp formatting), `order` (runs sorted by time and merged).

mod behaviour;
mod messages;
mod order;
mod random;
mod render;
mod shop;

use std::io::{self, Write};

use rayon::prelude::*;

use crate::model::time::{self, DAY_MS};

use behaviour::{plan_customer, Planned};
use order::{Line, Sorter};
use random::Rand;
use shop::Shop;

/// Customers generated per parallel work item.
const CHUNK: u64 = 256;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenConfig {
    /// Number of customer ids (identified customers and anonymous visitors together).
    pub customers: u64,
    /// The seed: same seed, same shop.
    pub seed: u64,
    /// Length of the generated period in days.
    pub days: u32,
    /// Exclusive end of the period, milliseconds since the epoch (UTC).
    pub end: i64,
    /// Percent (0 to 100) of identified customers' messages that carry an `anonymousId` (one of
    /// the customer's two devices) beside their `userId`: each such pair is merged on import.
    pub both_ids_percent: u8,
}

impl GenConfig {
    /// `customers` ids from `seed` over the 365 days that end at the start of the current UTC day.
    pub fn new(customers: u64, seed: u64) -> Self {
        let now = time::now();
        GenConfig {
            customers,
            seed,
            days: 365,
            end: now - now.rem_euclid(DAY_MS),
            both_ids_percent: 0,
        }
    }

    /// First instant of the period: `end - days`.
    pub fn start(&self) -> i64 {
        self.end - i64::from(self.days) * DAY_MS
    }

    fn validate(&self) -> io::Result<()> {
        let invalid = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if self.days == 0 {
            return invalid("gen: --days must be at least 1".into());
        }
        if !time::in_accepted_range(self.start()) || !time::in_accepted_range(self.end - 1) {
            return invalid(format!(
                "gen: the period must lie between 1970 and 2100 (end {}, {} days)",
                time::format_rfc3339(self.end),
                self.days
            ));
        }
        if self.both_ids_percent > 100 {
            return invalid(format!(
                "gen: --both-ids is a percent (0 to 100), not {}",
                self.both_ids_percent
            ));
        }
        if self.customers >= 1 << 40 {
            return invalid(format!("gen: too many customers ({})", self.customers));
        }
        Ok(())
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Customer ids written (identified and anonymous).
    pub customers: u64,
    /// NDJSON lines written (`identify` and `track`).
    pub messages: u64,
    /// `track` messages written.
    pub events: u64,
}

/// The order [`generate_ordered`] writes messages in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Order {
    /// As a tracking stream delivers them: by timestamp, every customer's messages interleaved
    /// (ties: by customer index, then each customer's own order). What `audiencedb gen` writes
    /// unless told otherwise.
    #[default]
    Time,
    /// Customer after customer, in index order, each customer's messages in time order with the
    /// profile first.
    Customer,
}

/// Writes the shop described by `config` to `out` as NDJSON, one message a line, customer by
/// customer ([`Order::Customer`]; [`generate_ordered`] writes a time-ordered stream).
///
/// Output goes out in blocks of a few megabytes, so `out` needs no `BufWriter`. An invalid
/// config (no days, a period outside 1970..2100) is an `InvalidInput` error; write errors are
/// returned as they come.
pub fn generate<W: Write>(config: &GenConfig, out: W) -> io::Result<GenStats> {
    generate_ordered(config, Order::Customer, out, |_| {})
}

/// Like [`generate`], calling `progress` with the running totals after each batch of customers
/// (a few thousand; for a progress bar, against `config.customers`).
pub fn generate_with_progress<W: Write, F: FnMut(&GenStats)>(
    config: &GenConfig,
    out: W,
    progress: F,
) -> io::Result<GenStats> {
    generate_ordered(config, Order::Customer, out, progress)
}

/// Writes the shop in `order`. Both orders hold exactly the same lines. Time order sorts runs of
/// a few hundred megabytes and, for larger shops, merges them from temporary files (in the
/// system's temporary folder), so memory stays bounded; `progress` then reports customers as
/// they are generated, before the merged output is written.
pub fn generate_ordered<W: Write, F: FnMut(&GenStats)>(
    config: &GenConfig,
    order: Order,
    out: W,
    progress: F,
) -> io::Result<GenStats> {
    generate_runs(config, order, order::RUN_BYTES, out, progress)
}

fn generate_runs<W: Write, F: FnMut(&GenStats)>(
    config: &GenConfig,
    order: Order,
    run_bytes: usize,
    mut out: W,
    mut progress: F,
) -> io::Result<GenStats> {
    config.validate()?;
    let key = Rand::key(config.seed);
    let mut shop = Shop::new(&key, config.start(), config.end);
    shop.both_ids_percent = config.both_ids_percent;
    let width = messages::id_width(config.customers);
    let chunks = config.customers.div_ceil(CHUNK);
    // Enough chunks per batch to keep every thread busy, few enough to bound memory.
    let batch = (rayon::current_num_threads() as u64 * 4).max(1);
    let mut stats = GenStats::default();
    let timed = order == Order::Time;
    let mut sorter = Sorter::new(run_bytes);
    // One buffer per chunk of a batch, reused from batch to batch (no fresh pages to fault in).
    let mut slots: Vec<Slot> = Vec::new();
    let mut first = 0;
    while first < chunks {
        let last = (first + batch).min(chunks);
        slots.resize_with((last - first) as usize, Default::default);
        slots.par_iter_mut().enumerate().for_each(|(i, slot)| {
            let from = (first + i as u64) * CHUNK;
            let to = (from + CHUNK).min(config.customers);
            slot.bytes.clear();
            slot.lines.clear();
            let lines = timed.then_some(&mut slot.lines);
            slot.stats = generate_range(&shop, &key, width, from..to, &mut slot.bytes, lines);
        });
        for slot in &slots {
            if timed {
                sorter.run().add_lines(&slot.bytes, &slot.lines);
                sorter.maybe_spill()?;
            } else {
                out.write_all(&slot.bytes)?;
            }
            stats.customers += slot.stats.customers;
            stats.messages += slot.stats.messages;
            stats.events += slot.stats.events;
        }
        progress(&stats);
        first = last;
    }
    if timed {
        sorter.finish(&mut out)?;
    }
    out.flush()?;
    Ok(stats)
}

/// What one parallel work item generated.
#[derive(Default)]
struct Slot {
    bytes: Vec<u8>,
    /// Each line's key and end, in time order only.
    lines: Vec<Line>,
    stats: GenStats,
}

/// Appends the messages of customers `range` to `buf`, and with `lines` each line's key.
fn generate_range(
    shop: &Shop,
    key: &[u8; 32],
    width: usize,
    range: std::ops::Range<u64>,
    buf: &mut Vec<u8>,
    mut lines: Option<&mut Vec<Line>>,
) -> GenStats {
    let mut plan: Vec<Planned> = Vec::new();
    let mut marks: Vec<(i64, usize)> = Vec::new();
    let mut stats = GenStats::default();
    for index in range {
        let mut rng = Rand::customer(key, index);
        let profile = plan_customer(shop, &mut rng, &mut plan);
        marks.clear();
        let mark = lines.is_some().then_some(&mut marks);
        let written =
            messages::render_customer(shop, index, width, profile.as_ref(), &plan, buf, mark);
        if let Some(lines) = lines.as_deref_mut() {
            lines.extend(marks.iter().enumerate().map(|(seq, &(ts, end))| Line {
                ts,
                customer: index,
                seq: seq as u32,
                end,
            }));
        }
        stats.customers += 1;
        stats.messages += written.messages;
        stats.events += written.events;
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(customers: u64) -> GenConfig {
        GenConfig {
            customers,
            seed: 9,
            days: 60,
            end: 1_767_225_600_000,
            both_ids_percent: 0,
        }
    }

    fn run(order: Order, run_bytes: usize, customers: u64) -> (Vec<u8>, GenStats) {
        let mut out = Vec::new();
        let stats = generate_runs(&config(customers), order, run_bytes, &mut out, |_| {}).unwrap();
        (out, stats)
    }

    fn timestamp(line: &str) -> &str {
        let at = line.find("\"timestamp\":\"").expect("every line has one") + 13;
        &line[at..at + 24]
    }

    #[test]
    fn time_order_holds_the_same_lines_sorted_by_timestamp() {
        let (by_customer, s1) = run(Order::Customer, order::RUN_BYTES, 700);
        let (by_time, s2) = run(Order::Time, order::RUN_BYTES, 700);
        assert_eq!(s1, s2);
        let text = std::str::from_utf8(&by_time).unwrap();
        let times: Vec<&str> = text.lines().map(timestamp).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order");
        let mut a: Vec<&str> = std::str::from_utf8(&by_customer).unwrap().lines().collect();
        let mut b: Vec<&str> = text.lines().collect();
        assert_ne!(a, b, "700 customers interleave");
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        // Each customer's own messages keep their order (the profile first).
        let first = text.lines().find(|l| l.contains("\"c-000001\"")).unwrap();
        assert!(first.starts_with("{\"type\":\"identify\""), "{first}");
    }

    #[test]
    fn merged_runs_write_the_same_bytes_as_one_run() {
        let (one, _) = run(Order::Time, usize::MAX, 600);
        // Runs of 64 KiB: dozens of temporary files merged.
        let (many, _) = run(Order::Time, 64 << 10, 600);
        assert!(one.len() > 20 * (64 << 10));
        assert_eq!(one, many);
    }
}
