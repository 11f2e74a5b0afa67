//! `audiencedb serve` as clients see it: the real binary on a temporary database and socket,
//! spoken to by a raw RESP client written here, by Debian's `redis-cli` and `redis-benchmark`,
//! and by the PyPI `redis` client (`tests/server_client.py`).
//!
//! The real clients must be installed (`.ci/run` installs them): a test fails, never skips, when
//! they are missing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_audiencedb");

/// A temporary folder with a small generated shop in it.
struct Shop {
    dir: tempfile::TempDir,
}

impl Shop {
    fn new(customers: u32) -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let shop = Shop { dir };
        let gen = Command::new(BIN)
            .args(["gen", "--customers", &customers.to_string(), "--seed", "7"])
            .args(["--end", "2026-11-01"])
            .output()
            .unwrap();
        assert!(
            gen.status.success(),
            "{}",
            String::from_utf8_lossy(&gen.stderr)
        );
        let mut import = Command::new(BIN)
            .arg("--db")
            .arg(shop.db())
            .args(["import", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        import.stdin.take().unwrap().write_all(&gen.stdout).unwrap();
        assert!(import.wait().unwrap().success());
        shop
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("shop.db")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }

    /// Starts `serve` on the shop's socket with extra flags and waits until it answers.
    fn serve(&self, flags: &[&str]) -> Server {
        let child = self.spawn_serve(flags);
        let server = Server {
            child,
            socket: self.socket(),
        };
        server.wait_ready();
        server
    }

    fn spawn_serve(&self, flags: &[&str]) -> Child {
        self.spawn_serve_on(&self.socket(), flags)
    }

    fn spawn_serve_on(&self, socket: &Path, flags: &[&str]) -> Child {
        Command::new(BIN)
            .arg("--db")
            .arg(self.db())
            .arg("serve")
            .arg("--socket")
            .arg(socket)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// A running server process; killed if the test ends without stopping it.
struct Server {
    child: Child,
    socket: PathBuf,
}

impl Server {
    fn wait_ready(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the server did not come up on {}", self.socket.display());
    }

    fn connect(&self) -> Conn {
        Conn::new(UnixStream::connect(&self.socket).unwrap())
    }

    fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: signalling our own child process by its id.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Waits for the process to exit; returns its status and what it wrote on stderr.
    fn wait_exit(&mut self) -> (ExitStatus, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status, err);
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Resp>),
    Map(Vec<(Resp, Resp)>),
    /// A RESP3 push (`>`): pub/sub confirmations and messages.
    Push(Vec<Resp>),
}

impl Resp {
    fn text(&self) -> String {
        match self {
            Resp::Bulk(b) => String::from_utf8(b.clone()).unwrap(),
            Resp::Simple(s) => s.clone(),
            other => panic!("not text: {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }

    fn error(&self) -> &str {
        match self {
            Resp::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        }
    }
}

/// A raw RESP client: writes bytes, reads replies.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Conn {
    fn new(stream: UnixStream) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Conn {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn cmd(&mut self, args: &[&str]) -> Resp {
        self.send(&encode(args));
        self.read()
    }

    fn read(&mut self) -> Resp {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).unwrap();
        assert!(n > 0, "the server closed the connection");
        let line = line.strip_suffix("\r\n").expect("CRLF");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Resp::Simple(rest.into()),
            "-" => Resp::Error(rest.into()),
            ":" => Resp::Int(rest.parse().unwrap()),
            "_" => Resp::Null,
            "$" => {
                let len: i64 = rest.parse().unwrap();
                if len < 0 {
                    return Resp::Null;
                }
                let mut data = vec![0; usize::try_from(len).unwrap() + 2];
                self.reader.read_exact(&mut data).unwrap();
                data.truncate(data.len() - 2);
                Resp::Bulk(data)
            }
            "*" => {
                let len: i64 = rest.parse().unwrap();
                if len < 0 {
                    return Resp::Null;
                }
                Resp::Array((0..len).map(|_| self.read()).collect())
            }
            "%" => {
                let len: usize = rest.parse().unwrap();
                Resp::Map((0..len).map(|_| (self.read(), self.read())).collect())
            }
            ">" => {
                let len: usize = rest.parse().unwrap();
                Resp::Push((0..len).map(|_| self.read()).collect())
            }
            other => panic!("unexpected reply type {other:?} in {line:?}"),
        }
    }

    /// Whether the server has closed the connection with nothing more to read.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        matches!(self.reader.read_to_end(&mut rest), Ok(0))
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn ok() -> Resp {
    Resp::Simple("OK".into())
}

#[test]
fn core_commands_answer_over_raw_resp() {
    let shop = Shop::new(200);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    assert_eq!(c.cmd(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(c.cmd(&["ping", "hi"]), Resp::Bulk(b"hi".to_vec()));
    assert_eq!(c.cmd(&["ECHO", "x y"]), Resp::Bulk(b"x y".to_vec()));
    let gold = c.cmd(&["QUERY", "tier = Gold", "NOW", "2026-11-01"]).int();
    assert!(gold > 0);
    assert_eq!(
        c.cmd(&[
            "IDENTIFY",
            "new-1",
            r#"{"tier":"Gold","address":{"city":"Oulu"}}"#
        ]),
        ok()
    );
    assert_eq!(
        c.cmd(&[
            "TRACK",
            "new-1",
            "viewed",
            r#"{"product":"X","price":9.5}"#,
            "2026-10-30T10:00:00Z"
        ]),
        ok()
    );
    assert_eq!(
        c.cmd(&["TRACK", "new-1", "viewed", "{}", "1761818400000"]),
        ok()
    );
    let rule = "viewed product X in last 30 days and address.city = Oulu";
    assert_eq!(c.cmd(&["QUERY", rule, "NOW", "2026-11-01"]).int(), 1);
    assert_eq!(
        c.cmd(&["QUERY", rule, "NOW", "2026-11-01", "IDS"]),
        Resp::Array(vec![Resp::Bulk(b"new-1".to_vec())])
    );
    assert_eq!(
        c.cmd(&["QUERY", "tier = Gold", "NOW", "2026-11-01", "COUNT"])
            .int(),
        gold + 1
    );
    // Pages cover the ids in order, without repeats.
    let Resp::Array(all) = c.cmd(&["QUERY", "tier = Gold", "NOW", "2026-11-01", "IDS"]) else {
        panic!()
    };
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let Resp::Array(page) = c.cmd(&[
            "QUERY",
            "tier = Gold",
            "NOW",
            "2026-11-01",
            "PAGE",
            &after,
            "7",
        ]) else {
            panic!()
        };
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().text();
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let explain = c.cmd(&["EXPLAIN", rule, "NOW", "2026-11-01"]).text();
    assert!(explain.contains("actual 1"), "{explain}");
    let why = c.cmd(&["WHY", "new-1", rule, "NOW", "2026-11-01"]).text();
    assert!(why.contains("is in the audience"), "{why}");
    let show: serde_json::Value =
        serde_json::from_str(&c.cmd(&["CUSTOMER.SHOW", "new-1"]).text()).unwrap();
    assert_eq!(show["event_count"], 2);
    assert_eq!(show["traits"]["address.city"], "Oulu");
    let export: serde_json::Value =
        serde_json::from_str(&c.cmd(&["customer.export", "new-1"]).text()).unwrap();
    let events = export["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["properties"]["price"] == 9.5),
        "{export}"
    );
    let schema: serde_json::Value = serde_json::from_str(&c.cmd(&["SCHEMA"]).text()).unwrap();
    assert!(schema["customers"].as_u64().unwrap() >= 201);
    let info = c.cmd(&["INFO"]).text();
    for key in [
        "customers:201",
        "uptime_in_seconds:",
        "total_connections_received:",
        "total_commands_processed:",
        "total_error_replies:0",
        "events:",
        "profiles:",
    ] {
        assert!(info.contains(key), "{key} missing from INFO:\n{info}");
    }
    assert_eq!(c.cmd(&["CUSTOMER.DELETE", "new-1"]).int(), 2);
    assert_eq!(c.cmd(&["CUSTOMER.DELETE", "new-1"]), Resp::Null);
    assert_eq!(c.cmd(&["CUSTOMER.SHOW", "new-1"]), Resp::Null);
    assert_eq!(c.cmd(&["QUERY", rule, "NOW", "2026-11-01"]).int(), 0);
    assert_eq!(c.cmd(&["QUIT"]), ok());
    assert!(c.closed());
}

#[test]
fn alias_merges_two_ids_and_refusals_are_errors() {
    let shop = Shop::new(20);
    let server = shop.serve(&["--max-ids-per-customer", "3"]);
    let mut c = server.connect();
    // Ids given to TRACK and IDENTIFY are userIds: two known customers do not merge.
    for id in ["u-1", "u-2"] {
        assert_eq!(c.cmd(&["TRACK", id, "viewed", "{}"]), ok());
    }
    let e = c.cmd(&["ALIAS", "u-2", "u-1"]);
    assert!(
        e.error().starts_with("REFUSED ") && e.error().contains("known"),
        "{e:?}"
    );
    assert_eq!(c.cmd(&["ALIAS", "anon-1", "u-1"]).int(), 1);
    assert_eq!(c.cmd(&["alias", "anon-1", "u-1"]).int(), 0, "done already");
    assert_eq!(c.cmd(&["ALIAS", "anon-2", "u-1"]).int(), 1);
    let shown: serde_json::Value =
        serde_json::from_str(&c.cmd(&["CUSTOMER.SHOW", "anon-2"]).text()).unwrap();
    assert_eq!(shown["id"], "u-1");
    assert_eq!(shown["ids"], serde_json::json!(["u-1", "anon-1", "anon-2"]));
    assert_eq!(shown["event_count"], 1);
    let e = c.cmd(&["ALIAS", "anon-3", "u-1"]);
    assert!(e.error().contains("limit is 3"), "{e:?}");
    let e = c.cmd(&["ALIAS", "x", "x"]);
    assert!(e.error().starts_with("INVALID "), "{e:?}");
    assert_eq!(c.cmd(&["CUSTOMER.DELETE", "anon-1"]).int(), 1);
    assert_eq!(c.cmd(&["CUSTOMER.SHOW", "u-1"]), Resp::Null);
}

#[test]
fn check_answers_a_rule_s_warnings() {
    let shop = Shop::new(50);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    let fine = "tier = Gold and viewed in last 30 days";
    assert_eq!(c.cmd(&["CHECK", fine]), Resp::Array(Vec::new()));
    assert_eq!(
        c.cmd(&["CHECK", "viewd in last 30 days and tier = gold"]),
        Resp::Array(vec![
            bulk("no event 'viewd' in this store; did you mean 'viewed'?"),
            bulk("no customer has tier 'gold'; did you mean 'Gold'?"),
        ])
    );
    // The rule still evaluates: to nobody for those conditions.
    assert_eq!(c.cmd(&["QUERY", "tier = gold"]).int(), 0);
    assert!(c
        .cmd(&["CHECK", "viewed in lst 30 days"])
        .error()
        .starts_with("RULE "));
    let both = c.cmd(&["CHECK", "in audience nobody_saved_this"]);
    assert!(
        both.error().starts_with("EVAL unknown audience"),
        "{both:?}"
    );
}

#[test]
fn pipelined_and_inline_requests_are_answered_in_order() {
    let shop = Shop::new(50);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend(encode(&[
            "TRACK",
            &format!("p-{i}"),
            "clicked",
            "{}",
            "2026-10-01",
        ]));
        batch.extend(encode(&["ECHO", &i.to_string()]));
    }
    batch.extend_from_slice(b"PING\r\nQUERY \"x\"\r\n");
    c.send(&batch);
    for i in 0..200 {
        assert_eq!(c.read(), ok());
        assert_eq!(c.read(), Resp::Bulk(i.to_string().into_bytes()));
    }
    assert_eq!(c.read(), Resp::Simple("PONG".into()));
    // Inline words are split on spaces: the rule `"x"` does not parse.
    assert!(c.read().error().starts_with("RULE "));
    // A request split across many writes is reassembled.
    let bytes = encode(&["ECHO", &"z".repeat(100_000)]);
    for piece in bytes.chunks(777) {
        c.send(piece);
    }
    assert_eq!(c.read(), Resp::Bulk(vec![b'z'; 100_000]));
    let n = c.cmd(&[
        "QUERY",
        "clicked in last 60 days",
        "NOW",
        "2026-11-01",
        "IDS",
    ]);
    let Resp::Array(n) = n else { panic!() };
    let ids: Vec<String> = n.iter().map(Resp::text).collect();
    for id in (0..200).map(|i| format!("p-{i}")) {
        assert!(ids.contains(&id), "{id} missing");
    }
}

#[test]
fn bad_requests_get_errors_and_the_connection_stays_open() {
    let shop = Shop::new(20);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    let e = c.cmd(&["NOSUCH", "a"]);
    assert!(
        e.error().starts_with("ERR unknown command 'NOSUCH'"),
        "{e:?}"
    );
    let e = c.cmd(&["TRACK", "c-1"]);
    assert_eq!(
        e.error(),
        "ERR wrong number of arguments for 'track' command"
    );
    let e = c.cmd(&["TRACK", "c-1", "viewed", "{not json"]);
    assert!(
        e.error().starts_with("INVALID properties: not valid JSON"),
        "{e:?}"
    );
    let e = c.cmd(&["IDENTIFY", "c-1", "[1]"]);
    assert!(e.error().starts_with("INVALID traits"), "{e:?}");
    let e = c.cmd(&["TRACK", "c-1", "viewed", "{}", "yesterday"]);
    assert!(e.error().starts_with("INVALID time"), "{e:?}");
    let e = c.cmd(&["TRACK", "", "viewed", "{}"]);
    assert!(
        e.error().starts_with("INVALID the customer id is empty"),
        "{e:?}"
    );
    let e = c.cmd(&["QUERY", "viewed in lst 30 days"]);
    assert_eq!(
        e.error(),
        "RULE line 1, column 11: unknown keyword 'lst', did you mean 'last'?"
    );
    let e = c.cmd(&["QUERY", "tier = Gold", "SOMETIMES"]);
    assert!(
        e.error().starts_with("ERR syntax error at 'SOMETIMES'"),
        "{e:?}"
    );
    let e = c.cmd(&["WHY", "nobody", "tier = Gold"]);
    assert!(e.error().starts_with("NOTFOUND "), "{e:?}");
    let e = c.cmd(&["SELECT", "1"]);
    assert!(e.error().starts_with("ERR DB index"), "{e:?}");
    // Broken framing: an error, then the next request is read normally.
    c.send(b"*zz\r\n");
    assert!(c.read().error().starts_with("ERR Protocol error"));
    c.send(b"*1\r\n+PING\r\n");
    assert!(c.read().error().starts_with("ERR Protocol error"));
    c.send(b"*2\r\n$4\r\nECHO\r\n$-5\r\n");
    assert!(c.read().error().starts_with("ERR Protocol error"));
    c.send(&[0xff, 0xfe, b'\r', b'\n']);
    assert!(c.read().error().starts_with("ERR unknown command"));
    // Too many arguments, then an empty line where the first one's header belongs: this
    // panicked the connection's thread (issue 16). Both are answered.
    c.send(b"*70000\r\n\r\n");
    assert_eq!(
        c.read().error(),
        "ERR request has 70000 arguments; the limit is 65536"
    );
    assert_eq!(
        c.read().error(),
        r"ERR Protocol error: expected '$', got '\r'"
    );
    assert_eq!(c.cmd(&["PING"]), Resp::Simple("PONG".into()));
    let info = c.cmd(&["INFO"]).text();
    assert!(info.contains("total_error_replies:16"), "{info}");
}

#[test]
fn each_limit_is_answered_with_a_resp_error() {
    let shop = Shop::new(20);
    let server = shop.serve(&[
        "--max-arg-size",
        "1K",
        "--max-request-size",
        "3K",
        "--max-args",
        "8",
        "--max-clients",
        "3",
    ]);
    let mut c = server.connect();
    let big = "x".repeat(1025);
    let e = c.cmd(&["ECHO", &big]);
    assert_eq!(
        e.error(),
        "ERR argument of 1025 bytes; the limit is 1024 bytes"
    );
    assert_eq!(c.cmd(&["PING"]), Resp::Simple("PONG".into()));
    let k = "k".repeat(1000);
    let e = c.cmd(&["ECHO", &k, &k, &k, &k]);
    assert!(e.error().contains("the limit is 3072 bytes"), "{e:?}");
    let e = c.cmd(&["PING", "1", "2", "3", "4", "5", "6", "7", "8"]);
    assert_eq!(e.error(), "ERR request has 9 arguments; the limit is 8");
    let line = format!("PING {}\r\n", "y".repeat(70_000));
    c.send(line.as_bytes());
    assert!(c.read().error().contains("inline request longer than"));
    assert_eq!(
        c.cmd(&["ECHO", "still here"]),
        Resp::Bulk(b"still here".to_vec())
    );

    // Two more clients fill the server; the next is told so and closed. First wait until the
    // server no longer counts the probe connections of `wait_ready`: a closed client counts
    // until its thread has seen the end of its stream, which a loaded machine can delay.
    let started = Instant::now();
    while !c.cmd(&["INFO"]).text().contains("connected_clients:1\r\n") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "probe clients never left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut b = server.connect();
    let mut d = server.connect();
    assert_eq!(b.cmd(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(d.cmd(&["PING"]), Resp::Simple("PONG".into()));
    let mut refused = server.connect();
    assert_eq!(
        refused.read(),
        Resp::Error("ERR max number of clients reached".into())
    );
    assert!(refused.closed());
    drop((b, c, d, refused));
    drop(server);

    // A silent client is told it idled too long, then closed. (A server of its own: a loaded
    // machine must not idle out the clients of the checks above.)
    let server = shop.serve(&["--idle-timeout", "1"]);
    let mut b = server.connect();
    assert_eq!(b.cmd(&["PING"]), Resp::Simple("PONG".into()));
    // A subscribed client waits for notices: it is not idle, however long it stays silent.
    let mut s = server.connect();
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "audience:quiet"]),
        confirm(2, "subscribe", Some("audience:quiet"), 1)
    );
    let started = Instant::now();
    let e = b.read();
    assert!(e.error().starts_with("ERR idle for more than 1 s"), "{e:?}");
    assert!(b.closed());
    assert!(started.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.cmd(&["PING"]), Resp::Array(vec![bulk("pong"), bulk("")]));
}

#[test]
fn hello_3_switches_to_resp3() {
    let shop = Shop::new(20);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    // RESP2: HELLO's map is a flat array, nil is $-1.
    let Resp::Array(flat) = c.cmd(&["HELLO"]) else {
        panic!()
    };
    assert_eq!(flat[0], Resp::Bulk(b"server".to_vec()));
    assert_eq!(flat[5], Resp::Int(2));
    assert_eq!(c.cmd(&["CUSTOMER.SHOW", "nobody"]), Resp::Null);
    let Resp::Map(hello) = c.cmd(&["HELLO", "3", "SETNAME", "svc"]) else {
        panic!("HELLO 3 answers with a RESP3 map")
    };
    assert!(hello.contains(&(Resp::Bulk(b"proto".to_vec()), Resp::Int(3))));
    c.send(&encode(&["CUSTOMER.SHOW", "nobody"]));
    let mut raw = [0u8; 3];
    c.reader.read_exact(&mut raw).unwrap();
    assert_eq!(&raw, b"_\r\n");
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "save"]),
        Resp::Map(vec![(Resp::Bulk(b"save".to_vec()), Resp::Bulk(Vec::new()))])
    );
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Resp::Bulk(b"svc".to_vec()));
    assert!(c.cmd(&["HELLO", "4"]).error().starts_with("NOPROTO"));
}

