//! The Redis protocol codec: requests are decoded incrementally from a connection's read buffer,
//! replies are encoded into its write buffer in RESP2 or RESP3.
//!
//! This module owns the wire format and the request limits; it knows nothing of commands. A
//! decoded request is a list of byte ranges into the read buffer, so decoding allocates nothing
//! once the argument list has grown to its working size. Requests are either multibulk
//! (`*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n`, what clients send) or inline (`PING hi\r\n`, what a person
//! typing into `nc` and `redis-benchmark`'s `PING_INLINE` send).
//!
//! A request over a limit is refused with an error reply and the rest of it is read and thrown
//! away without being buffered, so the connection stays usable. Input that breaks the framing is
//! answered with a protocol error and dropped up to the end of its line, where decoding resumes.

use std::ops::Range;

/// Bounds on what one request may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest single argument, in bytes.
    pub max_bulk: u64,
    /// The most bytes of arguments in one request.
    pub max_request: u64,
    /// The most arguments in one request.
    pub max_args: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 16 << 20,
            max_request: 64 << 20,
            max_args: 65_536,
        }
    }
}

/// The longest inline request line, and the longest `*N` or `$N` header line, accepted.
pub const MAX_INLINE: usize = 64 * 1024;
const MAX_HEADER: usize = 32;

/// What [`Decoder::next`] found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole request of `len` bytes; [`Decoder::args`] holds its arguments.
    Request { len: usize },
    /// `len` bytes that form no request (a refused request's first part, a blank line, `*0`):
    /// answer `error` if there is one, then drop the bytes.
    Dropped { len: usize, error: Option<String> },
    /// More bytes are needed.
    Incomplete,
}

/// A request in progress: its arguments so far and where the next one starts.
#[derive(Debug, Clone, Copy)]
struct Partial {
    want: usize,
    pos: usize,
    total: u64,
}

/// What is left of a refused request, to read past.
#[derive(Debug, Clone, Copy)]
enum Skip {
    /// Bytes left of the current argument (with its CRLF), then arguments left.
    Args { bytes_left: u64, args_left: u64 },
    /// Everything up to and including the next newline.
    Line,
}

