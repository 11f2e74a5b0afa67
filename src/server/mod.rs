//! The socket server (`audiencedb serve`): a Unix domain socket speaking the Redis protocol, so
//! `redis-cli -s`, `redis-benchmark -s` and any language's Redis client can ingest and query.
//!
//! This module owns the socket file (its directory check, mode, stale-file recovery and removal),
//! the accept loop, one thread per client, the limits on clients and idle time, the counters
//! `INFO` reports and the clean shutdown. [`resp`] owns the wire format and request limits,
//! [`commands`] what each command does, [`pubsub`] the delivery of audience changes to
//! subscribed connections (a second thread per subscribed connection). The database is shared by
//! every client thread through an `Arc`: reads take the [`Db`]'s read lock briefly, writes its
//! writer lock; the server's own shared state is atomic counters, and the pub/sub registry's
//! mutex, taken only when a connection's subscriptions change or `INFO`/`PUBSUB` read them.
//!
//! Shutdown (SIGTERM, SIGINT or [`ShutdownHandle::shutdown`]): the accept loop stops and the
//! listener closes; each client finishes the requests it has already received, gets their
//! replies and is closed (a subscribed one too); then the indexes are checkpointed, the database
//! closed and the socket file removed. A connection with subscriptions is never idle: it waits
//! for notices, so the idle limit does not apply to it (as Redis exempts pub/sub clients).

pub mod client;
pub mod commands;
pub mod resp;

pub mod pubsub;

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Db, Error};
use commands::{Ctx, Session};
use pubsub::Push;
use resp::{Decoder, Frame, Limits, Reply};

/// How often saved audiences are moved to the clock.
const AUDIENCE_TICK: Duration = Duration::from_secs(1);

/// How often a waiting client thread looks at the shutdown flag and its idle time.
const TICK: Duration = Duration::from_millis(100);
/// At shutdown, how long a client's waiting requests are still read and answered.
const DRAIN: Duration = Duration::from_secs(1);
/// While draining, a read that waits this long finds nothing more.
const DRAIN_READ: Duration = Duration::from_millis(10);
/// How long a reply may wait for a client that does not read it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection's read buffer starts at this size and shrinks back to it after a large request.
const READ_BUFFER: usize = 16 * 1024;
/// Replies are written out once this many bytes have been produced, even mid-pipeline.
const WRITE_CHUNK: usize = 1 << 20;
/// The longest path a Unix socket address holds (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub socket: PathBuf,
    /// Permission bits of the socket file; only the owner by default (0600).
    pub socket_mode: u32,
    pub limits: Limits,
    /// Connections served at once; one more is told so and closed.
    pub max_clients: usize,
    /// A client silent for this long is told so and closed; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Once a request's first byte has arrived, the rest must arrive within this long, or the
    /// client is told so and closed (a client dripping bytes would otherwise hold its slot for
    /// ever); `None`: no bound.
    pub request_timeout: Option<Duration>,
    /// The database's schema limits (`Config::limits`).
    pub schema_limits: crate::SchemaLimits,
    /// `Config::max_ids_per_customer`.
    pub max_ids_per_customer: usize,
    /// `Config::allow_known_merge`.
    pub allow_known_merge: bool,
}

impl ServeOptions {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ServeOptions {
            socket: socket.into(),
            socket_mode: 0o600,
            limits: Limits::default(),
            max_clients: 512,
            idle_timeout: Some(Duration::from_secs(300)),
            request_timeout: Some(Duration::from_secs(10)),
            schema_limits: crate::SchemaLimits::default(),
            max_ids_per_customer: crate::db::DEFAULT_MAX_IDS_PER_CUSTOMER,
            allow_known_merge: false,
        }
    }
}

/// The socket a database is served on unless told otherwise: beside the folder, named after it
/// (`shop.db` → `shop.db.sock`). Not inside it: the folder is the storage engine's.
pub fn default_socket(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".sock");
    PathBuf::from(name)
}

