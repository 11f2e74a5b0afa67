//! Publish/subscribe over the socket: saved audiences' entries and exits delivered as Redis
//! pub/sub messages on the channels `audience:NAME`.
//!
//! This module owns a connection's subscriptions ([`Filter`]), the glob patterns of `PSUBSCRIBE`
//! ([`glob_match`]), the server-wide count of subscribers per channel and pattern ([`Registry`],
//! for `INFO` and `PUBSUB`), and the delivery thread of a subscribed connection ([`Push`]). It
//! neither parses commands (that is [`super::commands`]) nor reads the socket (that is
//! `super::serve_client`); it writes to the socket only through the connection's `Link`.
//!
//! Delivery: a connection's first `SUBSCRIBE` or `PSUBSCRIBE` takes one [`Subscription`] to the
//! database's change feed and starts one thread that blocks on it, so a change reaches the client
//! as soon as it is made (no polling). That thread and the connection's reply path write to the
//! socket under one mutex, which also holds the filter: a confirmation and the filter it installs
//! are written and set together, so a client never sees a message for a channel before that
//! channel's `subscribe` confirmation, nor after its `unsubscribe` confirmation. A subscription
//! the library cuts off for lagging is told so with a `LAGGED` error naming the last position
//! delivered, and the connection is closed, as Redis closes a pub/sub client whose output buffer
//! overflows.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::audience::SUBSCRIBER_BUFFER;
use crate::{Change, Db, Subscription};

use super::resp::Reply;

/// The prefix of every channel: `audience:NAME` carries the saved audience NAME.
pub const CHANNEL_PREFIX: &str = "audience:";

/// How long the delivery thread waits for a change before looking at its stop flag. A change
/// wakes it at once; this only bounds how long a closing connection waits for the thread.
const STOP_TICK: Duration = Duration::from_millis(50);

/// Changes encoded into one write at most, when many are waiting.
const BATCH: usize = 1024;

/// One connection's subscriptions, in the order they were made (the order `UNSUBSCRIBE` with no
/// argument confirms them in).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Full channel names (`audience:vip`).
    pub channels: Vec<String>,
    pub patterns: Vec<String>,
}

impl Filter {
    /// Channels plus patterns: the count Redis puts in every confirmation.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Appends the notices `change` earns this connection: one `message` if its channel is
    /// subscribed, one `pmessage` per matching pattern (both, as in Redis, when both match).
    pub fn encode(&self, change: &Change, proto: u8, out: &mut Vec<u8>) {
        let exact = self
            .channels
            .iter()
            .any(|c| c.strip_prefix(CHANNEL_PREFIX) == Some(change.audience.as_str()));
        if !exact && self.patterns.is_empty() {
            return;
        }
        let channel = format!("{CHANNEL_PREFIX}{}", change.audience);
        let mut payload: Option<String> = None;
        let mut r = Reply { out, proto };
        if exact {
            let p = payload.get_or_insert_with(|| payload_of(change));
            r.push(3);
            r.bulk(b"message");
            r.bulk(channel.as_bytes());
            r.bulk(p.as_bytes());
        }
        for pattern in &self.patterns {
            if glob_match(pattern.as_bytes(), channel.as_bytes()) {
                let p = payload.get_or_insert_with(|| payload_of(change));
                r.push(4);
                r.bulk(b"pmessage");
                r.bulk(pattern.as_bytes());
                r.bulk(channel.as_bytes());
                r.bulk(p.as_bytes());
            }
        }
    }
}

/// A notice's payload: the change as the same JSON object `AUDIENCE.CHANGES` returns
/// (`seq`, `audience`, `customer`, `change` = `entered` | `left`, `at` in RFC 3339 UTC with
/// milliseconds), so a consumer reads live notices and resumed history alike.
pub fn payload_of(change: &Change) -> String {
    change.to_json().to_string()
}

/// Checks a `SUBSCRIBE` channel: `audience:NAME` with NAME a valid audience name (the audience
/// need not exist yet: its changes are delivered once it is defined).
pub fn check_channel(channel: &str) -> Result<(), String> {
    let Some(name) = channel.strip_prefix(CHANNEL_PREFIX) else {
        return Err(format!(
            "channel '{channel}': the channels are {CHANNEL_PREFIX}NAME, one per saved audience \
             (PSUBSCRIBE {CHANNEL_PREFIX}* for all)"
        ));
    };
    crate::audience::check_name(name).map_err(|e| format!("channel '{channel}': {e}"))
}

