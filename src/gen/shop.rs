//! The shop every customer of one run shares: categories, a product catalog with Zipf popularity,
//! email campaigns, the calendar's busy and quiet days, and the word lists behind traits and
//! searches. Built once per run from the seed's shop stream.

use super::random::{cumulative, mix64, Rand};
use super::render::civil_from_days;

/// Milliseconds in a day.
pub(crate) const DAY: i64 = 86_400_000;

/// Number of products in the catalog.
pub(crate) const PRODUCTS: usize = 1000;

/// Zipf exponent of product popularity.
const ZIPF: f64 = 0.95;

/// Global popularity rank (0 = most popular) of the product whose id is literally `X`.
const X_RANK: usize = 2;

/// One category: its name, how much traffic it draws, its median price, the tag that its fans
/// carry and the nouns shoppers type when searching it.
pub(crate) struct Category {
    pub(crate) name: &'static str,
    weight: f64,
    median_euros: f64,
    pub(crate) tag: &'static str,
    pub(crate) nouns: &'static [&'static str],
}

const fn cat(
    name: &'static str,
    weight: f64,
    median_euros: f64,
    tag: &'static str,
    nouns: &'static [&'static str],
) -> Category {
    Category {
        name,
        weight,
        median_euros,
        tag,
        nouns,
    }
}

/// The categories. `shoes` comes first: it holds product `X`.
pub(crate) const CATEGORIES: [Category; 20] = [
    cat(
        "shoes",
        14.0,
        79.0,
        "fashion",
        &["sneakers", "boots", "sandals", "running shoes", "loafers"],
    ),
    cat(
        "clothing",
        16.0,
        39.0,
        "fashion",
        &["jacket", "t-shirt", "jeans", "dress", "hoodie", "sweater"],
    ),
    cat(
        "kids",
        8.0,
        24.0,
        "kids",
        &[
            "kids jacket",
            "baby bodysuit",
            "kids shoes",
            "school bag",
            "rain suit",
        ],
    ),
    cat(
        "toys",
        6.0,
        29.0,
        "kids",
        &["lego", "puzzle", "plush toy", "board game", "doll"],
    ),
    cat(
        "outdoor",
        6.0,
        89.0,
        "outdoor",
        &[
            "tent",
            "sleeping bag",
            "hiking backpack",
            "trekking poles",
            "headlamp",
        ],
    ),
    cat(
        "sports",
        6.0,
        35.0,
        "sports",
        &[
            "yoga mat",
            "dumbbells",
            "football",
            "bike helmet",
            "running tights",
        ],
    ),
    cat(
        "electronics",
        9.0,
        69.0,
        "tech",
        &[
            "headphones",
            "phone case",
            "charger",
            "smartwatch",
            "speaker",
        ],
    ),
    cat(
        "home",
        7.0,
        29.0,
        "home",
        &["candle", "cushion", "lamp", "rug", "vase"],
    ),
    cat(
        "kitchen",
        5.0,
        35.0,
        "home",
        &["coffee maker", "knife set", "frying pan", "mug", "blender"],
    ),
    cat(
        "garden",
        3.0,
        19.0,
        "eco",
        &[
            "planter",
            "garden hose",
            "seeds",
            "garden gloves",
            "compost bin",
        ],
    ),
    cat(
        "beauty",
        6.0,
        22.0,
        "beauty",
        &["face cream", "lipstick", "shampoo", "perfume", "serum"],
    ),
    cat(
        "books",
        3.0,
        17.0,
        "books",
        &["novel", "cookbook", "notebook", "comic", "travel guide"],
    ),
    cat(
        "pets",
        4.0,
        18.0,
        "pets",
        &["dog food", "cat toy", "leash", "pet bed", "cat litter"],
    ),
    cat(
        "jewelry",
        2.0,
        49.0,
        "fashion",
        &["necklace", "ring", "earrings", "bracelet"],
    ),
    cat(
        "bags",
        3.0,
        55.0,
        "fashion",
        &["tote bag", "backpack", "wallet", "suitcase"],
    ),
    cat(
        "accessories",
        4.0,
        25.0,
        "fashion",
        &["sunglasses", "scarf", "belt", "cap", "gloves"],
    ),
    cat(
        "furniture",
        2.0,
        189.0,
        "home",
        &["chair", "bookshelf", "desk", "sofa", "bed frame"],
    ),
    cat(
        "food",
        3.0,
        9.0,
        "eco",
        &[
            "coffee beans",
            "dark chocolate",
            "green tea",
            "granola",
            "olive oil",
        ],
    ),
    cat(
        "health",
        2.0,
        19.0,
        "sports",
        &["vitamins", "protein powder", "first aid kit", "massage gun"],
    ),
    cat(
        "office",
        2.0,
        21.0,
        "tech",
        &[
            "pen set",
            "desk lamp",
            "planner",
            "monitor stand",
            "keyboard",
        ],
    ),
];

