//! The funnel: how many customers get through each step of a journey within a time limit.
//!
//! A customer reaches step k when they have events e1 < e2 < ... < ek (strictly later each, to
//! the millisecond), ei matching step i, with e1 inside the window and ek − e1 ≤ the limit; every
//! event counts only up to *now*. Reaching step k implies reaching every step before it.
//!
//! Counting: step 1 is answered by bitmaps alone (the step planned with the window, as a rule
//! condition, intersected with the audience). Only customers who also did step 2 somewhere in the
//! span that can matter (the window's start to its end plus the limit) can go further; those are
//! read, each once, and their matching events walked: for each start e1 in the window, in time
//! order, the earliest e2 after it, then the earliest e3 after that, and so on. Taking the
//! earliest event at each step never loses a longer path, so this finds the deepest step a
//! start reaches; the customer's journey is the earliest start that reaches their deepest step.
//! The median time from the previous step is taken over those journeys.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use roaring::RoaringBitmap;

use crate::error::{Error, Result};
use crate::model::time::Timestamp;
use crate::query::ReadState;
use crate::rules::{
    self, EventCondition, Expr, ExprKind, Rule, Span, TimeKind, TimePoint, Window, WindowKind,
};
use crate::storage::view;
use crate::storage::Store;

use super::super::check::{self, Warning};
use super::super::columns::for_each_step_journey;
use super::super::customer::step_mask;
use super::super::exec::journeys_by_columns_from as columns_from;
use super::super::plan::EventNode;
use super::super::run::event_condition;
use super::super::values::parse_window;
use super::super::values::top::members;
use super::super::PreparedRule;
use super::{optional_f64, parse_within, percent, ratio};

/// The most steps a funnel may have.
pub const MAX_STEPS: usize = 32;

/// What a funnel is asked.
#[derive(Debug, Clone)]
pub struct FunnelRequest {
    /// Each step an event condition as rules write it, without a window or a frequency:
    /// `visited`, `viewed product X`, `purchased where amount >= 50`.
    pub steps: Vec<String>,
    /// The longest time from the first step's event to the last reached step's, as rules write
    /// a length after `in last` (`7 days`).
    pub within: String,
    /// The window of the first step's event (`in last 30 days`, ...); `None` is `ever`.
    pub window: Option<String>,
    /// A rule: only its members at *now* are counted; `None` is everyone.
    pub audience: Option<String>,
}

impl FunnelRequest {
    pub fn new(steps: &[&str], within: &str) -> FunnelRequest {
        FunnelRequest {
            steps: steps.iter().map(|s| (*s).to_owned()).collect(),
            within: within.to_owned(),
            window: None,
            audience: None,
        }
    }
}

/// One step's row.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelStep {
    /// The step as written.
    pub step: String,
    /// Customers who reached this step.
    pub customers: u64,
    /// `customers` over the previous step's; `None` for the first step or after a step nobody
    /// reached.
    pub from_previous: Option<f64>,
    /// `customers` over the first step's; `None` when nobody reached the first.
    pub from_first: Option<f64>,
    /// The median, over the customers who reached this step, of the milliseconds from their
    /// journey's previous step to this one (the mean of the two middle values for an even
    /// number); `None` for the first step or when nobody reached it.
    pub median_ms: Option<f64>,
}

/// The answer of a funnel.
#[derive(Debug, Clone)]
pub struct Funnel {
    pub steps: Vec<FunnelStep>,
    /// Customers counted: the audience's members (everyone known without one).
    pub audience: u64,
    /// The audience rule's warnings, then each step's.
    pub warnings: Vec<Warning>,
    pub now: Timestamp,
    pub elapsed: Duration,
}

impl Funnel {
    /// `{"steps": [{"step", "customers", "from_previous", "from_first", "median_ms"}, ...]}`,
    /// with `"warnings": [text, ...]` when there are any.
    pub fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "step": s.step,
                    "customers": s.customers,
                    "from_previous": s.from_previous,
                    "from_first": s.from_first,
                    "median_ms": s.median_ms,
                })
            })
            .collect();
        let mut out = serde_json::json!({ "steps": steps });
        if !self.warnings.is_empty() {
            out["warnings"] = self.warnings.iter().map(|w| w.to_string()).collect();
        }
        out
    }
}

impl std::fmt::Display for Funnel {
    /// The table `audiencedb funnel` prints (see [`table`]).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&table(&self.steps))
    }
}

