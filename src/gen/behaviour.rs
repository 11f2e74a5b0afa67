//! What one customer does: a profile (for identified customers) and a time-ordered plan of
//! messages, drawn from the customer's own random stream.
//!
//! The model, in brief:
//! - 10% of ids are anonymous visitors: a short burst of sessions, browsing and the odd cart, no
//!   profile, no purchases, no email.
//! - Identified customers signed up before the period (a profile sync at its start) or during it
//!   (more of them recently). Engagement (sessions a day) is log-normal, so most customers are light
//!   and a few are heavy; tier follows engagement loosely. Many customers churn (stop visiting)
//!   after an exponential lifetime, which makes lapsed buyers; the rest stay until the end.
//! - A session is a visit, perhaps a search, a few product views (mostly in a favourite
//!   category), carts at about 8% of views, removals, and a purchase of the cart in about 30% of the
//!   sessions that have one.
//! - Newsletter subscribers get a weekly campaign; some open it, a few click, and a click starts a
//!   session. Some customers change tier or unsubscribe later (a second `identify`).
//! - A few active customers leave a cart in the last day and a half (cart abandoners).

use super::random::Rand;
use super::shop::{
    Shop, CATEGORIES, COUNTRIES, DAY, DEVICE_WEIGHTS, FIRST_NAMES, LAST_NAMES, MAIL_DOMAINS,
    REFERRER_EMAIL, SOURCES, SOURCE_WEIGHTS, TAGS,
};

/// Share of ids that are anonymous visitors.
const ANONYMOUS_SHARE: f64 = 0.10;
/// Median sessions a day of an identified customer while active.
const RATE_MEDIAN: f64 = 0.023;
/// Log-normal shape of engagement: the heavy tail.
const RATE_SIGMA: f64 = 1.25;
/// Most sessions a day anyone has.
const RATE_MAX: f64 = 5.0;
/// Most sessions one customer has in a run (keeps the heaviest customers to a few thousand events).
const SESSIONS_MAX: u64 = 1500;
/// Chance that a viewed product goes to the cart.
const CART_RATE: f64 = 0.08;
/// Chance that a session with a cart ends in a purchase.
const BUY_RATE: f64 = 0.30;
/// Mean active lifetime in days of customers who churn.
const CHURN_MEAN_DAYS: f64 = 150.0;
const HOUR: i64 = 3_600_000;
const SECOND: i64 = 1000;

/// One planned message of a customer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned {
    pub(crate) ts: i64,
    pub(crate) kind: Kind,
}

/// What a planned message says.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// The full profile, at signup (or at the start of the period for older customers).
    Identify,
    /// A later change of some traits.
    Update {
        tier: Option<u8>,
        newsletter: Option<bool>,
    },
    Visited {
        referrer: u8,
    },
    Viewed {
        product: u32,
    },
    Searched {
        category: u8,
        words: u64,
    },
    AddedToCart {
        product: u32,
        quantity: u8,
    },
    RemovedFromCart {
        product: u32,
        quantity: u8,
    },
    Purchased {
        product: u32,
        quantity: u8,
        cents: u32,
        /// The amount is sent as a JSON string (`"19.90"`), as some broken integrations do.
        as_text: bool,
    },
    EmailOpened {
        campaign: u16,
    },
    EmailClicked {
        campaign: u16,
    },
}

/// The profile of an identified customer.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    pub(crate) tier: u8,
    pub(crate) country: u8,
    pub(crate) city: Option<u8>,
    pub(crate) age: Option<u8>,
    pub(crate) first_name: u8,
    pub(crate) email: Option<(u8, u8)>, // last name, domain
    pub(crate) tags: Vec<u8>,
    pub(crate) signup: i64,
    pub(crate) device: u8,
    pub(crate) source: u8,
    pub(crate) newsletter: bool,
}

/// A planned session start.
#[derive(Clone, Copy)]
struct SessionStart {
    ts: i64,
    referrer: u8,
    abandon: bool,
}

/// How a customer shops: favourite categories and propensities.
struct Habits {
    favourites: [u8; 3],
    n_favourites: usize,
    cart: f64,
    buy: f64,
    anonymous: bool,
}

/// Plans customer `index`: fills `plan` with its messages in time order and returns its profile
/// (`None` for an anonymous visitor).
pub(crate) fn plan_customer(
    shop: &Shop,
    rng: &mut Rand,
    plan: &mut Vec<Planned>,
) -> Option<Profile> {
    plan.clear();
    if rng.chance(ANONYMOUS_SHARE) {
        plan_anonymous(shop, rng, plan);
        None
    } else {
        Some(plan_identified(shop, rng, plan))
    }
}

