//! The server's commands: one table entry and one function each, turning a request's arguments
//! into calls on [`Db`] and its answer into a reply.
//!
//! This module owns argument parsing and the mapping of library errors to RESP error codes; it
//! knows neither the socket nor the wire format beyond [`Reply`]. Adding a command is one entry in
//! [`COMMANDS`] and one function. The pub/sub commands change the session's [`Filter`] and start
//! the connection's delivery through [`Push`]; delivering is [`super::pubsub`]'s.

use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;

use crate::ingest::message::parse_fields;
use crate::model::time::{self, Timestamp};
use crate::query::{Audience, PreparedRule};
use crate::{Db, Error};

use super::pubsub::{self, Filter, Push};
use super::resp::Reply;
use super::Shared;

/// One connection's own state.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    /// The RESP version replies are written in: 2 until `HELLO 3`.
    pub proto: u8,
    pub name: Option<String>,
    /// Set by `QUIT`: close after this reply.
    pub quit: bool,
    /// The channels and patterns subscribed to.
    pub subscriptions: Filter,
    /// Set when the subscriptions or the protocol changed: the replies so far must be written,
    /// and the new filter installed with them, before the next request runs.
    pub sync: bool,
}

impl Session {
    pub fn new(id: u64) -> Self {
        Session {
            id,
            proto: 2,
            name: None,
            quit: false,
            subscriptions: Filter::default(),
            sync: false,
        }
    }
}

/// What a command runs with.
pub struct Ctx<'a> {
    pub db: &'a Db,
    pub shared: &'a Shared,
    pub session: &'a mut Session,
    /// The connection's output, which pub/sub starts delivering to.
    pub push: &'a mut Push,
}

/// A request's arguments after the command name, borrowed from the read buffer.
#[derive(Clone, Copy)]
pub struct Args<'b> {
    buf: &'b [u8],
    ranges: &'b [Range<usize>],
}

impl<'b> Args<'b> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn bytes(&self, i: usize) -> &'b [u8] {
        &self.buf[self.ranges[i].clone()]
    }

    /// Argument `i` as text; commands take UTF-8 only.
    pub fn str(&self, i: usize) -> Result<&'b str, CmdError> {
        std::str::from_utf8(self.bytes(i))
            .map_err(|_| CmdError::syntax(format!("argument {} is not valid UTF-8", i + 1)))
    }

    /// Whether argument `i` is `word`, ignoring ASCII case.
    pub fn is(&self, i: usize, word: &str) -> bool {
        self.bytes(i).eq_ignore_ascii_case(word.as_bytes())
    }
}

/// Why a command failed: becomes an error reply, the connection stays open.
#[derive(Debug)]
pub enum CmdError {
    /// `-<code> <message>`.
    Reply(&'static str, String),
    /// An error from the library.
    Db(Error),
}

impl CmdError {
    pub fn syntax(msg: impl Into<String>) -> Self {
        CmdError::Reply("ERR", msg.into())
    }