/// The table of a funnel, as the CLI and the REPL print it: a row per step (customers, the
/// conversions in percent, the median time from the previous step).
pub fn table(steps: &[FunnelStep]) -> String {
    use std::fmt::Write;
    let width = steps
        .iter()
        .map(|s| s.step.chars().count())
        .max()
        .unwrap_or(0)
        .max("step".len());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>9}  {:>13}  {:>10}  {:>12}",
        "step", "customers", "from previous", "from first", "median time"
    );
    for s in steps {
        let _ = writeln!(
            out,
            "{:<width$}  {:>9}  {:>13}  {:>10}  {:>12}",
            s.step,
            s.customers,
            percent(s.from_previous),
            percent(s.from_first),
            s.median_ms.map_or("-".to_owned(), human_ms),
        );
    }
    out
}

/// The steps of a funnel's JSON (see [`Funnel::to_json`]) read back, as the REPL reads the
/// socket's `FUNNEL` answer; `None` for JSON of another shape.
pub fn steps_from_json(v: &serde_json::Value) -> Option<Vec<FunnelStep>> {
    v["steps"]
        .as_array()?
        .iter()
        .map(|s| {
            Some(FunnelStep {
                step: s["step"].as_str()?.to_owned(),
                customers: s["customers"].as_u64()?,
                from_previous: optional_f64(s, "from_previous")?,
                from_first: optional_f64(s, "from_first")?,
                median_ms: optional_f64(s, "median_ms")?,
            })
        })
        .collect()
}

