//! Reading the per-day rollups over a window: counts, counts of events whose number passes a
//! test, and aggregates of a numeric property, per customer, with what a day the window cuts
//! leaves undecided.
//!
//! A window is its whole days and at most two cut days ([`WindowDays`]). Whole days' lists are
//! summed per customer; on a cut day a customer's figures count only when the count rollup's
//! span puts all their events of the kind that day inside the window's part ([`Side`]), and leave
//! them undecided when the span straddles it. Customers are summed a block of [`SLOTS`] at a
//! time into small per-block state that stays in the core's cache, each list walked once with a
//! cursor that only moves forward.
//!
//! This module reads the indexes (under the caller's read guard); it never writes and never
//! reads storage.

use rayon::prelude::*;
use roaring::{MultiOps, RoaringBitmap};

use crate::index::derived::DerivedStore;
use crate::index::rollup::{sum_margin, Partial, StoredPartial, SPAN_UNIT_MS};
use crate::index::{DayCount, DayFigures, DayList, DayNumbers, EventIndex, Piece, Runs};
use crate::model::time::{day_of, day_start, Timestamp, DAY_MS, MAX_TIMESTAMP};
use crate::model::FastMap;
use crate::rules::{AggregateFn, CmpOp};

use super::exec::Bounds;
use super::plan::{compare_f64, compare_u64, Lit, ValueTest};

/// The days of a window: the whole ones, and the (at most two) it cuts with the part of the day
/// it keeps, as inclusive milliseconds of that day.
#[derive(Debug)]
pub(super) struct WindowDays {
    pub(super) whole: Option<(u32, u32)>,
    pub(super) edges: Vec<(u32, i64, i64)>,
}

impl WindowDays {
    pub(super) fn of(from: Timestamp, to: Timestamp) -> Option<WindowDays> {
        let from = from.max(0);
        let to = to.min(MAX_TIMESTAMP - 1);
        if from > to {
            return None;
        }
        let (first, last) = (day_of(from), day_of(to));
        let whole_first = first + u32::from(day_start(first) != from);
        let whole_last = last.checked_sub(u32::from(day_start(last) + DAY_MS - 1 != to));
        let whole = whole_last
            .filter(|&wl| whole_first <= wl)
            .map(|wl| (whole_first, wl));
        let mut edges = Vec::new();
        for d in [first, last] {
            let is_whole = whole.is_some_and(|(a, b)| a <= d && d <= b);
            if !is_whole && edges.iter().all(|(e, _, _)| *e != d) {
                let start = day_start(d);
                edges.push((
                    d,
                    from.max(start) - start,
                    to.min(start + DAY_MS - 1) - start,
                ));
            }
        }
        Some(WindowDays { whole, edges })
    }
}

/// Where a customer's events of one cut day lie against the window's part of that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    In = 1,
    Out = 2,
    Both = 4,
}

pub(super) fn side(first: u16, last: u16, a: i64, b: i64) -> Side {
    let lo = i64::from(first) * SPAN_UNIT_MS;
    let hi = i64::from(last) * SPAN_UNIT_MS + SPAN_UNIT_MS - 1;
    Side::of(lo, hi, (a, b))
}

impl Side {
    /// Where events at offsets `lo..=hi` into their day lie against the window's part `a..=b`.
    pub(super) fn of(lo: i64, hi: i64, (a, b): (i64, i64)) -> Side {
        if lo >= a && hi <= b {
            Side::In
        } else if hi < a || lo > b {
            Side::Out
        } else {
            Side::Both
        }
    }
}

/// What the rollups say of one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    Pass,
    Fail,
    Gap,
}

/// `count OP n` for a count known to lie in `lo..=hi`.
pub(super) fn decide_count(op: crate::rules::CmpOp, n: u64, lo: u64, hi: u64) -> Decision {
    let (at_lo, at_hi) = (compare_u64(lo, op, n), compare_u64(hi, op, n));
    let outside = n < lo || n > hi;
    match op {
        _ if lo == hi && at_lo => Decision::Pass,
        _ if lo == hi => Decision::Fail,
        CmpOp::Eq if outside => Decision::Fail,
        CmpOp::Ne if outside => Decision::Pass,
        CmpOp::Eq | CmpOp::Ne => Decision::Gap,
        // The orderings are monotone in the count: both ends agree, or it is undecided.
        _ if at_lo && at_hi => Decision::Pass,
        _ if !at_lo && !at_hi => Decision::Fail,
        _ => Decision::Gap,
    }
}

/// One customer's numbers in a window, summed from the rollups.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Acc {
    n: u32,
    sum: f64,
    min: f64,
    max: f64,
    /// Some numbers on a cut day may or may not be inside the window.
    unsure: bool,
}

