//! A rule as one SQL query over the tables of `audiencedb export tables` (`crate::tables`), in
//! the ClickHouse or the DuckDB dialect: the same members, so audiences written here run unchanged
//! on a warehouse that outgrew one machine.
//!
//! The query is written from the rule's plan at one *now*, so it means exactly what the engine
//! evaluates: names already resolved (an unknown event, trait or property matches nothing, as in
//! the engine), `NAME between A and B` read as the store reads it, `in audience` inlined, every
//! window an inclusive range of milliseconds, every literal in each form a stored value can be
//! compared with (`plan::Lit`). Each test on a value becomes a predicate on one row of typed
//! columns (`kind` and `text`, `int`, `float`, `bool`, `time`) that mirrors `customer::equals`
//! and `customer::order` branch by branch; every predicate is guarded by its kind, so no
//! comparison meets a null. Sums are added in the events' time order, as the engine adds them.
//!
//! Names and values enter the SQL only as escaped string literals or as numbers written by this
//! module, never as identifiers, so no rule text can change the query's shape. This module reads
//! the plan and the catalog; it runs nothing.

use std::fmt::Write as _;

use crate::error::{Error, Result};
use crate::model::time::Timestamp;
use crate::rules::{AggregateFn, CmpOp};
use crate::storage::Catalog;
use crate::tables::{clickhouse_string, duckdb_string};

use super::plan::{self, EventNode, Filter, Frequency, Lit, Node, NodeKind, SeqNode, ValueTest};
use super::{PreparedRule, ReadState};

/// Which SQL the query is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    ClickHouse,
    DuckDb,
}

impl Dialect {
    /// `clickhouse` or `duckdb`.
    pub fn parse(name: &str) -> Result<Dialect> {
        match name.to_ascii_lowercase().as_str() {
            "clickhouse" => Ok(Dialect::ClickHouse),
            "duckdb" => Ok(Dialect::DuckDb),
            _ => Err(Error::InvalidInput(format!(
                "{name:?} is not a SQL dialect: clickhouse or duckdb"
            ))),
        }
    }

    /// `clickhouse` or `duckdb`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::ClickHouse => "clickhouse",
            Dialect::DuckDb => "duckdb",
        }
    }

    fn string(self, s: &str) -> String {
        match self {
            Dialect::ClickHouse => clickhouse_string(s),
            Dialect::DuckDb => duckdb_string(s),
        }
    }

    /// A 64-bit float literal that parses back to exactly `x` (from its shortest round-trip
    /// text); NaN and infinities never reach here (no rule literal is one).
    fn double(self, x: f64) -> String {
        let text = format!("{x:?}");
        match self {
            Dialect::ClickHouse => format!("toFloat64('{text}')"),
            Dialect::DuckDb => format!("CAST('{text}' AS DOUBLE)"),
        }
    }

    fn to_double(self, column: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("toFloat64({column})"),
            Dialect::DuckDb => format!("CAST({column} AS DOUBLE)"),
        }
    }

    /// Whether `haystack` contains `needle` (case-sensitive; the empty text is in every text).
    fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("position({haystack}, {needle}) > 0"),
            Dialect::DuckDb => format!("contains({haystack}, {needle})"),
        }
    }
}

/// The SQL of `rule` at `now`: `SELECT id FROM customers WHERE ... ORDER BY id`, the members'
/// external ids.
pub(crate) fn to_sql(
    state: &ReadState,
    rule: &PreparedRule,
    dialect: Dialect,
    now: Timestamp,
) -> Result<String> {
    let planned = state.plan(rule.rule(), now)?;
    let writer = Writer {
        catalog: &state.catalog,
        d: dialect,
    };
    let condition = writer.node(&planned.root)?;
    Ok(format!(
        "SELECT id FROM customers AS c WHERE {condition} ORDER BY id"
    ))
}

struct Writer<'a> {
    catalog: &'a Catalog,
    d: Dialect,
}

const FALSE: &str = "(1 = 0)";
const TRUE: &str = "(1 = 1)";

/// The operator in SQL: both dialects write the six comparisons as rules do.
fn op_sql(op: CmpOp) -> &'static str {
    op.symbol()
}