/// Incremental request decoder for one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    args: Vec<Range<usize>>,
    partial: Option<Partial>,
    skip: Option<Skip>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            args: Vec::with_capacity(8),
            partial: None,
            skip: None,
        }
    }

    /// The arguments of the last [`Frame::Request`], as ranges into the buffer it was decoded
    /// from.
    pub fn args(&self) -> &[Range<usize>] {
        &self.args
    }

    /// Decodes the request at the front of `buf`. Between calls the caller may only drop bytes
    /// before the front (those of requests already returned) and append bytes at the end.
    pub fn next(&mut self, buf: &[u8]) -> Frame {
        if let Some(skip) = self.skip {
            return self.skip_refused(buf, skip);
        }
        let mut p = match self.partial {
            Some(p) => p,
            None => {
                let Some(&first) = buf.first() else {
                    return Frame::Incomplete;
                };
                if first != b'*' {
                    return self.inline(buf);
                }
                let Some(line) = line_at(buf, 0) else {
                    return self.unfinished_header(buf, 0);
                };
                let header_len = line + 2;
                let n = match header_value(buf, 0, line, b'*') {
                    Some(n) => n,
                    None => return protocol_error("invalid multibulk length", header_len),
                };
                if n <= 0 {
                    // Redis treats `*0` and `*-1` as nothing at all.
                    return Frame::Dropped {
                        len: header_len,
                        error: None,
                    };
                }
                let n = n.unsigned_abs();
                if n > self.limits.max_args {
                    self.skip = Some(Skip::Args {
                        bytes_left: 0,
                        args_left: n,
                    });
                    return Frame::Dropped {
                        len: header_len,
                        error: Some(format!(
                            "ERR request has {n} arguments; the limit is {}",
                            self.limits.max_args
                        )),
                    };
                }
                self.args.clear();
                Partial {
                    want: usize::try_from(n).unwrap_or(usize::MAX),
                    pos: header_len,
                    total: 0,
                }
            }
        };
        while self.args.len() < p.want {
            let Some(line) = line_at(buf, p.pos) else {
                self.partial = Some(p);
                return self.unfinished_header(buf, p.pos);
            };
            let header_len = line + 2 - p.pos;
            let len = match bulk_header(buf, p.pos, line) {
                Ok(len) => len,
                Err(error) => {
                    self.partial = None;
                    return error;
                }
            };
            let over = if len > self.limits.max_bulk {
                Some(format!(
                    "ERR argument of {len} bytes; the limit is {} bytes",
                    self.limits.max_bulk
                ))
            } else if p.total.saturating_add(len) > self.limits.max_request {
                Some(format!(
                    "ERR request of more than {} bytes; the limit is {} bytes",
                    p.total.saturating_add(len),
                    self.limits.max_request
                ))
            } else {
                None
            };
            if let Some(error) = over {
                self.partial = None;
                let args_left = (p.want - self.args.len() - 1) as u64;
                self.skip = Some(Skip::Args {
                    bytes_left: len + 2,
                    args_left,
                });
                return Frame::Dropped {
                    len: p.pos + header_len,
                    error: Some(error),
                };
            }
            // The length fits a usize: it is at most `max_bulk`, which the buffer must hold.
            let start = p.pos + header_len;
            let end = start + len as usize;
            if buf.len() < end + 2 {
                self.partial = Some(p);
                return Frame::Incomplete;
            }
            if &buf[end..end + 2] != b"\r\n" {
                self.partial = None;
                return protocol_error("argument not followed by CRLF", end);
            }
            self.args.push(start..end);
            p.pos = end + 2;
            p.total += len;
        }
        self.partial = None;
        Frame::Request { len: p.pos }
    }

    /// The bytes needed, from the front of the buffer, to finish the request in progress, when
    /// known: lets the reader grow its buffer once for a large argument.
    pub fn wants(&self, buf: &[u8]) -> Option<usize> {
        let p = self.partial?;
        let line = line_at(buf, p.pos)?;
        let len = usize::try_from(header_value(buf, p.pos, line, b'$')?).ok()?;
        (line + 2).checked_add(len)?.checked_add(2)
    }

    /// Whether a request has been partly read (its bytes must stay in the buffer).
    pub fn in_request(&self) -> bool {
        self.partial.is_some() || self.skip.is_some()
    }

    /// An inline request: words separated by spaces, ended by a newline.
    fn inline(&mut self, buf: &[u8]) -> Frame {
        let Some(nl) = memchr(b'\n', buf) else {
            if buf.len() > MAX_INLINE {
                self.skip = Some(Skip::Line);
                return Frame::Dropped {
                    len: buf.len(),
                    error: Some(format!(
                        "ERR Protocol error: inline request longer than {MAX_INLINE} bytes"
                    )),
                };
            }
            return Frame::Incomplete;
        };
        if nl > MAX_INLINE {
            return Frame::Dropped {
                len: nl + 1,
                error: Some(format!(
                    "ERR Protocol error: inline request longer than {MAX_INLINE} bytes"
                )),
            };
        }
        let end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        self.args.clear();
        let mut i = 0;
        while i < end {
            while i < end && buf[i].is_ascii_whitespace() {
                i += 1;
            }
            let start = i;
            while i < end && !buf[i].is_ascii_whitespace() {
                i += 1;
            }
            if start < i {
                self.args.push(start..i);
            }
        }
        let total: u64 = self.args.iter().map(|a| a.len() as u64).sum();
        let over = if self.args.len() as u64 > self.limits.max_args {
            Some(format!(
                "ERR request has {} arguments; the limit is {}",
                self.args.len(),
                self.limits.max_args
            ))
        } else if let Some(a) = self
            .args
            .iter()
            .find(|a| a.len() as u64 > self.limits.max_bulk)
        {
            Some(format!(
                "ERR argument of {} bytes; the limit is {} bytes",
                a.len(),
                self.limits.max_bulk
            ))
        } else if total > self.limits.max_request {
            // The same limit as for a multibulk request of the same arguments.
            Some(format!(
                "ERR request of {total} bytes; the limit is {} bytes",
                self.limits.max_request
            ))
        } else {
            None
        };
        if self.args.is_empty() || over.is_some() {
            return Frame::Dropped {
                len: nl + 1,
                error: over,
            };
        }
        Frame::Request { len: nl + 1 }
    }

    /// A header line with no CRLF yet: wait for it, unless it is already too long to be one.
    fn unfinished_header(&mut self, buf: &[u8], pos: usize) -> Frame {
        if buf.len() - pos > MAX_HEADER {
            self.partial = None;
            self.skip = Some(Skip::Line);
            return Frame::Dropped {
                len: buf.len(),
                error: Some("ERR Protocol error: header line too long".into()),
            };
        }
        Frame::Incomplete
    }

    /// Reads past what is left of a refused request.
    fn skip_refused(&mut self, buf: &[u8], mut skip: Skip) -> Frame {
        let mut pos = 0;
        loop {
            match &mut skip {
                Skip::Line => match memchr(b'\n', &buf[pos..]) {
                    Some(nl) => {
                        self.skip = None;
                        return dropped(pos + nl + 1);
                    }
                    None => {
                        self.skip = Some(skip);
                        return dropped(buf.len());
                    }
                },
                Skip::Args {
                    bytes_left,
                    args_left,
                } => {
                    let available = (buf.len() - pos) as u64;
                    let n = (*bytes_left).min(available);
                    pos += n as usize;
                    *bytes_left -= n;
                    if *bytes_left > 0 {
                        self.skip = Some(skip);
                        return dropped(pos);
                    }
                    if *args_left == 0 {
                        self.skip = None;
                        return dropped(pos);
                    }
                    let Some(line) = line_at(buf, pos) else {
                        if buf.len() - pos > MAX_HEADER {
                            // Not a header: give up on the framing of this request.
                            return match self.skip_refused(&buf[pos..], Skip::Line) {
                                Frame::Dropped { len, error } => Frame::Dropped {
                                    len: pos + len,
                                    error,
                                },
                                _ => dropped(pos),
                            };
                        }
                        self.skip = Some(skip);
                        return dropped(pos);
                    };
                    // The line may be empty (`*70000\r\n\r\n`) or anything else.
                    match bulk_header(buf, pos, line) {
                        Ok(len) => {
                            *bytes_left = len + 2;
                            *args_left -= 1;
                            pos = line + 2;
                        }
                        Err(error) => {
                            self.skip = None;
                            return error;
                        }
                    }
                }
            }
        }
    }
}