/// Words a search may start with.
pub(crate) const SEARCH_COLORS: [&str; 12] = [
    "black", "white", "red", "blue", "green", "grey", "beige", "pink", "navy", "brown", "yellow",
    "olive",
];
/// Qualifiers a search may carry.
pub(crate) const SEARCH_ADJECTIVES: [&str; 16] = [
    "cheap",
    "organic",
    "waterproof",
    "vegan",
    "wool",
    "leather",
    "small",
    "large",
    "wireless",
    "recycled",
    "warm",
    "light",
    "premium",
    "sale",
    "new",
    "best",
];
/// Endings a search may carry.
pub(crate) const SEARCH_SUFFIXES: [&str; 10] = [
    "for women",
    "for men",
    "for kids",
    "gift",
    "under 50",
    "on sale",
    "size",
    "2026",
    "reviews",
    "near me",
];

/// Extra tags that any customer may carry besides their categories' tags.
pub(crate) const TAGS: [&str; 10] = [
    "eco", "pets", "outdoor", "kids", "fashion", "tech", "home", "sports", "beauty", "books",
];

/// Loyalty tiers, lowest first.
pub(crate) const TIERS: [&str; 4] = ["Bronze", "Silver", "Gold", "Platinum"];

/// Devices with their shares.
pub(crate) const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
pub(crate) const DEVICE_WEIGHTS: [u32; 3] = [58, 34, 8];

/// Acquisition sources with their shares.
pub(crate) const SOURCES: [&str; 5] = ["facebook", "google", "email", "direct", "tiktok"];
pub(crate) const SOURCE_WEIGHTS: [u32; 5] = [22, 30, 12, 26, 10];

/// Session referrers (what brought a visit).
pub(crate) const REFERRERS: [&str; 6] = [
    "direct",
    "google",
    "facebook",
    "tiktok",
    "email",
    "instagram",
];
pub(crate) const REFERRER_EMAIL: u8 = 4;

/// A country with its share of customers and its cities (with their shares).
pub(crate) struct Country {
    pub(crate) code: &'static str,
    pub(crate) weight: u32,
    pub(crate) cities: &'static [&'static str],
    pub(crate) city_weights: &'static [u32],
}

/// The shop's countries: Nordic-centred, with a long tail.
pub(crate) const COUNTRIES: [Country; 12] = [
    Country {
        code: "FI",
        weight: 22,
        cities: &["Helsinki", "Espoo", "Tampere", "Turku", "Oulu"],
        city_weights: &[40, 20, 18, 12, 10],
    },
    Country {
        code: "SE",
        weight: 16,
        cities: &["Stockholm", "Göteborg", "Malmö", "Uppsala"],
        city_weights: &[45, 25, 20, 10],
    },
    Country {
        code: "NO",
        weight: 8,
        cities: &["Oslo", "Bergen", "Trondheim"],
        city_weights: &[55, 25, 20],
    },
    Country {
        code: "DK",
        weight: 7,
        cities: &["København", "Aarhus", "Odense"],
        city_weights: &[60, 25, 15],
    },
    Country {
        code: "DE",
        weight: 13,
        cities: &["Berlin", "Hamburg", "München", "Köln"],
        city_weights: &[35, 25, 25, 15],
    },
    Country {
        code: "FR",
        weight: 8,
        cities: &["Paris", "Lyon", "Marseille"],
        city_weights: &[60, 25, 15],
    },
    Country {
        code: "GB",
        weight: 10,
        cities: &["London", "Manchester", "Edinburgh"],
        city_weights: &[60, 25, 15],
    },
    Country {
        code: "US",
        weight: 7,
        cities: &["New York", "Seattle", "Austin", "Chicago"],
        city_weights: &[35, 25, 20, 20],
    },
    Country {
        code: "NL",
        weight: 3,
        cities: &["Amsterdam", "Utrecht"],
        city_weights: &[70, 30],
    },
    Country {
        code: "EE",
        weight: 2,
        cities: &["Tallinn", "Tartu"],
        city_weights: &[75, 25],
    },
    Country {
        code: "PL",
        weight: 2,
        cities: &["Warszawa", "Kraków"],
        city_weights: &[65, 35],
    },
    Country {
        code: "ES",
        weight: 2,
        cities: &["Madrid", "Barcelona"],
        city_weights: &[55, 45],
    },
];

