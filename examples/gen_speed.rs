//! Measures the synthetic shop generator: messages per second, events per customer and bytes of
//! NDJSON per customer.
//!
//! ```text
//! cargo run --release --example gen_speed -- [CUSTOMERS] [SEED]
//! RAYON_NUM_THREADS=1 cargo run --release --example gen_speed   # single-threaded
//! ```

use std::io::{self, Write};
use std::time::Instant;

use audiencedb::gen::{generate, GenConfig};

/// A writer that only counts bytes.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let customers = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let seed = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut config = GenConfig::new(customers, seed);
    config.end = 1_767_225_600_000; // 2026-01-01T00:00:00Z: fixed, so runs compare
    let mut bytes = Count(0);
    let started = Instant::now();
    let stats = generate(&config, &mut bytes)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} customers, {} messages, {} events, {} bytes in {:.3} s ({} threads)",
        stats.customers,
        stats.messages,
        stats.events,
        bytes.0,
        secs,
        rayon::current_num_threads()
    );
    println!(
        "{:.0} messages/s, {:.1} MB/s, {:.1} events/customer, {:.0} bytes/customer, {:.0} bytes/message",
        stats.messages as f64 / secs,
        bytes.0 as f64 / secs / 1e6,
        stats.events as f64 / stats.customers.max(1) as f64,
        bytes.0 as f64 / stats.customers.max(1) as f64,
        bytes.0 as f64 / stats.messages.max(1) as f64,
    );
    Ok(())
}