impl Acc {
    /// Figures of no number yet, to which [`Acc::add`] adds numbers one by one.
    pub(super) fn empty() -> Acc {
        Acc {
            n: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            unsure: false,
        }
    }

    /// Adds one number (`f64::min` and `max` skip a NaN, as the exact check folds them).
    pub(super) fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    /// Adds figures summed apart (another day's).
    pub(super) fn merge(&mut self, other: &Acc) {
        self.n += other.n;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// How many numbers were added.
    pub(super) fn numbers(&self) -> u32 {
        self.n
    }

    /// The figures of a customer's whole days as kept (`crate::index::totals`): surely in the
    /// window, a minimum and maximum of NaN when every number is.
    pub(super) fn of_whole(d: &DayNumbers) -> Acc {
        Acc {
            n: d.n,
            sum: d.sum,
            min: d.min,
            max: d.max,
            unsure: false,
        }
    }

    /// The figures as kept for customer `cust` (see [`Acc::of_whole`]); `unsure` is not kept.
    pub(super) fn kept(&self, cust: u32) -> DayNumbers {
        DayNumbers {
            cust,
            n: self.n,
            sum: self.sum,
            min: self.min,
            max: self.max,
        }
    }

    /// The figures with other figures of the same customer added (another day's, another
    /// part's); `unsure` when either is. Minima and maxima of NaN (every number a NaN) are
    /// skipped by `f64::min` and `max` unless both are.
    pub(super) fn plus(&self, other: &Acc) -> Acc {
        Acc {
            n: self.n + other.n,
            sum: self.sum + other.sum,
            min: self.min.min(other.min),
            max: self.max.max(other.max),
            unsure: self.unsure || other.unsure,
        }
    }

    /// The figures as [`decide_aggregate`] takes them: a minimum above the maximum (every
    /// number a NaN) becomes NaN, which leaves `min` and `max` undecided.
    pub(super) fn finished(mut self) -> Acc {
        if self.min > self.max {
            self.min = f64::NAN;
            self.max = f64::NAN;
        }
        self
    }
}

/// `FUNC(prop) OP value` from a customer's summed figures (with at least one number, or unsure).
pub(super) fn decide_aggregate(
    func: AggregateFn,
    op: crate::rules::CmpOp,
    v: f64,
    a: &Acc,
) -> Decision {
    if a.unsure {
        return Decision::Gap;
    }
    let pass = |x: f64| {
        if compare_f64(x, op, v) {
            Decision::Pass
        } else {
            Decision::Fail
        }
    };
    // Within `margin` of the exact check's figure: undecided if the threshold is that close.
    let near = |x: f64, margin: f64| {
        if !x.is_finite() || !margin.is_finite() || (x - v).abs() <= margin {
            Decision::Gap
        } else {
            pass(x)
        }
    };
    let margin = sum_margin(a.n, a.min, a.max);
    match func {
        AggregateFn::Sum => near(a.sum, margin),
        AggregateFn::Avg => {
            let avg = a.sum / f64::from(a.n);
            near(
                avg,
                margin / f64::from(a.n) + 8.0 * f64::EPSILON * avg.abs(),
            )
        }
        // Minimum and maximum are exact whatever the order.
        AggregateFn::Min if !a.min.is_nan() => pass(a.min),
        AggregateFn::Max if !a.max.is_nan() => pass(a.max),
        AggregateFn::Min | AggregateFn::Max => Decision::Gap,
    }
}

/// 2⁵³: integers of smaller magnitude are exact as `f64`, so ordering them as integers (as
/// [`customer::order`] does against an integer literal) and as `f64` (as the rollups hold them)
/// agree.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// A property test that only numbers can pass, against numeric literals: an ordering (`<`,
/// `<=`, `>`, `>=`) or `between`. Strings, booleans, instants, lists and a missing property never
/// order against a number (rules.md), so an event passes it exactly when its property is a number
/// that passes: the numbers the rollups hold. Decided on `f64` exactly as [`customer::order`]
/// decides on the stored value when the literal is below 2⁵³ in magnitude: an integer beyond
/// that is rounded in the rollups, but rounding is monotone and such a literal is exact, so the
/// rounded number orders against it as the integer does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum NumTest {
    Cmp(CmpOp, f64),
    /// Both ends included.
    Range(f64, f64),
}

impl NumTest {
    /// The test, when it is one of those; `None` for any other test or literal.
    pub(super) fn of(test: &ValueTest) -> Option<NumTest> {
        fn num(lit: &Lit) -> Option<f64> {
            if lit.is_str {
                return None;
            }
            let x = lit.num?;
            // Strictly below 2⁵³: an integer literal then equals its `f64` exactly.
            let exact = x.abs() < EXACT_INT && lit.int.is_none_or(|j| j as f64 == x);
            exact.then_some(x)
        }
        match test {
            ValueTest::Compare {
                op: op @ (CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge),
                lit,
            } => Some(NumTest::Cmp(*op, num(lit)?)),
            ValueTest::Between { low, high } => Some(NumTest::Range(num(low)?, num(high)?)),
            _ => None,
        }
    }