/// Connects and sends `bytes` one at a time, `every` apart, until the server writes something
/// or closes the connection; then reads what it sends until it closes. Returns what was read,
/// how many bytes were sent and how long it all took.
fn drip(socket: &Path, bytes: &[u8], every: Duration) -> (String, usize, Duration) {
    let started = Instant::now();
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(every)).unwrap();
    let (mut got, mut sent) = (Vec::new(), 0);
    for b in bytes {
        if stream.write_all(&[*b]).is_err() {
            break;
        }
        sent += 1;
        let mut chunk = [0u8; 256];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&chunk[..n]);
                break;
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("{e}"),
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.read_to_end(&mut got);
    (String::from_utf8(got).unwrap(), sent, started.elapsed())
}

/// Waits until `INFO` on `c` counts `n` connected clients.
fn wait_for_clients(c: &mut Conn, n: usize) {
    let started = Instant::now();
    let want = format!("connected_clients:{n}\r\n");
    while !c.cmd(&["INFO"]).text().contains(&want) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never {n} clients"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slow_drip_clients_are_closed_at_the_request_deadline() {
    let shop = Shop::new(20);
    let server = shop.serve(&["--request-timeout", "1", "--max-clients", "3"]);
    let mut c = server.connect();
    wait_for_clients(&mut c, 1);
    // Two clients drip a request, a byte every 200 ms (all of it would take 22 s): each byte
    // resets the idle timer, and until they are closed the server is full.
    let request = encode(&["ECHO", &"x".repeat(80)]);
    let drippers: Vec<_> = (0..2)
        .map(|_| {
            let (socket, request) = (shop.socket(), request.clone());
            std::thread::spawn(move || drip(&socket, &request, Duration::from_millis(200)))
        })
        .collect();
    wait_for_clients(&mut c, 3);
    let mut refused = server.connect();
    assert_eq!(
        refused.read(),
        Resp::Error("ERR max number of clients reached".into())
    );
    for d in drippers {
        let (got, sent, took) = d.join().unwrap();
        assert_eq!(
            got,
            "-ERR request not received whole within 1 s; closing the connection\r\n"
        );
        assert!(sent < request.len() / 2, "{sent} bytes sent");
        assert!(took < Duration::from_secs(10), "closed after {took:?}");
    }
    // Their slots are free again.
    wait_for_clients(&mut c, 1);
    let mut b = server.connect();
    assert_eq!(b.cmd(&["PING"]), Resp::Simple("PONG".into()));
    // The bound is per request: one arriving in pieces within it is answered, and a client
    // may wait longer than the bound between requests.
    c.send(b"*1\r\n$4\r\nPI");
    std::thread::sleep(Duration::from_millis(300));
    c.send(b"NG\r\n");
    assert_eq!(c.read(), Resp::Simple("PONG".into()));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.cmd(&["PING"]), Resp::Simple("PONG".into()));
}