/// First names for emails and the `first_name` trait.
pub(crate) const FIRST_NAMES: [&str; 32] = [
    "aino", "emma", "olivia", "sofia", "ella", "maja", "alice", "nora", "ida", "lea", "anna",
    "sara", "laura", "julia", "emilia", "helmi", "elias", "oliver", "leo", "noah", "eino", "lucas",
    "oskar", "liam", "hugo", "william", "johan", "mika", "matti", "jonas", "felix", "max",
];
/// Last names for emails.
pub(crate) const LAST_NAMES: [&str; 24] = [
    "virtanen",
    "korhonen",
    "nieminen",
    "andersson",
    "johansson",
    "karlsson",
    "hansen",
    "olsen",
    "nielsen",
    "jensen",
    "muller",
    "schmidt",
    "martin",
    "bernard",
    "smith",
    "jones",
    "brown",
    "lindqvist",
    "laine",
    "heikkinen",
    "berg",
    "dahl",
    "novak",
    "garcia",
];
/// Mail domains (reserved example domains: nothing here can reach a real inbox).
pub(crate) const MAIL_DOMAINS: [&str; 3] = ["example.com", "example.net", "example.org"];

/// One product of the catalog.
pub(crate) struct Product {
    pub(crate) id: String,
    pub(crate) category: u8,
    pub(crate) price_cents: u32,
}

/// Products of one category with their popularity.
pub(crate) struct CategoryProducts {
    pub(crate) products: Vec<u32>,
    pub(crate) cdf: Vec<f64>,
}

/// One email campaign: when it was sent and its name.
pub(crate) struct Campaign {
    pub(crate) sent: i64,
    pub(crate) name: String,
}

/// Everything shared by the customers of one run.
pub(crate) struct Shop {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) products: Vec<Product>,
    /// Cumulative global popularity by product index.
    pub(crate) product_cdf: Vec<f64>,
    pub(crate) by_category: Vec<CategoryProducts>,
    pub(crate) category_cdf: Vec<f64>,
    pub(crate) campaigns: Vec<Campaign>,
    /// Cumulative traffic weight of each day of the period (weekends, sales season).
    pub(crate) day_cdf: Vec<f64>,
    /// Cumulative traffic weight of each quarter hour of a UTC day.
    pub(crate) quarter_cdf: Vec<f64>,
    /// Key that makes message ids unique to this seed.
    pub(crate) message_key: u64,
    /// Key that makes anonymous ids unique to this seed.
    pub(crate) anon_key: u64,
    /// Percent of an identified customer's messages that also carry an `anonymousId` (one of
    /// its two devices'): `GenConfig::both_ids_percent`.
    pub(crate) both_ids_percent: u8,
}