    /// Whether the number `x` passes.
    #[inline]
    pub fn passes(self, x: f64) -> bool {
        match self {
            NumTest::Cmp(op, v) => compare_f64(x, op, v),
            NumTest::Range(lo, hi) => lo <= x && x <= hi,
        }
    }

    /// How many of the numbers a day's figures stand for pass, at least and at most. The minimum
    /// and the maximum are two of the numbers (one when there is one): each passes or not; both
    /// passing means all do (the test passes an interval); for an ordering, neither passing
    /// means none does. Figures with a NaN among their numbers (then their sum is NaN; the
    /// minimum and maximum skip it) decide nothing.
    #[inline]
    pub fn matching(self, d: &DayNumbers) -> (u32, u32) {
        if !trusted(d) {
            return (0, d.n);
        }
        match (self.passes(d.min), self.passes(d.max)) {
            (true, true) => (d.n, d.n),
            (true, false) | (false, true) if d.n >= 2 => (1, d.n - 1),
            (true, false) | (false, true) => (0, d.n),
            (false, false) => match self {
                NumTest::Cmp(..) => (0, 0),
                NumTest::Range(lo, hi) if d.max < lo || d.min > hi => (0, 0),
                NumTest::Range(..) => (0, d.n.saturating_sub(2)),
            },
        }
    }
}

/// Who has an event in the window whose property's numbers pass `t`: bounds from the numeric
/// rollups. Whole days are decided by each day's figures ([`NumTest::matching`]); on a day the
/// window cuts, the figures count for a customer whose events of the kind that day (by the count
/// rollup's span) lie wholly inside the window's part, not at all when wholly outside, and leave
/// the customer undecided otherwise (if any of their numbers may pass).
pub(super) fn numeric_presence(
    kept: (&dyn DerivedStore, u32),
    ei: &EventIndex,
    prop: u32,
    t: NumTest,
    win: &WindowDays,
) -> Bounds {
    let Some(figures) = ei.numbers.get(&prop) else {
        // The property never held a number: no event passes.
        return Bounds::exact(RoaringBitmap::new());
    };
    // An ordering is decided by the largest or smallest number of the whole days, so runs of
    // days merged decide it as the days do; `between` only by each day's own figures.
    let whole: Vec<Piece<'_, DayNumbers>> = match (t, win.whole) {
        (NumTest::Cmp(..), _) => whole_pieces(kept, &ei.number_runs, prop, figures, win),
        (NumTest::Range(..), Some((a, b))) => {
            figures.range(a..=b).map(|(_, l)| Piece::Day(l)).collect()
        }
        (NumTest::Range(..), None) => Vec::new(),
    };
    // Per day: who surely has a passing number, and who may. An ordering needs only the
    // maximum (`>`, `>=`) or the minimum (`<`, `<=`), a number of the day (a NaN, which passes
    // nothing, is skipped by both): a loop of its own for each.
    let found = |passes: bool| if passes { Found::Sure } else { Found::No };
    let mut parts: Vec<(RoaringBitmap, RoaringBitmap)> = whole
        .par_iter()
        .map(|list| match t {
            NumTest::Cmp(CmpOp::Ge, v) => split_day(list, |d| found(d.max >= v)),
            NumTest::Cmp(CmpOp::Gt, v) => split_day(list, |d| found(d.max > v)),
            NumTest::Cmp(CmpOp::Le, v) => split_day(list, |d| found(d.min <= v)),
            NumTest::Cmp(CmpOp::Lt, v) => split_day(list, |d| found(d.min < v)),
            _ => split_day(list, |d| match t.matching(d) {
                (lo, _) if lo > 0 => Found::Sure,
                (_, hi) if hi > 0 => Found::Maybe,
                _ => Found::No,
            }),
        })
        .collect();
    for &(d, a, b) in &win.edges {
        let Some(list) = figures.get(&d) else {
            continue;
        };
        let mut custs = RoaringBitmap::new();
        list.for_each(|x| {
            custs.insert(x.cust);
        });
        let (inside, outside) = cut_day_sides(ei, d, a, b, &custs);
        let (mut sure, mut maybe) = (RoaringBitmap::new(), RoaringBitmap::new());
        list.for_each(|x| {
            let (lo, hi) = t.matching(x);
            if hi == 0 || outside.contains(x.cust) {
                return;
            }
            if inside.contains(x.cust) && lo > 0 {
                sure.insert(x.cust);
            } else {
                maybe.insert(x.cust);
            }
        });
        parts.push((sure, maybe));
    }
    let sure: RoaringBitmap = parts.iter().map(|p| &p.0).union();
    let maybe = parts.iter().map(|p| &p.1).union() | &sure;
    Bounds::range(sure, maybe)
}

