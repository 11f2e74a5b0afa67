//! Byte-level JSON pieces for the generator's output: RFC 3339 timestamps, integers, money with two
//! decimals, escaped strings and opaque hex ids, appended to a `Vec<u8>` without allocating.

/// Appends `ts` (milliseconds since the epoch, within 0000..=9999 years) as RFC 3339 UTC with
/// milliseconds: `2026-01-05T10:01:00.123Z`. Same text as `crate::model::time::format_rfc3339`.
pub(crate) fn push_timestamp(buf: &mut Vec<u8>, ts: i64) {
    let days = ts.div_euclid(86_400_000);
    let ms_of_day = ts.rem_euclid(86_400_000) as u32;
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    let secs = ms_of_day / 1000;
    let ms = ms_of_day % 1000;
    let (hh, mm, ss) = (secs / 3600, secs / 60 % 60, secs % 60);
    let two = |v: u32| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    let mut out = [0u8; 24];
    out[0] = b'0' + (y / 1000) as u8;
    out[1] = b'0' + (y / 100 % 10) as u8;
    out[2] = b'0' + (y / 10 % 10) as u8;
    out[3] = b'0' + (y % 10) as u8;
    out[4] = b'-';
    out[5..7].copy_from_slice(&two(m));
    out[7] = b'-';
    out[8..10].copy_from_slice(&two(d));
    out[10] = b'T';
    out[11..13].copy_from_slice(&two(hh));
    out[13] = b':';
    out[14..16].copy_from_slice(&two(mm));
    out[16] = b':';
    out[17..19].copy_from_slice(&two(ss));
    out[19] = b'.';
    out[20] = b'0' + (ms / 100) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    out[23] = b'Z';
    buf.extend_from_slice(&out);
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends `v` zero-padded to at least `width` digits.
pub(crate) fn push_padded(buf: &mut Vec<u8>, v: u64, width: usize) {
    let mut tmp = Vec::with_capacity(20);
    push_u64(&mut tmp, v);
    buf.extend(std::iter::repeat_n(b'0', width.saturating_sub(tmp.len())));
    buf.extend_from_slice(&tmp);
}

/// Appends an amount of cents as a decimal with two places: `1990` → `19.90`.
pub(crate) fn push_cents(buf: &mut Vec<u8>, cents: u64) {
    push_u64(buf, cents / 100);
    let c = (cents % 100) as u8;
    buf.extend_from_slice(&[b'.', b'0' + c / 10, b'0' + c % 10]);
}

/// Appends 16 lowercase hex digits.
pub(crate) fn push_hex16(buf: &mut Vec<u8>, v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = HEX[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    buf.extend_from_slice(&out);
}

/// Appends `s` as a JSON string literal, quotes included.
pub(crate) fn push_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    push_escaped(buf, s.as_bytes());
    buf.push(b'"');
}

/// Appends the bytes of a UTF-8 string with JSON escapes for quotes, backslashes and controls.
pub(crate) fn push_escaped(buf: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    if !s.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
        buf.extend_from_slice(s);
        return;
    }
    for &b in s {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            0..0x20 => {
                buf.extend_from_slice(b"\\u00");
                buf.push(HEX[usize::from(b >> 4)]);
                buf.push(HEX[usize::from(b & 0xf)]);
            }
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::time::format_rfc3339;

    fn ts_text(ts: i64) -> String {
        let mut buf = Vec::new();
        push_timestamp(&mut buf, ts);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn timestamps_match_the_model_formatter() {
        // Edges: the epoch, leap days, century rules, the end of the accepted range.
        let fixed = [
            0,
            1,
            999,
            86_399_999,
            951_782_400_000,   // 2000-02-29
            4_107_542_399_999, // 2100-02-28T23:59:59.999
            1_709_164_800_123, // 2024-02-29T00:00:00.123
            1_767_225_599_999, // 2025-12-31T23:59:59.999
        ];
        for ts in fixed {
            assert_eq!(ts_text(ts), format_rfc3339(ts), "{ts}");
        }
        // A deterministic sweep over 1970..2100 with odd steps.
        let mut ts = 0i64;
        while ts < 4_102_444_800_000 {
            assert_eq!(ts_text(ts), format_rfc3339(ts), "{ts}");
            ts += 3_600_017_011;
        }
    }

    #[test]
    fn numbers_and_ids() {
        let mut b = Vec::new();
        push_u64(&mut b, 0);
        b.push(b' ');
        push_u64(&mut b, 18_446_744_073_709_551_615);
        b.push(b' ');
        push_padded(&mut b, 42, 6);
        b.push(b' ');
        push_padded(&mut b, 1_234_567, 6);
        b.push(b' ');
        push_cents(&mut b, 1990);
        b.push(b' ');
        push_cents(&mut b, 5);
        b.push(b' ');
        push_hex16(&mut b, 0x0123_4567_89ab_cdef);
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "0 18446744073709551615 000042 1234567 19.90 0.05 0123456789abcdef"
        );
    }

    #[test]
    fn strings_are_escaped_into_valid_json() {
        for s in ["plain", "Göteborg", "say \"hi\"\\ \n\t\u{1}"] {
            let mut b = Vec::new();
            push_str(&mut b, s);
            let back: String = serde_json::from_slice(&b).unwrap();
            assert_eq!(back, s);
        }
    }
}
