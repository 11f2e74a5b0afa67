//! Turns one customer's plan into Segment-spec NDJSON lines (`identify` and `track`, see
//! `ingest.md`): one JSON object per line, written by hand into a byte buffer.

use super::behaviour::{Kind, Planned, Profile};
use super::render::{
    push_cents, push_escaped, push_hex16, push_padded, push_str, push_timestamp, push_u64,
};
use super::shop::{
    Shop, CATEGORIES, COUNTRIES, DEVICES, FIRST_NAMES, LAST_NAMES, MAIL_DOMAINS, REFERRERS,
    SEARCH_ADJECTIVES, SEARCH_COLORS, SEARCH_SUFFIXES, SOURCES, TAGS, TIERS,
};

/// Digits in a customer number: at least 6, more when there are more customers, so that ids
/// sort in customer order.
pub(crate) fn id_width(customers: u64) -> usize {
    customers.max(1).to_string().len().max(6)
}

/// Counts of what one customer's rendering wrote.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) messages: u64,
    pub(crate) events: u64,
}

/// Appends the NDJSON lines of customer `index` to `buf`.
/// With `lines`, also records each line's timestamp and where it ends in `buf`.
pub(crate) fn render_customer(
    shop: &Shop,
    index: u64,
    width: usize,
    profile: Option<&Profile>,
    plan: &[Planned],
    buf: &mut Vec<u8>,
    mut lines: Option<&mut Vec<(i64, usize)>>,
) -> Written {
    // `"userId":"c-000123"` or `"anonymousId":"anon-9f..."`, shared by every line.
    let mut id = Vec::with_capacity(48);
    if profile.is_some() {
        id.extend_from_slice(b"\"userId\":\"c-");
        push_padded(&mut id, index + 1, width);
    } else {
        id.extend_from_slice(b"\"anonymousId\":\"anon-");
        push_hex16(&mut id, shop.anon_id(index));
    }
    id.push(b'"');
    // The same with one of the customer's two device ids as `anonymousId`, for the messages
    // that carry both (`Shop::both_ids_percent`).
    let both: Vec<Vec<u8>> = if profile.is_some() && shop.both_ids_percent > 0 {
        (0..2)
            .map(|device| {
                let mut b = id.clone();
                b.extend_from_slice(b",\"anonymousId\":\"anon-");
                push_hex16(&mut b, shop.device_id(index, device));
                b.push(b'"');
                b
            })
            .collect()
    } else {
        Vec::new()
    };

    let mut written = Written::default();
    for (seq, p) in plan.iter().enumerate() {
        let id = match both.as_slice() {
            [one, two] => {
                let h = shop.message_id(index, seq as u64);
                if h % 100 < u64::from(shop.both_ids_percent) {
                    if (h >> 32) & 1 == 0 {
                        one
                    } else {
                        two
                    }
                } else {
                    &id
                }
            }
            _ => &id,
        };
        match (&p.kind, profile) {
            (Kind::Identify, Some(profile)) => {
                buf.extend_from_slice(b"{\"type\":\"identify\",");
                buf.extend_from_slice(id);
                buf.extend_from_slice(b",\"traits\":{");
                identify_traits(buf, index, profile);
            }
            (Kind::Update { tier, newsletter }, _) => {
                buf.extend_from_slice(b"{\"type\":\"identify\",");
                buf.extend_from_slice(id);
                buf.extend_from_slice(b",\"traits\":{");
                let mut first = true;
                if let Some(t) = tier {
                    buf.extend_from_slice(b"\"tier\":");
                    push_str(buf, TIERS[usize::from(*t)]);
                    first = false;
                }
                if let Some(n) = newsletter {
                    if !first {
                        buf.push(b',');
                    }
                    buf.extend_from_slice(b"\"newsletter\":");
                    buf.extend_from_slice(if *n { b"true" } else { b"false" });
                }
            }
            (Kind::Identify, None) => continue, // anonymous visitors have no profile
            (kind, _) => {
                buf.extend_from_slice(b"{\"type\":\"track\",");
                buf.extend_from_slice(id);
                buf.extend_from_slice(b",\"event\":\"");
                buf.extend_from_slice(event_name(kind).as_bytes());
                buf.extend_from_slice(b"\",\"properties\":{");
                properties(buf, shop, kind);
                written.events += 1;
            }
        }
        buf.extend_from_slice(b"},\"timestamp\":\"");
        push_timestamp(buf, p.ts);
        buf.extend_from_slice(b"\",\"messageId\":\"");
        push_hex16(buf, shop.message_id(index, seq as u64));
        buf.extend_from_slice(b"\"}\n");
        if let Some(lines) = lines.as_deref_mut() {
            lines.push((p.ts, buf.len()));
        }
        written.messages += 1;
    }
    written
}