    /// The error code (the reply's first word) and message.
    pub fn code_and_message(&self) -> (&'static str, String) {
        match self {
            CmdError::Reply(code, msg) => (code, msg.clone()),
            CmdError::Db(e) => match e {
                Error::Rule(p) => ("RULE", p.to_string()),
                Error::Evaluation(m) => ("EVAL", m.clone()),
                Error::NotFound(m) => ("NOTFOUND", m.clone()),
                Error::InvalidInput(m) => ("INVALID", m.clone()),
                Error::Limit { message, .. } => ("INVALID", message.clone()),
                Error::NotIndexed { message, .. } => ("INVALID", message.clone()),
                Error::MergeRefused(m) => ("REFUSED", m.clone()),
                other => ("ERR", other.to_string()),
            },
        }
    }
}

impl From<Error> for CmdError {
    fn from(e: Error) -> Self {
        CmdError::Db(e)
    }
}

type Run = fn(&mut Ctx<'_>, Args<'_>, &mut Reply<'_>) -> Result<(), CmdError>;

/// One command: its name (matched ignoring case), how many arguments it takes after the name,
/// and the function that runs it.
pub struct Command {
    pub name: &'static str,
    pub min_args: usize,
    pub max_args: usize,
    pub run: Run,
}

const MANY: usize = usize::MAX;

const fn cmd(name: &'static str, min_args: usize, max_args: usize, run: Run) -> Command {
    Command {
        name,
        min_args,
        max_args,
        run,
    }
}

/// Every command the server answers.
pub static COMMANDS: &[Command] = &[
    // Connection.
    cmd("PING", 0, 1, ping),
    cmd("ECHO", 1, 1, echo),
    cmd("HELLO", 0, MANY, hello),
    cmd("QUIT", 0, 0, quit),
    cmd("RESET", 0, 0, reset),
    cmd("SELECT", 1, 1, select),
    cmd("CLIENT", 1, MANY, client),
    cmd("AUTH", 1, 2, auth),
    // Introspection, as clients and tools ask for it.
    cmd("INFO", 0, MANY, info),
    cmd("DBSIZE", 0, 0, dbsize),
    cmd("COMMAND", 0, MANY, command),
    cmd("CONFIG", 1, MANY, config),
    cmd("SCHEMA", 0, 0, schema),
    // Ingest.
    cmd("TRACK", 3, 4, track),
    cmd("IDENTIFY", 2, 2, identify),
    cmd("ALIAS", 2, 2, alias),
    // Rules.
    cmd("QUERY", 1, 6, query),
    cmd("EXPLAIN", 1, 3, explain),
    cmd("WHY", 2, 4, why),
    cmd("CHECK", 1, 1, check),
    // Customers.
    cmd("CUSTOMER.SHOW", 1, 1, customer_show),
    cmd("CUSTOMER.EXPORT", 1, 1, customer_export),
    cmd("CUSTOMER.DELETE", 1, 1, customer_delete),
    // Saved audiences.
    cmd("AUDIENCE.DEFINE", 2, 2, audience_define),
    cmd("AUDIENCE.LIST", 0, 0, audience_list),
    cmd("AUDIENCE.SHOW", 1, 1, audience_show),
    cmd("AUDIENCE.DROP", 1, 1, audience_drop),
    cmd("AUDIENCE.LOAD", 2, MANY, audience_load),
    cmd("AUDIENCE.MEMBERS", 1, 6, audience_members),
    cmd("AUDIENCE.DIFF", 2, 2, audience_diff),
    cmd("AUDIENCE.CHANGES", 1, 2, audience_changes),
    cmd("AUDIENCES.OF", 1, 1, audiences_of),
    // Computed traits.
    cmd("TRAIT.DEFINE", 2, 2, trait_define),
    cmd("TRAIT.LIST", 0, 0, trait_list),
    cmd("TRAIT.SHOW", 1, 2, trait_show),
    cmd("TRAIT.REFIT", 1, 1, trait_refit),
    cmd("TRAIT.DROP", 1, 1, trait_drop),
    // Values of one event property: top values of an audience.
    cmd("TOP", 3, 13, top),
    cmd("RECOMMEND", 3, 9, recommend),
    cmd("RECENT", 3, 7, recent),
    // Reports: funnels and A/B experiments.
    cmd("FUNNEL", 3, MANY, funnel),
    cmd("EXPERIMENT", 3, 7, experiment),
    // Entries and exits as they happen (Redis pub/sub on `audience:NAME`).
    cmd("SUBSCRIBE", 1, MANY, subscribe),
    cmd("UNSUBSCRIBE", 0, MANY, unsubscribe),
    cmd("PSUBSCRIBE", 1, MANY, psubscribe),
    cmd("PUNSUBSCRIBE", 0, MANY, punsubscribe),
    cmd("PUBSUB", 1, MANY, pubsub_info),
];

/// What a RESP2 connection with subscriptions may still send, as in Redis.
const SUBSCRIBED_MODE: &[&str] = &[
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "PSUBSCRIBE",
    "PUNSUBSCRIBE",
    "PING",
    "QUIT",
    "RESET",
];

/// Looks a command up by name, ignoring ASCII case.
pub fn find(name: &[u8]) -> Option<&'static Command> {
    COMMANDS
        .iter()
        .find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
}

/// Runs the request whose arguments (name first) are `ranges` into `buf`, writing its reply.
/// Returns whether the reply was an error.
pub fn dispatch(
    ctx: &mut Ctx<'_>,
    buf: &[u8],
    ranges: &[Range<usize>],
    reply: &mut Reply<'_>,
) -> bool {
    let name = &buf[ranges[0].clone()];
    let args = Args {
        buf,
        ranges: &ranges[1..],
    };
    let result = match find(name) {
        None => Err(unknown_command(name, args)),
        Some(c) if args.len() < c.min_args || args.len() > c.max_args => {
            Err(CmdError::syntax(format!(
                "wrong number of arguments for '{}' command",
                c.name.to_ascii_lowercase()
            )))
        }
        Some(c)
            if ctx.session.proto < 3
                && !ctx.session.subscriptions.is_empty()
                && !SUBSCRIBED_MODE.contains(&c.name) =>
        {
            Err(CmdError::syntax(format!(
                "Can't execute '{}': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET \
                 are allowed in this context",
                c.name.to_ascii_lowercase()
            )))
        }
        Some(c) => (c.run)(ctx, args, reply),
    };
    match result {
        Ok(()) => false,
        Err(e) => {
            let (code, msg) = e.code_and_message();
            reply.error(code, &msg);
            true
        }
    }
}

fn unknown_command(name: &[u8], args: Args<'_>) -> CmdError {
    let mut msg = format!(
        "unknown command '{}', with args beginning with:",
        String::from_utf8_lossy(&name[..name.len().min(128)])
    );
    for i in 0..args.len().min(4) {
        let a = args.bytes(i);
        msg.push_str(&format!(
            " '{}'",
            String::from_utf8_lossy(&a[..a.len().min(64)])
        ));
    }
    CmdError::syntax(msg)
}

/// `PING [message]`; in RESP2 with subscriptions, `["pong", message]` as Redis answers there.
fn ping(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    if ctx.session.proto < 3 && !ctx.session.subscriptions.is_empty() {
        r.array(2);
        r.bulk(b"pong");
        r.bulk(if args.is_empty() { b"" } else { args.bytes(0) });
    } else if args.is_empty() {
        r.simple("PONG");
    } else {
        r.bulk(args.bytes(0));
    }
    Ok(())
}

fn echo(_: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    r.bulk(args.bytes(0));
    Ok(())
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: switches the protocol and describes the
/// server. There are no passwords (the socket's file mode is the access control): `AUTH` is
/// accepted and ignored.
fn hello(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let mut proto = ctx.session.proto;
    let mut name = None;
    if !args.is_empty() {
        proto = match args.bytes(0) {
            b"2" => 2,
            b"3" => 3,
            _ => {
                return Err(CmdError::Reply(
                    "NOPROTO",
                    "unsupported protocol version".into(),
                ))
            }
        };
        let mut i = 1;
        while i < args.len() {
            if args.is(i, "AUTH") && i + 2 < args.len() {
                i += 3;
            } else if args.is(i, "SETNAME") && i + 1 < args.len() {
                name = Some(args.str(i + 1)?.to_owned());
                i += 2;
            } else {
                return Err(CmdError::syntax(format!(
                    "syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(args.bytes(i))
                )));
            }
        }
    }
    if proto != ctx.session.proto {
        ctx.session.proto = proto;
        // Notices written from here on take the new protocol's shape.
        ctx.session.sync = true;
    }
    if name.is_some() {
        ctx.session.name = name;
    }
    r.proto = proto;
    r.map(7);
    r.bulk(b"server");
    r.bulk(b"audiencedb");
    r.bulk(b"version");
    r.bulk(env!("CARGO_PKG_VERSION").as_bytes());
    r.bulk(b"proto");
    r.int(i64::from(proto));
    r.bulk(b"id");
    r.int(i64::try_from(ctx.session.id).unwrap_or(i64::MAX));
    r.bulk(b"mode");
    r.bulk(b"standalone");
    r.bulk(b"role");
    r.bulk(b"master");
    r.bulk(b"modules");
    r.array(0);
    Ok(())
}

fn quit(ctx: &mut Ctx<'_>, _: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    ctx.session.quit = true;
    r.ok();
    Ok(())
}

/// `RESET`: the connection as it was when opened (no subscriptions, RESP2, no name), as Redis
/// does; no unsubscribe confirmations are sent.
fn reset(ctx: &mut Ctx<'_>, _: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let s = &mut *ctx.session;
    s.subscriptions = Filter::default();
    s.proto = 2;
    s.name = None;
    s.sync = true;
    r.proto = 2;
    r.simple("RESET");
    Ok(())
}

/// There is one database: `SELECT 0` is accepted for clients that send it.
fn select(_: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    if args.bytes(0) == b"0" {
        r.ok();
        Ok(())
    } else {
        Err(CmdError::syntax("DB index is out of range"))
    }
}

fn auth(_: &mut Ctx<'_>, _: Args<'_>, _: &mut Reply<'_>) -> Result<(), CmdError> {
    Err(CmdError::syntax(
        "AUTH <password> called without any password configured: access is the socket file's mode",
    ))
}

fn client(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let sub = args.bytes(0);
    let n = args.len() - 1;
    if sub.eq_ignore_ascii_case(b"SETNAME") && n == 1 {
        let name = args.str(1)?;
        if name.bytes().any(|b| b <= b' ') {
            return Err(CmdError::syntax(
                "Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        ctx.session.name = (!name.is_empty()).then(|| name.to_owned());
        r.ok();
    } else if sub.eq_ignore_ascii_case(b"GETNAME") && n == 0 {
        match &ctx.session.name {
            Some(name) => r.bulk(name.as_bytes()),
            None => r.null(),
        }
    } else if sub.eq_ignore_ascii_case(b"ID") && n == 0 {
        r.int(i64::try_from(ctx.session.id).unwrap_or(i64::MAX));
    } else if sub.eq_ignore_ascii_case(b"SETINFO") && n == 2 {
        // Library name and version, as redis-py sends them: nothing to keep.
        r.ok();
    } else if sub.eq_ignore_ascii_case(b"INFO") && n == 0 {
        let line = format!(
            "id={} name={} resp={}\n",
            ctx.session.id,
            ctx.session.name.as_deref().unwrap_or(""),
            ctx.session.proto
        );
        r.bulk(line.as_bytes());
    } else {
        return Err(CmdError::syntax(format!(
            "unknown subcommand or wrong number of arguments for 'CLIENT|{}'",
            String::from_utf8_lossy(sub)
        )));
    }
    Ok(())
}

/// The `key:value` text Redis's `INFO` gives, with this server's sizes and counters.
fn info(ctx: &mut Ctx<'_>, _: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let crate::Totals {
        customers,
        profiles,
        events,
        trait_names: traits,
        event_names,
    } = ctx.db.totals();
    let s = ctx.shared;
    let pubsub = s.pubsub.counts();
    let text = format!(
        "# Server\r\n\
         audiencedb_version:{}\r\n\
         process_id:{}\r\n\
         uptime_in_seconds:{}\r\n\
         unix_socket:{}\r\n\
         database:{}\r\n\
         \r\n# Clients\r\n\
         connected_clients:{}\r\n\
         maxclients:{}\r\n\
         pubsub_clients:{}\r\n\
         \r\n# Stats\r\n\
         total_connections_received:{}\r\n\
         rejected_connections:{}\r\n\
         total_commands_processed:{}\r\n\
         total_error_replies:{}\r\n\
         pubsub_channels:{}\r\n\
         pubsub_patterns:{}\r\n\
         \r\n# Data\r\n\
         customers:{customers}\r\n\
         profiles:{profiles}\r\n\
         events:{events}\r\n\
         trait_names:{traits}\r\n\
         event_names:{event_names}\r\n",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        s.started.elapsed().as_secs(),
        s.socket.display(),
        ctx.db.path().display(),
        s.clients.load(Relaxed),
        s.max_clients,
        pubsub.clients,
        s.connections.load(Relaxed),
        s.rejected.load(Relaxed),
        s.commands.load(Relaxed),
        s.errors.load(Relaxed),
        pubsub.channels,
        pubsub.patterns,
    );
    r.bulk(text.as_bytes());
    Ok(())
}

/// The number of customers: the nearest thing to Redis's number of keys.
fn dbsize(ctx: &mut Ctx<'_>, _: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let n = ctx.db.totals().customers;
    r.int(i64::try_from(n).unwrap_or(i64::MAX));
    Ok(())
}

/// `COMMAND` lists the commands (name and Redis-style arity); `COMMAND COUNT`, `COMMAND LIST`;
/// `COMMAND DOCS` (what redis-cli asks on start) is answered with no documentation.
fn command(_: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    if args.is_empty() || args.is(0, "INFO") {
        r.array(COMMANDS.len());
        for c in COMMANDS {
            r.array(6);
            r.bulk(c.name.to_ascii_lowercase().as_bytes());
            // Redis arity counts the name; negative means "at least".
            let arity = if c.min_args == c.max_args {
                c.min_args as i64 + 1
            } else {
                -(c.min_args as i64 + 1)
            };
            r.int(arity);
            r.array(0);
            r.int(0);
            r.int(0);
            r.int(0);
        }
    } else if args.is(0, "COUNT") {
        r.int(COMMANDS.len() as i64);
    } else if args.is(0, "LIST") {
        r.array(COMMANDS.len());
        for c in COMMANDS {
            r.bulk(c.name.to_ascii_lowercase().as_bytes());
        }
    } else if args.is(0, "DOCS") {
        r.map(0);
    } else {
        return Err(CmdError::syntax(format!(
            "unknown subcommand '{}'",
            String::from_utf8_lossy(args.bytes(0))
        )));
    }
    Ok(())
}

/// `CONFIG GET` answers the few parameters tools ask for (redis-benchmark asks `save` and
/// `appendonly`); nothing can be set.
fn config(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    if !args.is(0, "GET") || args.len() < 2 {
        return Err(CmdError::syntax(
            "only CONFIG GET parameter... is supported; settings are flags of `audiencedb serve`",
        ));
    }
    let s = ctx.shared;
    let known: [(&str, String); 4] = [
        ("save", String::new()),
        ("appendonly", "no".into()),
        ("maxclients", s.max_clients.to_string()),
        ("timeout", s.idle_timeout.as_secs().to_string()),
    ];
    let mut found: Vec<&(&str, String)> = Vec::new();
    for i in 1..args.len() {
        let pattern = args.bytes(i);
        for k in &known {
            let hit = pattern == b"*" || pattern.eq_ignore_ascii_case(k.0.as_bytes());
            if hit && !found.iter().any(|f| f.0 == k.0) {
                found.push(k);
            }
        }
    }
    r.map(found.len());
    for (k, v) in found {
        r.bulk(k.as_bytes());
        r.bulk(v.as_bytes());
    }
    Ok(())
}

fn schema(ctx: &mut Ctx<'_>, _: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    json_reply(r, &ctx.db.schema())
}

/// `TRACK id event json-properties [ts]`: ts is RFC 3339, a date, or milliseconds since the
/// epoch; without it, the time of arrival.
fn track(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let id = args.str(0)?;
    let event = args.str(1)?;
    let properties = parse_fields(args.str(2)?, "properties")
        .map_err(|e| CmdError::Reply("INVALID", format!("properties: {e}")))?
        .into_iter()
        // A null property is an absent property, as in imported messages.
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
    let ts = if args.len() > 3 {
        Some(parse_time(args.str(3)?)?)
    } else {
        None
    };
    ctx.db.track(id, event, properties, ts)?;
    r.ok();
    Ok(())
}

/// `IDENTIFY id json-traits`: merges the traits; a `null` trait removes it.
fn identify(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let id = args.str(0)?;
    let traits = parse_fields(args.str(1)?, "traits")
        .map_err(|e| CmdError::Reply("INVALID", format!("traits: {e}")))?;
    ctx.db.identify(id, traits)?;
    r.ok();
    Ok(())
}

/// `ALIAS previous user`: `previous`'s customer becomes `user`'s (identity merge). Replies 1
/// when it merged, 0 when the ids were one customer already; `-REFUSED` past a guard rail.
fn alias(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let merged = ctx.db.alias(args.str(0)?, args.str(1)?)?;
    r.int(i64::from(merged));
    Ok(())
}

/// What `QUERY` returns.
enum Shape<'a> {
    Count,
    Ids,
    Page {
        after: Option<&'a str>,
        limit: usize,
    },
}

/// `QUERY rule [NOW ts] [COUNT | IDS | PAGE after limit]`: the number of members (the default),
/// all their ids sorted, or a page of at most `limit` ids after `after` (`""` for the first).
fn query(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let (now, shape) = member_options(
        args,
        "NOW",
        "QUERY rule [NOW ts] [COUNT|IDS|PAGE after limit]",
    )?;
    let rule = PreparedRule::new(args.str(0)?)?;
    let audience: Audience = ctx.db.query_quiet(&rule, now.unwrap_or_else(time::now))?;
    reply_members(ctx, &audience, shape, r)
}

/// The options after a rule or an audience name: `[<time_word> ts] [COUNT|IDS|PAGE after limit]`.
fn member_options<'a>(
    args: Args<'a>,
    time_word: &str,
    usage: &str,
) -> Result<(Option<Timestamp>, Shape<'a>), CmdError> {
    let mut at = None;
    let mut shape = Shape::Count;
    let mut i = 1;
    while i < args.len() {
        if args.is(i, time_word) && i + 1 < args.len() {
            at = Some(parse_time(args.str(i + 1)?)?);
            i += 2;
        } else if args.is(i, "COUNT") {
            shape = Shape::Count;
            i += 1;
        } else if args.is(i, "IDS") {
            shape = Shape::Ids;
            i += 1;
        } else if args.is(i, "PAGE") && i + 2 < args.len() {
            let after = args.str(i + 1)?;
            let limit = args
                .str(i + 2)?
                .parse::<usize>()
                .map_err(|_| CmdError::syntax("PAGE limit must be a whole number"))?;
            shape = Shape::Page {
                after: (!after.is_empty()).then_some(after),
                limit,
            };
            i += 3;
        } else {
            return Err(syntax_at(args, i, usage));
        }
    }
    Ok((at, shape))
}

/// An audience as a count, every id, or a page of ids.
fn reply_members(
    ctx: &mut Ctx<'_>,
    audience: &Audience,
    shape: Shape<'_>,
    r: &mut Reply<'_>,
) -> Result<(), CmdError> {
    let ids = match shape {
        Shape::Count => {
            r.int(i64::try_from(audience.len()).unwrap_or(i64::MAX));
            return Ok(());
        }
        Shape::Ids => ctx.db.member_ids(audience)?,
        Shape::Page { after, limit } => ctx.db.member_page(audience, after, limit)?,
    };
    r.array(ids.len());
    for id in &ids {
        r.bulk(id.as_bytes());
    }
    Ok(())
}

/// `AUDIENCE.DEFINE name rule`: saves (or replaces) a saved audience; its description as JSON.
fn audience_define(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let info = ctx.db.define_audience(args.str(0)?, args.str(1)?)?;
    json_reply(r, &serde_json::to_value(&info).unwrap_or_default())
}

/// `TRAIT.DEFINE name expression`: defines a computed trait; its description as JSON.
fn trait_define(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let info = ctx.db.define_trait(args.str(0)?, args.str(1)?)?;
    json_reply(r, &serde_json::to_value(&info).unwrap_or_default())
}

/// `TRAIT.LIST`: every computed trait (name, expression, created, used_by) as a JSON array.
fn trait_list(ctx: &mut Ctx<'_>, _: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    json_reply(
        r,
        &serde_json::to_value(ctx.db.computed_traits()).unwrap_or_default(),
    )
}

/// `TRAIT.SHOW name [now]`: one computed trait as JSON; a predictive trait's `model` is the
/// kept fit, or with `now` the model fitted on the events up to then (the kept fit unchanged).
fn trait_show(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let name = args.str(0)?;
    let mut info = ctx.db.computed_trait(name)?;
    if args.len() > 1 {
        let now = parse_time(args.str(1)?)?;
        info.model = Some(ctx.db.fit_trait_at(name, now)?.to_json());
        info.refit_error = None;
    }
    json_reply(r, &serde_json::to_value(&info).unwrap_or_default())
}

/// `TRAIT.REFIT name`: fits a predictive trait's model again at the clock's now; the trait as
/// JSON, or an error saying why the fit failed (the last good fit is kept).
fn trait_refit(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let info = ctx.db.refit_trait(args.str(0)?)?;
    json_reply(r, &serde_json::to_value(&info).unwrap_or_default())
}

/// `TRAIT.DROP name`: OK, or an error naming the saved audiences that read it.
fn trait_drop(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    ctx.db.drop_trait(args.str(0)?)?;
    r.ok();
    Ok(())
}

/// `AUDIENCE.LOAD name id [id ...]`: a member list made elsewhere saved as audience `name`
/// (replacing a list loaded under it before); the audience as JSON.
fn audience_load(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let ids = (1..args.len())
        .map(|i| args.str(i))
        .collect::<Result<Vec<_>, _>>()?;
    let info = ctx.db.load_audience(args.str(0)?, ids)?;
    json_reply(r, &serde_json::to_value(&info).unwrap_or_default())
}

/// `AUDIENCE.LIST`: every saved audience (name, rule, size, times) as a JSON array.
fn audience_list(ctx: &mut Ctx<'_>, _: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    json_reply(
        r,
        &serde_json::to_value(ctx.db.audiences()).unwrap_or_default(),
    )
}