/// Why the server could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The directory meant to hold the socket is missing or unsafe.
    #[error("socket directory {path}: {reason}")]
    SocketDir { path: PathBuf, reason: String },
    /// A server is already answering on the socket.
    #[error(
        "{path}: another server is listening on this socket (stop it, or choose another --socket)"
    )]
    InUse { path: PathBuf },
    /// Something other than a socket is in the way.
    #[error("{path}: exists and is not a socket (remove it, or choose another --socket)")]
    NotASocket { path: PathBuf },
    #[error(
        "socket path {path} is {len} bytes; a Unix socket path holds at most {MAX_SOCKET_PATH}"
    )]
    PathTooLong { path: PathBuf, len: usize },
    #[error("socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Db(#[from] Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What every client thread shares: settings and counters, all lock-free.
#[derive(Debug)]
pub struct Shared {
    pub started: Instant,
    pub socket: PathBuf,
    pub max_clients: usize,
    pub idle_timeout: Duration,
    /// Zero: no bound.
    pub request_timeout: Duration,
    pub limits: Limits,
    pub shutdown: AtomicBool,
    /// Clients connected now.
    pub clients: AtomicUsize,
    /// Connections accepted since start (refused ones included).
    pub connections: AtomicU64,
    /// Connections refused because of the client limit.
    pub rejected: AtomicU64,
    pub commands: AtomicU64,
    pub errors: AtomicU64,
    /// Subscribers per channel and pattern.
    pub pubsub: pubsub::Registry,
    next_id: AtomicU64,
}

/// The outcome of a server's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub connections: u64,
    pub commands: u64,
    pub errors: u64,
}

/// Stops a running server from another thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Asks the server to stop; returns at once.
    pub fn shutdown(&self) {
        if !self.shared.shutdown.swap(true, SeqCst) {
            // Wake the accept loop: it sees the flag on its next connection.
            let _ = UnixStream::connect(&self.shared.socket);
        }
    }
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    db: Arc<Db>,
    listener: UnixListener,
    shared: Arc<Shared>,
    socket: SocketFile,
    stale_removed: bool,
}

impl Server {
    /// Checks the socket's directory and any file at its path (a live server's socket is
    /// refused, a stale one removed), opens the database at `db_path` and binds the socket with
    /// the asked mode.
    pub fn start(db_path: &Path, options: ServeOptions) -> Result<Server, ServerError> {
        let path = options.socket.clone();
        let stale_removed = prepare_socket_path(&path)?;
        let mut config = crate::Config::new(db_path);
        config.limits = options.schema_limits;
        config.max_ids_per_customer = options.max_ids_per_customer;
        config.allow_known_merge = options.allow_known_merge;
        let db = Db::open_with(config)?;
        // Before the socket is bound: no request waits for the id map's hash table.
        db.prepare_lookups();
        let listener = bind_with_mode(&path, options.socket_mode)?;
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        let socket = SocketFile {
            path: path.clone(),
            dev_ino: (meta.dev(), meta.ino()),
        };
        let shared = Arc::new(Shared {
            started: Instant::now(),
            socket: path,
            max_clients: options.max_clients,
            idle_timeout: options.idle_timeout.unwrap_or(Duration::ZERO),
            request_timeout: options.request_timeout.unwrap_or(Duration::ZERO),
            limits: options.limits,
            shutdown: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            pubsub: pubsub::Registry::default(),
            next_id: AtomicU64::new(1),
        });
        Ok(Server {
            db: Arc::new(db),
            listener,
            shared,
            socket,
            stale_removed,
        })
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket.path
    }