/// Whether a customer of a day's figures has a passing number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Sure,
    Maybe,
    No,
}

/// Whether a day's figures decide a count (see [`NumTest::matching`]): no NaN among the numbers.
#[inline]
fn trusted(d: &DayNumbers) -> bool {
    !d.sum.is_nan()
}

/// Who of one day's figures surely has a passing number, and who only may.
#[inline]
fn split_day(
    list: &Piece<'_, DayNumbers>,
    found: impl Fn(&DayNumbers) -> Found,
) -> (RoaringBitmap, RoaringBitmap) {
    let (head, tail) = list.parts();
    let (mut sure, mut maybe) = (Vec::new(), Vec::new());
    for x in head {
        match found(x) {
            Found::Sure => sure.push(x.cust),
            Found::Maybe => maybe.push(x.cust),
            Found::No => {}
        }
    }
    let (mut sure, mut maybe) = (sorted_bitmap(&sure), sorted_bitmap(&maybe));
    for x in tail {
        match found(x) {
            Found::Sure => sure.insert(x.cust),
            Found::Maybe => maybe.insert(x.cust),
            Found::No => false,
        };
    }
    (sure, maybe)
}

/// A bitmap of strictly increasing ids.
fn sorted_bitmap(ids: &[u32]) -> RoaringBitmap {
    RoaringBitmap::from_sorted_iter(ids.iter().copied())
        .unwrap_or_else(|_| ids.iter().copied().collect())
}

/// Customers summed at a time: their running figures (at most 32 bytes each) stay in the core's
/// L2 cache while every list of the window is walked over them.
const SLOTS: u32 = 8_192;

/// The running state of a block of at most [`SLOTS`] consecutive customers from `lo`, and which
/// of them were touched: only those are handed out and reset.
struct Block<S> {
    lo: u32,
    slots: Vec<S>,
    touched: Vec<u64>,
}

impl<S: Default> Block<S> {
    fn new(len: u32) -> Self {
        let len = len.min(SLOTS) as usize;
        Block {
            lo: 0,
            slots: std::iter::repeat_with(S::default).take(len).collect(),
            touched: vec![0; len.div_ceil(64)],
        }
    }

    /// The state of customer `cust` (of this block), marked touched.
    #[inline]
    fn at(&mut self, cust: u32) -> &mut S {
        let k = (cust - self.lo) as usize;
        self.touched[k / 64] |= 1 << (k % 64);
        &mut self.slots[k]
    }

    /// Hands out every touched customer's state, in customer order, and resets it.
    fn drain(&mut self, mut f: impl FnMut(u32, S)) {
        for (w, word) in self.touched.iter_mut().enumerate() {
            let mut bits = std::mem::take(word);
            while bits != 0 {
                let k = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                f(self.lo + k as u32, std::mem::take(&mut self.slots[k]));
            }
        }
    }
}

/// Sums the customers `lo..hi` a [`Block`] at a time: `fill(block, hi)` adds the figures of the
/// block's customers (from `block.lo` to `hi`), then `out` gets each touched one, in order.
fn sweep<S: Default>(
    lo: u32,
    hi: u32,
    mut fill: impl FnMut(&mut Block<S>, u32),
    mut out: impl FnMut(u32, S),
) {
    let mut block = Block::new(hi.saturating_sub(lo));
    let mut sub_lo = lo;
    while sub_lo < hi {
        let sub_hi = sub_lo.saturating_add(SLOTS).min(hi);
        block.lo = sub_lo;
        fill(&mut block, sub_hi);
        block.drain(&mut out);
        sub_lo = sub_hi;
    }
}

/// Lists sorted by customer, walked forward together over consecutive blocks of customers: one
/// binary search per list for the whole range, then each entry is read once, in order. The
/// lists' unsorted tails of recent additions (of the range's customers) are sorted once, together.
struct Cursors<'a, T> {
    heads: Vec<&'a [T]>,
    tails: Vec<T>,
    tail_at: usize,
}

impl<'a, T: Partial> Cursors<'a, T> {
    /// Cursors over `lists`, each a sorted head and an unsorted tail, for the customers `lo..hi`.
    fn new(lists: impl IntoIterator<Item = (&'a [T], &'a [T])>, lo: u32, hi: u32) -> Self {
        let mut heads = Vec::new();
        let mut tails: Vec<T> = Vec::new();
        for (head, tail) in lists {
            let from = head.partition_point(|x| x.cust() < lo);
            heads.push(&head[from..]);
            tails.extend(
                tail.iter()
                    .filter(|x| (lo..hi).contains(&x.cust()))
                    .copied(),
            );
        }
        tails.sort_unstable_by_key(|x| x.cust());
        Cursors {
            heads,
            tails,
            tail_at: 0,
        }
    }