#[test]
fn many_clients_read_at_once_while_one_writes() {
    let shop = Shop::new(300);
    let server = shop.serve(&[]);
    let before = server.connect().cmd(&["QUERY", "bought_gift ever"]).int();
    assert_eq!(before, 0);
    let socket = server.socket.clone();
    let writer = std::thread::spawn({
        let socket = socket.clone();
        move || {
            let mut c = Conn::new(UnixStream::connect(&socket).unwrap());
            for i in 0..100 {
                let r = c.cmd(&["TRACK", &format!("g-{}", i % 40), "bought_gift", "{}"]);
                assert_eq!(r, ok());
            }
        }
    });
    let readers: Vec<_> = (0..24)
        .map(|t| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Conn::new(UnixStream::connect(&socket).unwrap());
                let mut last = 0;
                let mut slowest = Duration::ZERO;
                for _ in 0..40 {
                    let started = Instant::now();
                    let n = c.cmd(&["QUERY", "bought_gift in last 1 days"]).int();
                    slowest = slowest.max(started.elapsed());
                    // Writes are durable before they are visible: a count never goes back.
                    assert!(n >= last, "reader {t}: {n} after {last}");
                    last = n;
                    assert_eq!(c.cmd(&["PING"]), Resp::Simple("PONG".into()));
                }
                slowest
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        let slowest = r.join().unwrap();
        assert!(slowest < Duration::from_secs(5), "a read took {slowest:?}");
    }
    let mut c = server.connect();
    assert_eq!(c.cmd(&["QUERY", "bought_gift in last 1 days"]).int(), 40);
    assert_eq!(
        c.cmd(&["QUERY", "bought_gift at least 3 times in last 1 days"])
            .int(),
        20
    );
}