impl Shop {
    /// Builds the shop of the period `[start, end)` from the seed's shop stream.
    pub(crate) fn new(key: &[u8; 32], start: i64, end: i64) -> Shop {
        let mut rng = Rand::shop(key);
        let message_key = rng.bits();
        let anon_key = rng.bits();

        // Category of each product, in proportion to category traffic.
        let category_cdf = cumulative(CATEGORIES.iter().map(|c| c.weight));
        let mut categories: Vec<u8> = (0..PRODUCTS)
            .map(|_| rng.pick(&category_cdf) as u8)
            .collect();
        // Popularity rank -> product index: a shuffle, so ids say nothing about popularity.
        let mut by_rank: Vec<u32> = (0..PRODUCTS as u32).collect();
        for i in (1..by_rank.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            by_rank.swap(i, j);
        }
        let x_index = by_rank[X_RANK] as usize;
        categories[x_index] = 0; // shoes
        let mut weight = vec![0.0; PRODUCTS];
        for (rank, &p) in by_rank.iter().enumerate() {
            weight[p as usize] = 1.0 / ((rank + 1) as f64).powf(ZIPF);
        }
        let products: Vec<Product> = (0..PRODUCTS)
            .map(|i| {
                let category = categories[i];
                let price_cents = if i == x_index {
                    5990
                } else {
                    charm_price(&mut rng, CATEGORIES[usize::from(category)].median_euros)
                };
                let id = if i == x_index {
                    "X".to_string()
                } else {
                    format!("p-{:04}", i + 1)
                };
                Product {
                    id,
                    category,
                    price_cents,
                }
            })
            .collect();
        let product_cdf = cumulative(weight.iter().copied());
        let by_category = (0..CATEGORIES.len())
            .map(|c| {
                let members: Vec<u32> = (0..PRODUCTS as u32)
                    .filter(|&p| usize::from(categories[p as usize]) == c)
                    .collect();
                let cdf = cumulative(members.iter().map(|&p| weight[p as usize]));
                CategoryProducts {
                    products: members,
                    cdf,
                }
            })
            .collect();

        Shop {
            start,
            end,
            products,
            product_cdf,
            by_category,
            category_cdf,
            campaigns: campaigns(start, end),
            day_cdf: cumulative(
                (0..(end - start + DAY - 1) / DAY).map(|d| day_weight(start + d * DAY)),
            ),
            quarter_cdf: cumulative((0..96).map(|q| HOUR_WEIGHTS[q / 4])),
            message_key,
            anon_key,
            both_ids_percent: 0,
        }
    }

    /// A product drawn by global popularity.
    pub(crate) fn popular_product(&self, rng: &mut Rand) -> u32 {
        rng.pick(&self.product_cdf) as u32
    }

    /// A product of `category` drawn by popularity; any product if the category is empty.
    pub(crate) fn product_in(&self, rng: &mut Rand, category: u8) -> u32 {
        let c = &self.by_category[usize::from(category)];
        if c.products.is_empty() {
            return self.popular_product(rng);
        }
        c.products[rng.pick(&c.cdf)]
    }

    /// A category drawn by traffic.
    pub(crate) fn popular_category(&self, rng: &mut Rand) -> u8 {
        rng.pick(&self.category_cdf) as u8
    }

    /// A random instant in `[from, to)` (`from < to`, both inside the period), following the
    /// shop's traffic over days and over the hours of a day.
    pub(crate) fn busy_instant(&self, rng: &mut Rand, from: i64, to: i64) -> i64 {
        let day_of = |ts: i64| ((ts - self.start) / DAY) as usize;
        let (first, last) = (day_of(from), day_of(to - 1));
        let lo = if first == 0 {
            0.0
        } else {
            self.day_cdf[first - 1]
        };
        let hi = self.day_cdf[last];
        for _ in 0..8 {
            let u = lo + rng.unit() * (hi - lo);
            let day = self.day_cdf.partition_point(|&c| c <= u).clamp(first, last);
            let quarter = rng.pick(&self.quarter_cdf) as i64;
            let ts = self.start + day as i64 * DAY + quarter * 900_000 + rng.below(900_000) as i64;
            if (from..to).contains(&ts) {
                return ts;
            }
        }
        rng.range(from, to)
    }

    /// An opaque, unique message id for message `seq` of customer `index`.
    pub(crate) fn message_id(&self, index: u64, seq: u64) -> u64 {
        mix64(((index << 24) | (seq & 0xff_ffff)) ^ self.message_key)
    }

    /// The unique opaque part of the anonymous id of customer `index`.
    pub(crate) fn anon_id(&self, index: u64) -> u64 {
        mix64(index ^ self.anon_key)
    }

    /// The anonymous id of device `device` (0 or 1) of identified customer `index`: never an
    /// anonymous visitor's (`mix64` is one-to-one, and these count down from the top).
    pub(crate) fn device_id(&self, index: u64, device: u64) -> u64 {
        self.anon_id(u64::MAX - 2 * index - device)
    }
}

/// Traffic by UTC hour: quiet nights, a lunch bump, busy evenings.
const HOUR_WEIGHTS: [f64; 24] = [
    1.2, 0.7, 0.4, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 3.5, 3.8, 4.2, 4.8, 4.5, 4.0, 4.0, 4.3, 5.0, 6.0,
    6.8, 7.0, 6.2, 4.5, 2.5,
];