/// A length of time for people: `1h 05m`, `3d 4h`, `12.5 s`.
fn human_ms(ms: f64) -> String {
    let s = ms / 1000.0;
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{}m {:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86_400.0 {
        format!(
            "{}h {:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else {
        format!(
            "{}d {}h",
            (s / 86_400.0) as u64,
            ((s % 86_400.0) / 3600.0) as u64
        )
    }
}

/// A step: the event condition as written, checked to have no window or frequency.
fn parse_step(i: usize, text: &str) -> Result<EventCondition> {
    let rule = rules::parse(text).map_err(|e| {
        Error::InvalidInput(format!(
            "funnel step {} ({text:?}) is not an event condition: {}",
            i + 1,
            e.message()
        ))
    })?;
    let ExprKind::Event(cond) = rule.expr.kind else {
        return Err(Error::InvalidInput(format!(
            "funnel step {} ({text:?}) is not an event condition: write an event, with a \
             property value or a `where` if needed, e.g. `viewed product X` or `purchased where \
             amount >= 50`",
            i + 1
        )));
    };
    if cond.window.is_some() || cond.frequency.is_some() {
        return Err(Error::InvalidInput(format!(
            "funnel step {} ({text:?}) has a {}: a step is one event, and the funnel's \
             --window (first step) and --within (all steps) say when",
            i + 1,
            if cond.window.is_some() {
                "window"
            } else {
                "frequency"
            }
        )));
    }
    Ok(*cond)
}

/// `cond` with `window` (`None`: `ever`), as a rule of its own.
fn with_window(cond: &EventCondition, window: Option<Window>) -> Rule {
    let mut cond = cond.clone();
    cond.window = window;
    Rule {
        expr: Expr {
            kind: ExprKind::Event(Box::new(cond)),
            span: Span::default(),
        },
    }
}

/// The window `from..=to` (inclusive milliseconds).
fn between(from: Timestamp, to: Timestamp) -> Window {
    let point = |t| TimePoint {
        kind: TimeKind::DateTime(t),
        span: Span::default(),
    };
    Window {
        kind: WindowKind::Between(point(from), point(to)),
        span: Span::default(),
    }
}

/// One planned step: its event node (name, filter, window at *now*) and the customers who did
/// it in that window, exactly.
struct Planned {
    node: EventNode,
    who: RoaringBitmap,
}

fn plan_step(state: &ReadState, store: &Store, rule: &Rule, now: Timestamp) -> Result<Planned> {
    let (node, who) = event_condition(state, store, rule, now)?;
    Ok(Planned { node, who })
}

pub(crate) fn funnel(
    state: &ReadState,
    store: &Store,
    req: &FunnelRequest,
    now: Timestamp,
) -> Result<Funnel> {
    let started = Instant::now();
    if req.steps.len() < 2 || req.steps.len() > MAX_STEPS {
        return Err(Error::InvalidInput(format!(
            "a funnel has 2 to {MAX_STEPS} steps, not {}",
            req.steps.len()
        )));
    }
    let within = parse_within(&req.within)?;
    let window = req.window.as_deref().map(parse_window).transpose()?;
    let conds: Vec<EventCondition> = req
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| parse_step(i, s))
        .collect::<Result<_>>()?;
    let audience = req.audience.as_deref().map(PreparedRule::new).transpose()?;

    let mut warnings = Vec::new();
    let members = match &audience {
        Some(rule) => {
            let (m, w) = members(state, store, rule, now)?;
            warnings.extend(w);
            m
        }
        None => state.indexes.everyone.clone(),
    };
    // Step 1 in the window; the later steps anywhere from the window's start to its end plus
    // the limit (capped at *now* by planning).
    let first_rule = with_window(&conds[0], window);
    let first = plan_step(state, store, &first_rule, now)?;
    let (w_from, w_to) = (first.node.from, first.node.to);
    let reach_end = w_to.saturating_add(within).min(now);
    let mut rules = vec![first_rule];
    let mut steps = vec![first];
    for cond in &conds[1..] {
        let rule = with_window(cond, Some(between(w_from, reach_end)));
        steps.push(plan_step(state, store, &rule, now)?);
        rules.push(rule);
    }
    for (i, rule) in rules.iter().enumerate() {
        warnings.extend(
            check::warnings(rule, &state.catalog, &state.indexes, &state.definitions)
                .into_iter()
                .map(|w| Warning {
                    message: format!("step {}: {}", i + 1, w.message),
                    ..w
                }),
        );
    }

    let k = steps.len();
    let mut reached = vec![0u64; k];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); k];
    let at_first = &members & &steps[0].who;
    reached[0] = at_first.len();
    let walked = &at_first & &steps[1].who;
    if !walked.is_empty() && !steps[0].node.window_is_empty() {
        let nodes: Vec<&EventNode> = steps.iter().map(|s| &s.node).collect();
        let span = Reach {
            from: w_from,
            first_to: w_to,
            to: reach_end,
            within,
        };
        // Many journeys: from the event columns where they are built (each customer's step
        // events gathered from them); otherwise each customer's stored events are read.
        let from_columns = if walked.len() >= columns_from() {
            for_each_step_journey(
                store,
                &state.indexes,
                &nodes,
                None,
                &walked,
                || Tally::new(k),
                |t, one| {
                    t.walker.matched.clear();
                    t.walker.matched.extend(one.iter().map(|h| (h.ts, h.mask)));
                    let depth = t.walker.walk(k, &span);
                    t.add(depth);
                },
            )?
        } else {
            None
        };
        let parts: Vec<Tally> = match from_columns {
            Some(parts) => parts,
            None => {
                let ids: Vec<u32> = walked.iter().collect();
                let chunk = super::super::chunk_len(ids.len());
                ids.par_chunks(chunk)
                    .map(|custs| {
                        let mut t = Tally::new(k);
                        let (mut bodies, mut blocks) = (Vec::new(), Vec::new());
                        for &cust in custs {
                            bodies.clear();
                            blocks.clear();
                            store.event_bodies_from(cust, w_from, &mut bodies, &mut blocks)?;
                            let depth = t.walker.journey(&nodes, &bodies, &blocks, &span)?;
                            t.add(depth);
                        }
                        Ok(t)
                    })
                    .collect::<Result<_>>()?
            }
        };
        for part in parts {
            for (all, some) in reached.iter_mut().zip(&part.counts).skip(1) {
                *all += some;
            }
            for (all, mut some) in gaps.iter_mut().zip(part.gaps) {
                all.append(&mut some);
            }
        }
    }

    let medians: Vec<Option<f64>> = gaps.par_iter_mut().map(|g| median(g)).collect();
    let rows = (0..k)
        .map(|s| FunnelStep {
            step: req.steps[s].clone(),
            customers: reached[s],
            from_previous: if s == 0 {
                None
            } else {
                ratio(reached[s], reached[s - 1])
            },
            from_first: ratio(reached[s], reached[0]),
            median_ms: if s == 0 { None } else { medians[s] },
        })
        .collect();
    Ok(Funnel {
        steps: rows,
        audience: members.len(),
        warnings,
        now,
        elapsed: started.elapsed(),
    })
}