/// `AUDIENCE.SHOW name`: one saved audience as JSON.
fn audience_show(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let info = ctx.db.audience(args.str(0)?)?;
    json_reply(r, &serde_json::to_value(&info).unwrap_or_default())
}

/// `AUDIENCE.DROP name`: OK, or an error naming the audiences that still use it.
fn audience_drop(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    ctx.db.drop_audience(args.str(0)?)?;
    r.ok();
    Ok(())
}

/// `AUDIENCE.MEMBERS name [AT ts] [COUNT|IDS|PAGE after limit]`: the kept members, or with `AT`
/// the rule evaluated at that time.
fn audience_members(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let (at, shape) = member_options(
        args,
        "AT",
        "AUDIENCE.MEMBERS name [AT ts] [COUNT|IDS|PAGE after limit]",
    )?;
    let name = args.str(0)?;
    let audience = match at {
        Some(at) => ctx.db.audience_members_at(name, at)?,
        None => ctx.db.audience_members(name)?,
    };
    reply_members(ctx, &audience, shape, r)
}

/// Ids shown per side by `AUDIENCE.DIFF`.
const DIFF_IDS: usize = 100;

/// `AUDIENCE.DIFF name rule`: what saving the rule would change, as JSON (sizes, and the first
/// ids entering and leaving), without saving anything.
fn audience_diff(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let d = ctx.db.diff_audience(args.str(0)?, args.str(1)?)?;
    let json = serde_json::json!({
        "name": d.name,
        "rule": d.rule,
        "now": time::format_rfc3339(d.now),
        "before": d.before,
        "after": d.after,
        "entering": d.entering.len(),
        "leaving": d.leaving.len(),
        "entering_ids": ctx.db.member_page(&d.entering, None, DIFF_IDS)?,
        "leaving_ids": ctx.db.member_page(&d.leaving, None, DIFF_IDS)?,
        "elapsed_ms": d.elapsed.as_secs_f64() * 1e3,
    });
    json_reply(r, &json)
}

