//! A live stream over the socket (issue 18): the messages of a time-ordered NDJSON stream sent
//! as `TRACK` and `IDENTIFY` requests to `audiencedb serve` by many clients at once, then the
//! folder measured as the server left it and after `compact`.
//!
//! ```text
//! audiencedb gen --customers 20000 --seed 1 --end 2026-11-01 > stream.ndjson   # ~1.15M tracks
//! AUDIENCEDB_BENCH_STREAM=stream.ndjson AUDIENCEDB_BENCH_DB=/tmp/track-stream/db \
//!   cargo bench --bench track_stream
//! ```
//!
//! - `AUDIENCEDB_BENCH_STREAM`: the NDJSON stream (required). Its messages are taken in file
//!   order until `AUDIENCEDB_BENCH_TRACKS` tracks (default 1,000,000); the identifies among them
//!   are sent too, as `IDENTIFY`. A message is sent under its `userId`, or its `anonymousId`
//!   when it has none (a client library sends its best id; merges are not what this measures).
//! - `AUDIENCEDB_BENCH_DB`: the folder the server creates (required; must not exist).
//! - `AUDIENCEDB_BENCH_CLIENTS` (default 50): connections. Each customer's messages go to one
//!   connection (by a hash of the id) in file order, so every customer's events arrive in time
//!   order and the customers are interleaved, as in a tracking stream; each connection waits
//!   for a reply before sending its next request (no pipelining).
//! - `AUDIENCEDB_BENCH_BIN`: the `audiencedb` executable to serve with (default: this build's).
//!
//! Prints the requests per second over the whole run, each request's round trip (median, p99,
//! max), the load average, and the folder's bytes per track after the server's clean stop
//! (SIGTERM) and after `audiencedb compact`. Every reply must be `+OK`: anything else stops the
//! bench with the reply.

use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use audiencedb::server::client::encode;

mod common;

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(v) => PathBuf::from(v),
        None => {
            eprintln!("{name} is required (see the bench's header)");
            std::process::exit(2)
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.replace(['_', ','], "").parse().expect(name))
        .unwrap_or(default)
}

/// The bytes of every file under `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read the folder") {
        let entry = entry.expect("folder entry");
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            folder_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// The stream's requests, pre-encoded, split over the connections; and the tracks among them.
fn requests(stream: &Path, tracks_wanted: usize, clients: usize) -> (Vec<Vec<Vec<u8>>>, usize) {
    let file = std::fs::File::open(stream).expect("open the stream");
    let mut per_client: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clients];
    let mut tracks = 0;
    for line in BufReader::with_capacity(1 << 20, file).lines() {
        if tracks == tracks_wanted {
            break;
        }
        let line = line.expect("read the stream");
        let msg: serde_json::Value = serde_json::from_str(&line).expect("a JSON message");
        let id = msg
            .get("userId")
            .or_else(|| msg.get("anonymousId"))
            .and_then(|v| v.as_str())
            .expect("a message with an id");
        let request = match msg["type"].as_str() {
            Some("track") => {
                tracks += 1;
                let props = msg.get("properties").cloned().unwrap_or_default();
                let props = if props.is_null() {
                    "{}".to_owned()
                } else {
                    props.to_string()
                };
                let ts = msg["timestamp"].as_str().expect("a track's timestamp");
                let event = msg["event"].as_str().expect("a track's event");
                encode(&["TRACK", id, event, &props, ts])
            }
            Some("identify") => {
                let traits = msg.get("traits").cloned().unwrap_or_default();
                encode(&["IDENTIFY", id, &traits.to_string()])
            }
            _ => continue,
        };
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        per_client[(h.finish() % clients as u64) as usize].push(request);
    }
    (per_client, tracks)
}