/// The median of the values (the mean of the two middle ones for an even count); `None` for
/// none.
pub(crate) fn median(values: &mut [i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    // The middle value put in place (the smaller ones before it) rather than a whole sort.
    let n = values.len();
    let (below, &mut middle, _) = values.select_nth_unstable(n / 2);
    Some(if n % 2 == 1 {
        middle as f64
    } else {
        let before = below.iter().copied().max().unwrap_or(middle);
        (before as f64 + middle as f64) / 2.0
    })
}

/// The times a journey may use: a first step in `from..=first_to`, every step up to `to`, the
/// last within `within` of the first.
struct Reach {
    from: Timestamp,
    first_to: Timestamp,
    to: Timestamp,
    within: i64,
}

/// One task's share of the journeys: customers reaching each step, and the times between steps.
struct Tally {
    walker: Walker,
    counts: Vec<u64>,
    gaps: Vec<Vec<i64>>,
}

impl Tally {
    fn new(k: usize) -> Tally {
        Tally {
            walker: Walker::new(k),
            counts: vec![0; k],
            gaps: vec![Vec::new(); k],
        }
    }

    /// Counts the journey the walker just walked, `depth` steps deep.
    fn add(&mut self, depth: usize) {
        for s in 1..depth {
            self.counts[s] += 1;
            self.gaps[s].push(self.walker.best[s] - self.walker.best[s - 1]);
        }
    }
}

/// Walks one customer's events at a time, reusing its buffers.
struct Walker {
    /// The customer's events that match some step: time and a bit per step matched.
    matched: Vec<(Timestamp, u32)>,
    /// The journey being tried, one time per step reached.
    path: Vec<Timestamp>,
    /// The customer's journey: the earliest start reaching their deepest step.
    best: Vec<Timestamp>,
}

impl Walker {
    fn new(k: usize) -> Walker {
        Walker {
            matched: Vec::new(),
            path: vec![0; k],
            best: vec![0; k],
        }
    }

    /// The deepest step (1-based count of steps) the customer reaches; their journey's times
    /// are left in `best`.
    fn journey(
        &mut self,
        steps: &[&EventNode],
        bodies: &[u8],
        blocks: &[view::BlockSpan],
        span: &Reach,
    ) -> Result<usize> {
        self.matched.clear();
        view::for_each_event_between(bodies, blocks, span.from, span.to, |e| {
            // Each step's own range holds it: the first step's window, the later steps' span.
            let mask = step_mask(steps.iter().copied(), &e)?;
            if mask != 0 {
                self.matched.push((e.ts, mask));
            }
            Ok(())
        })?;
        Ok(self.walk(steps.len(), span))
    }

    /// The deepest step the customer reaches over `matched` (their events that match some of
    /// the `k` steps, in time order; events at the same millisecond in any order); their
    /// journey's times are left in `best`.
    fn walk(&mut self, k: usize, span: &Reach) -> usize {
        let mut best_depth = 0;
        for s in 0..self.matched.len() {
            let (t1, mask) = self.matched[s];
            if t1 > span.first_to {
                break;
            }
            if mask & 1 == 0 {
                continue;
            }
            let limit = t1.saturating_add(span.within);
            self.path[0] = t1;
            let mut depth = 1;
            let mut pos = s;
            while depth < k {
                let bit = 1u32 << depth;
                let prev = self.path[depth - 1];
                let next = self.matched[pos + 1..]
                    .iter()
                    .take_while(|(t, _)| *t <= limit)
                    .position(|&(t, m)| t > prev && m & bit != 0);
                match next {
                    Some(off) => {
                        pos += 1 + off;
                        self.path[depth] = self.matched[pos].0;
                        depth += 1;
                    }
                    None => break,
                }
            }
            if depth > best_depth {
                best_depth = depth;
                self.best[..depth].copy_from_slice(&self.path[..depth]);
                if depth == k {
                    break;
                }
            }
        }
        best_depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [5]), Some(5.0));
        assert_eq!(median(&mut [9, 1, 5]), Some(5.0));
        assert_eq!(median(&mut [4, 1, 2, 3]), Some(2.5));
        assert_eq!(median(&mut [7, 7, 1, 7]), Some(7.0));
        assert_eq!(median(&mut [10, -4]), Some(3.0));
        // Against a sort, on lengths both odd and even, with repeats.
        let mut x: u64 = 1;
        for n in 1..200usize {
            let mut v: Vec<i64> = (0..n)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as i64 % 50 - 10
                })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_unstable();
            let want = if n % 2 == 1 {
                sorted[n / 2] as f64
            } else {
                (sorted[n / 2 - 1] as f64 + sorted[n / 2] as f64) / 2.0
            };
            assert_eq!(median(&mut v), Some(want), "{n} values");
        }
    }

    #[test]
    fn steps_must_be_plain_event_conditions() {
        assert!(parse_step(0, "viewed product X").is_ok());
        assert!(parse_step(0, "purchased where amount >= 50").is_ok());
        for (bad, why) in [
            ("viewed in last 7 days", "has a window"),
            ("viewed at least 2 times", "has a frequency"),
            ("tier = Gold", "is not an event condition"),
            ("viewed and purchased", "is not an event condition"),
            ("viewed (", "is not an event condition"),
        ] {
            let e = parse_step(1, bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("step 2"), "{bad:?}: {e}");
        }
    }
}