/// Changes returned by one `AUDIENCE.CHANGES` at most.
const CHANGES_MAX: usize = 10_000;

/// `AUDIENCE.CHANGES after [limit]`: the stored entries and exits after position `after`, each
/// as a JSON string (with its `seq`: pass the last one to resume).
fn audience_changes(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let number = |i: usize| {
        args.str(i)?
            .parse::<u64>()
            .map_err(|_| CmdError::syntax("expected a whole number"))
    };
    let after = number(0)?;
    let limit = if args.len() > 1 {
        number(1)? as usize
    } else {
        1000
    };
    let changes = ctx.db.changes_since(after, limit.min(CHANGES_MAX))?;
    r.array(changes.len());
    for c in &changes {
        r.bulk(c.to_json().to_string().as_bytes());
    }
    Ok(())
}

/// `AUDIENCES.OF id`: the names of the saved audiences the customer is in (empty for an unknown
/// customer): the call a page makes to personalise itself.
fn audiences_of(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let names = ctx.db.audiences_of(args.str(0)?)?;
    r.array(names.len());
    for n in &names {
        r.bulk(n.as_bytes());
    }
    Ok(())
}

/// The optional `NOW ts` after a rule (and nothing else).
fn now_option(args: Args<'_>, from: usize) -> Result<Timestamp, CmdError> {
    match args.len() - from {
        0 => Ok(time::now()),
        2 if args.is(from, "NOW") => parse_time(args.str(from + 1)?),
        _ => Err(syntax_at(args, from, "expected NOW ts")),
    }
}

