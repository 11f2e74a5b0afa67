//! The synthetic shop behind `audiencedb gen`: deterministic, realistic customer data as
//! Segment-spec NDJSON (`identify` and `track` messages, see `ingest.md`).
//!
//! This module owns *making up data* and nothing else: it knows the message format, never the
//! storage. The same [`GenConfig`] always produces the same bytes, whatever the number of threads:
//! every customer draws from its own ChaCha8 stream keyed by the seed and numbered by the
//! customer's index, customers are generated in parallel chunks and written in index order.
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
//!   customer's messages in time order with the profile first, unique opaque `messageId`s.
//!
//! Submodules: `random` (streams and distributions), `shop` (catalog, campaigns, calendar),
//! `behaviour` (one customer's profile and plan), `messages` (plan to NDJSON), `render` (JSON
//! and timestamp formatting).

mod behaviour;
mod messages;
mod random;
mod render;
mod shop;

use std::io::{self, Write};

use rayon::prelude::*;

use crate::model::time::{self, DAY_MS};

use behaviour::{plan_customer, Planned};
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

/// Writes the shop described by `config` to `out` as NDJSON, one message a line.
///
/// Output goes out in blocks of a few megabytes, so `out` needs no `BufWriter`. An invalid
/// config (no days, a period outside 1970..2100) is an `InvalidInput` error; write errors are
/// returned as they come.
pub fn generate<W: Write>(config: &GenConfig, out: W) -> io::Result<GenStats> {
    generate_with_progress(config, out, |_| {})
}

/// Like [`generate`], calling `progress` with the running totals after each batch of customers
/// (a few thousand; for a progress bar, against `config.customers`).
pub fn generate_with_progress<W: Write, F: FnMut(&GenStats)>(
    config: &GenConfig,
    mut out: W,
    mut progress: F,
) -> io::Result<GenStats> {
    config.validate()?;
    let key = Rand::key(config.seed);
    let shop = Shop::new(&key, config.start(), config.end);
    let width = messages::id_width(config.customers);
    let chunks = config.customers.div_ceil(CHUNK);
    // Enough chunks per batch to keep every thread busy, few enough to bound memory.
    let batch = (rayon::current_num_threads() as u64 * 4).max(1);
    let mut stats = GenStats::default();
    // One buffer per chunk of a batch, reused from batch to batch (no fresh pages to fault in).
    let mut slots: Vec<(Vec<u8>, GenStats)> = Vec::new();
    let mut first = 0;
    while first < chunks {
        let last = (first + batch).min(chunks);
        slots.resize_with((last - first) as usize, Default::default);
        slots
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, (buf, chunk_stats))| {
                let from = (first + i as u64) * CHUNK;
                let to = (from + CHUNK).min(config.customers);
                buf.clear();
                *chunk_stats = generate_range(&shop, &key, width, from..to, buf);
            });
        for (bytes, s) in &slots {
            out.write_all(bytes)?;
            stats.customers += s.customers;
            stats.messages += s.messages;
            stats.events += s.events;
        }
        progress(&stats);
        first = last;
    }
    out.flush()?;
    Ok(stats)
}

/// Appends the messages of customers `range` to `buf`.
fn generate_range(
    shop: &Shop,
    key: &[u8; 32],
    width: usize,
    range: std::ops::Range<u64>,
    buf: &mut Vec<u8>,
) -> GenStats {
    let mut plan: Vec<Planned> = Vec::new();
    let mut stats = GenStats::default();
    for index in range {
        let mut rng = Rand::customer(key, index);
        let profile = plan_customer(shop, &mut rng, &mut plan);
        let written = messages::render_customer(shop, index, width, profile.as_ref(), &plan, buf);
        stats.customers += 1;
        stats.messages += written.messages;
        stats.events += written.events;
    }
    stats
}