/// `a OR b OR ...`, or false for none.
fn any(parts: Vec<String>) -> String {
    if parts.is_empty() {
        FALSE.to_owned()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

impl Writer<'_> {
    /// A boolean over `c.customer`.
    fn node(&self, n: &Node) -> Result<String> {
        Ok(match &n.kind {
            NodeKind::And(items) => format!(
                "({})",
                items
                    .iter()
                    .map(|i| self.node(i))
                    .collect::<Result<Vec<_>>>()?
                    .join(" AND ")
            ),
            NodeKind::Or(items) => any(items
                .iter()
                .map(|i| self.node(i))
                .collect::<Result<Vec<_>>>()?),
            NodeKind::Not(inner) => format!("(NOT {})", self.node(inner)?),
            NodeKind::Everyone => TRUE.to_owned(),
            NodeKind::Audience { inner, .. } => self.node(inner)?,
            NodeKind::List { name, .. } => {
                return Err(Error::InvalidInput(format!(
                    "audience {name} is a loaded list, which has no SQL in this dialect: \
                     query the warehouse table it was made from instead"
                )))
            }
            NodeKind::Trait { trait_id, test } => {
                let name = trait_id.map(|t| self.catalog.trait_name(t));
                self.value_test(
                    "c.customer",
                    "customer",
                    "traits",
                    "trait_items",
                    name,
                    test,
                )
            }
            NodeKind::Event(e) => self.event(e)?,
            NodeKind::Sequence(seq) => self.sequence(seq),
            // A matching event in the window and none before it (`first`) or after it up to
            // *now* (`last`), as the engine plans it.
            NodeKind::FirstLast(fl) => format!(
                "({} AND (NOT {}))",
                self.event(&fl.inside)?,
                self.event(&fl.outside)?
            ),
            NodeKind::Bucket(b) => self.bucket(b),
            NodeKind::Computed(c) => match &c.expanded {
                Some(x) => self.node(x)?,
                None => {
                    return Err(Error::InvalidInput(format!(
                        "this test on the computed trait {} ({}) has no SQL yet: only tests \
                         the rule language can state as event conditions do",
                        c.name, c.expression
                    )))
                }
            },
        })
    }

    /// `bucket(NAME)` of the customer's external id `c.id` (`crate::model::bucket`): the first 8
    /// bytes of SHA-256 of `NAME:ID` as a big-endian unsigned integer, modulo 100, among the
    /// buckets the test accepts.
    fn bucket(&self, b: &plan::BucketNode) -> String {
        let accepted: Vec<String> = b.buckets().map(|x| x.to_string()).collect();
        if accepted.is_empty() {
            return FALSE.to_owned();
        }
        if accepted.len() == usize::from(crate::model::bucket::BUCKETS) {
            return TRUE.to_owned();
        }
        let text = format!("{}:", b.name);
        let prefix = self.d.string(&text);
        let value = match self.d {
            // SHA256 gives 32 raw bytes; reinterpretAsUInt64 reads little-endian, so the first
            // 8 bytes are reversed to read them big-endian.
            Dialect::ClickHouse => format!(
                "(reinterpretAsUInt64(reverse(substring(SHA256(concat({prefix}, c.id)), 1, 8))) \
                 % 100)"
            ),
            // sha256 gives 64 hex digits; the first 16 are the first 8 bytes, big-endian.
            Dialect::DuckDb => {
                format!("(CAST('0x' || substr(sha256({prefix} || c.id), 1, 16) AS UBIGINT) % 100)")
            }
        };
        format!("({value} IN ({}))", accepted.join(", "))
    }

    /// `key` in the rows of `table` for the name `name` (`None`: a name nobody has) whose value
    /// passes `test`: the same shape for a trait of a customer and a property of an event.
    fn value_test(
        &self,
        outer: &str,
        key: &str,
        table: &str,
        items: &str,
        name: Option<&str>,
        test: &ValueTest,
    ) -> String {
        let Some(name) = name else {
            // Nobody has it: only `is not set` holds.
            return match test {
                ValueTest::IsSet { negated: true } => TRUE.to_owned(),
                _ => FALSE.to_owned(),
            };
        };
        let name = self.d.string(name);
        let rows = |cond: &str| {
            format!("{outer} IN (SELECT {key} FROM {table} WHERE name = {name} AND {cond})")
        };
        match test {
            ValueTest::IsSet { negated } => {
                let set = format!("{outer} IN (SELECT {key} FROM {table} WHERE name = {name})");
                if *negated {
                    format!("(NOT {set})")
                } else {
                    set
                }
            }
            ValueTest::Compare { op: CmpOp::Eq, lit } => rows(&self.equals(lit)),
            ValueTest::Compare { op: CmpOp::Ne, lit } => {
                rows(&format!("(NOT {})", self.equals(lit)))
            }
            ValueTest::Compare { op, lit } => rows(&self.order(lit, *op)),
            ValueTest::In { negated, lits } => {
                let eq = any(lits.iter().map(|l| self.equals(l)).collect());
                if *negated {
                    rows(&format!("(NOT {eq})"))
                } else {
                    rows(&eq)
                }
            }
            ValueTest::Between { low, high } => rows(&format!(
                "({} AND {})",
                self.order(low, CmpOp::Ge),
                self.order(high, CmpOp::Le)
            )),
            ValueTest::Contains(lit) => {
                let text = match &lit.text {
                    Some(t) => rows(&format!(
                        "(kind = 'text' AND {})",
                        self.d.contains("text", &self.d.string(t))
                    )),
                    None => FALSE.to_owned(),
                };
                let element = format!(
                    "{outer} IN (SELECT {key} FROM {items} WHERE name = {name} AND {})",
                    self.equals(lit)
                );
                format!("({text} OR {element})")
            }
        }
    }

    /// Whether the row's value equals `lit`, as `customer::equals`: never null.
    fn equals(&self, lit: &Lit) -> String {
        let mut parts = Vec::new();
        if let Some(t) = &lit.text {
            parts.push(format!("(kind = 'text' AND text = {})", self.d.string(t)));
        }
        match (lit.int, lit.num) {
            (Some(j), _) => parts.push(format!("(kind = 'int' AND int = {j})")),
            (None, Some(f)) => parts.push(format!(
                "(kind = 'int' AND {} = {})",
                self.d.to_double("int"),
                self.d.double(f)
            )),
            _ => {}
        }
        if let Some(f) = lit.num {
            parts.push(format!(
                "(kind = 'float' AND coalesce(float = {}, FALSE))",
                self.d.double(f)
            ));
        }
        if let Some(b) = lit.boolean {
            parts.push(format!(
                "(kind = 'bool' AND bool = {})",
                if b { "TRUE" } else { "FALSE" }
            ));
        }
        if let Some(t) = lit.time {
            parts.push(format!("(kind = 'time' AND time = {t})"));
        }
        any(parts)
    }

    /// Whether the row's value orders against `lit` as `op` asks, as `customer::order`.
    fn order(&self, lit: &Lit, op: CmpOp) -> String {
        let op = op_sql(op);
        let mut parts = Vec::new();
        if !lit.is_str {
            match (lit.int, lit.num) {
                (Some(j), _) => parts.push(format!("(kind = 'int' AND int {op} {j})")),
                (None, Some(f)) => parts.push(format!(
                    "(kind = 'int' AND {} {op} {})",
                    self.d.to_double("int"),
                    self.d.double(f)
                )),
                _ => {}
            }
            if let Some(f) = lit.num {
                // A NaN stored value is exported as null: it orders against nothing.
                parts.push(format!(
                    "(kind = 'float' AND coalesce(float {op} {}, FALSE))",
                    self.d.double(f)
                ));
            }
        }
        if let Some(t) = lit.time {
            parts.push(format!("(kind = 'time' AND time {op} {t})"));
        }
        any(parts)
    }

    /// A filter over the event row `{alias}.row`.
    fn filter(&self, f: &Filter, alias: &str) -> String {
        match f {
            Filter::And(items) => format!(
                "({})",
                items
                    .iter()
                    .map(|i| self.filter(i, alias))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            ),
            Filter::Or(items) => any(items.iter().map(|i| self.filter(i, alias)).collect()),
            Filter::Not(inner) => format!("(NOT {})", self.filter(inner, alias)),
            Filter::Cond { prop, test } => {
                let name = prop.map(|p| self.catalog.prop_name(p));
                let row = format!("{alias}.row");
                self.value_test(&row, "row", "properties", "property_items", name, test)
            }
        }
    }

    /// The conditions on the event row `alias` for one event node: name, window, filter; `None`
    /// when no event can match (an unknown event, an empty window).
    fn matching(&self, e: &EventNode, alias: &str) -> Option<String> {
        let id = e.event.filter(|_| !e.window_is_empty())?;
        let mut w = format!(
            "{alias}.event = {} AND {alias}.ts >= {} AND {alias}.ts <= {}",
            self.d.string(self.catalog.event_name(id)),
            e.from,
            e.to
        );
        if let Some(f) = &e.filter {
            let _ = write!(w, " AND {}", self.filter(f, alias));
        }
        Some(w)
    }

    /// A sequence over `c.customer`: the steps' events joined by customer, each later one
    /// strictly after the one before and within T of the first (and for `with same`, its
    /// property the same as the first's); `then not`: the first-step events with no such second.
    fn sequence(&self, s: &SeqNode) -> String {
        let Some(parts) = s
            .steps
            .iter()
            .enumerate()
            .map(|(i, e)| self.matching(e, &format!("s{i}")))
            .collect::<Option<Vec<String>>>()
        else {
            // A step nothing can match: no sequence forms; a `then not` whose second step
            // cannot happen still needs its first.
            return match (s.negated, self.matching(&s.steps[0], "s0")) {
                (true, Some(first)) => {
                    format!("c.customer IN (SELECT s0.customer FROM events AS s0 WHERE {first})")
                }
                _ => FALSE.to_owned(),
            };
        };
        let same_prop = match s.same {
            None => None,
            Some(None) => return FALSE.to_owned(),
            Some(Some(p)) => Some(self.d.string(self.catalog.prop_name(p))),
        };
        let k = s.steps.len();
        let mut from = "events AS s0".to_owned();
        let mut conds = vec![parts[0].clone()];
        for (i, part) in parts.iter().enumerate().skip(1) {
            let _ = write!(from, " JOIN events AS s{i} ON s{i}.customer = s0.customer");
            conds.push(part.clone());
            conds.push(format!(
                "s{i}.ts > s{}.ts AND s{i}.ts <= s0.ts + {}",
                i - 1,
                s.within
            ));
        }
        if let Some(name) = &same_prop {
            for i in 0..k {
                let _ = write!(
                    from,
                    " JOIN (SELECT * FROM properties WHERE name = {name}) AS p{i} ON p{i}.row = s{i}.row"
                );
            }
            for i in 1..k {
                conds.push(self.same_value(&format!("p{i}"), "p0"));
            }
        }
        // The rule's literals are inside `body`: it is only ever appended to, never searched.
        let body = format!("FROM {from} WHERE {}", conds.join(" AND "));
        if s.negated {
            let first = &parts[0];
            format!(
                "c.customer IN (SELECT s0.customer FROM events AS s0 WHERE {first} AND s0.row NOT \
                 IN (SELECT s0.row {body}))"
            )
        } else {
            format!("c.customer IN (SELECT s0.customer {body})")
        }
    }

    /// Whether the property rows `a` and `b` hold the same value, as `customer::same_value`:
    /// text, booleans and instants when equal, integers exactly, numbers of mixed kinds by value,
    /// lists never.
    fn same_value(&self, a: &str, b: &str) -> String {
        let num = |p: &str| {
            format!(
                "(CASE WHEN {p}.kind = 'int' THEN {} ELSE {p}.float END)",
                self.d.to_double(&format!("{p}.int"))
            )
        };
        format!(
            "(({a}.kind = 'text' AND {b}.kind = 'text' AND {a}.text = {b}.text) \
             OR ({a}.kind = 'bool' AND {b}.kind = 'bool' AND {a}.bool = {b}.bool) \
             OR ({a}.kind = 'time' AND {b}.kind = 'time' AND {a}.time = {b}.time) \
             OR ({a}.kind = 'int' AND {b}.kind = 'int' AND {a}.int = {b}.int) \
             OR ({a}.kind IN ('int', 'float') AND {b}.kind IN ('int', 'float') \
             AND NOT ({a}.kind = 'int' AND {b}.kind = 'int') AND coalesce({} = {}, FALSE)))",
            num(a),
            num(b)
        )
    }

    /// An event condition over `c.customer`.
    fn event(&self, e: &EventNode) -> Result<String> {
        let matching = self.matching(e, "e");
        let holds_for_none = e.frequency.holds_for_none();
        let Some(matching) = matching else {
            return Ok(if holds_for_none { TRUE } else { FALSE }.to_owned());
        };
        if e.frequency.holds_for_any_presence() {
            return Ok(format!(
                "c.customer IN (SELECT e.customer FROM events AS e WHERE {matching})"
            ));
        }
        // The customers with matching events, grouped, and the condition on the group.
        let (join, having) = match e.frequency {
            Frequency::Count { op, n } => (String::new(), format!("count(*) {} {n}", op_sql(op))),
            Frequency::Aggregate {
                func,
                prop,
                op,
                value,
            } => {
                let Some(prop) = prop else {
                    // No event has a number for it: the sum is 0, the others undefined.
                    let holds = func == AggregateFn::Sum && plan::compare_f64(0.0, op, value);
                    return Ok(if holds {
                        format!(
                            "c.customer IN (SELECT e.customer FROM events AS e WHERE {matching})"
                        )
                    } else if holds_for_none {
                        // Unreachable: a sum that holds for none holds here too.
                        TRUE.to_owned()
                    } else {
                        FALSE.to_owned()
                    });
                };
                let join = format!(
                    " LEFT JOIN properties AS p ON p.row = e.row AND p.name = {}",
                    self.d.string(self.catalog.prop_name(prop))
                );
                (join, self.aggregate(func, op, value))
            }
            Frequency::Distinct { prop, op, n } => {
                let Some(prop) = prop else {
                    // No event has the property: every customer has 0 values.
                    return Ok(if holds_for_none { TRUE } else { FALSE }.to_owned());
                };
                let join = format!(
                    " LEFT JOIN properties AS p ON p.row = e.row AND p.name = {}",
                    self.d.string(self.catalog.prop_name(prop))
                );
                let having = format!("count(DISTINCT {}) {} {n}", self.distinct_key(), op_sql(op));
                (join, having)
            }
        };
        let group = |having: &str| {
            format!(
                "SELECT e.customer FROM events AS e{join} WHERE {matching} GROUP BY e.customer \
                 HAVING {having}"
            )
        };
        Ok(if holds_for_none {
            format!(
                "(NOT c.customer IN ({}))",
                group(&format!("NOT ({having})"))
            )
        } else {
            format!("c.customer IN ({})", group(&having))
        })
    }

    /// The joined property row `p` as a text that two rows share exactly when
    /// `customer::DistinctValue` makes them one value: a tag letter, then the value (a float with
    /// no fraction within the integers' range as that integer); NULL for a list or no row.
    fn distinct_key(&self) -> String {
        let d = self.d;
        let text = |x: &str| match d {
            Dialect::DuckDb => format!("CAST({x} AS VARCHAR)"),
            Dialect::ClickHouse => format!("toString({x})"),
        };
        let whole = match d {
            Dialect::DuckDb => "CAST(p.float AS BIGINT)",
            Dialect::ClickHouse => "toInt64(p.float)",
        };
        format!(
            "(CASE WHEN p.kind = 'int' THEN 'w' || {int} \
             WHEN p.kind = 'float' AND p.float = trunc(p.float) \
             AND p.float >= {low} AND p.float < {high} THEN 'w' || {whole} \
             WHEN p.kind = 'float' THEN 'f' || {float} \
             WHEN p.kind = 'text' THEN 't' || p.text \
             WHEN p.kind = 'bool' AND p.bool THEN 'b1' WHEN p.kind = 'bool' THEN 'b0' \
             WHEN p.kind = 'time' THEN 'i' || {time} ELSE NULL END)",
            int = text("p.int"),
            whole = text(whole),
            float = text("p.float"),
            time = text("p.time"),
            low = self.d.double(-9_223_372_036_854_775_808.0),
            high = self.d.double(9_223_372_036_854_775_808.0),
        )
    }

    /// The HAVING condition of an aggregate over `p` (the joined property row), numbers only,
    /// summed in time order.
    fn aggregate(&self, func: AggregateFn, op: CmpOp, value: f64) -> String {
        let x = format!(
            "(CASE WHEN p.kind = 'int' THEN {} WHEN p.kind = 'float' THEN p.float ELSE NULL END)",
            self.d.to_double("p.int")
        );
        let op = op_sql(op);
        let v = self.d.double(value);
        let sum = match self.d {
            Dialect::DuckDb => format!("coalesce(sum({x} ORDER BY e.ts, e.row), 0)"),
            Dialect::ClickHouse => format!(
                "arraySum(arrayMap(t -> t.3, arraySort(groupArray(tuple(e.ts, e.row, \
                 assumeNotNull({x}))))))"
            ),
        };
        let numbers = format!("count({x})");
        match func {
            AggregateFn::Sum => format!("coalesce({sum} {op} {v}, FALSE)"),
            AggregateFn::Avg => {
                format!("coalesce({numbers} > 0 AND {sum} / {numbers} {op} {v}, FALSE)")
            }
            AggregateFn::Min => format!("coalesce(min({x}) {op} {v}, FALSE)"),
            AggregateFn::Max => format!("coalesce(max({x}) {op} {v}, FALSE)"),
        }
    }
}