/// `EXPLAIN rule [NOW ts]`: the plan as text, each node with its estimate, size and time.
fn explain(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let now = now_option(args, 1)?;
    let explained = ctx.db.explain(args.str(0)?, now)?;
    r.bulk(explained.to_string().as_bytes());
    Ok(())
}

/// `WHY id rule [NOW ts]`: clause by clause, as text.
fn why(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let now = now_option(args, 2)?;
    let why = ctx.db.why(args.str(0)?, args.str(1)?, now)?;
    r.bulk(why.to_string().as_bytes());
    Ok(())
}

/// `CHECK rule`: the rule's warnings (unknown names, values no customer has), one text each,
/// an empty array for a rule with none; a rule that does not parse or cannot be evaluated is an
/// error reply, as for `QUERY`.
fn check(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let warnings = ctx.db.check(args.str(0)?)?;
    r.array(warnings.len());
    for w in &warnings {
        r.bulk(w.to_string().as_bytes());
    }
    Ok(())
}

/// Events `CUSTOMER.SHOW` includes (the latest ones).
pub const SHOW_EVENTS: usize = 10;

/// `CUSTOMER.SHOW id`: the profile, the number of events and the latest few, as JSON; nil for
/// an unknown id.
fn customer_show(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let Some(mut c) = ctx.db.customer(args.str(0)?)? else {
        r.null();
        return Ok(());
    };
    let total = c.events.len();
    c.events.drain(..total.saturating_sub(SHOW_EVENTS));
    let mut json = c.to_json();
    json["event_count"] = total.into();
    json["internal_id"] = c.internal_id.into();
    json_reply(r, &json)
}