/// Sends one connection's requests one at a time; the round trip of each.
fn drive(socket: &Path, requests: &[Vec<u8>], start: &Barrier) -> Vec<Duration> {
    let mut writer = UnixStream::connect(socket).expect("connect");
    let mut reader = BufReader::new(writer.try_clone().expect("clone the stream"));
    let mut times = Vec::with_capacity(requests.len());
    let mut reply = Vec::with_capacity(64);
    start.wait();
    for request in requests {
        let t = Instant::now();
        writer.write_all(request).expect("send");
        reply.clear();
        reader.read_until(b'\n', &mut reply).expect("reply");
        times.push(t.elapsed());
        if reply != b"+OK\r\n" {
            panic!("unexpected reply: {}", String::from_utf8_lossy(&reply));
        }
    }
    times
}

fn main() {
    let stream = env_path("AUDIENCEDB_BENCH_STREAM");
    let db = env_path("AUDIENCEDB_BENCH_DB");
    let tracks_wanted = env_usize("AUDIENCEDB_BENCH_TRACKS", 1_000_000);
    let clients = env_usize("AUDIENCEDB_BENCH_CLIENTS", 50).max(1);
    let bin = std::env::var_os("AUDIENCEDB_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_audiencedb")));
    assert!(!db.exists(), "{} exists: give a fresh folder", db.display());
    let socket = db.with_extension("bench.sock");
    let _ = std::fs::remove_file(&socket);

    let (per_client, tracks) = requests(&stream, tracks_wanted, clients);
    let total: usize = per_client.iter().map(Vec::len).sum();
    println!(
        "stream: {} requests ({tracks} tracks, {} identifies) over {clients} connections",
        total,
        total - tracks
    );

    let serve_log = std::fs::File::create(db.with_extension("serve.log")).expect("serve log");
    let mut server = Command::new(&bin)
        .arg("--db")
        .arg(&db)
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(serve_log)
        .spawn()
        .expect("start the server");
    let ready = Instant::now();
    while UnixStream::connect(&socket).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "the server did not open its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    println!(
        "load before: {:.2}",
        common::load_average().unwrap_or(f64::NAN)
    );
    let start = Arc::new(Barrier::new(clients + 1));
    let per_client = Arc::new(per_client);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (start, per_client, socket) = (start.clone(), per_client.clone(), socket.clone());
            std::thread::spawn(move || drive(&socket, &per_client[c], &start))
        })
        .collect();
    start.wait();
    let t = Instant::now();
    let mut times: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a client"))
        .collect();
    let wall = t.elapsed().as_secs_f64();
    times.sort_unstable();
    println!(
        "load after: {:.2}",
        common::load_average().unwrap_or(f64::NAN)
    );
    println!(
        "{total} requests in {wall:.1} s: {:.0} requests/s, {:.0} tracks/s; round trip median {:.3} ms, p99 {:.3} ms, max {:.1} ms",
        total as f64 / wall,
        tracks as f64 / wall,
        common::ms(common::percentile(&times, 50.0)),
        common::ms(common::percentile(&times, 99.0)),
        common::ms(common::percentile(&times, 100.0))
    );

    // SAFETY: `kill` with a child's pid and SIGTERM has no memory effects.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let stopping = Instant::now();
    let status = server.wait().expect("wait for the server");
    assert!(status.success(), "the server stopped with {status}");
    let stopped = folder_bytes(&db);
    println!(
        "server stopped in {:.1} s; folder {stopped} bytes, {:.1} bytes per track",
        stopping.elapsed().as_secs_f64(),
        stopped as f64 / tracks as f64
    );

    let compacting = Instant::now();
    let out = Command::new(&bin)
        .arg("--db")
        .arg(&db)
        .arg("compact")
        .output()
        .expect("run compact");
    assert!(
        out.status.success(),
        "compact failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compacted = folder_bytes(&db);
    println!(
        "compact took {:.1} s; folder {compacted} bytes, {:.1} bytes per track",
        compacting.elapsed().as_secs_f64(),
        compacted as f64 / tracks as f64
    );
    let stats = Command::new(&bin)
        .arg("--db")
        .arg(&db)
        .arg("stats")
        .output()
        .expect("run stats");
    print!("{}", String::from_utf8_lossy(&stats.stdout));
}