fn dropped(len: usize) -> Frame {
    if len == 0 {
        Frame::Incomplete
    } else {
        Frame::Dropped { len, error: None }
    }
}

fn protocol_error(what: &str, len: usize) -> Frame {
    Frame::Dropped {
        len,
        error: Some(format!("ERR Protocol error: {what}")),
    }
}

/// The length in the `$N` line that runs from `pos` to the `\r` at `line`, or the protocol error
/// that drops that line. Any line is taken, the empty one included.
fn bulk_header(buf: &[u8], pos: usize, line: usize) -> Result<u64, Frame> {
    match buf.get(pos..line).and_then(|l| l.first()) {
        Some(b'$') => {}
        other => {
            let got = other.map_or(b'\r', |&b| b);
            return Err(protocol_error(
                &format!("expected '$', got '{}'", char::from(got).escape_default()),
                line + 2,
            ));
        }
    }
    match header_value(buf, pos, line, b'$') {
        Some(n) if n >= 0 => Ok(n.unsigned_abs()),
        _ => Err(protocol_error("invalid bulk length", line + 2)),
    }
}

/// The number in a `*N` or `$N` line (`kind` is `*` or `$`) that runs from `pos` to the `\r` at
/// `line`; `None` if the line is anything else, empty included.
fn header_value(buf: &[u8], pos: usize, line: usize, kind: u8) -> Option<i64> {
    match buf.get(pos..line)?.split_first() {
        Some((&k, digits)) if k == kind => parse_len(digits),
        _ => None,
    }
}

/// The index of the `\r` of the first CRLF at or after `from`.
fn line_at(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let window = &rest[..rest.len().min(MAX_HEADER + 2)];
    let nl = memchr(b'\n', window)?;
    // Lazily: with a bare `\n` first (nl == 0) the index does not exist.
    (nl > 0 && window[nl - 1] == b'\r').then(|| from + nl - 1)
}