fn event_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Visited { .. } => "visited",
        Kind::Viewed { .. } => "viewed",
        Kind::Searched { .. } => "searched",
        Kind::AddedToCart { .. } => "added_to_cart",
        Kind::RemovedFromCart { .. } => "removed_from_cart",
        Kind::Purchased { .. } => "purchased",
        Kind::EmailOpened { .. } => "email_opened",
        Kind::EmailClicked { .. } => "email_clicked",
        Kind::Identify | Kind::Update { .. } => "identify",
    }
}

fn identify_traits(buf: &mut Vec<u8>, index: u64, p: &Profile) {
    let first_name = FIRST_NAMES[usize::from(p.first_name)];
    buf.extend_from_slice(b"\"first_name\":\"");
    buf.push(first_name.as_bytes()[0].to_ascii_uppercase());
    buf.extend_from_slice(&first_name.as_bytes()[1..]);
    buf.push(b'"');
    if let Some((last, domain)) = p.email {
        buf.extend_from_slice(b",\"email\":\"");
        buf.extend_from_slice(first_name.as_bytes());
        buf.push(b'.');
        buf.extend_from_slice(LAST_NAMES[usize::from(last)].as_bytes());
        push_u64(buf, index + 1);
        buf.push(b'@');
        buf.extend_from_slice(MAIL_DOMAINS[usize::from(domain)].as_bytes());
        buf.push(b'"');
    }
    buf.extend_from_slice(b",\"tier\":");
    push_str(buf, TIERS[usize::from(p.tier)]);
    let country = &COUNTRIES[usize::from(p.country)];
    buf.extend_from_slice(b",\"country\":");
    push_str(buf, country.code);
    if let Some(city) = p.city {
        buf.extend_from_slice(b",\"address\":{\"city\":");
        push_str(buf, country.cities[usize::from(city)]);
        buf.push(b'}');
    }
    if let Some(age) = p.age {
        buf.extend_from_slice(b",\"age\":");
        push_u64(buf, u64::from(age));
    }
    buf.extend_from_slice(b",\"tags\":[");
    for (i, &t) in p.tags.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        push_str(buf, TAGS[usize::from(t)]);
    }
    buf.extend_from_slice(b"],\"signup_at\":\"");
    push_timestamp(buf, p.signup);
    buf.extend_from_slice(b"\",\"device\":");
    push_str(buf, DEVICES[usize::from(p.device)]);
    buf.extend_from_slice(b",\"source\":");
    push_str(buf, SOURCES[usize::from(p.source)]);
    buf.extend_from_slice(b",\"newsletter\":");
    buf.extend_from_slice(if p.newsletter { b"true" } else { b"false" });
}

/// `"product":"p-0042","category":"shoes"`
fn product_fields(buf: &mut Vec<u8>, shop: &Shop, product: u32) {
    let p = &shop.products[product as usize];
    buf.extend_from_slice(b"\"product\":");
    push_str(buf, &p.id);
    buf.extend_from_slice(b",\"category\":");
    push_str(buf, CATEGORIES[usize::from(p.category)].name);
}