/// `CUSTOMER.EXPORT id`: everything stored, as JSON; nil for an unknown id.
fn customer_export(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    match ctx.db.export_customer(args.str(0)?) {
        Ok(json) => json_reply(r, &json),
        Err(Error::NotFound(_)) => {
            r.null();
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `CUSTOMER.DELETE id`: the number of events removed; nil for an unknown id.
fn customer_delete(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    match ctx.db.delete_customer(args.str(0)?) {
        Ok(n) => r.int(i64::try_from(n).unwrap_or(i64::MAX)),
        Err(Error::NotFound(_)) => r.null(),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn json_reply(r: &mut Reply<'_>, value: &impl serde::Serialize) -> Result<(), CmdError> {
    let text = serde_json::to_vec(value).map_err(|e| CmdError::syntax(e.to_string()))?;
    r.bulk(&text);
    Ok(())
}

/// A time argument: RFC 3339, a date (midnight UTC) or whole milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<Timestamp, CmdError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    time::parse_user_time(text).ok_or_else(|| {
        CmdError::Reply(
            "INVALID",
            format!(
                "time {text:?}: expected RFC 3339 (2026-03-01T12:00:00Z), a date (2026-03-01) or milliseconds since the epoch"
            ),
        )
    })
}

fn syntax_at(args: Args<'_>, i: usize, usage: &str) -> CmdError {
    CmdError::syntax(format!(
        "syntax error at '{}': {usage}",
        String::from_utf8_lossy(args.bytes(i))
    ))
}

/// The kind of a subscription command: its confirmation word and which list it changes.
#[derive(Clone, Copy)]
enum Kind {
    Channel,
    Pattern,
}

fn list(f: &mut Filter, kind: Kind) -> &mut Vec<String> {
    match kind {
        Kind::Channel => &mut f.channels,
        Kind::Pattern => &mut f.patterns,
    }
}

/// `SUBSCRIBE audience:NAME ...`: a `subscribe` confirmation per channel with the connection's
/// count of subscriptions; then a `message` for every entry into and exit from those audiences.
/// A channel that is not `audience:NAME` with a valid name refuses the whole command. An audience
/// not defined yet may be subscribed to: its changes come once it is defined.
fn subscribe(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    for i in 0..args.len() {
        pubsub::check_channel(args.str(i)?).map_err(CmdError::syntax)?;
    }
    add(ctx, args, r, Kind::Channel)
}

/// `PSUBSCRIBE pattern ...`: glob patterns over channel names (`audience:*` is every audience);
/// each change matching a pattern comes as a `pmessage` naming the pattern.
fn psubscribe(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    for i in 0..args.len() {
        args.str(i)?;
    }
    add(ctx, args, r, Kind::Pattern)
}

fn add(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>, kind: Kind) -> Result<(), CmdError> {
    ctx.push
        .start(ctx.db, ctx.session.id)
        .map_err(|e| CmdError::syntax(format!("cannot start delivering changes: {e}")))?;
    let word: &[u8] = match kind {
        Kind::Channel => b"subscribe",
        Kind::Pattern => b"psubscribe",
    };
    for i in 0..args.len() {
        let name = args.str(i)?;
        let names = list(&mut ctx.session.subscriptions, kind);
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        confirm(r, word, Some(name), ctx.session.subscriptions.count());
    }
    ctx.session.sync = true;
    Ok(())
}

/// `UNSUBSCRIBE [channel ...]`: an `unsubscribe` confirmation per channel (every subscribed
/// channel without arguments; a nil channel when there was none), with the count left.
fn unsubscribe(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    remove(ctx, args, r, Kind::Channel)
}

/// `PUNSUBSCRIBE [pattern ...]`: as `UNSUBSCRIBE`, for patterns.
fn punsubscribe(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    remove(ctx, args, r, Kind::Pattern)
}

fn remove(
    ctx: &mut Ctx<'_>,
    args: Args<'_>,
    r: &mut Reply<'_>,
    kind: Kind,
) -> Result<(), CmdError> {
    let word: &[u8] = match kind {
        Kind::Channel => b"unsubscribe",
        Kind::Pattern => b"punsubscribe",
    };
    let names: Vec<String> = if args.is_empty() {
        list(&mut ctx.session.subscriptions, kind).clone()
    } else {
        (0..args.len())
            .map(|i| Ok(args.str(i)?.to_owned()))
            .collect::<Result<_, CmdError>>()?
    };
    if names.is_empty() {
        confirm(r, word, None, ctx.session.subscriptions.count());
    }
    for name in &names {
        list(&mut ctx.session.subscriptions, kind).retain(|n| n != name);
        confirm(r, word, Some(name), ctx.session.subscriptions.count());
    }
    ctx.session.sync = true;
    Ok(())
}

/// One confirmation, shaped as Redis's: `[word, channel, count]`, a push in RESP3.
fn confirm(r: &mut Reply<'_>, word: &[u8], channel: Option<&str>, count: usize) {
    r.push(3);
    r.bulk(word);
    match channel {
        Some(c) => r.bulk(c.as_bytes()),
        None => r.null(),
    }
    r.int(i64::try_from(count).unwrap_or(i64::MAX));
}

/// `PUBSUB CHANNELS [pattern]` (channels with subscribers), `PUBSUB NUMSUB [channel ...]`
/// (subscribers per channel), `PUBSUB NUMPAT` (distinct patterns subscribed to).
fn pubsub_info(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let reg = &ctx.shared.pubsub;
    let n = args.len() - 1;
    if args.is(0, "CHANNELS") && n <= 1 {
        let names = reg.channels((n == 1).then(|| args.bytes(1)));
        r.array(names.len());
        for c in &names {
            r.bulk(c.as_bytes());
        }
    } else if args.is(0, "NUMSUB") {
        r.map(n);
        for i in 1..args.len() {
            r.bulk(args.bytes(i));
            let count = std::str::from_utf8(args.bytes(i)).map_or(0, |c| reg.subscribers(c));
            r.int(i64::try_from(count).unwrap_or(i64::MAX));
        }
    } else if args.is(0, "NUMPAT") && n == 0 {
        r.int(i64::try_from(reg.counts().patterns).unwrap_or(i64::MAX));
    } else {
        return Err(CmdError::syntax(format!(
            "unknown subcommand or wrong number of arguments for 'PUBSUB|{}': use CHANNELS \
             [pattern], NUMSUB [channel ...] or NUMPAT",
            String::from_utf8_lossy(args.bytes(0))
        )));
    }
    Ok(())
}

/// `TOP rule event property [WINDOW w] [LIMIT n] [NOW t] [ORDER customers|lift] [MIN k]`:
/// `{"audience": N, "rows": [{"value", "customers", "share", "everyone", "lift"}, ...]}`.
fn top(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    use crate::query::{TopOrder, TopRequest};
    const USAGE: &str = "TOP rule event property [WINDOW w] [LIMIT n] [NOW t] \
                         [ORDER customers|lift] [MIN k]";
    let mut request = TopRequest::new(args.str(0)?, args.str(1)?, args.str(2)?);
    let mut now = None;
    let mut i = 3;
    while i < args.len() {
        if i + 1 >= args.len() {
            return Err(syntax_at(args, i, USAGE));
        }
        let number = |what: &str| {
            args.str(i + 1)?
                .parse::<u64>()
                .map_err(|_| CmdError::syntax(format!("{what} must be a whole number")))
        };
        if args.is(i, "WINDOW") {
            request.window = Some(args.str(i + 1)?.to_owned());
        } else if args.is(i, "LIMIT") {
            request.limit = usize::try_from(number("LIMIT")?).unwrap_or(usize::MAX);
        } else if args.is(i, "NOW") {
            now = Some(parse_time(args.str(i + 1)?)?);
        } else if args.is(i, "ORDER") && args.is(i + 1, "customers") {
            request.order = TopOrder::Customers;
        } else if args.is(i, "ORDER") && args.is(i + 1, "lift") {
            request.order = TopOrder::Lift;
        } else if args.is(i, "MIN") {
            request.min_customers = Some(number("MIN")?);
        } else {
            return Err(syntax_at(args, i, USAGE));
        }
        i += 2;
    }
    let top = ctx.db.top(&request, now.unwrap_or_else(time::now))?;
    json_reply(r, &top.to_json())
}

/// The options after `RECOMMEND`'s and `RECENT`'s three arguments: `[WINDOW w] [LIMIT n]
/// [NOW t]` (`RECENT` takes no window).
fn value_options<'a>(
    args: Args<'a>,
    window_allowed: bool,
    usage: &str,
) -> Result<(Option<&'a str>, usize, Timestamp), CmdError> {
    let (mut window, mut limit, mut now) = (None, 10, None);
    let mut i = 3;
    while i < args.len() {
        if i + 1 >= args.len() {
            return Err(syntax_at(args, i, usage));
        }
        if args.is(i, "WINDOW") && window_allowed {
            window = Some(args.str(i + 1)?);
        } else if args.is(i, "LIMIT") {
            limit = args
                .str(i + 1)?
                .parse::<usize>()
                .map_err(|_| CmdError::syntax("LIMIT must be a whole number"))?;
        } else if args.is(i, "NOW") {
            now = Some(parse_time(args.str(i + 1)?)?);
        } else {
            return Err(syntax_at(args, i, usage));
        }
        i += 2;
    }
    Ok((window, limit, now.unwrap_or_else(time::now)))
}

/// Values as bulk strings: strings as they are, integers and booleans as their text.
fn reply_values<'v>(
    r: &mut Reply<'_>,
    values: impl ExactSizeIterator<Item = &'v crate::model::Value>,
) {
    r.array(values.len());
    for v in values {
        match v {
            crate::model::Value::Str(s) => r.bulk(s.as_bytes()),
            other => r.bulk(other.to_string().as_bytes()),
        }
    }
}