fn favourites(shop: &Shop, rng: &mut Rand) -> ([u8; 3], usize) {
    let mut fav = [0u8; 3];
    let n = 1 + rng.weighted(&[45, 35, 20]);
    let mut count = 0;
    for _ in 0..n {
        let c = shop.popular_category(rng);
        if !fav[..count].contains(&c) {
            fav[count] = c;
            count += 1;
        }
    }
    (fav, count)
}

fn plan_anonymous(shop: &Shop, rng: &mut Rand, plan: &mut Vec<Planned>) {
    let (favourites, n_favourites) = favourites(shop, rng);
    let habits = Habits {
        favourites,
        n_favourites,
        cart: 0.6,
        buy: 0.0,
        anonymous: true,
    };
    let first = shop.busy_instant(rng, shop.start, shop.end);
    let window_end = (first + HOUR + rng.exp(6.0 * DAY as f64) as i64).min(shop.end);
    let mean_extra = rng.lognormal(1.2, 0.8);
    let extra = rng.poisson(mean_extra).min(60);
    let referrer = pick_referrer(rng, None);
    let mut starts = vec![SessionStart {
        ts: first,
        referrer,
        abandon: false,
    }];
    if first + SECOND < window_end {
        for _ in 0..extra {
            let ts = shop.busy_instant(rng, first + SECOND, window_end);
            let referrer = pick_referrer(rng, Some(referrer));
            starts.push(SessionStart {
                ts,
                referrer,
                abandon: false,
            });
        }
    }
    run_sessions(shop, rng, &habits, &mut starts, first - 30 * SECOND, plan);
}