    /// Calls `f` with every entry of a customer below `hi` not handed out yet.
    #[inline]
    fn until(&mut self, hi: u32, mut f: impl FnMut(&T)) {
        for head in &mut self.heads {
            let mut i = 0;
            while let Some(x) = head.get(i).filter(|x| x.cust() < hi) {
                f(x);
                i += 1;
            }
            *head = &head[i..];
        }
        while let Some(x) = self.tails.get(self.tail_at).filter(|x| x.cust() < hi) {
            f(x);
            self.tail_at += 1;
        }
    }
}

/// The lists to sum for the whole days of a window: runs of days merged where whole aligned runs
/// fit (built now when missing or stale, see [`crate::index::runs`]), single days elsewhere.
/// Only for sums that merging keeps (counts, aggregates); not for tests of each day's figures,
/// which a merged minimum and maximum would only weaken.
pub(super) fn whole_pieces<'a, T: StoredPartial + Send + Sync>(
    (kept, event): (&dyn DerivedStore, u32),
    runs: &Runs<T>,
    key: u32,
    days: &'a std::collections::BTreeMap<u32, DayList<T>>,
    win: &WindowDays,
) -> Vec<Piece<'a, T>> {
    match win.whole {
        Some((a, b)) => runs.cover(kept, event, key, days, a, b),
        None => Vec::new(),
    }
}

/// The heads and tails of the lists of a map of day lists, for the whole days of a window.
fn whole_days<'a, T: Partial + 'a>(
    days: &'a std::collections::BTreeMap<u32, DayList<T>>,
    win: &WindowDays,
) -> impl Iterator<Item = (&'a [T], &'a [T])> {
    win.whole
        .into_iter()
        .flat_map(move |(a, b)| days.range(a..=b).map(|(_, l)| l.parts()))
}

/// A customer's count of events in a window so far: `known` surely in it, and `unsure` more on
/// cut days that may be.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    known: u32,
    unsure: u32,
    /// The [`Side`]s of the customer's events on the cut day being summed.
    sides: u8,
}

impl Count {
    #[inline]
    fn add(&mut self, known: u32, unsure: u32) {
        self.known = self.known.saturating_add(known);
        self.unsure = self.unsure.saturating_add(unsure);
    }

    /// Calls `f(customer, known, unsure)` when the customer has a counted or undecided event.
    #[inline]
    fn emit(self, cust: u32, f: &mut impl FnMut(u32, u64, u64)) {
        if self.known != 0 || self.unsure != 0 {
            // A saturated counter knows only that there are at least that many.
            let saturated = self.known == u32::MAX || self.unsure == u32::MAX;
            let unsure = if saturated {
                u64::MAX / 4
            } else {
                u64::from(self.unsure)
            };
            f(cust, u64::from(self.known), unsure);
        }
    }
}