/// `RECOMMEND id event property [WINDOW w] [LIMIT n] [NOW t]`: the values to show, best first.
fn recommend(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let (window, limit, now) = value_options(
        args,
        true,
        "RECOMMEND id event property [WINDOW w] [LIMIT n] [NOW t]",
    )?;
    let rec = ctx
        .db
        .recommend(args.str(0)?, args.str(1)?, args.str(2)?, window, limit, now)?;
    reply_values(r, rec.values.iter().map(|s| &s.value));
    Ok(())
}

/// `RECENT id event property [LIMIT n] [NOW t]`: the customer's distinct values, latest first.
fn recent(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    let (_, limit, now) = value_options(args, false, "RECENT id event property [LIMIT n] [NOW t]")?;
    let (recent, _) = ctx
        .db
        .recent(args.str(0)?, args.str(1)?, args.str(2)?, limit, now)?;
    reply_values(r, recent.iter().map(|v| &v.value));
    Ok(())
}

/// `FUNNEL within step step ... [WINDOW w] [AUDIENCE rule] [NOW t]`: `{"steps": [{"step",
/// "customers", "from_previous", "from_first", "median_ms"}, ...]}`. The steps run up to the
/// first option word followed by a value (an event named like one is written `did WINDOW`).
fn funnel(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    use crate::query::reports::FunnelRequest;
    const USAGE: &str = "FUNNEL within step step [step ...] [WINDOW w] [AUDIENCE rule] [NOW t]";
    let option = |i: usize| {
        i + 1 < args.len() && (args.is(i, "WINDOW") || args.is(i, "AUDIENCE") || args.is(i, "NOW"))
    };
    let mut steps = Vec::new();
    let mut i = 1;
    while i < args.len() && !option(i) {
        steps.push(args.str(i)?);
        i += 1;
    }
    let mut request = FunnelRequest::new(&steps, args.str(0)?);
    let mut now = None;
    while i < args.len() {
        if !option(i) {
            return Err(syntax_at(args, i, USAGE));
        }
        if args.is(i, "WINDOW") {
            request.window = Some(args.str(i + 1)?.to_owned());
        } else if args.is(i, "AUDIENCE") {
            request.audience = Some(args.str(i + 1)?.to_owned());
        } else {
            now = Some(parse_time(args.str(i + 1)?)?);
        }
        i += 2;
    }
    let funnel = ctx.db.funnel(&request, now.unwrap_or_else(time::now))?;
    json_reply(r, &funnel.to_json())
}