#[test]
fn sigterm_finishes_stops_and_removes_the_socket() {
    let shop = Shop::new(20);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut server = shop.serve(&[]);
        let mut c = server.connect();
        let id = format!("s-{sig}");
        assert_eq!(c.cmd(&["TRACK", &id, "signalled", "{}"]), ok());
        // A request in the pipe when the signal comes is still answered.
        c.send(&encode(&["QUERY", "signalled ever"]));
        server.signal(sig);
        assert!(matches!(c.read(), Resp::Int(_)));
        let (status, err) = server.wait_exit();
        assert!(status.success(), "exit {status:?}: {err}");
        assert!(err.contains("stopped:"), "{err}");
        assert!(!shop.socket().exists(), "the socket file was left behind");
        assert!(c.closed());
        // The data is there for the next process.
        let show = Command::new(BIN)
            .arg("--db")
            .arg(shop.db())
            .args(["customer", "show", &id])
            .output()
            .unwrap();
        assert!(
            show.status.success(),
            "{}",
            String::from_utf8_lossy(&show.stderr)
        );
    }
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_one_refused() {
    let shop = Shop::new(20);
    let mut crashed = shop.serve(&[]);
    crashed.signal(libc::SIGKILL);
    let _ = crashed.wait_exit();
    assert!(shop.socket().exists(), "SIGKILL leaves the socket file");
    let mut server = shop.serve(&[]);
    assert_eq!(server.connect().cmd(&["PING"]), Resp::Simple("PONG".into()));

    // A second server on the same socket is refused and leaves the live one alone.
    let other = shop.spawn_serve(&[]).wait_with_output().unwrap();
    assert_eq!(other.status.code(), Some(1));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("another server is listening on this socket"),
        "{err}"
    );
    assert_eq!(server.connect().cmd(&["PING"]), Resp::Simple("PONG".into()));

    server.signal(libc::SIGTERM);
    let (status, err) = server.wait_exit();
    assert!(status.success());
    assert!(err.contains("removed a stale socket file"), "{err}");

    // Something that is not a socket is never removed.
    std::fs::write(shop.socket(), b"precious").unwrap();
    let out = shop.spawn_serve(&[]).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read(shop.socket()).unwrap(), b"precious");
}

#[test]
fn the_socket_is_private_unless_asked_otherwise() {
    let shop = Shop::new(20);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let server = shop.serve(&[]);
    assert_eq!(mode(&shop.socket()), 0o600);
    drop(server);
    std::fs::remove_file(shop.socket()).unwrap();
    let server = shop.serve(&["--socket-mode", "660"]);
    assert_eq!(mode(&shop.socket()), 0o660);
    drop(server);

    // A world-writable directory without the sticky bit is refused.
    let open = shop.dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(BIN)
        .arg("--db")
        .arg(shop.db())
        .arg("serve")
        .arg("--socket")
        .arg(open.join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("writable by everyone"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // So is one further up (anyone could rename `sub` and put their own in its place).
    let sub = open.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = shop
        .spawn_serve_on(&sub.join("s.sock"), &[])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "socket directory {}: is writable by everyone",
            open.display()
        )),
        "{err}"
    );
    assert!(!sub.join("s.sock").exists());
    // With the sticky bit, as /tmp has, it is accepted.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut server = Server {
        child: shop.spawn_serve_on(&sub.join("s.sock"), &[]),
        socket: sub.join("s.sock"),
    };
    server.wait_ready();
    assert_eq!(server.connect().cmd(&["PING"]), Resp::Simple("PONG".into()));
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit().0.success());
}

/// Runs a real client tool, failing the test with an install hint if it is missing.
fn tool(program: &str, args: &[&str]) -> std::process::Output {
    match Command::new(program).args(args).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "{program} is needed by this test and could not be run ({e}); install Debian's \
             redis-tools (apt-get install -y redis-tools), as .ci/run does"
        ),
    }
}