/// Sums the counts of the customers `lo..hi` over a window (its whole days as `whole`, see
/// [`whole_pieces`]) and calls `f(customer, known, unsure)` for each with a matching event or an
/// undecided one, in customer order: `known` events surely in the window, and `unsure` more on
/// cut days that may be.
pub(super) fn count_range(
    ei: &EventIndex,
    whole: &[Piece<'_, DayCount>],
    win: &WindowDays,
    lo: u32,
    hi: u32,
    mut f: impl FnMut(u32, u64, u64),
) {
    let mut whole = Cursors::new(whole.iter().map(Piece::parts), lo, hi);
    sweep(
        lo,
        hi,
        |block: &mut Block<Count>, sub_hi| {
            whole.until(sub_hi, |x| block.at(x.cust).add(x.count, 0));
            for &(d, a, b) in &win.edges {
                if let Some(list) = ei.counts.get(&d) {
                    list.for_each_in(block.lo, sub_hi, |x| {
                        let c = block.at(x.cust);
                        match side(x.first, x.last, a, b) {
                            Side::In => c.add(x.count, 0),
                            Side::Out => {}
                            Side::Both => c.add(0, x.count),
                        }
                    });
                }
            }
        },
        |cust, c| c.emit(cust, &mut f),
    );
}

/// Who of `custs` has every event of the kind on the cut day `d` inside the window's part of it
/// (`a..=b` ms of the day), and who has every one outside: all their partial figures of the
/// day's count rollup say [`Side::In`], or all say [`Side::Out`]. Looks up only those customers
/// (a binary search each in the sorted head, one pass over the tail), not the whole day, which
/// for a common event holds a hundred thousand customers.
pub(super) fn cut_day_sides(
    ei: &EventIndex,
    d: u32,
    a: i64,
    b: i64,
    custs: &RoaringBitmap,
) -> (RoaringBitmap, RoaringBitmap) {
    let Some(list) = ei.counts.get(&d) else {
        return (RoaringBitmap::new(), RoaringBitmap::new());
    };
    let (head, tail) = list.parts();
    // The tail's customers among `custs`, with their sides or-ed (few: recent additions).
    let mut tail_sides: FastMap<u32, u8> = FastMap::default();
    for x in tail.iter().filter(|x| custs.contains(x.cust)) {
        *tail_sides.entry(x.cust).or_insert(0) |= side(x.first, x.last, a, b) as u8;
    }
    let mut rest = head;
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for c in custs {
        let i = rest.partition_point(|x| x.cust < c);
        rest = &rest[i..];
        let mut sides = tail_sides.get(&c).copied().unwrap_or(0);
        if let Some(x) = rest.first().filter(|x| x.cust == c) {
            sides |= side(x.first, x.last, a, b) as u8;
        }
        match sides {
            s if s == Side::In as u8 => inside.push(c),
            s if s == Side::Out as u8 => outside.push(c),
            _ => {}
        }
    }
    (sorted_bitmap(&inside), sorted_bitmap(&outside))
}

/// Sums, for the customers `lo..hi`, how many of their events in the window have a number of
/// the property passing `t`, and calls `f(customer, known, unsure)` for each with any that may,
/// in customer order: at least `known`, and at most `unsure` more (see [`NumTest::matching`]; a
/// cut day counts as in [`numeric_presence`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn numeric_count_range(
    ei: &EventIndex,
    figures: Option<&DayFigures>,
    t: NumTest,
    win: &WindowDays,
    lo: u32,
    hi: u32,
    mut f: impl FnMut(u32, u64, u64),
) {
    let Some(figures) = figures else {
        return;
    };
    let mut whole = Cursors::new(whole_days(figures, win), lo, hi);
    sweep(
        lo,
        hi,
        |block: &mut Block<Count>, sub_hi| {
            whole.until(sub_hi, |x| {
                let (l, h) = t.matching(x);
                block.at(x.cust).add(l, h - l);
            });
            for &(d, a, b) in &win.edges {
                if let Some(list) = figures.get(&d) {
                    add_cut_day(block, sub_hi, ei.counts.get(&d), list, (a, b), |c, x, s| {
                        let (l, h) = t.matching(x);
                        match s {
                            s if s == Side::Out as u8 => {}
                            s if s == Side::In as u8 => c.add(l, h - l),
                            _ => c.add(0, h),
                        }
                    });
                }
            }
        },
        |cust, c| c.emit(cust, &mut f),
    );
}

/// Running state that notes, while a cut day is summed, the [`Side`]s of the customer's events
/// that day.
trait CutDaySides {
    fn sides(&mut self) -> &mut u8;
}

impl CutDaySides for Count {
    fn sides(&mut self) -> &mut u8 {
        &mut self.sides
    }
}

impl CutDaySides for Slot {
    fn sides(&mut self) -> &mut u8 {
        &mut self.sides
    }
}

/// Adds a cut day's numbers to the customers of a block (`block.lo..sub_hi`): first the sides of
/// each customer's events that day, from the day's count rollup, or-ed over their partial
/// figures; then `add(state, figures, sides)` for each of the day's figures, where only exactly
/// `Side::In` or `Side::Out` decides (without a count rollup, never so as numbers come with
/// counts, every figure is undecided); then the sides are cleared for the next day.
fn add_cut_day<S: Default + CutDaySides>(
    block: &mut Block<S>,
    sub_hi: u32,
    counts: Option<&DayList<DayCount>>,
    list: &DayList<DayNumbers>,
    (a, b): (i64, i64),
    mut add: impl FnMut(&mut S, &DayNumbers, u8),
) {
    if let Some(counts) = counts {
        counts.for_each_in(block.lo, sub_hi, |x| {
            *block.at(x.cust).sides() |= side(x.first, x.last, a, b) as u8;
        });
    }
    list.for_each_in(block.lo, sub_hi, |x| {
        let state = block.at(x.cust);
        let sides = *state.sides();
        add(state, x, sides);
    });
    if let Some(counts) = counts {
        counts.for_each_in(block.lo, sub_hi, |x| *block.at(x.cust).sides() = 0);
    }
}

/// One numeric property's per-day rollups, or none when it never had a number.
#[derive(Clone, Copy, Default)]
pub(super) struct DayFiguresRef<'a>(pub(super) Option<&'a DayFigures>);

impl<'a> DayFiguresRef<'a> {
    fn day(&self, d: u32) -> Option<&'a DayList<DayNumbers>> {
        self.0?.get(&d)
    }
}

