//! The socket server's RESP request decoder, fed as the server feeds it: any bytes, in any
//! pieces, under default or tiny limits. It never panics or stalls; every frame lies inside the
//! buffer and takes a byte at least; a stream that decodes to requests alone decodes the same in
//! one piece and in pieces; and every request, encoded again as a client would send it, decodes
//! to the same arguments under the same limits.
//!
//! Input: a selector byte (bit 0: tiny limits, from the next three bytes), a byte whose low three
//! bits count the cut points (two bytes each) that split the rest, then the bytes sent.
#![no_main]

use audiencedb::fuzzing::drive_resp as drive;
use audiencedb::server::client::encode;
use audiencedb::server::resp::Limits;
use libfuzzer_sys::fuzz_target;

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