fn plan_identified(shop: &Shop, rng: &mut Rand, plan: &mut Vec<Planned>) -> Profile {
    let (start, end) = (shop.start, shop.end);
    let period = end - start;
    let engagement = rng.normal();
    let rate = (RATE_MEDIAN * (RATE_SIGMA * engagement).exp()).min(RATE_MAX);

    // Signup: before the period for about a third, otherwise in it, more of them recently.
    let signup = if rng.chance(0.35) {
        (start - 1 - rng.below(3 * 365 * DAY as u64) as i64).max(0)
    } else {
        start + ((period as f64) * rng.unit().powf(0.8)) as i64
    }
    .min(end - 1);
    let identified_at = if signup >= start {
        signup
    } else {
        start + rng.below((6 * HOUR).min(period) as u64) as i64
    };
    let churns = rng.chance(0.55 - 0.1 * engagement.clamp(-1.5, 1.5));
    let active_to = if churns {
        (identified_at + rng.exp(CHURN_MEAN_DAYS * DAY as f64) as i64).min(end)
    } else {
        end
    };

    // Profile.
    let score = 0.6 * engagement + 0.8 * rng.normal();
    let tier = match score {
        s if s > 1.75 => 3,
        s if s > 1.0 => 2,
        s if s > 0.13 => 1,
        _ => 0,
    };
    let country = rng.weighted(&COUNTRIES.map(|c| c.weight)) as u8;
    let city = rng
        .chance(0.6)
        .then(|| rng.weighted(COUNTRIES[usize::from(country)].city_weights) as u8);
    let age = rng
        .chance(0.85)
        .then(|| (38.0 + 12.0 * rng.normal()).round().clamp(16.0, 85.0) as u8);
    let first_name = rng.below(FIRST_NAMES.len() as u64) as u8;
    let email = rng.chance(0.92).then(|| {
        (
            rng.below(LAST_NAMES.len() as u64) as u8,
            rng.below(MAIL_DOMAINS.len() as u64) as u8,
        )
    });
    let newsletter = email.is_some() && rng.chance(0.65);
    let device = rng.weighted(&DEVICE_WEIGHTS) as u8;
    let source = rng.weighted(&SOURCE_WEIGHTS) as u8;
    let (favourites, n_favourites) = favourites(shop, rng);
    let tags = pick_tags(rng, &favourites[..n_favourites]);
    let profile = Profile {
        tier,
        country,
        city,
        age,
        first_name,
        email,
        tags,
        signup,
        device,
        source,
        newsletter,
    };
    let tier_factor = [0.85, 1.0, 1.2, 1.4][usize::from(tier)];
    let habits = Habits {
        favourites,
        n_favourites,
        cart: rng.lognormal(1.0, 0.35),
        buy: rng.lognormal(1.0, 0.35) * tier_factor,
        anonymous: false,
    };

    // Later profile changes: a new tier, an unsubscription.
    let mut changes: Vec<Planned> = Vec::new();
    if identified_at + 1 < end && rng.chance(0.12) {
        let up = tier < 3 && (tier == 0 || rng.chance(0.75));
        let new_tier = if up { tier + 1 } else { tier - 1 };
        changes.push(Planned {
            ts: rng.range(identified_at + 1, end),
            kind: Kind::Update {
                tier: Some(new_tier),
                newsletter: None,
            },
        });
    }
    let mut unsubscribed_at = end;
    if newsletter && identified_at + 1 < end && rng.chance(0.07) {
        unsubscribed_at = rng.range(identified_at + 1, end);
        changes.push(Planned {
            ts: unsubscribed_at,
            kind: Kind::Update {
                tier: None,
                newsletter: Some(false),
            },
        });
    }

    // Sessions.
    let mut starts: Vec<SessionStart> = Vec::new();
    let first_session = identified_at + SECOND;
    if first_session < active_to {
        let days = (active_to - first_session) as f64 / DAY as f64;
        let n = rng.poisson(rate * days).min(SESSIONS_MAX);
        for _ in 0..n {
            starts.push(SessionStart {
                ts: shop.busy_instant(rng, first_session, active_to),
                referrer: pick_referrer(rng, Some(source_referrer(source))),
                abandon: false,
            });
        }
    }
    if active_to == end && rng.chance(0.025) {
        let ts = end - rng.range(HOUR, 36 * HOUR);
        if ts > first_session {
            starts.push(SessionStart {
                ts,
                referrer: pick_referrer(rng, Some(source_referrer(source))),
                abandon: true,
            });
        }
    }

    // Email: opens, clicks, and the sessions that clicks start.
    let mut emails: Vec<Planned> = Vec::new();
    if newsletter {
        let open_rate = 0.05 + 0.4 * rng.unit();
        let click_rate = 0.08 + 0.25 * rng.unit();
        for (i, c) in shop.campaigns.iter().enumerate() {
            if c.sent <= identified_at || c.sent >= unsubscribed_at {
                continue;
            }
            let p = if c.sent < active_to {
                open_rate
            } else {
                open_rate * 0.25
            };
            if !rng.chance(p) {
                continue;
            }
            let opened = c.sent + rng.delay_ms(30 * SECOND, 7.0 * HOUR as f64);
            if opened >= end {
                continue;
            }
            emails.push(Planned {
                ts: opened,
                kind: Kind::EmailOpened { campaign: i as u16 },
            });
            if rng.chance(click_rate) {
                let clicked = opened + rng.delay_ms(2 * SECOND, 40_000.0);
                if clicked < end {
                    emails.push(Planned {
                        ts: clicked,
                        kind: Kind::EmailClicked { campaign: i as u16 },
                    });
                    starts.push(SessionStart {
                        ts: clicked + rng.range(SECOND, 10 * SECOND),
                        referrer: REFERRER_EMAIL,
                        abandon: false,
                    });
                }
            }
        }
    }

    plan.push(Planned {
        ts: identified_at,
        kind: Kind::Identify,
    });
    run_sessions(shop, rng, &habits, &mut starts, identified_at, plan);
    plan.extend_from_slice(&changes);
    plan.extend_from_slice(&emails);
    // Stable: the identify (earliest) stays first; equal instants keep a fixed order.
    plan.sort_by_key(|p| p.ts);
    profile
}

/// The referrer that matches an acquisition source.
fn source_referrer(source: u8) -> u8 {
    match SOURCES[usize::from(source)] {
        "google" => 1,
        "facebook" => 2,
        "tiktok" => 3,
        "email" => REFERRER_EMAIL,
        _ => 0,
    }
}

/// A session's referrer: often the customer's usual one, otherwise by overall traffic.
fn pick_referrer(rng: &mut Rand, usual: Option<u8>) -> u8 {
    match usual {
        Some(r) if rng.chance(0.5) => r,
        _ => rng.weighted(&[35, 30, 12, 6, 10, 7]) as u8,
    }
}