fn properties(buf: &mut Vec<u8>, shop: &Shop, kind: &Kind) {
    match *kind {
        Kind::Visited { referrer } => {
            buf.extend_from_slice(b"\"referrer\":");
            push_str(buf, REFERRERS[usize::from(referrer)]);
        }
        Kind::Viewed { product } => {
            product_fields(buf, shop, product);
            buf.extend_from_slice(b",\"price\":");
            push_cents(buf, u64::from(shop.products[product as usize].price_cents));
        }
        Kind::Searched { category, words } => {
            buf.extend_from_slice(b"\"query\":\"");
            push_query(buf, category, words);
            buf.push(b'"');
        }
        Kind::AddedToCart { product, quantity } => {
            product_fields(buf, shop, product);
            buf.extend_from_slice(b",\"price\":");
            push_cents(buf, u64::from(shop.products[product as usize].price_cents));
            buf.extend_from_slice(b",\"quantity\":");
            push_u64(buf, u64::from(quantity));
        }
        Kind::RemovedFromCart { product, quantity } => {
            product_fields(buf, shop, product);
            buf.extend_from_slice(b",\"quantity\":");
            push_u64(buf, u64::from(quantity));
        }
        Kind::Purchased {
            product,
            quantity,
            cents,
            as_text,
        } => {
            product_fields(buf, shop, product);
            buf.extend_from_slice(b",\"amount\":");
            if as_text {
                buf.push(b'"');
                push_cents(buf, u64::from(cents));
                buf.push(b'"');
            } else {
                push_cents(buf, u64::from(cents));
            }
            buf.extend_from_slice(b",\"quantity\":");
            push_u64(buf, u64::from(quantity));
        }
        Kind::EmailOpened { campaign } | Kind::EmailClicked { campaign } => {
            buf.extend_from_slice(b"\"campaign\":");
            push_str(buf, &shop.campaigns[usize::from(campaign)].name);
        }
        Kind::Identify | Kind::Update { .. } => {}
    }
}

/// A free-text search about `category`, spelled out from the bits of `words`: optional colour and
/// qualifier, a noun of the category, an optional ending, now and then a typo.
fn push_query(buf: &mut Vec<u8>, category: u8, words: u64) {
    let start = buf.len();
    let bits = |shift: u32, n: u64| (words >> shift) % n;
    let mut space = false;
    let mut word = |buf: &mut Vec<u8>, w: &str| {
        if space {
            buf.push(b' ');
        }
        push_escaped(buf, w.as_bytes());
        space = true;
    };
    if bits(0, 4) == 0 {
        word(
            buf,
            SEARCH_COLORS[bits(2, SEARCH_COLORS.len() as u64) as usize],
        );
    }
    if bits(8, 4) == 0 {
        word(
            buf,
            SEARCH_ADJECTIVES[bits(10, SEARCH_ADJECTIVES.len() as u64) as usize],
        );
    }
    let nouns = CATEGORIES[usize::from(category)].nouns;
    word(buf, nouns[bits(16, nouns.len() as u64) as usize]);
    if bits(24, 5) == 0 {
        let suffix = SEARCH_SUFFIXES[bits(28, SEARCH_SUFFIXES.len() as u64) as usize];
        word(buf, suffix);
        if suffix == "size" {
            buf.push(b' ');
            push_u64(buf, 30 + bits(36, 17));
        }
    }
    if bits(44, 16) == 0 {
        // Swap two neighbouring letters, as hurried typists do (all words are ASCII).
        let len = buf.len() - start;
        if len >= 3 {
            let at = start + bits(48, (len - 1) as u64) as usize;
            buf.swap(at, at + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_varied_ascii_text() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000u64 {
            let mut b = Vec::new();
            push_query(&mut b, (i % 20) as u8, super::super::random::mix64(i));
            let q = String::from_utf8(b).unwrap();
            assert!(!q.is_empty() && q.is_ascii() && !q.starts_with(' ') && !q.ends_with(' '));
            seen.insert(q);
        }
        assert!(seen.len() > 2_000, "{} distinct queries", seen.len());
    }

    #[test]
    fn id_width_keeps_ids_sortable() {
        assert_eq!(id_width(0), 6);
        assert_eq!(id_width(200_000), 6);
        assert_eq!(id_width(1_000_000), 7);
    }
}