#[test]
fn redis_cli_speaks_to_the_server() {
    let shop = Shop::new(100);
    let server = shop.serve(&[]);
    let sock = shop.socket();
    let sock = sock.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["-s", sock];
        all.extend_from_slice(args);
        let out = tool("redis-cli", &all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Without a terminal redis-cli prints raw replies; --no-raw gives its usual formatting.
    assert_eq!(cli(&["PING"]), "PONG\n");
    assert_eq!(cli(&["IDENTIFY", "cli-1", r#"{"tier":"Cli"}"#]), "OK\n");
    assert_eq!(
        cli(&["TRACK", "cli-1", "viewed", r#"{"product":"Z"}"#]),
        "OK\n"
    );
    assert_eq!(cli(&["--no-raw", "QUERY", "tier = Cli"]), "(integer) 1\n");
    assert_eq!(
        cli(&["--no-raw", "QUERY", "tier = Cli", "IDS"]),
        "1) \"cli-1\"\n"
    );
    assert_eq!(cli(&["--no-raw", "CUSTOMER.SHOW", "nobody"]), "(nil)\n");
    let e = cli(&["--no-raw", "QUERY", "tier = "]);
    assert!(e.starts_with("(error) RULE line 1"), "{e}");
    // RESP3 from the start (`-3` sends HELLO 3).
    assert_eq!(
        cli(&["-3", "--no-raw", "QUERY", "tier = Cli"]),
        "(integer) 1\n"
    );
    let hello = cli(&["-3", "--no-raw", "HELLO", "3"]);
    assert!(
        hello.contains("proto") && hello.contains("(integer) 3"),
        "{hello}"
    );
    assert!(cli(&["INFO"]).contains("customers:101"));
    let json = cli(&["CUSTOMER.EXPORT", "cli-1"]);
    let export: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(export["traits"]["tier"], "Cli");
    // An interactive-style session on stdin.
    let mut child = Command::new("redis-cli")
        .args(["-s", sock])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli (Debian redis-tools) is needed: apt-get install -y redis-tools");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"ECHO hello\nQUERY \"tier = Cli\" COUNT\nCUSTOMER.DELETE cli-1\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "hello\n1\n1\n");
    drop(server);
}

#[test]
fn redis_benchmark_runs_against_the_server() {
    let shop = Shop::new(50);
    let server = shop.serve(&[]);
    let sock = shop.socket();
    let out = tool(
        "redis-benchmark",
        &[
            "-s",
            sock.to_str().unwrap(),
            "-n",
            "2000",
            "-c",
            "4",
            "-P",
            "4",
            "-t",
            "ping",
            "-q",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    // It asks CONFIG GET first, sends PING inline and as multibulk.
    assert!(!text.contains("WARN") && !text.contains("ERROR"), "{text}");
    assert!(
        text.contains("PING_INLINE") && text.contains("PING_MBULK"),
        "{text}"
    );
    let out = tool(
        "redis-benchmark",
        &[
            "-s",
            sock.to_str().unwrap(),
            "-n",
            "500",
            "-r",
            "100",
            "-q",
            "TRACK",
            "b-__rand_int__",
            "viewed",
            "{}",
        ],
    );
    assert!(out.status.success());
    let n = server
        .connect()
        .cmd(&["QUERY", "viewed in last 1 days"])
        .int();
    assert!(n > 10 && n <= 100, "{n} customers viewed");
}

/// The Python interpreter with the `redis` package: `AUDIENCEDB_TEST_PYTHON`, or the venv that
/// `.ci/run` makes in `target/server-venv`.
fn python() -> PathBuf {
    std::env::var_os("AUDIENCEDB_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/server-venv/bin/python")
        })
}

#[test]
fn the_pypi_redis_client_speaks_to_the_server() {
    let shop = Shop::new(100);
    let server = shop.serve(&[]);
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server_client.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(shop.socket())
        .output();
    let hint = "the PyPI redis client is needed: python3 -m venv target/server-venv && \
                target/server-venv/bin/pip install redis (as .ci/run does), or set \
                AUDIENCEDB_TEST_PYTHON";
    let out = out.unwrap_or_else(|e| panic!("cannot run {}: {e}; {hint}", python.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'redis'"),
        "{hint}\n{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    drop(server);
}

#[test]
fn saved_audiences_over_the_socket() {
    let shop = Shop::new(100);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    assert_eq!(c.cmd(&["IDENTIFY", "aud-1", r#"{"tier":"Diamond"}"#]), ok());
    let defined = c
        .cmd(&["AUDIENCE.DEFINE", "diamond", "tier = Diamond"])
        .text();
    let info: serde_json::Value = serde_json::from_str(&defined).unwrap();
    assert_eq!(info["size"], 1);
    assert_eq!(
        c.cmd(&["AUDIENCES.OF", "aud-1"]),
        Resp::Array(vec![Resp::Bulk(b"diamond".to_vec())])
    );
    assert_eq!(c.cmd(&["AUDIENCES.OF", "nobody"]), Resp::Array(vec![]));
    // A write moves the lookup at once.
    assert_eq!(c.cmd(&["IDENTIFY", "aud-2", r#"{"tier":"Diamond"}"#]), ok());
    assert_eq!(c.cmd(&["AUDIENCE.MEMBERS", "diamond"]).int(), 2);
    assert_eq!(
        c.cmd(&["AUDIENCE.MEMBERS", "diamond", "IDS"]),
        Resp::Array(vec![
            Resp::Bulk(b"aud-1".to_vec()),
            Resp::Bulk(b"aud-2".to_vec())
        ])
    );
    assert!(c
        .cmd(&["AUDIENCE.DIFF", "diamond", "in audience diamond"])
        .error()
        .starts_with("EVAL"));
    let d: serde_json::Value =
        serde_json::from_str(&c.cmd(&["AUDIENCE.DIFF", "diamond", "tier = Gold"]).text()).unwrap();
    assert_eq!(d["before"], 2);
    assert_eq!(d["leaving"], 2);
    c.cmd(&["AUDIENCE.DEFINE", "uses", "in audience diamond"]);
    assert!(c
        .cmd(&["AUDIENCE.DROP", "diamond"])
        .error()
        .starts_with("INVALID"));
    assert!(c
        .cmd(&["AUDIENCE.SHOW", "nosuch"])
        .error()
        .starts_with("NOTFOUND"));
    let list: serde_json::Value = serde_json::from_str(&c.cmd(&["AUDIENCE.LIST"]).text()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let Resp::Array(changes) = c.cmd(&["AUDIENCE.CHANGES", "0", "2"]) else {
        panic!("changes are an array")
    };
    let first: serde_json::Value = serde_json::from_str(&changes[0].text()).unwrap();
    assert_eq!(
        (first["seq"].as_u64(), first["change"].as_str()),
        (Some(1), Some("entered"))
    );
    assert_eq!(changes.len(), 2);
    assert_eq!(c.cmd(&["AUDIENCE.DROP", "uses"]), ok());
    assert_eq!(c.cmd(&["AUDIENCE.DROP", "diamond"]), ok());

    // A member list made elsewhere: loaded, looked up, and joined by an id that arrives later.
    let loaded: serde_json::Value =
        serde_json::from_str(&c.cmd(&["AUDIENCE.LOAD", "vips", "aud-2", "later"]).text()).unwrap();
    assert_eq!(
        (loaded["size"].as_u64(), loaded["list_ids"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(
        c.cmd(&["AUDIENCES.OF", "aud-2"]),
        Resp::Array(vec![bulk("vips")])
    );
    assert_eq!(c.cmd(&["IDENTIFY", "later", r#"{"tier":"Gold"}"#]), ok());
    assert_eq!(
        c.cmd(&["AUDIENCES.OF", "later"]),
        Resp::Array(vec![bulk("vips")])
    );
    assert!(c
        .cmd(&["AUDIENCE.LOAD", "vips", ""])
        .error()
        .starts_with("INVALID"));
    assert!(c.cmd(&["AUDIENCE.LOAD", "vips"]).error().starts_with("ERR"));
    assert_eq!(c.cmd(&["AUDIENCE.MEMBERS", "vips"]).int(), 2);
}

#[test]
fn computed_traits_over_the_socket() {
    let shop = Shop::new(20);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    let t = "2026-06-01T00:00:00Z";
    for (id, amount) in [("ct-1", "120"), ("ct-1", "90"), ("ct-2", "10")] {
        let props = format!(r#"{{"amount":{amount},"category":"shoes"}}"#);
        assert_eq!(c.cmd(&["TRACK", id, "bought", &props, t]), ok());
    }
    let defined: serde_json::Value = serde_json::from_str(
        &c.cmd(&["TRAIT.DEFINE", "aov", "bought avg(amount) ever"])
            .text(),
    )
    .unwrap();
    assert_eq!(defined["expression"], "bought avg(amount) ever");
    c.cmd(&[
        "TRAIT.DEFINE",
        "fav",
        "bought top(category) in last 30 days",
    ])
    .text();
    assert_eq!(
        c.cmd(&["QUERY", "aov > 80", "NOW", "2026-06-02T00:00:00Z"])
            .int(),
        1
    );
    assert_eq!(
        c.cmd(&["QUERY", "fav = shoes", "NOW", "2026-06-02T00:00:00Z"])
            .int(),
        2
    );
    let list: serde_json::Value = serde_json::from_str(&c.cmd(&["TRAIT.LIST"]).text()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let show: serde_json::Value =
        serde_json::from_str(&c.cmd(&["TRAIT.SHOW", "fav"]).text()).unwrap();
    assert_eq!(show["expression"], "bought top(category) in last 30 days");
    let customer: serde_json::Value =
        serde_json::from_str(&c.cmd(&["CUSTOMER.EXPORT", "ct-1"]).text()).unwrap();
    assert_eq!(customer["computed_traits"]["aov"], 105.0);
    // The refusals are typed errors; the connection stays usable.
    assert!(c
        .cmd(&["TRAIT.DEFINE", "aov", "bought count"])
        .error()
        .starts_with("INVALID"));
    assert!(c
        .cmd(&["TRAIT.DEFINE", "x", "bought sum(category)"])
        .error()
        .starts_with("INVALID"));
    assert!(c
        .cmd(&["TRAIT.DEFINE", "y", "bought count in lst 3 days"])
        .error()
        .starts_with("RULE"));
    assert!(c
        .cmd(&["IDENTIFY", "ct-3", r#"{"aov":3}"#])
        .error()
        .starts_with("INVALID"));
    assert!(c
        .cmd(&["TRAIT.SHOW", "nosuch"])
        .error()
        .starts_with("NOTFOUND"));
    c.cmd(&["AUDIENCE.DEFINE", "big", "aov > 80"]).text();
    let refused = c.cmd(&["TRAIT.DROP", "aov"]);
    let refused = refused.error();
    assert!(
        refused.starts_with("INVALID") && refused.contains("big"),
        "{refused}"
    );
    assert_eq!(c.cmd(&["AUDIENCE.DROP", "big"]), ok());
    assert_eq!(c.cmd(&["TRAIT.DROP", "aov"]), ok());
    let schema: serde_json::Value = serde_json::from_str(&c.cmd(&["SCHEMA"]).text()).unwrap();
    assert_eq!(schema["computed_traits"][0]["name"], "fav");
}

#[test]
fn predictive_traits_over_the_socket() {
    let shop = Shop::new(300);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    let json = |r: Resp| -> serde_json::Value { serde_json::from_str(&r.text()).unwrap() };
    let defined = json(c.cmd(&["TRAIT.DEFINE", "p_alive", "purchased p_alive"]));
    assert_eq!(defined["model"]["time_unit"], "weeks");
    let kept = defined["model"]["fitted_at"].as_str().unwrap().to_owned();
    // With a time: the fit on the events up to then, the kept fit unchanged.
    let then = json(c.cmd(&["TRAIT.SHOW", "p_alive", "2026-09-01"]));
    assert_eq!(then["model"]["fitted_at"], "2026-09-01T00:00:00.000Z");
    assert_eq!(
        json(c.cmd(&["TRAIT.SHOW", "p_alive"]))["model"]["fitted_at"],
        kept.as_str()
    );
    let refit = json(c.cmd(&["TRAIT.REFIT", "p_alive"]));
    assert!(refit["model"]["r"].is_f64(), "{refit}");
    assert!(c.cmd(&["QUERY", "p_alive < 0.3"]).int() >= 0);
    // Refusals are typed errors; the connection stays usable.
    c.cmd(&["TRAIT.DEFINE", "orders", "purchased count"]).text();
    let e = c.cmd(&["TRAIT.REFIT", "orders"]);
    assert!(e.error().starts_with("INVALID"), "{e:?}");
    assert!(c
        .cmd(&["TRAIT.REFIT", "nosuch"])
        .error()
        .starts_with("NOTFOUND"));
    assert!(c
        .cmd(&["TRAIT.SHOW", "p_alive", "yesterday"])
        .error()
        .starts_with("INVALID"));
    let e = c.cmd(&["AUDIENCE.DEFINE", "leaving", "p_alive < 0.3"]);
    assert!(
        e.error().starts_with("INVALID") && e.error().contains("predictive trait p_alive"),
        "{e:?}"
    );
    assert!(c
        .cmd(&["TRAIT.DEFINE", "x", "purchased p_alive in last 3 days"])
        .error()
        .starts_with("RULE"));
}

fn bulk(s: &str) -> Resp {
    Resp::Bulk(s.as_bytes().to_vec())
}

/// A subscription confirmation as Redis shapes it: `[word, channel, count]`, pushed in RESP3.
fn confirm(proto: u8, word: &str, channel: Option<&str>, count: i64) -> Resp {
    let items = vec![
        bulk(word),
        channel.map_or(Resp::Null, bulk),
        Resp::Int(count),
    ];
    if proto == 3 {
        Resp::Push(items)
    } else {
        Resp::Array(items)
    }
}

/// A `message` or `pmessage` notice taken apart.
#[derive(Debug)]
struct Notice {
    kind: String,
    pattern: Option<String>,
    channel: String,
    payload: String,
    json: serde_json::Value,
}

impl Notice {
    fn of(r: Resp) -> Notice {
        let items = match r {
            Resp::Array(items) | Resp::Push(items) => items,
            other => panic!("not a notice: {other:?}"),
        };
        let text: Vec<String> = items.iter().map(Resp::text).collect();
        let (pattern, channel, payload) = match (text[0].as_str(), text.len()) {
            ("message", 3) => (None, text[1].clone(), text[2].clone()),
            ("pmessage", 4) => (Some(text[1].clone()), text[2].clone(), text[3].clone()),
            _ => panic!("not a notice: {text:?}"),
        };
        Notice {
            kind: text[0].clone(),
            pattern,
            json: serde_json::from_str(&payload).unwrap(),
            channel,
            payload,
        }
    }

    fn seq(&self) -> u64 {
        self.json["seq"].as_u64().unwrap()
    }

    /// (audience, customer, change)
    fn what(&self) -> (&str, &str, &str) {
        (
            self.json["audience"].as_str().unwrap(),
            self.json["customer"].as_str().unwrap(),
            self.json["change"].as_str().unwrap(),
        )
    }
}

#[test]
fn subscribe_delivers_entries_and_exits_in_order() {
    let shop = Shop::new(20);
    let mut server = shop.serve(&[]);
    let (mut w, mut s) = (server.connect(), server.connect());
    w.cmd(&["AUDIENCE.DEFINE", "diamond", "tier = Diamond"])
        .text();
    w.cmd(&["AUDIENCE.DEFINE", "gold", "tier = Gold"]).text();
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "audience:diamond", "audience:gold"]),
        confirm(2, "subscribe", Some("audience:diamond"), 1)
    );
    assert_eq!(s.read(), confirm(2, "subscribe", Some("audience:gold"), 2));
    // In RESP2 a subscribed connection takes pub/sub commands only, as in Redis; PING answers
    // as Redis answers it there.
    assert_eq!(
        s.cmd(&["AUDIENCES.OF", "x"]).error(),
        "ERR Can't execute 'audiences.of': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context"
    );
    assert_eq!(s.cmd(&["PING"]), Resp::Array(vec![bulk("pong"), bulk("")]));
    assert_eq!(
        s.cmd(&["PING", "hi"]),
        Resp::Array(vec![bulk("pong"), bulk("hi")])
    );
    // A channel that names no possible audience refuses the whole command.
    let e = s.cmd(&["SUBSCRIBE", "audience:fine", "vip"]);
    assert!(e.error().contains("audience:NAME"), "{e:?}");
    let info = w.cmd(&["INFO"]).text();
    for line in ["pubsub_clients:1", "pubsub_channels:2", "pubsub_patterns:0"] {
        assert!(info.contains(line), "{line} in {info}");
    }

    // Another connection's writes move a customer in and out: the notices come in feed order.
    let written = Instant::now();
    assert_eq!(w.cmd(&["IDENTIFY", "sub-1", r#"{"tier":"Diamond"}"#]), ok());
    let first = Notice::of(s.read());
    eprintln!("first notice after {:?}", written.elapsed());
    assert_eq!(w.cmd(&["IDENTIFY", "sub-1", r#"{"tier":"Gold"}"#]), ok());
    assert_eq!(w.cmd(&["IDENTIFY", "sub-1", r#"{"tier":null}"#]), ok());
    let notices: Vec<Notice> = std::iter::once(first)
        .chain((0..3).map(|_| Notice::of(s.read())))
        .collect();
    let seq0 = notices[0].seq();
    for (i, n) in notices.iter().enumerate() {
        assert_eq!((n.kind.as_str(), n.pattern.as_deref()), ("message", None));
        assert_eq!(n.seq(), seq0 + i as u64, "{notices:?}");
        assert_eq!(n.channel, format!("audience:{}", n.what().0));
    }
    assert_eq!(notices[0].what(), ("diamond", "sub-1", "entered"));
    let mut middle = [notices[1].what(), notices[2].what()];
    middle.sort();
    assert_eq!(
        middle,
        [("diamond", "sub-1", "left"), ("gold", "sub-1", "entered")]
    );
    assert_eq!(notices[3].what(), ("gold", "sub-1", "left"));
    // The payload is what AUDIENCE.CHANGES gives from the same position: a consumer resumes with
    // the last seq it saw.
    let Resp::Array(stored) = w.cmd(&["AUDIENCE.CHANGES", &(seq0 - 1).to_string(), "4"]) else {
        panic!("changes are an array")
    };
    let stored: Vec<String> = stored.iter().map(Resp::text).collect();
    let live: Vec<String> = notices.iter().map(|n| n.payload.clone()).collect();
    assert_eq!(stored, live);
    let at = notices[0].json["at"].as_str().unwrap();
    assert!(at.len() == 24 && at.ends_with('Z'), "{at}");

    // Unsubscribed from gold: its entry is not delivered, diamond's is.
    assert_eq!(
        s.cmd(&["UNSUBSCRIBE", "audience:gold"]),
        confirm(2, "unsubscribe", Some("audience:gold"), 1)
    );
    assert_eq!(w.cmd(&["IDENTIFY", "sub-2", r#"{"tier":"Gold"}"#]), ok());
    assert_eq!(w.cmd(&["IDENTIFY", "sub-2", r#"{"tier":"Diamond"}"#]), ok());
    assert_eq!(Notice::of(s.read()).what(), ("diamond", "sub-2", "entered"));
    // Unsubscribing from everything leaves subscribed mode: every command works again.
    assert_eq!(
        s.cmd(&["UNSUBSCRIBE"]),
        confirm(2, "unsubscribe", Some("audience:diamond"), 0)
    );
    assert_eq!(w.cmd(&["IDENTIFY", "sub-3", r#"{"tier":"Diamond"}"#]), ok());
    assert_eq!(s.cmd(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(
        s.cmd(&["AUDIENCES.OF", "sub-2"]),
        Resp::Array(vec![bulk("diamond")])
    );
    assert_eq!(s.cmd(&["UNSUBSCRIBE"]), confirm(2, "unsubscribe", None, 0));
    assert!(w.cmd(&["INFO"]).text().contains("pubsub_clients:0"));

    // A subscribed client does not hold up a shutdown: it is closed, the server stops.
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "audience:gold"]),
        confirm(2, "subscribe", Some("audience:gold"), 1)
    );
    let stopping = Instant::now();
    server.signal(libc::SIGTERM);
    let (status, err) = server.wait_exit();
    assert!(status.success(), "exit {status:?}: {err}");
    assert!(s.closed());
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

#[test]
fn psubscribe_patterns_and_audiences_defined_after_subscribing() {
    let shop = Shop::new(20);
    let server = shop.serve(&[]);
    let (mut w, mut s) = (server.connect(), server.connect());
    assert_eq!(
        s.cmd(&["PSUBSCRIBE", "audience:v*"]),
        confirm(2, "psubscribe", Some("audience:v*"), 1)
    );
    // vip does not exist yet: subscribing is allowed, its changes come once it is defined.
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "audience:vip"]),
        confirm(2, "subscribe", Some("audience:vip"), 2)
    );
    assert_eq!(w.cmd(&["IDENTIFY", "p-1", r#"{"tier":"Vip"}"#]), ok());
    w.cmd(&["AUDIENCE.DEFINE", "other", "tier = Vip"]).text();
    w.cmd(&["AUDIENCE.DEFINE", "vip", "tier = Vip"]).text();
    w.cmd(&["AUDIENCE.DEFINE", "vx", "tier = Vip"]).text();
    // `other` matches neither channel nor pattern: the first notice is vip's message, then the
    // same change as a pmessage, then vx's.
    let n = Notice::of(s.read());
    assert_eq!(
        (n.kind.as_str(), n.channel.as_str()),
        ("message", "audience:vip")
    );
    assert_eq!(n.what(), ("vip", "p-1", "entered"));
    let p = Notice::of(s.read());
    assert_eq!(
        (p.kind.as_str(), p.pattern.as_deref(), p.channel.as_str()),
        ("pmessage", Some("audience:v*"), "audience:vip")
    );
    assert_eq!(p.payload, n.payload);
    let p = Notice::of(s.read());
    assert_eq!(
        (p.pattern.as_deref(), p.channel.as_str()),
        (Some("audience:v*"), "audience:vx")
    );
    assert_eq!(p.seq(), n.seq() + 1);
    assert_eq!(
        w.cmd(&["PUBSUB", "NUMSUB", "audience:vip", "audience:vx"]),
        Resp::Array(vec![
            bulk("audience:vip"),
            Resp::Int(1),
            bulk("audience:vx"),
            Resp::Int(0)
        ])
    );
    assert_eq!(w.cmd(&["PUBSUB", "NUMPAT"]), Resp::Int(1));
    assert_eq!(
        w.cmd(&["PUBSUB", "CHANNELS", "*v?p"]),
        Resp::Array(vec![bulk("audience:vip")])
    );
    assert_eq!(
        s.cmd(&["PUNSUBSCRIBE"]),
        confirm(2, "punsubscribe", Some("audience:v*"), 1)
    );
    assert_eq!(
        s.cmd(&["PUNSUBSCRIBE", "audience:v*"]),
        confirm(2, "punsubscribe", Some("audience:v*"), 1)
    );
    assert_eq!(w.cmd(&["IDENTIFY", "p-2", r#"{"tier":"Vip"}"#]), ok());
    // Each defined audience takes p-2 in; only vip's is still subscribed to.
    assert_eq!(Notice::of(s.read()).what(), ("vip", "p-2", "entered"));
    assert_eq!(
        s.cmd(&["UNSUBSCRIBE", "audience:vip"]),
        confirm(2, "unsubscribe", Some("audience:vip"), 0)
    );
    assert_eq!(w.cmd(&["PUBSUB", "NUMPAT"]), Resp::Int(0));
}

#[test]
fn resp3_pushes_notices_between_ordinary_replies() {
    let shop = Shop::new(20);
    let server = shop.serve(&[]);
    let (mut w, mut s) = (server.connect(), server.connect());
    assert!(matches!(s.cmd(&["HELLO", "3"]), Resp::Map(_)));
    w.cmd(&["AUDIENCE.DEFINE", "r3", "tier = R3"]).text();
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "audience:r3"]),
        confirm(3, "subscribe", Some("audience:r3"), 1)
    );
    // The subscriber's own write: its reply and the notice it causes both arrive, each whole.
    s.send(&encode(&["IDENTIFY", "r3-1", r#"{"tier":"R3"}"#]));
    let mut frames = [s.read(), s.read()];
    frames.sort_by_key(|f| matches!(f, Resp::Push(_)));
    assert_eq!(frames[0], ok());
    let n = Notice::of(frames[1].clone());
    assert!(matches!(frames[1], Resp::Push(_)));
    assert_eq!(n.what(), ("r3", "r3-1", "entered"));
    // Ordinary commands keep working on a subscribed RESP3 connection.
    assert_eq!(
        s.cmd(&["AUDIENCES.OF", "r3-1"]),
        Resp::Array(vec![bulk("r3")])
    );
    assert_eq!(s.cmd(&["PING"]), Resp::Simple("PONG".into()));
    assert_eq!(w.cmd(&["IDENTIFY", "r3-1", r#"{"tier":"No"}"#]), ok());
    let left = s.read();
    assert!(matches!(left, Resp::Push(_)), "{left:?}");
    assert_eq!(Notice::of(left).what(), ("r3", "r3-1", "left"));
    // RESET: no subscriptions, RESP2 again.
    assert_eq!(s.cmd(&["RESET"]), Resp::Simple("RESET".into()));
    assert_eq!(w.cmd(&["IDENTIFY", "r3-1", r#"{"tier":"R3"}"#]), ok());
    assert_eq!(s.cmd(&["CUSTOMER.SHOW", "nobody"]), Resp::Null);
    assert_eq!(s.cmd(&["ECHO", "after"]), bulk("after"));
}

/// Reads a child's stdout lines on a thread, so a test can wait for a line with a deadline.
fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn redis_cli_subscribe_streams_notices() {
    let shop = Shop::new(20);
    let server = shop.serve(&[]);
    let mut w = server.connect();
    w.cmd(&["AUDIENCE.DEFINE", "cli", "tier = Cli"]).text();
    let mut child = Command::new("redis-cli")
        .arg("-s")
        .arg(shop.socket())
        .args(["SUBSCRIBE", "audience:cli"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-cli (Debian redis-tools) is needed: apt-get install -y redis-tools");
    let lines = lines_of(&mut child);
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line from redis-cli")
    };
    // Without a terminal redis-cli prints each element on its own line.
    assert_eq!([next(), next(), next()], ["subscribe", "audience:cli", "1"]);
    assert_eq!(w.cmd(&["IDENTIFY", "cli-1", r#"{"tier":"Cli"}"#]), ok());
    assert_eq!([next(), next()], ["message", "audience:cli"]);
    let json: serde_json::Value = serde_json::from_str(&next()).unwrap();
    assert_eq!(
        (&json["customer"], &json["change"]),
        (&serde_json::json!("cli-1"), &serde_json::json!("entered"))
    );
    let _ = child.kill();
    let _ = child.wait();
    drop(server);
}

#[test]
fn a_lagging_subscriber_is_told_where_to_resume_and_closed() {
    let shop = Shop::new(2000);
    let server = shop.serve(&[]);
    let (mut w, mut s) = (server.connect(), server.connect());
    assert_eq!(
        s.cmd(&["SUBSCRIBE", "audience:all"]),
        confirm(2, "subscribe", Some("audience:all"), 1)
    );
    // The subscriber reads nothing while more than 65,536 entries and exits are made: the
    // server's buffer for it overflows.
    let mut made = 0;
    let mut size = 0;
    let mut rule = "everyone";
    while made < 70_000 {
        let info: serde_json::Value =
            serde_json::from_str(&w.cmd(&["AUDIENCE.DEFINE", "all", rule]).text()).unwrap();
        if rule == "everyone" {
            size = info["size"].as_u64().unwrap();
            assert!(size >= 2000, "{info}");
        }
        made += size;
        rule = if rule == "everyone" {
            "not everyone"
        } else {
            "everyone"
        };
    }
    let mut last = 0;
    let error = loop {
        match s.read() {
            Resp::Error(e) => break e,
            r => {
                let n = Notice::of(r);
                assert!(n.seq() > last);
                last = n.seq();
            }
        }
    };
    assert_eq!(
        error,
        format!(
            "LAGGED this subscriber fell more than 65536 changes behind and was cut off; every \
             change up to seq {last} was delivered: resume with AUDIENCE.CHANGES {last}"
        )
    );
    assert!(s.closed());
    // What it missed is in the feed from there.
    let Resp::Array(missed) = w.cmd(&["AUDIENCE.CHANGES", &last.to_string(), "1"]) else {
        panic!("changes are an array")
    };
    let next: serde_json::Value = serde_json::from_str(&missed[0].text()).unwrap();
    assert_eq!(next["seq"].as_u64(), Some(last + 1));
}

/// `TOP` answers what `audiencedb top --format json` prints, with its options and errors.
#[test]
fn top_over_the_socket() {
    let shop = Shop::new(200);
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--db")
            .arg(shop.db())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let now = "2026-10-20T13:14:15.016Z";
    let expected = cli(&[
        "top",
        "purchased product X",
        "--event",
        "purchased",
        "--by",
        "product",
        "--window",
        "in last 90 days",
        "--now",
        now,
        "--format",
        "json",
        "--limit",
        "5",
    ]);
    let by_lift = cli(&[
        "top",
        "tier = Gold",
        "--event",
        "viewed",
        "--by",
        "category",
        "--order",
        "lift",
        "--min-customers",
        "2",
        "--now",
        now,
        "--format",
        "json",
    ]);
    assert!(
        !expected["rows"].as_array().unwrap().is_empty(),
        "{expected}"
    );
    let server = shop.serve(&[]);
    let mut c = server.connect();
    let json = |r: Resp| serde_json::from_str::<serde_json::Value>(&r.text()).unwrap();
    let got = c.cmd(&[
        "TOP",
        "purchased product X",
        "purchased",
        "product",
        "WINDOW",
        "in last 90 days",
        "NOW",
        now,
        "LIMIT",
        "5",
    ]);
    assert_eq!(json(got), expected);
    let got = c.cmd(&[
        "top",
        "tier = Gold",
        "viewed",
        "category",
        "order",
        "lift",
        "min",
        "2",
        "now",
        now,
    ]);
    assert_eq!(json(got), by_lift);
    let err = c.cmd(&["TOP", "everyone", "viewed", "price"]);
    assert!(
        err.error().starts_with("INVALID property 'price'"),
        "{err:?}"
    );
    let err = c.cmd(&["TOP", "everyone", "purchased", "product", "ORDER", "price"]);
    assert!(
        err.error().starts_with("ERR syntax error at 'ORDER'"),
        "{err:?}"
    );
    let err = c.cmd(&[
        "TOP",
        "everyone",
        "purchased",
        "product",
        "WINDOW",
        "lately",
    ]);
    assert!(err.error().starts_with("INVALID "), "{err:?}");
    let err = c.cmd(&["TOP", "everyone and", "purchased", "product"]);
    assert!(err.error().starts_with("RULE "), "{err:?}");
    let warned = json(c.cmd(&["TOP", "everyone", "purchasd", "product"]));
    assert_eq!(
        warned["warnings"][0],
        "no event 'purchasd' in this store; did you mean 'purchased'?"
    );
}

/// The JSON a CLI command prints on the shop at `now` (`--now NOW --format json` added).
fn cli_json(shop: &Shop, now: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .arg("--db")
        .arg(shop.db())
        .args(args)
        .args(["--now", now, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `RECOMMEND` and `RECENT` send the values `audiencedb recommend` and `customer recent` print.
#[test]
fn recommend_and_recent_over_the_socket() {
    let shop = Shop::new(200);
    let now = "2026-10-20T13:14:15.016Z";
    let cli = |args: &[&str]| -> Vec<String> {
        cli_json(&shop, now, args)
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["value"].as_str().unwrap().to_owned())
            .collect()
    };
    let ids = ["c-000001", "c-000050", "c-000123", "nobody"];
    let mut expected = Vec::new();
    for id in ids {
        let rec = cli(&[
            "recommend",
            id,
            "--event",
            "purchased",
            "--by",
            "product",
            "--window",
            "in last 90 days",
            "--limit",
            "4",
        ]);
        let recent = cli(&[
            "customer", "recent", id, "--event", "viewed", "--by", "product",
        ]);
        expected.push((rec, recent));
    }
    assert!(expected.iter().any(|(_, recent)| !recent.is_empty()));
    let server = shop.serve(&[]);
    let mut c = server.connect();
    let values = |r: Resp| -> Vec<String> {
        match r {
            Resp::Array(items) => items.iter().map(Resp::text).collect(),
            other => panic!("not an array: {other:?}"),
        }
    };
    for (id, (rec, recent)) in ids.iter().zip(&expected) {
        let got = c.cmd(&[
            "RECOMMEND",
            id,
            "purchased",
            "product",
            "WINDOW",
            "in last 90 days",
            "LIMIT",
            "4",
            "NOW",
            now,
        ]);
        assert_eq!(&values(got), rec, "{id}");
        assert!(*id != "nobody" || rec.len() == 4, "{id}: {rec:?}");
        let got = c.cmd(&["RECENT", id, "viewed", "product", "NOW", now]);
        assert_eq!(&values(got), recent, "{id}");
    }
    let err = c.cmd(&["RECOMMEND", "c-000001", "viewed", "price"]);
    assert!(
        err.error().starts_with("INVALID property 'price'"),
        "{err:?}"
    );
    let err = c.cmd(&["RECENT", "c-000001", "viewed", "product", "WINDOW", "ever"]);
    assert!(
        err.error().starts_with("ERR syntax error at 'WINDOW'"),
        "{err:?}"
    );
    let err = c.cmd(&["RECENT", "c-000001", "viewed", "product", "LIMIT", "x"]);
    assert!(err.error().starts_with("ERR LIMIT"), "{err:?}");
}

/// `FUNNEL` and `EXPERIMENT` send the JSON `audiencedb funnel` and `audiencedb experiment`
/// print (the REPL's tables over the socket: `tests/repl.rs`).
#[test]
fn funnel_and_experiment_over_the_socket() {
    let shop = Shop::new(200);
    let now = "2026-10-20T13:14:15.016Z";
    let cli = |args: &[&str]| cli_json(&shop, now, args);
    let funnel = cli(&[
        "funnel",
        "visited",
        "viewed",
        "added_to_cart",
        "purchased",
        "--within",
        "7 days",
        "--window",
        "in last 30 days",
        "--audience",
        "tier = Gold or tier = Silver",
    ]);
    assert!(
        funnel["steps"][3]["customers"].as_u64().unwrap() > 0,
        "{funnel}"
    );
    let experiment = cli(&[
        "experiment",
        "checkout_2026",
        "--audience",
        "viewed in last 90 days",
        "--goal",
        "purchased in last 90 days",
        "--variants",
        "20,80",
    ]);
    assert_eq!(experiment["variants"][1]["share"], 80);
    let server = shop.serve(&[]);
    let mut c = server.connect();
    let json = |r: Resp| serde_json::from_str::<serde_json::Value>(&r.text()).unwrap();
    let got = json(c.cmd(&[
        "FUNNEL",
        "7 days",
        "visited",
        "viewed",
        "added_to_cart",
        "purchased",
        "WINDOW",
        "in last 30 days",
        "AUDIENCE",
        "tier = Gold or tier = Silver",
        "NOW",
        now,
    ]));
    assert_eq!(got, funnel);
    let got = json(c.cmd(&[
        "EXPERIMENT",
        "checkout_2026",
        "viewed in last 90 days",
        "purchased in last 90 days",
        "VARIANTS",
        "20,80",
        "NOW",
        now,
    ]));
    assert_eq!(got, experiment);
    // Bad requests.
    let err = c.cmd(&["FUNNEL", "7 days", "visited"]);
    assert!(
        err.error().starts_with("ERR wrong number of arguments"),
        "{err:?}"
    );
    let err = c.cmd(&["FUNNEL", "7 days", "visited", "NOW", now]);
    assert!(err.error().starts_with("INVALID a funnel has 2"), "{err:?}");
    let err = c.cmd(&["FUNNEL", "a week", "visited", "viewed"]);
    assert!(err.error().starts_with("INVALID "), "{err:?}");
    // An option word without a value is a step (an event of that name), warned about.
    let got = json(c.cmd(&["FUNNEL", "7 days", "visited", "viewed", "NOW"]));
    assert_eq!(got["warnings"][0], "step 3: no event 'NOW' in this store");
    let err = c.cmd(&["FUNNEL", "7 days", "visited", "viewed in last 2 days"]);
    assert!(err.error().starts_with("INVALID funnel step 2"), "{err:?}");
    let err = c.cmd(&["EXPERIMENT", "x", "everyone", "everyone", "VARIANTS", "50"]);
    assert!(err.error().starts_with("INVALID the variants"), "{err:?}");
    let err = c.cmd(&["EXPERIMENT", "x", "everyone", "everyone", "SHARES", "50,50"]);
    assert!(
        err.error().starts_with("ERR syntax error at 'SHARES'"),
        "{err:?}"
    );
}