/// Relative traffic of the day that starts at `day_start`: weekends busier, Black Friday week and
/// the weeks before Christmas busiest, early January sales, a summer dip.
fn day_weight(day_start: i64) -> f64 {
    let days = day_start.div_euclid(DAY);
    let (_, month, day) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7); // 0 = Monday (1970-01-01 was a Thursday)
    let mut w = match weekday {
        5 => 1.1,
        6 => 1.25,
        0 => 1.1,
        _ => 1.0,
    };
    w *= match (month, day) {
        (11, 22..=30) => 2.2,
        (12, 1..=20) => 1.6,
        (12, 24..=26) => 0.6,
        (1, 1..=10) => 1.3,
        (7, _) => 0.8,
        _ => 1.0,
    };
    w
}

/// A retail price around `median` euros, ending in .00, .50, .90 or .95.
fn charm_price(rng: &mut Rand, median: f64) -> u32 {
    let euros = rng.lognormal(median, 0.5).clamp(1.0, 5000.0) as u32;
    let cents = [0, 50, 90, 95][rng.below(4) as usize];
    euros.saturating_sub(1).max(1) * 100 + cents
}

/// Weekly newsletters, sent Thursdays at 07:00 UTC, named by theme and date.
fn campaigns(start: i64, end: i64) -> Vec<Campaign> {
    const THEMES: [&str; 6] = [
        "new-arrivals",
        "weekly-picks",
        "member-offers",
        "style-guide",
        "flash-sale",
        "back-in-stock",
    ];
    let first_day = start.div_euclid(DAY);
    let weekday = (first_day + 3).rem_euclid(7);
    let mut day = first_day + (3 - weekday).rem_euclid(7); // the first Thursday
    let mut out = Vec::new();
    loop {
        let sent = day * DAY + 7 * 3_600_000;
        if sent >= end {
            break;
        }
        if sent >= start {
            let (y, m, d) = civil_from_days(day);
            let theme = match (m, d) {
                (11, 20..=30) => "black-friday",
                (12, 1..=20) => "christmas-gifts",
                (1, _) => "winter-sale",
                (6..=7, _) => "summer-sale",
                _ => THEMES[(mix64(day as u64) % THEMES.len() as u64) as usize],
            };
            out.push(Campaign {
                sent,
                name: format!("{theme}-{y:04}-{m:02}-{d:02}"),
            });
        }
        day += 7;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Shop {
        let end = 1_767_225_600_000; // 2026-01-01
        Shop::new(&Rand::key(42), end - 365 * DAY, end)
    }

    #[test]
    fn catalog_has_product_x_among_the_most_popular_shoes() {
        let s = shop();
        assert_eq!(s.products.len(), PRODUCTS);
        let x: Vec<&Product> = s.products.iter().filter(|p| p.id == "X").collect();
        assert_eq!(x.len(), 1);
        assert_eq!(CATEGORIES[usize::from(x[0].category)].name, "shoes");
        assert!(s.by_category.iter().all(|c| !c.products.is_empty()));
        let mut rng = Rand::customer(&Rand::key(1), 0);
        let hits = (0..10_000)
            .filter(|_| s.products[s.popular_product(&mut rng) as usize].id == "X")
            .count();
        assert!(hits > 200, "X is popular: {hits}");
    }

    #[test]
    fn campaigns_are_weekly_thursdays_inside_the_period() {
        let s = shop();
        assert!((52..=53).contains(&s.campaigns.len()));
        for c in &s.campaigns {
            assert!(c.sent >= s.start && c.sent < s.end);
            assert_eq!((c.sent.div_euclid(DAY) + 3).rem_euclid(7), 3);
        }
        assert!(s
            .campaigns
            .iter()
            .any(|c| c.name.starts_with("black-friday-")));
    }

    #[test]
    fn busy_instants_stay_in_their_window() {
        let s = shop();
        let mut rng = Rand::customer(&Rand::key(1), 0);
        for _ in 0..10_000 {
            let from = rng.range(s.start, s.end - 1);
            let to = rng.range(from + 1, s.end);
            let ts = s.busy_instant(&mut rng, from, to);
            assert!((from..to).contains(&ts));
        }
    }
}