/// 0 to 3 distinct tags, mostly those of the favourite categories.
fn pick_tags(rng: &mut Rand, favourites: &[u8]) -> Vec<u8> {
    let n = rng.weighted(&[20, 40, 28, 12]);
    let mut tags: Vec<u8> = Vec::with_capacity(n);
    for i in 0..n * 2 {
        if tags.len() == n {
            break;
        }
        let tag = if i < favourites.len() && rng.chance(0.8) {
            let name = CATEGORIES[usize::from(favourites[i])].tag;
            TAGS.iter().position(|&t| t == name).unwrap_or(0) as u8
        } else {
            rng.below(TAGS.len() as u64) as u8
        };
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// Runs the planned sessions in time order, each starting after the previous one ended, and
/// appends their events to `plan`. Events at or after the end of the period are dropped.
fn run_sessions(
    shop: &Shop,
    rng: &mut Rand,
    habits: &Habits,
    starts: &mut [SessionStart],
    after: i64,
    plan: &mut Vec<Planned>,
) {
    starts.sort_by_key(|s| s.ts);
    let mut last = after;
    for s in starts.iter() {
        let ts = s.ts.max(last + 30 * SECOND);
        if ts >= shop.end {
            break;
        }
        let mut session = Session { shop, plan, ts };
        // A session cut off by the end of the period simply stops there.
        let _ = session.run(rng, habits, s.referrer, s.abandon);
        last = session.ts;
    }
}

/// One session being played out.
struct Session<'a> {
    shop: &'a Shop,
    plan: &'a mut Vec<Planned>,
    ts: i64,
}

impl Session<'_> {
    /// Moves the clock on by `delay` and records `kind` then; `None` once past the period's end.
    fn after(&mut self, delay: i64, kind: Kind) -> Option<()> {
        let ts = self.ts + delay.max(1);
        if ts >= self.shop.end {
            return None;
        }
        self.ts = ts;
        self.plan.push(Planned { ts, kind });
        Some(())
    }

    /// A search in `category`, at least 3 s and on average `mean_ms` after the last event.
    fn search(&mut self, rng: &mut Rand, category: u8, mean_ms: f64) -> Option<()> {
        let words = rng.bits();
        let delay = rng.delay_ms(3 * SECOND, mean_ms);
        self.after(delay, Kind::Searched { category, words })
    }

    fn run(&mut self, rng: &mut Rand, habits: &Habits, referrer: u8, abandon: bool) -> Option<()> {
        let shop = self.shop;
        self.ts -= 1;
        self.after(1, Kind::Visited { referrer })?;
        let focus = if habits.n_favourites > 0 && rng.chance(0.65) {
            habits.favourites[rng.below(habits.n_favourites as u64) as usize]
        } else {
            shop.popular_category(rng)
        };
        if rng.chance(0.3) {
            self.search(rng, focus, 12_000.0)?;
        }
        let views = 1 + rng.geometric(2.4).min(80);
        let mut cart: Vec<(u32, u8)> = Vec::new();
        for i in 0..views {
            let product = if rng.chance(0.7) {
                shop.product_in(rng, focus)
            } else {
                shop.popular_product(rng)
            };
            let delay = rng.delay_ms(4 * SECOND, 40_000.0);
            self.after(delay, Kind::Viewed { product })?;
            let p_cart = if abandon && i == 0 {
                1.0
            } else {
                CART_RATE * habits.cart
            };
            if rng.chance(p_cart) {
                let quantity = 1 + rng.weighted(&[85, 11, 4]) as u8;
                let delay = rng.delay_ms(2 * SECOND, 20_000.0);
                self.after(delay, Kind::AddedToCart { product, quantity })?;
                cart.push((product, quantity));
            }
            if rng.chance(0.05) {
                self.search(rng, focus, 15_000.0)?;
            }
        }
        if cart.len() >= 2 && rng.chance(0.2) {
            let (product, quantity) = cart.remove(rng.below(cart.len() as u64) as usize);
            let delay = rng.delay_ms(2 * SECOND, 30_000.0);
            self.after(delay, Kind::RemovedFromCart { product, quantity })?;
        }
        if !cart.is_empty() && !abandon && !habits.anonymous && rng.chance(BUY_RATE * habits.buy) {
            let mut delay = rng.delay_ms(20 * SECOND, 90_000.0);
            for &(product, quantity) in &cart {
                let price = u64::from(shop.products[product as usize].price_cents);
                let mut cents = price * u64::from(quantity);
                if rng.chance(0.12) {
                    let off = [10, 20, 30][rng.below(3) as usize];
                    cents = cents * (100 - off) / 100;
                }
                let as_text = rng.chance(0.005);
                let kind = Kind::Purchased {
                    product,
                    quantity,
                    cents: cents.min(u64::from(u32::MAX)) as u32,
                    as_text,
                };
                self.after(delay, kind)?;
                delay = 1;
            }
        }
        Some(())
    }
}
