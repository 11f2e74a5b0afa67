//! A small blocking client for the server's socket: connect to a Unix socket, send a command as
//! an array of bulk strings, read one RESP2 reply of any type. What `audiencedb repl --socket`
//! talks through.
//!
//! It owns only the client side of the wire format; it knows no command's meaning and shares
//! nothing with the server's decoder ([`super::resp`]), so the two check each other in the tests.
//! A reply is read in full before it is returned; sizes and nesting are capped so a broken or
//! hostile peer cannot make it allocate without bound.

use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The longest bulk string accepted in a reply.
pub const MAX_BULK: usize = 512 << 20;
/// The most elements of one array in a reply.
pub const MAX_ARRAY: usize = 64 << 20;
/// How deep arrays may nest in a reply.
pub const MAX_DEPTH: usize = 32;
/// The longest line (simple string, error, integer, length) in a reply.
const MAX_LINE: usize = 64 << 10;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`
    Simple(String),
    /// `-CODE message`, kept whole.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `$-1` or `*-1`.
    Nil,
    /// `*2\r\n...`
    Array(Vec<RespValue>),
}

impl RespValue {
    /// A short description for error messages: the type, and the text of short values.
    pub fn describe(&self) -> String {
        match self {
            RespValue::Simple(s) => format!("simple string {s:?}"),
            RespValue::Error(e) => format!("error {e:?}"),
            RespValue::Integer(n) => format!("integer {n}"),
            RespValue::Bulk(b) if b.len() <= 40 => {
                format!("bulk string {:?}", String::from_utf8_lossy(b))
            }
            RespValue::Bulk(b) => format!("bulk string of {} bytes", b.len()),
            RespValue::Nil => "nil".to_owned(),
            RespValue::Array(a) => format!("array of {}", a.len()),
        }
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be connected to.
    #[error("cannot connect to {}: {source} (is `audiencedb serve` running there?)", path.display())]
    Connect { path: PathBuf, source: io::Error },
    /// Reading or writing the connection failed.
    #[error("the connection to the server failed: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection before any byte of the reply.
    #[error("the server closed the connection")]
    Closed,
    /// The reply is not valid RESP2, or breaks a limit.
    #[error("the server's reply is not valid RESP: {0}")]
    Protocol(String),
    /// The server answered with an error reply: its code (the first word) and message.
    #[error("{code} {message}")]
    Server { code: String, message: String },
    /// A reply of another type than the command gives.
    #[error("unexpected reply to {command}: {got}")]
    Unexpected { command: String, got: String },
}

impl ClientError {
    /// Whether the connection is gone without the request having been answered: a fresh
    /// connection may be tried (a server closes idle clients).
    pub fn is_disconnect(&self) -> bool {
        match self {
            ClientError::Closed => true,
            ClientError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::NotConnected
            ),
            _ => false,
        }
    }
}

/// A connection to one server.
pub struct Client {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let connect_error = |source| ClientError::Connect {
            path: path.to_owned(),
            source,
        };
        let stream = UnixStream::connect(path).map_err(connect_error)?;
        let writer = stream.try_clone().map_err(connect_error)?;
        Ok(Client {
            path: path.to_owned(),
            reader: BufReader::with_capacity(64 << 10, stream),
            writer,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one command without waiting for its reply (several may be sent before reading:
    /// a pipeline).
    pub fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<(), ClientError> {
        write_all_nosignal(&self.writer, &encode(args))?;
        Ok(())
    }

    /// Reads the next reply, whatever its type (an error reply is [`RespValue::Error`]).
    pub fn read_reply(&mut self) -> Result<RespValue, ClientError> {
        if self.reader.fill_buf()?.is_empty() {
            return Err(ClientError::Closed);
        }
        read_value(&mut self.reader, 0)
    }

    /// Sends one command and reads its reply; an error reply is [`ClientError::Server`].
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<RespValue, ClientError> {
        self.send(args)?;
        server_error(self.read_reply()?)
    }
}

/// Writes all of `bytes` with `MSG_NOSIGNAL`: a server that has gone away is an `EPIPE` error,
/// not a SIGPIPE that kills a program which keeps the default disposition (the CLI does).
fn write_all_nosignal(stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe a live slice; the descriptor is owned by
        // `stream`, which outlives the call.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// An error reply as [`ClientError::Server`], any other reply as it is.
pub fn server_error(value: RespValue) -> Result<RespValue, ClientError> {
    match value {
        RespValue::Error(line) => {
            let (code, message) = line.split_once(' ').unwrap_or((&line, ""));
            Err(ClientError::Server {
                code: code.to_owned(),
                message: message.to_owned(),
            })
        }
        other => Ok(other),
    }
}

/// A command as RESP: an array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn protocol(msg: impl Into<String>) -> ClientError {
    ClientError::Protocol(msg.into())
}

/// One line without its CRLF.
fn read_line(r: &mut impl BufRead) -> Result<String, ClientError> {
    let mut line = Vec::new();
    let n = r.take(MAX_LINE as u64 + 2).read_until(b'\n', &mut line)?;
    if n == 0 || !line.ends_with(b"\r\n") {
        return Err(if n == 0 || line.len() < MAX_LINE {
            ClientError::Io(io::ErrorKind::UnexpectedEof.into())
        } else {
            protocol(format!("a line longer than {MAX_LINE} bytes"))
        });
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| protocol("a line that is not UTF-8"))
}

/// A length: -1 (nil) or 0..=max.
fn read_len(r: &mut impl BufRead, max: usize) -> Result<Option<usize>, ClientError> {
    let line = read_line(r)?;
    let n: i64 = line
        .parse()
        .map_err(|_| protocol(format!("length {line:?} is not a number")))?;
    match n {
        -1 => Ok(None),
        n if n >= 0 && (n as u64) <= max as u64 => Ok(Some(n as usize)),
        n => Err(protocol(format!("length {n} is out of range (0..={max})"))),
    }
}

fn read_value(r: &mut impl BufRead, depth: usize) -> Result<RespValue, ClientError> {
    if depth > MAX_DEPTH {
        return Err(protocol(format!("arrays nested deeper than {MAX_DEPTH}")));
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    Ok(match kind[0] {
        b'+' => RespValue::Simple(read_line(r)?),
        b'-' => RespValue::Error(read_line(r)?),
        b':' => {
            let line = read_line(r)?;
            RespValue::Integer(
                line.parse()
                    .map_err(|_| protocol(format!("integer {line:?} is not a number")))?,
            )
        }
        b'$' => match read_len(r, MAX_BULK)? {
            None => RespValue::Nil,
            Some(n) => {
                let mut bytes = vec![0u8; n + 2];
                r.read_exact(&mut bytes)?;
                if !bytes.ends_with(b"\r\n") {
                    return Err(protocol("a bulk string not followed by CRLF"));
                }
                bytes.truncate(n);
                RespValue::Bulk(bytes)
            }
        },
        b'*' => match read_len(r, MAX_ARRAY)? {
            None => RespValue::Nil,
            Some(n) => {
                // Grown as elements arrive: a length alone allocates nothing.
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(read_value(r, depth + 1)?);
                }
                RespValue::Array(items)
            }
        },
        other => {
            return Err(protocol(format!(
                "unknown reply type {:?} (a RESP3 reply? this client speaks RESP2)",
                char::from(other)
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixListener;

    fn parse(bytes: &[u8]) -> Result<RespValue, ClientError> {
        read_value(&mut BufReader::new(bytes), 0)
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&["QUERY", "tier = Gold", ""]),
            b"*3\r\n$5\r\nQUERY\r\n$11\r\ntier = Gold\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn every_resp2_type_is_read() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), RespValue::Simple("OK".into()));
        assert_eq!(
            parse(b"-NOTFOUND audience \"x\"\r\n").unwrap(),
            RespValue::Error("NOTFOUND audience \"x\"".into())
        );
        assert_eq!(parse(b":-12\r\n").unwrap(), RespValue::Integer(-12));
        assert_eq!(
            parse(b"$4\r\na\r\nb\r\n").unwrap(),
            RespValue::Bulk(b"a\r\nb".to_vec())
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), RespValue::Nil);
        assert_eq!(parse(b"*-1\r\n").unwrap(), RespValue::Nil);
        assert_eq!(
            parse(b"*3\r\n$1\r\na\r\n*1\r\n:1\r\n$0\r\n\r\n").unwrap(),
            RespValue::Array(vec![
                RespValue::Bulk(b"a".to_vec()),
                RespValue::Array(vec![RespValue::Integer(1)]),
                RespValue::Bulk(Vec::new()),
            ])
        );
    }

    #[test]
    fn broken_replies_are_errors_not_panics() {
        for bad in [
            &b"?x\r\n"[..],
            b"%1\r\n",
            b":12x\r\n",
            b"$5\r\nab\r\n",
            b"$3\r\nabcd\r\n",
            b"$-2\r\n",
            b"*99999999999\r\n",
            b"+no end",
            b"*1\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert!(matches!(
            parse(deep.as_bytes()),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn a_call_over_a_socket_and_a_closed_connection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        // A fake server: reads each request whole, answers it, then hangs up.
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            for (request, answer) in [
                (encode(&["PING"]), &b"+PONG\r\n"[..]),
                (
                    encode(&["AUDIENCE.SHOW", "x"]),
                    &b"-NOTFOUND audience \"x\"\r\n"[..],
                ),
            ] {
                let mut buf = vec![0u8; request.len()];
                conn.read_exact(&mut buf).unwrap();
                got.extend(buf);
                conn.write_all(answer).unwrap();
            }
            got
        });
        let mut client = Client::connect(&path).unwrap();
        assert_eq!(
            client.call(&["PING"]).unwrap(),
            RespValue::Simple("PONG".into())
        );
        match client.call(&["AUDIENCE.SHOW", "x"]) {
            Err(ClientError::Server { code, message }) => {
                assert_eq!(code, "NOTFOUND");
                assert_eq!(message, "audience \"x\"");
            }
            other => panic!("{other:?}"),
        }
        let got = server.join().unwrap();
        let mut expected = encode(&["PING"]);
        expected.extend(encode(&["AUDIENCE.SHOW", "x"]));
        assert_eq!(got, expected);
        // The server has gone: the next reply finds the connection closed.
        let err = client.call(&["PING"]).unwrap_err();
        assert!(err.is_disconnect(), "{err:?}");

        let err = Client::connect(&dir.path().join("none.sock"))
            .err()
            .unwrap();
        assert!(err.to_string().starts_with("cannot connect to "), "{err}");
        assert!(!err.is_disconnect());
    }
}