    /// Whether a stale socket file (from a server that died) was found and removed.
    pub fn removed_stale_socket(&self) -> bool {
        self.stale_removed
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until SIGTERM or SIGINT, then shuts down cleanly.
    pub fn run_until_signalled(self) -> Result<Summary, ServerError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
            .map_err(io_err(&self.socket.path))?;
        let signals_handle = signals.handle();
        let handle = self.shutdown_handle();
        let waiter = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    handle.shutdown();
                }
            })
            .map_err(io_err(&self.socket.path))?;
        let result = self.run();
        signals_handle.close();
        let _ = waiter.join();
        result
    }

    /// Serves until [`ShutdownHandle::shutdown`], then shuts down cleanly.
    pub fn run(self) -> Result<Summary, ServerError> {
        let Server {
            db,
            listener,
            shared,
            socket,
            ..
        } = self;
        let mut clients: Vec<JoinHandle<()>> = Vec::new();
        // Saved audiences move with the clock: once a second, due time-driven changes are made.
        let ticker = {
            let (db, sh) = (db.clone(), shared.clone());
            std::thread::Builder::new()
                .name("audience-clock".into())
                .spawn(move || {
                    let mut last = Instant::now();
                    while !sh.shutdown.load(SeqCst) {
                        std::thread::sleep(TICK);
                        if last.elapsed() >= AUDIENCE_TICK {
                            last = Instant::now();
                            // A failure is retried at the next tick (the library keeps the
                            // customers due).
                            let _ = db.advance_audiences();
                        }
                    }
                })
                .ok()
        };
        for stream in listener.incoming() {
            if shared.shutdown.load(SeqCst) {
                break;
            }
            let Ok(stream) = stream else {
                // Out of file descriptors, most likely: give the clients a moment to leave.
                std::thread::sleep(TICK);
                continue;
            };
            clients.retain(|c| !c.is_finished());
            shared.connections.fetch_add(1, Relaxed);
            if shared.clients.load(SeqCst) >= shared.max_clients {
                shared.rejected.fetch_add(1, Relaxed);
                refuse(stream, "ERR max number of clients reached");
                continue;
            }
            shared.clients.fetch_add(1, SeqCst);
            let id = shared.next_id.fetch_add(1, Relaxed);
            let (db, sh) = (db.clone(), shared.clone());
            // The stream moves into the thread; keep a clone to answer if spawning fails.
            let spare = stream.try_clone();
            let spawned = std::thread::Builder::new()
                .name(format!("client-{id}"))
                .spawn(move || {
                    let _count = ClientCount(&sh);
                    serve_client(stream, &db, &sh, id);
                });
            match spawned {
                Ok(handle) => clients.push(handle),
                Err(e) => {
                    shared.clients.fetch_sub(1, SeqCst);
                    if let Ok(s) = spare {
                        refuse(s, &format!("ERR cannot start a client thread: {e}"));
                    }
                }
            }
        }
        // New connections are refused from here on; the connected ones finish what they sent.
        drop(listener);
        for c in clients.into_iter().chain(ticker) {
            let _ = c.join();
        }
        let summary = Summary {
            connections: shared.connections.load(Relaxed),
            commands: shared.commands.load(Relaxed),
            errors: shared.errors.load(Relaxed),
        };
        db.checkpoint()?;
        drop(db);
        drop(socket);
        Ok(summary)
    }
}

/// Decrements the client count when a client thread ends, however it ends.
struct ClientCount<'a>(&'a Shared);

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, SeqCst);
    }
}

/// The socket file this server created: removed when the server ends, unless something else has
/// replaced it meanwhile.
struct SocketFile {
    path: PathBuf,
    dev_ino: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.dev_ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Checks that the socket can be created at `path`: the directory exists, it and every directory
/// above it are safe (see [`check_socket_dirs`]), and nothing live is there. A socket file nobody
/// answers on is a crashed server's: it is removed (returns true).
fn prepare_socket_path(path: &Path) -> Result<bool, ServerError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(ServerError::PathTooLong {
            path: path.to_owned(),
            len,
        });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir_err = |reason: &str| ServerError::SocketDir {
        path: dir.to_owned(),
        reason: reason.to_owned(),
    };
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(dir_err("does not exist")),
        Err(e) => return Err(dir_err(&e.to_string())),
    };
    if !meta.is_dir() {
        return Err(dir_err("is not a directory"));
    }
    check_socket_dirs(dir)?;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
        Ok(m) if !m.file_type().is_socket() => Err(ServerError::NotASocket {
            path: path.to_owned(),
        }),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(ServerError::InUse {
                path: path.to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io_err(path))?;
                Ok(true)
            }
            Err(e) => Err(io_err(path)(e)),
        },
    }
}