/// `EXPERIMENT name audience goal [VARIANTS 50,50] [NOW t]`: `{"variants": [{"share",
/// "customers", "converted", "rate", "difference", "ci_low", "ci_high", "p_value"}, ...]}`.
fn experiment(ctx: &mut Ctx<'_>, args: Args<'_>, r: &mut Reply<'_>) -> Result<(), CmdError> {
    use crate::query::reports::{parse_variants, ExperimentRequest};
    const USAGE: &str = "EXPERIMENT name audience goal [VARIANTS shares] [NOW t]";
    let mut request = ExperimentRequest::new(args.str(0)?, args.str(1)?, args.str(2)?);
    let mut now = None;
    let mut i = 3;
    while i < args.len() {
        if i + 1 >= args.len() {
            return Err(syntax_at(args, i, USAGE));
        }
        if args.is(i, "VARIANTS") {
            request.variants = parse_variants(args.str(i + 1)?)?;
        } else if args.is(i, "NOW") {
            now = Some(parse_time(args.str(i + 1)?)?);
        } else {
            return Err(syntax_at(args, i, USAGE));
        }
        i += 2;
    }
    let report = ctx.db.experiment(&request, now.unwrap_or_else(time::now))?;
    json_reply(r, &report.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_s_mistakes_and_the_database_s_faults_get_their_own_codes() {
        let code = |e: Error| CmdError::Db(e).code_and_message();
        assert_eq!(
            code(Error::InvalidInput("bad id".into())),
            ("INVALID", "bad id".into())
        );
        assert_eq!(
            code(Error::Internal("the write was not answered".into())),
            ("ERR", "internal error: the write was not answered".into())
        );
        let full = Error::from(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(code(full.clone()), code(full));
    }
}