fn memchr(b: u8, buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&c| c == b)
}

/// A decimal length as in `*3` or `$-1`.
fn parse_len(digits: &[u8]) -> Option<i64> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Some(if neg { -n } else { n })
}

/// Encodes replies for one connection in the protocol version it asked for.
pub struct Reply<'o> {
    pub out: &'o mut Vec<u8>,
    /// 2 or 3.
    pub proto: u8,
}

impl Reply<'_> {
    /// `+OK`-style status line.
    pub fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        push_line_safe(self.out, s);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// An error reply: `code` is the first word (`ERR`, `NOTFOUND`, ...). Newlines in the text
    /// become spaces: an error is one line.
    pub fn error(&mut self, code: &str, msg: &str) {
        self.out.push(b'-');
        self.out.extend_from_slice(code.as_bytes());
        self.out.push(b' ');
        push_line_safe(self.out, msg);
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error whose text already starts with its code.
    pub fn raw_error(&mut self, line: &str) {
        self.out.push(b'-');
        push_line_safe(self.out, line);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, bytes: &[u8]) {
        self.header(b'$', bytes.len() as i64);
        self.out.extend_from_slice(bytes);
        self.out.extend_from_slice(b"\r\n");
    }

    pub fn null(&mut self) {
        if self.proto >= 3 {
            self.out.extend_from_slice(b"_\r\n");
        } else {
            self.out.extend_from_slice(b"$-1\r\n");
        }
    }

    pub fn array(&mut self, len: usize) {
        self.header(b'*', len as i64);
    }

    /// An out-of-band array (pub/sub confirmations and messages): a RESP3 push, a plain array
    /// in RESP2.
    pub fn push(&mut self, len: usize) {
        let kind = if self.proto >= 3 { b'>' } else { b'*' };
        self.header(kind, len as i64);
    }

    /// A map of `len` pairs: a RESP3 map, or a flat array of keys and values in RESP2.
    pub fn map(&mut self, len: usize) {
        if self.proto >= 3 {
            self.header(b'%', len as i64);
        } else {
            self.header(b'*', 2 * len as i64);
        }
    }

    fn header(&mut self, kind: u8, n: i64) {
        self.out.push(kind);
        self.out.extend_from_slice(itoa_buf(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Decimal text of `n` without going through `fmt` machinery for the common small cases.
fn itoa_buf(n: i64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        d.start -= 1;
        d.buf[d.start] = b'-';
    }
    d
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn push_line_safe(out: &mut Vec<u8>, s: &str) {
    out.extend(
        s.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

#[cfg(test)]
mod tests {
    use super::super::client::encode;
    use super::*;
    use proptest::prelude::*;

    fn args<'b>(d: &Decoder, buf: &'b [u8]) -> Vec<&'b [u8]> {
        d.args().iter().map(|r| &buf[r.clone()]).collect()
    }

    #[test]
    fn decodes_pipelined_multibulk_and_inline_requests() {
        let buf = b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\nPING  x\r\n*1\r\n$4\r\nPING\r\n";
        let mut d = Decoder::new(Limits::default());
        let Frame::Request { len } = d.next(buf) else {
            panic!()
        };
        assert_eq!(args(&d, buf), [&b"ECHO"[..], b"hello"]);
        let rest = &buf[len..];
        let Frame::Request { len: l2 } = d.next(rest) else {
            panic!()
        };
        assert_eq!(args(&d, rest), [&b"PING"[..], b"x"]);
        let rest = &rest[l2..];
        assert_eq!(d.next(rest), Frame::Request { len: rest.len() });
        assert_eq!(d.next(&rest[rest.len()..]), Frame::Incomplete);
    }

    #[test]
    fn resumes_a_request_split_at_every_byte() {
        let full = b"*3\r\n$5\r\nTRACK\r\n$3\r\nc-1\r\n$0\r\n\r\n";
        for cut in 0..full.len() {
            let mut d = Decoder::new(Limits::default());
            assert_eq!(d.next(&full[..cut]), Frame::Incomplete, "cut at {cut}");
            assert_eq!(d.next(full), Frame::Request { len: full.len() });
            assert_eq!(args(&d, full), [&b"TRACK"[..], b"c-1", b""]);
        }
    }

    #[test]
    fn an_oversized_argument_is_refused_and_skipped_without_losing_the_next_request() {
        let limits = Limits {
            max_bulk: 4,
            ..Limits::default()
        };
        let mut d = Decoder::new(limits);
        let buf = b"*2\r\n$4\r\nECHO\r\n$10\r\n0123456789\r\n*1\r\n$4\r\nPING\r\n";
        let Frame::Dropped {
            len,
            error: Some(e),
        } = d.next(buf)
        else {
            panic!()
        };
        assert!(e.contains("limit is 4 bytes"), "{e}");
        let mut rest = &buf[len..];
        // The skipped bytes may come in several pieces.
        loop {
            match d.next(rest) {
                Frame::Dropped { len, error: None } => rest = &rest[len..],
                Frame::Request { len } => {
                    assert_eq!(args(&d, rest), [&b"PING"[..]]);
                    assert_eq!(len, rest.len());
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn too_many_arguments_and_bad_framing_are_errors_that_resynchronise() {
        let limits = Limits {
            max_args: 2,
            ..Limits::default()
        };
        let mut d = Decoder::new(limits);
        let buf = b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n";
        let Frame::Dropped { error: Some(e), .. } = d.next(buf) else {
            panic!()
        };
        assert!(e.contains("3 arguments"), "{e}");
        let mut d = Decoder::new(Limits::default());
        let buf = b"*x\r\nPING\r\n";
        let Frame::Dropped {
            len,
            error: Some(e),
        } = d.next(buf)
        else {
            panic!()
        };
        assert!(e.starts_with("ERR Protocol error"), "{e}");
        assert_eq!(d.next(&buf[len..]), Frame::Request { len: 6 });
    }

    #[test]
    fn too_many_arguments_then_an_empty_line_is_an_error_not_a_panic() {
        // Issue 16: the skipped request's next header line is empty, and slicing its digits
        // panicked ("slice index starts at 1 but ends at 0").
        let mut d = Decoder::new(Limits::default());
        let buf = b"*70000\r\n\r\n*1\r\n$4\r\nPING\r\n";
        let Frame::Dropped {
            len,
            error: Some(e),
        } = d.next(buf)
        else {
            panic!()
        };
        assert_eq!(e, "ERR request has 70000 arguments; the limit is 65536");
        let rest = &buf[len..];
        let Frame::Dropped {
            len,
            error: Some(e),
        } = d.next(rest)
        else {
            panic!()
        };
        assert_eq!(e, r"ERR Protocol error: expected '$', got '\r'");
        assert_eq!(len, 2);
        let rest = &rest[len..];
        assert_eq!(d.next(rest), Frame::Request { len: rest.len() });
        assert_eq!(args(&d, rest), [&b"PING"[..]]);
        // The same empty line where an argument's header belongs, and in every place a
        // header may be.
        for buf in [
            &b"*2\r\n\r\n"[..],
            b"*2\r\n$1\r\na\r\n\r\n",
            b"*3\r\n$9\r\n0123456789\r\n\r\n",
            // A bare newline where a header belongs: finding its line underflowed.
            b"*2\r\n\n",
            b"*2\r\n$1\r\na\r\n\n",
        ] {
            let frames = drive(
                Limits {
                    max_args: 1,
                    max_bulk: 4,
                    ..Limits::default()
                },
                buf,
                &[],
            );
            assert!(frames.iter().any(|f| f.is_err()), "{frames:?}");
        }
    }

    #[test]
    fn an_inline_request_over_the_request_limit_is_refused() {
        // Found by the fuzz target `resp`: an inline request was held to the argument count
        // and size limits but not to `max_request`, which a multibulk one of the same
        // arguments is refused by.
        let limits = Limits {
            max_request: 8,
            ..Limits::default()
        };
        let mut d = Decoder::new(limits);
        let buf = b"ECHO 0123456789\r\nPING\r\n";
        let Frame::Dropped {
            len,
            error: Some(e),
        } = d.next(buf)
        else {
            panic!()
        };
        assert_eq!(e, "ERR request of 14 bytes; the limit is 8 bytes");
        assert_eq!(d.next(&buf[len..]), Frame::Request { len: 6 });
        let mut d = Decoder::new(limits);
        assert_eq!(d.next(b"ECHO 0123\r\n"), Frame::Request { len: 11 });
    }

    use crate::fuzzing::{drive_resp as drive, RespFrames};

    fn arb_limits() -> impl Strategy<Value = Limits> {
        prop_oneof![
            Just(Limits::default()),
            (0u64..20, 0u64..40, 0u64..6).prop_map(|(max_bulk, max_request, max_args)| {
                Limits {
                    max_bulk,
                    max_request,
                    max_args,
                }
            }),
        ]
    }

    fn arb_requests() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
        let arg = prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12),
            prop::collection::vec(prop::sample::select(b"ab\r\n *$".to_vec()), 0..12),
        ];
        prop::collection::vec(prop::collection::vec(arg, 1..5), 1..5)
    }

    /// Bytes that matter to the framing, to be planted more often than chance would.
    const FRAMING: &[u8] = b"*$\r\n-0123456789 ";

    /// Applies each mutation: (where, what, byte) with what 0: replace, 1: insert, 2: delete,
    /// 3: insert a framing byte, 4: cut the input there, 5: repeat the bytes from there on.
    fn mutate(mut bytes: Vec<u8>, mutations: &[(prop::sample::Index, u8, u8)]) -> Vec<u8> {
        for (at, what, byte) in mutations {
            let i = at.index(bytes.len() + 1);
            let framing = FRAMING[usize::from(*byte) % FRAMING.len()];
            match what {
                0 if i < bytes.len() => bytes[i] = *byte,
                1 => bytes.insert(i, *byte),
                2 if i < bytes.len() => {
                    bytes.remove(i);
                }
                3 => bytes.insert(i, framing),
                4 => bytes.truncate(i),
                5 => bytes.extend_from_within(i..),
                _ => {}
            }
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn no_input_panics_or_stalls_the_decoder(
            limits in arb_limits(),
            input in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..400),
                prop::collection::vec(prop::sample::select(FRAMING.to_vec()), 0..400),
            ],
            cuts in prop::collection::vec(0usize..400, 0..8),
        ) {
            drive(limits, &input, &cuts);
        }

        #[test]
        fn mutated_requests_never_panic_or_stall_the_decoder(
            limits in arb_limits(),
            requests in arb_requests(),
            mutations in prop::collection::vec((any::<prop::sample::Index>(), 0u8..6, any::<u8>()), 0..6),
            cuts in prop::collection::vec(0usize..400, 0..8),
        ) {
            let bytes: Vec<u8> = requests.iter().flat_map(|r| encode(r)).collect();
            drive(limits, &mutate(bytes, &mutations), &cuts);
        }

        #[test]
        fn whole_requests_decode_the_same_however_they_arrive(
            requests in arb_requests(),
            cuts in prop::collection::vec(0usize..400, 0..8),
        ) {
            let bytes: Vec<u8> = requests.iter().flat_map(|r| encode(r)).collect();
            let frames = drive(Limits::default(), &bytes, &cuts);
            let expected: RespFrames = requests.into_iter().map(Ok).collect();
            prop_assert_eq!(frames, expected);
        }
    }

    #[test]
    fn replies_follow_the_protocol_version() {
        let mut out = Vec::new();
        let mut r = Reply {
            out: &mut out,
            proto: 2,
        };
        r.map(1);
        r.bulk(b"a");
        r.int(-42);
        r.null();
        r.error("ERR", "two\r\nlines");
        assert_eq!(out, b"*2\r\n$1\r\na\r\n:-42\r\n$-1\r\n-ERR two  lines\r\n");
        let mut out = Vec::new();
        let mut r = Reply {
            out: &mut out,
            proto: 3,
        };
        r.map(1);
        r.null();
        r.push(1);
        assert_eq!(out, b"%1\r\n_\r\n>1\r\n");
    }
}