/// Whether `text` matches the glob `pattern` as Redis matches `PSUBSCRIBE` patterns: `*` any
/// run of bytes, `?` one byte, `[abc]`, `[a-z]` and `[^...]` one byte of (not of) a set, `\`
/// quotes the next byte. Case-sensitive. Linear backtracking to the last `*` only, so no pattern
/// takes more than O(len(pattern) × len(text)).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where to resume after the last `*`: the pattern after it, and the text it has taken so far.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                resume = Some((p, t));
                continue;
            }
            if let Some(next) = match_one(pattern, p, text[t]) {
                p = next;
                t += 1;
                continue;
            }
        }
        match resume {
            Some((rp, rt)) => {
                p = rp;
                t = rt + 1;
                resume = Some((rp, rt + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// If the single-byte element of `pattern` at `p` matches `c`, the index after the element.
fn match_one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match pattern[p] {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => match class_end(pattern, p + 1) {
            Some(end) => in_class(&pattern[p + 1..end], c).then_some(end + 1),
            // No closing bracket: the `[` is an ordinary byte.
            None => (c == b'[').then_some(p + 1),
        },
        other => (other == c).then_some(p + 1),
    }
}

/// The index of the `]` closing a class whose body starts at `from`.
fn class_end(pattern: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < pattern.len() {
        match pattern[i] {
            b'\\' => i += 2,
            b']' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Whether `c` is in the class body (between the brackets).
fn in_class(body: &[u8], c: u8) -> bool {
    let (negated, body) = match body.split_first() {
        Some((b'^', rest)) => (true, rest),
        _ => (false, body),
    };
    let mut hit = false;
    let mut i = 0;
    while i < body.len() {
        let mut lo = body[i];
        if lo == b'\\' && i + 1 < body.len() {
            i += 1;
            lo = body[i];
        }
        if i + 2 < body.len() && body[i + 1] == b'-' {
            let mut hi = body[i + 2];
            let mut next = i + 3;
            if hi == b'\\' && i + 3 < body.len() {
                hi = body[i + 3];
                next = i + 4;
            }
            let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            hit |= (a..=b).contains(&c);
            i = next;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
    hit != negated
}

/// How many connections subscribe to each channel and pattern, server-wide.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    channels: HashMap<String, usize>,
    patterns: HashMap<String, usize>,
    /// Connections with at least one subscription.
    clients: usize,
}

/// What `INFO` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryCounts {
    pub clients: usize,
    pub channels: usize,
    pub patterns: usize,
}

impl Registry {
    /// Records that one connection's subscriptions went from `old` to `new`.
    pub fn update(&self, old: &Filter, new: &Filter) {
        if old == new {
            return;
        }
        let mut counts = self.inner.lock();
        let Counts {
            channels,
            patterns,
            clients,
        } = &mut *counts;
        for (map, before, after) in [
            (channels, &old.channels, &new.channels),
            (patterns, &old.patterns, &new.patterns),
        ] {
            for gone in before.iter().filter(|c| !after.contains(c)) {
                if let Some(n) = map.get_mut(gone) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(gone);
                    }
                }
            }
            for added in after.iter().filter(|c| !before.contains(c)) {
                *map.entry(added.clone()).or_insert(0) += 1;
            }
        }
        match (old.is_empty(), new.is_empty()) {
            (true, false) => *clients += 1,
            (false, true) => *clients -= 1,
            _ => {}
        }
    }

    pub fn counts(&self) -> RegistryCounts {
        let c = self.inner.lock();
        RegistryCounts {
            clients: c.clients,
            channels: c.channels.len(),
            patterns: c.patterns.len(),
        }
    }

    /// The channels with at least one subscriber, matching `pattern` if given, sorted.
    pub fn channels(&self, pattern: Option<&[u8]>) -> Vec<String> {
        let c = self.inner.lock();
        let mut names: Vec<String> = c
            .channels
            .keys()
            .filter(|k| pattern.is_none_or(|p| glob_match(p, k.as_bytes())))
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The number of connections subscribed to `channel` (patterns not counted, as in Redis).
    pub fn subscribers(&self, channel: &str) -> usize {
        self.inner
            .lock()
            .channels
            .get(channel)
            .copied()
            .unwrap_or(0)
    }
}

/// The write half of a connection, shared by its reply path and its delivery thread.
struct Link {
    stream: UnixStream,
    /// The subscriptions whose confirmations have been written.
    filter: Filter,
    proto: u8,
    /// A write failed or the connection was cut off: nothing more is written.
    closed: bool,
}

impl Link {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.closed {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let r = self.stream.write_all(bytes);
        if r.is_err() {
            self.close();
        }
        r
    }

    /// Ends the connection: the reading side sees the end of its stream and finishes.
    fn close(&mut self) {
        self.closed = true;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A connection's output: replies, and with a subscription its notices.
pub struct Push {
    link: Arc<Mutex<Link>>,
    delivery: Option<Delivery>,
}

struct Delivery {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Push {
    /// `stream` is the connection's write half (a clone of the socket the replies go to).
    pub fn new(stream: UnixStream, proto: u8) -> Push {
        Push {
            link: Arc::new(Mutex::new(Link {
                stream,
                filter: Filter::default(),
                proto,
                closed: false,
            })),
            delivery: None,
        }
    }

    /// Writes replies.
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        self.link.lock().write(bytes)
    }

    /// Writes replies that end with subscription confirmations (or a protocol switch) and
    /// installs the connection's new filter and protocol in the same step. Returns the filter
    /// it replaced.
    pub fn write_and_set(
        &self,
        bytes: &[u8],
        filter: &Filter,
        proto: u8,
    ) -> (Filter, io::Result<()>) {
        let mut link = self.link.lock();
        let before = std::mem::replace(&mut link.filter, filter.clone());
        link.proto = proto;
        (before, link.write(bytes))
    }

    /// Takes the connection's subscription to the change feed and starts its delivery thread,
    /// unless already done. Called before a first subscription is confirmed, so every change
    /// made after the confirmation is delivered.
    pub fn start(&mut self, db: &Db, id: u64) -> io::Result<()> {
        if self.delivery.is_some() {
            return Ok(());
        }
        let subscription = db.subscribe();
        // Every change after this position reaches the subscription.
        let position = db.feed_position();
        let stop = Arc::new(AtomicBool::new(false));
        let (link, flag) = (self.link.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("client-{id}-push"))
            .spawn(move || deliver(&subscription, &link, &flag, position))?;
        self.delivery = Some(Delivery { stop, thread });
        Ok(())
    }

    /// Stops the delivery thread, if any, and waits for it.
    pub fn stop(&mut self) {
        if let Some(d) = self.delivery.take() {
            d.stop.store(true, SeqCst);
            let _ = d.thread.join();
        }
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The delivery thread: waits for changes and writes the notices the connection's filter asks
/// for, several waiting changes in one write. `delivered` is the feed position up to which every
/// change has been handled.
fn deliver(sub: &Subscription, link: &Mutex<Link>, stop: &AtomicBool, mut delivered: u64) {
    let mut batch: Vec<Change> = Vec::with_capacity(BATCH);
    let mut out: Vec<u8> = Vec::new();
    while !stop.load(SeqCst) {
        match sub.recv_timeout(STOP_TICK) {
            Some(c) => batch.push(c),
            None if sub.lagged() => {
                // Cut off: what was already queued is still delivered, then the client is told
                // where to resume.
                loop {
                    while batch.len() < BATCH {
                        match sub.try_recv() {
                            Some(c) => batch.push(c),
                            None => break,
                        }
                    }
                    if batch.is_empty() {
                        break;
                    }
                    if !write_batch(link, &mut batch, &mut out, &mut delivered) {
                        return;
                    }
                }
                let mut link = link.lock();
                out.clear();
                let mut r = Reply {
                    out: &mut out,
                    proto: link.proto,
                };
                r.error(
                    "LAGGED",
                    &format!(
                        "this subscriber fell more than {SUBSCRIBER_BUFFER} changes behind and was \
                         cut off; every change up to seq {delivered} was delivered: resume with \
                         AUDIENCE.CHANGES {delivered}"
                    ),
                );
                let _ = link.write(&out);
                link.close();
                return;
            }
            None => continue,
        }
        while batch.len() < BATCH {
            match sub.try_recv() {
                Some(c) => batch.push(c),
                None => break,
            }
        }
        if !write_batch(link, &mut batch, &mut out, &mut delivered) {
            return;
        }
    }
}

/// Encodes and writes the notices for `batch` under the link's lock; false once the connection
/// is gone.
fn write_batch(
    link: &Mutex<Link>,
    batch: &mut Vec<Change>,
    out: &mut Vec<u8>,
    delivered: &mut u64,
) -> bool {
    let mut link = link.lock();
    if link.closed {
        return false;
    }
    out.clear();
    for c in batch.drain(..) {
        link.filter.encode(&c, link.proto, out);
        *delivered = (*delivered).max(c.seq);
    }
    out.is_empty() || link.write(out).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_redis_patterns_do() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("audience:*", "audience:vip"));
        assert!(m("*", ""));
        assert!(m("audience:v?p", "audience:vip"));
        assert!(!m("audience:v?p", "audience:vp"));
        assert!(m("audience:[vw]ip", "audience:wip"));
        assert!(!m("audience:[^vw]ip", "audience:wip"));
        assert!(m("audience:[a-c]*", "audience:big"));
        assert!(m("audience:[c-a]*", "audience:big"));
        assert!(!m("audience:[a-c]*", "audience:vip"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*vip*", "audience:vip_2"));
        assert!(m("*:*_?", "audience:vip_2"));
        assert!(!m("*:*_??", "audience:vip_2"));
        assert!(m("a[b", "a[b"));
        assert!(!m("audience:VIP", "audience:vip"));
        // Backtracking stays linear in practice: this would be exponential done naively.
        let text = "a".repeat(200);
        assert!(!m(&format!("{}b", "*a".repeat(30)), &text));
    }

    #[test]
    fn channels_must_name_an_audience() {
        assert!(check_channel("audience:vip_2").is_ok());
        let e = check_channel("vip").unwrap_err();
        assert!(e.contains("audience:NAME"), "{e}");
        assert!(check_channel("audience:no-dash").is_err());
        assert!(check_channel("audience:").is_err());
    }

    fn change(audience: &str, entered: bool) -> Change {
        Change {
            seq: 9,
            audience: audience.into(),
            customer: "c-1".into(),
            entered,
            at: 1_790_000_000_000,
        }
    }

    #[test]
    fn notices_are_shaped_as_redis_messages() {
        let f = Filter {
            channels: vec!["audience:vip".into()],
            patterns: vec!["audience:v*".into(), "audience:x*".into()],
        };
        let mut out = Vec::new();
        f.encode(&change("vip", true), 2, &mut out);
        let payload = payload_of(&change("vip", true));
        let expected = format!(
            "*3\r\n$7\r\nmessage\r\n$12\r\naudience:vip\r\n${}\r\n{payload}\r\n\
             *4\r\n$8\r\npmessage\r\n$11\r\naudience:v*\r\n$12\r\naudience:vip\r\n${}\r\n{payload}\r\n",
            payload.len(),
            payload.len()
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
        let json: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(json["seq"], 9);
        assert_eq!(json["change"], "entered");
        assert_eq!(json["at"], "2026-09-21T14:13:20.000Z");
        let mut out = Vec::new();
        f.encode(&change("other", false), 3, &mut out);
        assert!(out.is_empty());
        f.encode(&change("xyz", false), 3, &mut out);
        assert!(out.starts_with(b">4\r\n$8\r\npmessage\r\n"));
    }

    #[test]
    fn the_registry_counts_distinct_channels_and_subscribed_clients() {
        let reg = Registry::default();
        let a = Filter {
            channels: vec!["audience:a".into(), "audience:b".into()],
            patterns: vec![],
        };
        let b = Filter {
            channels: vec!["audience:b".into()],
            patterns: vec!["*".into()],
        };
        reg.update(&Filter::default(), &a);
        reg.update(&Filter::default(), &b);
        assert_eq!(
            reg.counts(),
            RegistryCounts {
                clients: 2,
                channels: 2,
                patterns: 1
            }
        );
        assert_eq!(reg.subscribers("audience:b"), 2);
        assert_eq!(reg.channels(Some(b"*a")), vec!["audience:a".to_string()]);
        reg.update(&a, &Filter::default());
        reg.update(&b, &Filter::default());
        assert_eq!(
            reg.counts(),
            RegistryCounts {
                clients: 0,
                channels: 0,
                patterns: 0
            }
        );
    }
}