/// One customer's running figures while summing day lists. The minimum starts at +∞ and the
/// maximum at −∞, so that adding is the same for the first figures as for the others (no branch
/// that a processor could mispredict on every entry); `min > max` after adding means every
/// number was a NaN (any other number lies between them), which [`Slot::acc`] gives back as NaN.
#[derive(Debug, Clone, Copy)]
struct Slot {
    sum: f64,
    min: f64,
    max: f64,
    n: u32,
    /// The [`Side`]s of the customer's events on the cut day being summed.
    sides: u8,
    /// Some numbers on a cut day may or may not be inside the window.
    unsure: bool,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            n: 0,
            sides: 0,
            unsure: false,
        }
    }
}

impl Slot {
    #[inline]
    fn add(&mut self, x: &DayNumbers) {
        // `f64::min` and `max` skip a NaN, as the exact check folds them.
        self.min = self.min.min(x.min);
        self.max = self.max.max(x.max);
        self.n += x.n;
        self.sum += x.sum;
    }

    /// The figures summed, if there is a number or an undecided one.
    fn acc(&self) -> Option<Acc> {
        let unsure = self.unsure;
        if self.n == 0 && !unsure {
            return None;
        }
        let (min, max) = if self.min > self.max {
            (f64::NAN, f64::NAN)
        } else {
            (self.min, self.max)
        };
        Some(Acc {
            n: self.n,
            sum: self.sum,
            min,
            max,
            unsure,
        })
    }
}

