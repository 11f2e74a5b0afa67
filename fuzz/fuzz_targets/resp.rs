//! The socket server's RESP request decoder, fed as the server feeds it: any bytes, in any
//! pieces, under default or tiny limits. It never panics or stalls; every frame lies inside the
//! buffer and takes a byte at least; a stream that decodes to requests alone decodes the same in
//! one piece and in pieces; and every request, encoded again as a client would send it, decodes
//! to the same arguments under the same limits.
//!
//! Input: a selector byte (bit 0: tiny limits, from the next three bytes), a byte whose low three
//! bits count the cut points (two bytes each) that split the rest, then the bytes sent.
#![no_main]

use audiencedb::server::client::encode;
use audiencedb::server::resp::{Decoder, Frame, Limits};
use libfuzzer_sys::fuzz_target;

type Frames = Vec<Result<Vec<Vec<u8>>, Option<String>>>;

/// Feeds `input` to a fresh decoder in the pieces that `cuts` marks, dropping each frame's
/// bytes and appending the next piece on `Incomplete` (as `tests` in `src/server/resp.rs` do).
fn drive(limits: Limits, input: &[u8], cuts: &[usize]) -> Frames {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let max_calls = input.len() + cuts.len();
    let mut d = Decoder::new(limits);
    let (mut buf, mut fed, mut calls, mut frames) = (Vec::new(), 0, 0, Frames::new());
    for cut in cuts {
        buf.extend_from_slice(&input[fed..cut]);
        fed = cut;
        loop {
            calls += 1;
            assert!(calls <= max_calls, "the decoder does not progress");
            let len = match d.next(&buf) {
                Frame::Request { len } => {
                    assert!(d.args().iter().all(|a| a.start <= a.end && a.end <= len));
                    frames.push(Ok(d
                        .args()
                        .iter()
                        .map(|a| buf[a.clone()].to_vec())
                        .collect()));
                    len
                }
                Frame::Dropped { len, error } => {
                    frames.push(Err(error));
                    len
                }
                Frame::Incomplete => {
                    if let Some(wants) = d.wants(&buf) {
                        assert!(wants > buf.len(), "wants {wants} of {}", buf.len());
                    }
                    break;
                }
            };
            assert!(len > 0 && len <= buf.len(), "{len} of {}", buf.len());
            buf.drain(..len);
        }
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (limits, rest) = match rest {
        [a, b, c, rest @ ..] if selector & 1 == 1 => (
            Limits {
                max_bulk: u64::from(*a % 20),
                max_request: u64::from(*b % 40),
                max_args: u64::from(*c % 6),
            },
            rest,
        ),
        _ => (Limits::default(), rest),
    };
    let Some((&n, mut rest)) = rest.split_first() else {
        return;
    };
    let mut cuts = Vec::new();
    for _ in 0..n & 7 {
        let [a, b, tail @ ..] = rest else { break };
        cuts.push(usize::from(u16::from_le_bytes([*a, *b])));
        rest = tail;
    }
    let input = rest;

    let pieces = drive(limits, input, &cuts);
    let whole = drive(limits, input, &[]);
    if whole.iter().all(|f| f.is_ok()) {
        assert_eq!(pieces, whole, "requests decode differently when split");
    }
    for args in whole.iter().chain(&pieces).flatten() {
        let again = drive(limits, &encode(args), &[]);
        assert_eq!(
            again,
            [Ok(args.clone())],
            "a request re-encoded decodes differently"
        );
    }
});