/// Checks the socket's directory and every directory above it, both as written and with symbolic
/// links resolved: each must be owned by us or by root, and writable by no one else unless it
/// has the sticky bit (as `/tmp` has). Whoever can write to one of them without the sticky bit
/// can rename what it holds (the socket, or the directory on the way to it) and put their own in
/// its place; whoever owns one can make it so.
fn check_socket_dirs(dir: &Path) -> Result<(), ServerError> {
    let err = |path: &Path, reason: String| ServerError::SocketDir {
        path: path.to_owned(),
        reason,
    };
    let as_written = std::path::absolute(dir).map_err(|e| err(dir, e.to_string()))?;
    let resolved = std::fs::canonicalize(dir).map_err(|e| err(dir, e.to_string()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let what = |ancestor: &Path| {
        if ancestor == as_written || ancestor == resolved {
            "the socket".to_owned()
        } else {
            format!("the directories on the way to {}", dir.display())
        }
    };
    for ancestor in as_written.ancestors().chain(resolved.ancestors()) {
        // Following links: a link's own directory is itself an ancestor checked here.
        let meta = std::fs::metadata(ancestor).map_err(|e| err(ancestor, e.to_string()))?;
        let mode = meta.permissions().mode();
        if mode & 0o1000 == 0 {
            let writable_by = if mode & 0o002 != 0 {
                Some("everyone")
            } else if mode & 0o020 != 0 {
                Some("its group")
            } else {
                None
            };
            if let Some(who) = writable_by {
                return Err(err(
                    ancestor,
                    format!(
                        "is writable by {who} and has no sticky bit, so {} could replace {}; \
                         use a private directory",
                        if who == "everyone" {
                            "anyone"
                        } else {
                            "its group"
                        },
                        what(ancestor),
                    ),
                ));
            }
        }
        if meta.uid() != me && meta.uid() != 0 {
            return Err(err(
                ancestor,
                format!(
                    "is owned by user {}, not by us (user {me}) or root, so that user could \
                     replace {}; use a directory of your own",
                    meta.uid(),
                    what(ancestor),
                ),
            ));
        }
    }
    Ok(())
}

/// Binds the socket so that it never exists with looser permissions than `mode`: the umask is
/// narrowed around `bind`, then the exact mode set.
fn bind_with_mode(path: &Path, mode: u32) -> Result<UnixListener, ServerError> {
    let mode = mode & 0o777;
    // SAFETY: umask only changes this process's file-creation mask; it is restored at once.
    let old = unsafe { libc::umask(!mode as libc::mode_t & 0o777) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(io_err(path))?;
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        let _ = std::fs::remove_file(path);
        return Err(io_err(path)(e));
    }
    Ok(listener)
}

/// Tells a connection why it is refused, then closes it.
fn refuse(mut stream: UnixStream, error: &str) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(format!("-{error}\r\n").as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// One client's connection: read what arrives, answer every whole request in it (a pipeline is
/// answered with one write), until the client leaves, says `QUIT`, idles too long or the server
/// shuts down. Replies go out through the connection's [`Push`], which a subscription shares
/// with the thread that delivers its notices.
fn serve_client(stream: UnixStream, db: &Db, shared: &Shared, id: u64) {
    if stream.set_read_timeout(Some(TICK)).is_err()
        || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
    {
        return;
    }
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut session = Session::new(id);
    let mut push = Push::new(write_half, session.proto);
    serve_requests(stream, db, shared, &mut session, &mut push);
    push.stop();
    shared
        .pubsub
        .update(&session.subscriptions, &pubsub::Filter::default());
}

fn serve_requests(
    mut stream: UnixStream,
    db: &Db,
    shared: &Shared,
    session: &mut Session,
    push: &mut Push,
) {
    let mut buf = vec![0u8; READ_BUFFER];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out: Vec<u8> = Vec::with_capacity(READ_BUFFER);
    let mut decoder = Decoder::new(shared.limits);
    let mut last_heard = Instant::now();
    // When the first byte of the request being read arrived (the read that brought it).
    let mut request_started: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    'conn: loop {
        loop {
            match decoder.next(&buf[start..end]) {
                Frame::Request { len } => {
                    shared.commands.fetch_add(1, Relaxed);
                    let mut reply = Reply {
                        out: &mut out,
                        proto: session.proto,
                    };
                    let mut ctx = Ctx {
                        db,
                        shared,
                        session,
                        push,
                    };
                    if commands::dispatch(&mut ctx, &buf[start..end], decoder.args(), &mut reply) {
                        shared.errors.fetch_add(1, Relaxed);
                    }
                    start += len;
                    if session.quit {
                        let _ = push.write(&out);
                        break 'conn;
                    }
                    if session.sync {
                        // The confirmations go out with the filter they install, before the
                        // next request can cause a change.
                        session.sync = false;
                        let (before, written) =
                            push.write_and_set(&out, &session.subscriptions, session.proto);
                        shared.pubsub.update(&before, &session.subscriptions);
                        if written.is_err() {
                            break 'conn;
                        }
                        out.clear();
                    }
                }
                Frame::Dropped { len, error } => {
                    if let Some(e) = error {
                        shared.errors.fetch_add(1, Relaxed);
                        Reply {
                            out: &mut out,
                            proto: session.proto,
                        }
                        .raw_error(&e);
                    }
                    start += len;
                }
                Frame::Incomplete => break,
            }
            if !decoder.in_request() {
                // That frame ended a request (a refused one is read to its end first).
                request_started = None;
            }
            if out.len() >= WRITE_CHUNK {
                if push.write(&out).is_err() {
                    break 'conn;
                }
                out.clear();
            }
        }
        if !out.is_empty() {
            if push.write(&out).is_err() {
                break;
            }
            out.clear();
            if out.capacity() > 4 * WRITE_CHUNK {
                out = Vec::with_capacity(READ_BUFFER);
            }
        }
        if drain_until.is_none() && shared.shutdown.load(SeqCst) {
            // Answer what the client sent before the shutdown, then close: read what is
            // already waiting (a short read timeout ends the drain), for at most a moment.
            if stream.set_read_timeout(Some(DRAIN_READ)).is_err() {
                break;
            }
            drain_until = Some(Instant::now() + DRAIN);
        }
        if drain_until.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        if start == end && !decoder.in_request() {
            request_started = None;
        } else {
            let started = *request_started.get_or_insert(last_heard);
            if !shared.request_timeout.is_zero() && started.elapsed() >= shared.request_timeout {
                shared.errors.fetch_add(1, Relaxed);
                let msg = format!(
                    "-ERR request not received whole within {} s; closing the connection\r\n",
                    shared.request_timeout.as_secs_f64()
                );
                let _ = push.write(msg.as_bytes());
                break;
            }
        }
        // Make room to read: drop answered bytes, then grow for a large argument.
        if start == end {
            start = 0;
            end = 0;
            if buf.len() > 4 * READ_BUFFER && !decoder.in_request() {
                buf = vec![0u8; READ_BUFFER];
            }
        }
        let wants = decoder.wants(&buf[start..end]).unwrap_or(0);
        if end == buf.len() || start + wants > buf.len() {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            if end == buf.len() || wants > buf.len() {
                let grown = (buf.len() * 2).max(wants);
                buf.resize(grown, 0);
            }
        }
        match stream.read(&mut buf[end..]) {
            Ok(0) => break,
            Ok(n) => {
                end += n;
                last_heard = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Draining at shutdown: nothing more is waiting. (A shutdown seen here starts
                // the drain at the top of the loop.)
                if drain_until.is_some() {
                    break;
                }
                // A subscribed connection waits for notices: it is not idle.
                if !shared.idle_timeout.is_zero()
                    && session.subscriptions.is_empty()
                    && last_heard.elapsed() >= shared.idle_timeout
                {
                    shared.errors.fetch_add(1, Relaxed);
                    let msg = format!(
                        "-ERR idle for more than {} s; closing the connection\r\n",
                        shared.idle_timeout.as_secs_f64()
                    );
                    let _ = push.write(msg.as_bytes());
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Parses a size given on the command line: bytes, or a number with `K`, `M` or `G` (powers of
/// 1024, optionally followed by `iB` or `B`).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let unit = t[digits..].trim().to_ascii_uppercase();
    let shift = match unit.trim_end_matches("IB").trim_end_matches('B') {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_default_socket() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("2 K"), Some(2048));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("1T"), None);
        assert_eq!(
            default_socket(Path::new("data/shop.db")),
            Path::new("data/shop.db.sock")
        );
    }

    #[test]
    fn unsafe_socket_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare_socket_path(&open.join("s.sock")).unwrap_err();
        assert!(matches!(e, ServerError::SocketDir { .. }), "{e}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(!prepare_socket_path(&open.join("s.sock")).unwrap());
        let e = prepare_socket_path(&dir.path().join("missing/s.sock")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = prepare_socket_path(&open.join("s.sock")).unwrap_err();
        assert!(e.to_string().contains("writable by its group"), "{e}");
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            prepare_socket_path(&file),
            Err(ServerError::NotASocket { .. })
        ));
    }

    #[test]
    fn every_directory_above_the_socket_is_checked() {
        let mode = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        // Issue 16: W writable by everyone, its subdirectory private: anyone can rename `sub`
        // and put their own in its place.
        let w = dir.path().join("w");
        let sub = w.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        mode(&sub, 0o700);
        mode(&w, 0o777);
        let socket = sub.join("y.sock");
        let e = prepare_socket_path(&socket).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "socket directory {}: is writable by everyone and has no sticky bit, so anyone \
                 could replace the directories on the way to {}; use a private directory",
                w.display(),
                sub.display()
            )
        );
        mode(&w, 0o775);
        let e = prepare_socket_path(&socket).unwrap_err();
        assert!(e.to_string().contains("writable by its group"), "{e}");
        // With the sticky bit (as /tmp has) only a directory's owner renames what it holds.
        mode(&w, 0o1777);
        assert!(!prepare_socket_path(&socket).unwrap());
        mode(&w, 0o755);
        assert!(!prepare_socket_path(&socket).unwrap());

        // Through a symbolic link: the directories it leads through are checked too.
        mode(&w, 0o777);
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        mode(&private, 0o700);
        std::os::unix::fs::symlink(&sub, private.join("link")).unwrap();
        let e = prepare_socket_path(&private.join("link/y.sock")).unwrap_err();
        let resolved_w = std::fs::canonicalize(&w).unwrap();
        assert!(
            e.to_string()
                .starts_with(&format!("socket directory {}: ", resolved_w.display())),
            "{e}"
        );
        mode(&w, 0o755);
        assert!(!prepare_socket_path(&private.join("link/y.sock")).unwrap());

        // Owned by someone else (only root can give a directory away).
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&w, Some(54_321), None).unwrap();
            let e = prepare_socket_path(&socket).unwrap_err();
            assert!(
                e.to_string().contains("is owned by user 54321, not by us"),
                "{e}"
            );
        }
    }
}