/// Sums one numeric property's figures of the customers `lo..hi` over a window (its whole days
/// as `whole`, see [`whole_pieces`]) and calls `f(customer, figures)` for each with a number in
/// it or an undecided one, in customer order. Merging days (runs) keeps the figures exact but the
/// sum, whose order of additions changes within the rounding that [`sum_margin`] allows for.
#[allow(clippy::too_many_arguments)]
pub(super) fn aggregate_range(
    ei: &EventIndex,
    figures: DayFiguresRef<'_>,
    whole: &[Piece<'_, DayNumbers>],
    win: &WindowDays,
    lo: u32,
    hi: u32,
    mut f: impl FnMut(u32, &Acc),
) {
    let mut whole = Cursors::new(whole.iter().map(Piece::parts), lo, hi);
    sweep(
        lo,
        hi,
        |block: &mut Block<Slot>, sub_hi| {
            whole.until(sub_hi, |x| block.at(x.cust).add(x));
            for &(d, a, b) in &win.edges {
                if let Some(list) = figures.day(d) {
                    add_cut_day(
                        block,
                        sub_hi,
                        ei.counts.get(&d),
                        list,
                        (a, b),
                        |slot, x, s| match s {
                            s if s == Side::In as u8 => slot.add(x),
                            s if s == Side::Out as u8 => {}
                            _ => slot.unsure = true,
                        },
                    );
                }
            }
        },
        |cust, slot| {
            if let Some(acc) = slot.acc() {
                f(cust, &acc);
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::index::derived::NoStore;
    use crate::index::DayCount;

    const EVENTS_PER_DAY: usize = 3_000;

    /// An event's rollups over 40 days for customers spread over 0..40,000 (five blocks), added
    /// in random order (so lists have unsorted tails), with several partial figures per customer
    /// and day, and the same again for one numeric property.
    fn event_index(seed: u64) -> EventIndex {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut ei = EventIndex::default();
        for day in 100..140u32 {
            for _ in 0..EVENTS_PER_DAY {
                let cust = rng.random_range(0..40_000u32);
                let at = rng.random_range(0..43_200u16);
                ei.counts.entry(day).or_default().add(DayCount {
                    cust,
                    count: 1,
                    first: at,
                    last: at,
                });
                let x = match rng.random_range(0..50) {
                    0 => f64::NAN,
                    _ => f64::from(rng.random_range(-500..5_000i32)) / 4.0,
                };
                let figures = ei.numbers.entry(7).or_default();
                figures.entry(day).or_default().add(DayNumbers::of(cust, x));
            }
        }
        ei
    }

    /// Windows: whole days only, cut on both sides, within one day, and long enough for runs.
    fn windows() -> Vec<WindowDays> {
        let day = |d: i64| d * DAY_MS;
        [
            (day(100), day(140) - 1),
            (day(104) + 37_000_001, day(139) + 5_000_000),
            (day(120) + 1, day(120) + 60_000_000),
            (day(96), day(136)),
        ]
        .into_iter()
        .map(|(a, b)| WindowDays::of(a, b).unwrap())
        .collect()
    }

    /// Per customer: (known, unsure) as summed entry by entry, the obvious way.
    fn naive_counts(ei: &EventIndex, win: &WindowDays) -> BTreeMap<u32, (u64, u64)> {
        let mut out: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for (&d, list) in &ei.counts {
            let whole = win.whole.is_some_and(|(a, b)| a <= d && d <= b);
            let edge = win.edges.iter().find(|e| e.0 == d);
            list.for_each(|x| {
                let c = out.entry(x.cust).or_default();
                let n = u64::from(x.count);
                match edge {
                    _ if whole => c.0 += n,
                    Some(&(_, a, b)) => match side(x.first, x.last, a, b) {
                        Side::In => c.0 += n,
                        Side::Out => {}
                        Side::Both => c.1 += n,
                    },
                    None => {}
                }
            });
        }
        out.retain(|_, c| *c != (0, 0));
        out
    }

    #[test]
    fn counts_by_blocks_and_runs_equal_the_entry_by_entry_sums() {
        let ei = event_index(1);
        for win in windows() {
            let pieces = whole_pieces((&NoStore, 1), &ei.count_runs, 0, &ei.counts, &win);
            let expected = naive_counts(&ei, &win);
            for (lo, hi) in [(0, 40_000), (0, 8_192), (5_000, 30_001), (39_999, 40_000)] {
                let mut got = BTreeMap::new();
                count_range(&ei, &pieces, &win, lo, hi, |c, k, u| {
                    assert!(got.insert(c, (k, u)).is_none(), "customer {c} twice");
                });
                let want: BTreeMap<_, _> = expected.range(lo..hi).map(|(&c, &v)| (c, v)).collect();
                assert_eq!(got, want, "{win:?} {lo}..{hi}");
            }
        }
        assert!(!ei.count_runs.is_empty(), "the long windows used runs");
    }

    #[test]
    fn aggregates_by_blocks_and_runs_equal_the_entry_by_entry_figures() {
        let ei = event_index(2);
        let figures = &ei.numbers[&7];
        for win in windows() {
            // Per customer, the or-ed sides of each cut day.
            let mut sides: BTreeMap<(u32, u32), u8> = BTreeMap::new();
            for &(d, a, b) in &win.edges {
                ei.counts[&d].for_each(|x| {
                    *sides.entry((d, x.cust)).or_default() |= side(x.first, x.last, a, b) as u8
                });
            }
            let mut expected: BTreeMap<u32, (u32, f64, Vec<f64>, bool)> = BTreeMap::new();
            for (&d, list) in figures {
                let whole = win.whole.is_some_and(|(a, b)| a <= d && d <= b);
                let cut = win.edges.iter().any(|e| e.0 == d);
                list.for_each(|x| {
                    let s = sides.get(&(d, x.cust)).copied();
                    let e = expected
                        .entry(x.cust)
                        .or_insert((0, 0.0, Vec::new(), false));
                    if whole || (cut && s == Some(Side::In as u8)) {
                        e.0 += x.n;
                        e.1 += x.sum;
                        e.2.extend([x.min, x.max]);
                    } else if cut && s != Some(Side::Out as u8) {
                        e.3 = true;
                    }
                });
            }
            expected.retain(|_, e| e.0 != 0 || e.3);
            let pieces = whole_pieces((&NoStore, 2), &ei.number_runs, 7, figures, &win);
            let mut got = BTreeMap::new();
            let (lo, hi) = (0, 40_000);
            aggregate_range(
                &ei,
                DayFiguresRef(Some(figures)),
                &pieces,
                &win,
                lo,
                hi,
                |c, a| {
                    assert!(got.insert(c, *a).is_none(), "customer {c} twice");
                },
            );
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>()
            );
            for (c, (n, sum, ends, unsure)) in &expected {
                let a = &got[c];
                assert_eq!((a.n, a.unsure), (*n, *unsure), "customer {c}");
                if *n == 0 {
                    continue;
                }
                let min = ends.iter().copied().fold(f64::NAN, f64::min);
                let max = ends.iter().copied().fold(f64::NAN, f64::max);
                assert_eq!(a.min.to_bits(), min.to_bits(), "customer {c}");
                assert_eq!(a.max.to_bits(), max.to_bits(), "customer {c}");
                assert!(
                    (a.sum.is_nan() && sum.is_nan()) || (a.sum - sum).abs() <= 1e-9,
                    "customer {c}: {} vs {sum}",
                    a.sum
                );
            }
        }
    }

    #[test]
    fn a_slot_of_only_nans_gives_nan_figures() {
        let mut s = Slot::default();
        s.add(&DayNumbers::of(1, f64::NAN));
        let a = s.acc().unwrap();
        assert!(a.min.is_nan() && a.max.is_nan() && a.sum.is_nan() && a.n == 1);
        s.add(&DayNumbers::of(1, f64::INFINITY));
        let a = s.acc().unwrap();
        assert_eq!((a.min, a.max), (f64::INFINITY, f64::INFINITY));
        assert!(Slot::default().acc().is_none());
    }
}
