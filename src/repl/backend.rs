//! What a session talks to: [`Backend`], with two implementations, the in-process [`Db`] (`&Db`)
//! and a running server's socket ([`Remote`]). Every rule and meta command goes through this
//! trait, so both give the same answers in the same words.
//!
//! The socket side speaks the commands documented in the README's socket section through
//! [`crate::server::client`]; it parses each rule locally first, so a bad rule gets the same
//! caret as in process, and turns the server's error codes back into the library's errors.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::db::{ComputedTraitSchema, EventSchema, PropertySchema, TraitSchema};
use crate::model::time::Timestamp;
use crate::model::value::ValueType;
use crate::query::reports::{ExperimentRequest, FunnelRequest};
use crate::query::{PreparedRule, TopOrder, TopRequest, TopRow};
use crate::server::client::{Client, ClientError, RespValue};
use crate::{AudienceInfo, ComputedTraitInfo, Db, Error, Schema};

/// Why a backend call failed: the library's error, or the socket's.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Db(#[from] Error),
    #[error(transparent)]
    Socket(#[from] ClientError),
}

pub type BackendResult<T> = Result<T, BackendError>;

/// A rule's answer without its members: the size, the *now* it was evaluated at and the time
/// taken (in process the engine's time; over a socket the round trip).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub size: u64,
    pub now: Timestamp,
    pub elapsed: Duration,
    /// The rule's warnings, as text (see [`crate::query::Warning`]).
    pub warnings: Vec<String>,
}

/// What `.save` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved {
    pub info: AudienceInfo,
    /// For a replaced rule: how many customers entered and left, and the size the preview
    /// computed just before saving (it differs from `info.size` only if the store changed in
    /// between).
    pub replaced: Option<Replaced>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replaced {
    pub entered: u64,
    pub left: u64,
    pub previewed_size: u64,
}

/// What `.top` prints: the audience's size, the rows, the warnings as text, and the answer as
/// the socket's `TOP` sends it (for `.format json`).
#[derive(Debug, Clone, PartialEq)]
pub struct TopAnswer {
    pub audience: u64,
    pub rows: Vec<TopRow>,
    pub warnings: Vec<String>,
    pub json: serde_json::Value,
}

/// What `.funnel` and `.experiment` print: the table, the warnings as text, and the answer as
/// the socket's `FUNNEL` and `EXPERIMENT` send it (for `.format json`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportAnswer {
    pub table: String,
    pub warnings: Vec<String>,
    pub json: serde_json::Value,
}

/// Everything a session asks of a database.
pub trait Backend {
    /// What the banner names: the folder, or the socket.
    fn location(&self) -> String;
    fn schema(&mut self) -> BackendResult<Schema>;
    /// The size and the first `sample` members in id order.
    fn sample(
        &mut self,
        rule: &str,
        now: Timestamp,
        sample: usize,
    ) -> BackendResult<(Answer, Vec<String>)>;
    /// Every member's id in order, each handed to `each`.
    fn each_id(
        &mut self,
        rule: &str,
        now: Timestamp,
        each: &mut dyn FnMut(&str) -> io::Result<()>,
    ) -> BackendResult<Answer>;
    /// The plan as `.explain` prints it.
    fn explain(&mut self, rule: &str, now: Timestamp) -> BackendResult<String>;
    /// The clause-by-clause answer as `.why` prints it.
    fn why(&mut self, id: &str, rule: &str, now: Timestamp) -> BackendResult<String>;
    /// A rule's warnings, as text (see [`crate::query::Warning`]).
    fn check(&mut self, rule: &str) -> BackendResult<Vec<String>>;
    /// The saved audiences, by name.
    fn audiences(&mut self) -> BackendResult<Vec<AudienceInfo>>;
    /// Saves (or replaces) an audience.
    fn save_audience(&mut self, name: &str, rule: &str) -> BackendResult<Saved>;
    /// Drops an audience; returns what it was.
    fn drop_audience(&mut self, name: &str) -> BackendResult<AudienceInfo>;
    /// Loads a member list under `name` (`Db::load_audience`).
    fn load_audience(&mut self, name: &str, ids: &[String]) -> BackendResult<AudienceInfo>;
    /// Every computed trait.
    fn traits(&mut self) -> BackendResult<Vec<ComputedTraitInfo>>;
    /// Defines a computed trait.
    fn define_trait(&mut self, name: &str, expression: &str) -> BackendResult<ComputedTraitInfo>;
    /// Fits a predictive computed trait's model again (`Db::refit_trait`).
    fn refit_trait(&mut self, name: &str) -> BackendResult<ComputedTraitInfo>;
    /// The top values of an event property for a rule's audience (`Db::top`).
    fn top(&mut self, request: &TopRequest, now: Timestamp) -> BackendResult<TopAnswer>;
    /// A funnel's steps (`Db::funnel`).
    fn funnel(&mut self, request: &FunnelRequest, now: Timestamp) -> BackendResult<ReportAnswer>;
    /// An experiment's variants (`Db::experiment`).
    fn experiment(
        &mut self,
        request: &ExperimentRequest,
        now: Timestamp,
    ) -> BackendResult<ReportAnswer>;
    /// The values to show a customer, best first, as text (`Db::recommend`).
    fn recommend(
        &mut self,
        id: &str,
        what: (&str, &str, Option<&str>),
        limit: usize,
        now: Timestamp,
    ) -> BackendResult<Vec<String>>;
    /// A customer's distinct values, latest first, as text (`Db::recent`).
    fn recent(
        &mut self,
        id: &str,
        what: (&str, &str),
        limit: usize,
        now: Timestamp,
    ) -> BackendResult<Vec<String>>;
}

/// A value as text, as the socket sends it: strings as they are.
fn value_text(v: &crate::model::Value) -> String {
    match v {
        crate::model::Value::Str(s) => s.to_string(),
        other => other.to_string(),
    }
}

impl Backend for &Db {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    fn schema(&mut self) -> BackendResult<Schema> {
        Ok(Db::schema(self))
    }

    fn sample(
        &mut self,
        rule: &str,
        now: Timestamp,
        sample: usize,
    ) -> BackendResult<(Answer, Vec<String>)> {
        let audience = self.query(rule, now)?;
        let ids = self.member_page(&audience, None, sample)?;
        Ok((answer(&audience), ids))
    }

    fn each_id(
        &mut self,
        rule: &str,
        now: Timestamp,
        each: &mut dyn FnMut(&str) -> io::Result<()>,
    ) -> BackendResult<Answer> {
        let audience = self.query(rule, now)?;
        self.for_each_member_id(&audience, |id| each(id).map_err(Error::from))?;
        Ok(answer(&audience))
    }

    fn explain(&mut self, rule: &str, now: Timestamp) -> BackendResult<String> {
        Ok(Db::explain(self, rule, now)?.to_string())
    }

    fn why(&mut self, id: &str, rule: &str, now: Timestamp) -> BackendResult<String> {
        Ok(Db::why(self, id, rule, now)?.to_string())
    }

    fn check(&mut self, rule: &str) -> BackendResult<Vec<String>> {
        let warnings = Db::check(self, rule)?;
        Ok(warnings.iter().map(ToString::to_string).collect())
    }

    fn audiences(&mut self) -> BackendResult<Vec<AudienceInfo>> {
        Ok(Db::audiences(self))
    }

    fn save_audience(&mut self, name: &str, rule: &str) -> BackendResult<Saved> {
        let replaced = match self.audience(name) {
            Ok(_) => {
                let d = self.diff_audience(name, rule)?;
                Some(Replaced {
                    entered: d.entering.len(),
                    left: d.leaving.len(),
                    previewed_size: d.after,
                })
            }
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let info = self.define_audience(name, rule)?;
        Ok(Saved { info, replaced })
    }

    fn drop_audience(&mut self, name: &str) -> BackendResult<AudienceInfo> {
        let info = self.audience(name)?;
        Db::drop_audience(self, name)?;
        Ok(info)
    }

    fn traits(&mut self) -> BackendResult<Vec<ComputedTraitInfo>> {
        Ok(Db::computed_traits(self))
    }

    fn define_trait(&mut self, name: &str, expression: &str) -> BackendResult<ComputedTraitInfo> {
        Ok(Db::define_trait(self, name, expression)?)
    }

    fn refit_trait(&mut self, name: &str) -> BackendResult<ComputedTraitInfo> {
        Ok(Db::refit_trait(self, name)?)
    }

    fn load_audience(&mut self, name: &str, ids: &[String]) -> BackendResult<AudienceInfo> {
        Ok(Db::load_audience(
            self,
            name,
            ids.iter().map(String::as_str),
        )?)
    }

    fn top(&mut self, request: &TopRequest, now: Timestamp) -> BackendResult<TopAnswer> {
        let top = Db::top(self, request, now)?;
        Ok(TopAnswer {
            audience: top.audience,
            json: top.to_json(),
            warnings: top.warnings.iter().map(ToString::to_string).collect(),
            rows: top.rows,
        })
    }

    fn funnel(&mut self, request: &FunnelRequest, now: Timestamp) -> BackendResult<ReportAnswer> {
        let funnel = Db::funnel(self, request, now)?;
        Ok(ReportAnswer {
            table: funnel.to_string(),
            warnings: funnel.warnings.iter().map(ToString::to_string).collect(),
            json: funnel.to_json(),
        })
    }

    fn experiment(
        &mut self,
        request: &ExperimentRequest,
        now: Timestamp,
    ) -> BackendResult<ReportAnswer> {
        let report = Db::experiment(self, request, now)?;
        Ok(ReportAnswer {
            table: report.to_string(),
            warnings: report.warnings.iter().map(ToString::to_string).collect(),
            json: report.to_json(),
        })
    }

    fn recommend(
        &mut self,
        id: &str,
        (event, property, window): (&str, &str, Option<&str>),
        limit: usize,
        now: Timestamp,
    ) -> BackendResult<Vec<String>> {
        let r = Db::recommend(self, id, event, property, window, limit, now)?;
        Ok(r.values.iter().map(|s| value_text(&s.value)).collect())
    }

    fn recent(
        &mut self,
        id: &str,
        (event, property): (&str, &str),
        limit: usize,
        now: Timestamp,
    ) -> BackendResult<Vec<String>> {
        let (recent, _) = Db::recent(self, id, event, property, limit, now)?;
        Ok(recent.iter().map(|r| value_text(&r.value)).collect())
    }
}

fn answer(a: &crate::query::Audience) -> Answer {
    Answer {
        size: a.len(),
        now: a.now(),
        elapsed: a.elapsed(),
        warnings: a.warnings().iter().map(ToString::to_string).collect(),
    }
}

/// A running server, reached through its socket. A connection the server closed (it closes
/// idle clients) is opened again once, transparently, at the next request.
pub struct Remote {
    path: PathBuf,
    client: Option<Client>,
}

impl Remote {
    /// Connects to the server at `path` and checks that it answers.
    pub fn connect(path: &Path) -> Result<Remote, ClientError> {
        let mut remote = Remote {
            path: path.to_owned(),
            client: Some(Client::connect(path)?),
        };
        let pong = remote.pipeline(&[&["PING"]])?;
        crate::server::client::server_error(pong.into_iter().next().unwrap_or(RespValue::Nil))?;
        Ok(remote)
    }

    /// Sends the commands as one pipeline and returns their replies, an error reply as the
    /// library's error where its code maps to one.
    fn pipeline(&mut self, commands: &[&[&str]]) -> Result<Vec<RespValue>, ClientError> {
        for attempt in 0..2 {
            if self.client.is_none() {
                self.client = Some(Client::connect(&self.path)?);
            }
            let Some(client) = self.client.as_mut() else {
                unreachable!("connected just above")
            };
            let sent = commands.iter().try_for_each(|c| client.send(c));
            let replies = sent.and_then(|()| {
                commands
                    .iter()
                    .map(|_| client.read_reply())
                    .collect::<Result<Vec<_>, _>>()
            });
            match replies {
                Ok(replies) => return Ok(replies),
                Err(e) => {
                    self.client = None;
                    if !(attempt == 0 && e.is_disconnect()) {
                        return Err(e);
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    fn call(&mut self, command: &[&str]) -> BackendResult<RespValue> {
        let reply = self.pipeline(&[command])?.pop().unwrap_or(RespValue::Nil);
        check(reply)
    }

    fn text(&mut self, command: &[&str]) -> BackendResult<String> {
        match self.call(command)? {
            RespValue::Bulk(b) => {
                String::from_utf8(b).map_err(|_| unexpected(command, "text that is not UTF-8"))
            }
            other => Err(unexpected(command, &other.describe())),
        }
    }

    fn json(&mut self, command: &[&str]) -> BackendResult<serde_json::Value> {
        let text = self.text(command)?;
        serde_json::from_str(&text).map_err(|e| unexpected(command, &format!("bad JSON ({e})")))
    }
}

/// The server's error codes back into the library's errors (`commands.rs` maps them the other
/// way), so both backends word them alike.
fn check(reply: RespValue) -> BackendResult<RespValue> {
    match crate::server::client::server_error(reply) {
        Ok(v) => Ok(v),
        Err(ClientError::Server { code, message }) => Err(match code.as_str() {
            "EVAL" => Error::Evaluation(message).into(),
            "NOTFOUND" => Error::NotFound(message).into(),
            "INVALID" => Error::InvalidInput(message).into(),
            _ => ClientError::Server { code, message }.into(),
        }),
        Err(e) => Err(e.into()),
    }
}

fn unexpected(command: &[&str], got: &str) -> BackendError {
    ClientError::Unexpected {
        command: command.first().copied().unwrap_or_default().to_owned(),
        got: got.to_owned(),
    }
    .into()
}

/// A rule is parsed here first: its error is then the library's, drawn with the caret.
fn parse(rule: &str) -> BackendResult<()> {
    PreparedRule::new(rule)?;
    Ok(())
}

fn integer(command: &[&str], v: RespValue) -> BackendResult<u64> {
    match v {
        RespValue::Integer(n) if n >= 0 => Ok(n as u64),
        other => Err(unexpected(command, &other.describe())),
    }
}

fn ids(command: &[&str], v: RespValue) -> BackendResult<Vec<String>> {
    match v {
        RespValue::Array(items) => items
            .into_iter()
            .map(|item| match item {
                RespValue::Bulk(b) => {
                    String::from_utf8(b).map_err(|_| unexpected(command, "an id that is not UTF-8"))
                }
                other => Err(unexpected(command, &other.describe())),
            })
            .collect(),
        other => Err(unexpected(command, &other.describe())),
    }
}

impl Backend for Remote {
    fn location(&self) -> String {
        format!("the server at {}", self.path.display())
    }

    fn schema(&mut self) -> BackendResult<Schema> {
        let cmd = ["SCHEMA"];
        let v = self.json(&cmd)?;
        schema_from_json(&v).ok_or_else(|| unexpected(&cmd, "a schema of another shape"))
    }

    fn sample(
        &mut self,
        rule: &str,
        now: Timestamp,
        sample: usize,
    ) -> BackendResult<(Answer, Vec<String>)> {
        parse(rule)?;
        let now_text = now.to_string();
        let limit = sample.to_string();
        let count: &[&str] = &["QUERY", rule, "NOW", &now_text, "COUNT"];
        let warn: &[&str] = &["CHECK", rule];
        let page: &[&str] = &["QUERY", rule, "NOW", &now_text, "PAGE", "", &limit];
        // All in one round trip; without a sample no page.
        let commands: &[&[&str]] = if sample == 0 {
            &[count, warn]
        } else {
            &[count, warn, page]
        };
        let started = Instant::now();
        let mut replies = self.pipeline(commands)?.into_iter();
        let elapsed = started.elapsed();
        let size = integer(count, check(replies.next().unwrap_or(RespValue::Nil))?)?;
        let warnings = ids(warn, check(replies.next().unwrap_or(RespValue::Nil))?)?;
        let members = match replies.next() {
            Some(reply) => ids(page, check(reply)?)?,
            None => Vec::new(),
        };
        let answer = Answer {
            size,
            now,
            elapsed,
            warnings,
        };
        Ok((answer, members))
    }

    fn each_id(
        &mut self,
        rule: &str,
        now: Timestamp,
        each: &mut dyn FnMut(&str) -> io::Result<()>,
    ) -> BackendResult<Answer> {
        parse(rule)?;
        let now_text = now.to_string();
        let cmd: &[&str] = &["QUERY", rule, "NOW", &now_text, "IDS"];
        let warn: &[&str] = &["CHECK", rule];
        let started = Instant::now();
        let mut replies = self.pipeline(&[cmd, warn])?.into_iter();
        let elapsed = started.elapsed();
        let members = ids(cmd, check(replies.next().unwrap_or(RespValue::Nil))?)?;
        let warnings = ids(warn, check(replies.next().unwrap_or(RespValue::Nil))?)?;
        for id in &members {
            each(id).map_err(Error::from)?;
        }
        Ok(Answer {
            size: members.len() as u64,
            now,
            elapsed,
            warnings,
        })
    }

    fn explain(&mut self, rule: &str, now: Timestamp) -> BackendResult<String> {
        parse(rule)?;
        self.text(&["EXPLAIN", rule, "NOW", &now.to_string()])
    }

    fn why(&mut self, id: &str, rule: &str, now: Timestamp) -> BackendResult<String> {
        parse(rule)?;
        self.text(&["WHY", id, rule, "NOW", &now.to_string()])
    }

    fn check(&mut self, rule: &str) -> BackendResult<Vec<String>> {
        parse(rule)?;
        let cmd: &[&str] = &["CHECK", rule];
        let reply = self.call(cmd)?;
        ids(cmd, reply)
    }

    fn audiences(&mut self) -> BackendResult<Vec<AudienceInfo>> {
        let cmd = ["AUDIENCE.LIST"];
        match self.json(&cmd)? {
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| {
                    audience_from_json(v)
                        .ok_or_else(|| unexpected(&cmd, "an audience of another shape"))
                })
                .collect(),
            _ => Err(unexpected(&cmd, "JSON that is not an array")),
        }
    }

    fn save_audience(&mut self, name: &str, rule: &str) -> BackendResult<Saved> {
        parse(rule)?;
        let replaced = match self.json(&["AUDIENCE.SHOW", name]) {
            Ok(_) => {
                let cmd = ["AUDIENCE.DIFF", name, rule];
                let d = self.json(&cmd)?;
                let n = |key: &str| {
                    d.get(key)
                        .and_then(serde_json::Value::as_u64)
                        .ok_or_else(|| unexpected(&cmd, &format!("JSON without {key}")))
                };
                Some(Replaced {
                    entered: n("entering")?,
                    left: n("leaving")?,
                    previewed_size: n("after")?,
                })
            }
            Err(BackendError::Db(Error::NotFound(_))) => None,
            Err(e) => return Err(e),
        };
        let cmd = ["AUDIENCE.DEFINE", name, rule];
        let v = self.json(&cmd)?;
        let info = audience_from_json(&v)
            .ok_or_else(|| unexpected(&cmd, "an audience of another shape"))?;
        Ok(Saved { info, replaced })
    }

    fn drop_audience(&mut self, name: &str) -> BackendResult<AudienceInfo> {
        let cmd = ["AUDIENCE.SHOW", name];
        let v = self.json(&cmd)?;
        let info = audience_from_json(&v)
            .ok_or_else(|| unexpected(&cmd, "an audience of another shape"))?;
        self.call(&["AUDIENCE.DROP", name])?;
        Ok(info)
    }

    fn traits(&mut self) -> BackendResult<Vec<ComputedTraitInfo>> {
        let cmd = ["TRAIT.LIST"];
        match self.json(&cmd)? {
            serde_json::Value::Array(items) => items
                .iter()
                .map(|v| {
                    trait_from_json(v).ok_or_else(|| unexpected(&cmd, "a trait of another shape"))
                })
                .collect(),
            _ => Err(unexpected(&cmd, "JSON that is not an array")),
        }
    }

    fn define_trait(&mut self, name: &str, expression: &str) -> BackendResult<ComputedTraitInfo> {
        crate::rules::parse_computed(expression).map_err(|e| BackendError::Db(e.into()))?;
        let cmd = ["TRAIT.DEFINE", name, expression];
        let v = self.json(&cmd)?;
        trait_from_json(&v).ok_or_else(|| unexpected(&cmd[..2], "a trait of another shape"))
    }

    fn refit_trait(&mut self, name: &str) -> BackendResult<ComputedTraitInfo> {
        let cmd = ["TRAIT.REFIT", name];
        let v = self.json(&cmd)?;
        trait_from_json(&v).ok_or_else(|| unexpected(&cmd, "a trait of another shape"))
    }

    fn load_audience(&mut self, name: &str, ids: &[String]) -> BackendResult<AudienceInfo> {
        let mut cmd = vec!["AUDIENCE.LOAD", name];
        cmd.extend(ids.iter().map(String::as_str));
        let v = self.json(&cmd)?;
        audience_from_json(&v).ok_or_else(|| unexpected(&cmd[..2], "an audience of another shape"))
    }

    fn top(&mut self, request: &TopRequest, now: Timestamp) -> BackendResult<TopAnswer> {
        parse(&request.rule)?;
        let (limit, now) = (request.limit.to_string(), now.to_string());
        let min = request.min_customers.map(|m| m.to_string());
        let order = match request.order {
            TopOrder::Customers => "customers",
            TopOrder::Lift => "lift",
        };
        let mut cmd: Vec<&str> = vec![
            "TOP",
            &request.rule,
            &request.event,
            &request.property,
            "LIMIT",
            &limit,
            "NOW",
            &now,
            "ORDER",
            order,
        ];
        if let Some(w) = &request.window {
            cmd.extend(["WINDOW", w]);
        }
        if let Some(m) = &min {
            cmd.extend(["MIN", m]);
        }
        let json = self.json(&cmd)?;
        top_from_json(&json)
            .map(|(audience, rows, warnings)| TopAnswer {
                audience,
                rows,
                warnings,
                json: json.clone(),
            })
            .ok_or_else(|| unexpected(&cmd, "a TOP answer of another shape"))
    }

    fn funnel(&mut self, request: &FunnelRequest, now: Timestamp) -> BackendResult<ReportAnswer> {
        if let Some(rule) = &request.audience {
            parse(rule)?;
        }
        let now = now.to_string();
        let mut cmd: Vec<&str> = vec!["FUNNEL", &request.within];
        cmd.extend(request.steps.iter().map(String::as_str));
        cmd.extend(["NOW", &now]);
        if let Some(w) = &request.window {
            cmd.extend(["WINDOW", w]);
        }
        if let Some(a) = &request.audience {
            cmd.extend(["AUDIENCE", a]);
        }
        let json = self.json(&cmd)?;
        let steps = crate::query::reports::steps_from_json(&json)
            .ok_or_else(|| unexpected(&cmd, "a FUNNEL answer of another shape"))?;
        Ok(ReportAnswer {
            table: crate::query::reports::funnel_table(&steps),
            warnings: warnings_of(&json),
            json,
        })
    }

    fn experiment(
        &mut self,
        request: &ExperimentRequest,
        now: Timestamp,
    ) -> BackendResult<ReportAnswer> {
        parse(&request.audience)?;
        parse(&request.goal)?;
        let now = now.to_string();
        let shares: Vec<String> = request.variants.iter().map(u8::to_string).collect();
        let shares = shares.join(",");
        let cmd = [
            "EXPERIMENT",
            &request.name,
            &request.audience,
            &request.goal,
            "VARIANTS",
            &shares,
            "NOW",
            &now,
        ];
        let json = self.json(&cmd)?;
        let variants = crate::query::reports::variants_from_json(&json)
            .ok_or_else(|| unexpected(&cmd, "an EXPERIMENT answer of another shape"))?;
        Ok(ReportAnswer {
            table: crate::query::reports::experiment_table(&variants),
            warnings: warnings_of(&json),
            json,
        })
    }

    fn recommend(
        &mut self,
        id: &str,
        (event, property, window): (&str, &str, Option<&str>),
        limit: usize,
        now: Timestamp,
    ) -> BackendResult<Vec<String>> {
        let (limit, now) = (limit.to_string(), now.to_string());
        let mut cmd = vec![
            "RECOMMEND",
            id,
            event,
            property,
            "LIMIT",
            &limit,
            "NOW",
            &now,
        ];
        if let Some(w) = window {
            cmd.extend(["WINDOW", w]);
        }
        let reply = self.call(&cmd)?;
        ids(&cmd, reply)
    }

    fn recent(
        &mut self,
        id: &str,
        (event, property): (&str, &str),
        limit: usize,
        now: Timestamp,
    ) -> BackendResult<Vec<String>> {
        let (limit, now) = (limit.to_string(), now.to_string());
        let cmd = ["RECENT", id, event, property, "LIMIT", &limit, "NOW", &now];
        let reply = self.call(&cmd)?;
        ids(&cmd, reply)
    }
}

fn type_names(v: &serde_json::Value) -> Option<Vec<&'static str>> {
    v.as_array()?
        .iter()
        .map(|t| {
            let t = t.as_str()?;
            ValueType::ALL.iter().map(|ty| ty.name()).find(|n| *n == t)
        })
        .collect()
}

fn string(v: &serde_json::Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_owned)
}

fn number(v: &serde_json::Value, key: &str) -> Option<u64> {
    v.get(key)?.as_u64()
}

fn time(v: &serde_json::Value, key: &str) -> Option<Option<Timestamp>> {
    match v.get(key)? {
        serde_json::Value::Null => Some(None),
        t => t.as_i64().map(Some),
    }
}

/// `TRAIT.SHOW`'s JSON (a serialised [`ComputedTraitInfo`]) back into one.
fn trait_from_json(v: &serde_json::Value) -> Option<ComputedTraitInfo> {
    Some(ComputedTraitInfo {
        name: string(v, "name")?,
        expression: string(v, "expression")?,
        created: v.get("created")?.as_i64()?,
        used_by: v
            .get("used_by")?
            .as_array()?
            .iter()
            .map(|u| u.as_str().map(str::to_owned))
            .collect::<Option<_>>()?,
        model: v.get("model").filter(|m| !m.is_null()).cloned(),
        refit_error: v
            .get("refit_error")
            .and_then(|e| e.as_str())
            .map(str::to_owned),
    })
}

/// `SCHEMA`'s JSON (the serialised [`Schema`]) back into a [`Schema`].
fn schema_from_json(v: &serde_json::Value) -> Option<Schema> {
    let traits = v
        .get("traits")?
        .as_array()?
        .iter()
        .map(|t| {
            Some(TraitSchema {
                name: string(t, "name")?,
                types: type_names(t.get("types")?)?,
                customers: number(t, "customers")?,
                indexed: t.get("indexed")?.as_bool()?,
                distinct_values: usize::try_from(number(t, "distinct_values")?).ok()?,
            })
        })
        .collect::<Option<_>>()?;
    let events = v
        .get("events")?
        .as_array()?
        .iter()
        .map(|e| {
            Some(EventSchema {
                name: string(e, "name")?,
                count: number(e, "count")?,
                customers: number(e, "customers")?,
                properties: e
                    .get("properties")?
                    .as_array()?
                    .iter()
                    .map(|p| {
                        Some(PropertySchema {
                            name: string(p, "name")?,
                            types: type_names(p.get("types")?)?,
                            count: number(p, "count")?,
                            indexed: p.get("indexed")?.as_bool()?,
                        })
                    })
                    .collect::<Option<_>>()?,
            })
        })
        .collect::<Option<_>>()?;
    // A server from before computed traits sends none.
    let computed_traits = match v.get("computed_traits") {
        None => Vec::new(),
        Some(items) => items
            .as_array()?
            .iter()
            .map(|t| {
                Some(ComputedTraitSchema {
                    name: string(t, "name")?,
                    expression: string(t, "expression")?,
                })
            })
            .collect::<Option<_>>()?,
    };
    Some(Schema {
        customers: number(v, "customers")?,
        profiles: number(v, "profiles")?,
        traits,
        events,
        computed_traits,
    })
}

/// The saved-audience commands' JSON (the serialised [`AudienceInfo`]) back into one.
/// The `"warnings"` of a JSON answer, as text (none when absent).
fn warnings_of(v: &serde_json::Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A `TOP` reply read back: the audience's size, the rows and the warnings.
fn top_from_json(v: &serde_json::Value) -> Option<(u64, Vec<TopRow>, Vec<String>)> {
    let rows = v
        .get("rows")?
        .as_array()?
        .iter()
        .map(|r| {
            Some(TopRow {
                value: match r.get("value")? {
                    serde_json::Value::String(s) => crate::model::Value::Str(s.as_str().into()),
                    serde_json::Value::Bool(b) => crate::model::Value::Bool(*b),
                    serde_json::Value::Number(n) => crate::model::Value::Int(n.as_i64()?),
                    _ => return None,
                },
                customers: r.get("customers")?.as_u64()?,
                share: r.get("share")?.as_f64()?,
                everyone: r.get("everyone")?.as_u64()?,
                lift: r.get("lift")?.as_f64()?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let warnings = match v.get("warnings") {
        None => Vec::new(),
        Some(w) => w
            .as_array()?
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<_>>()?,
    };
    Some((v.get("audience")?.as_u64()?, rows, warnings))
}

fn audience_from_json(v: &serde_json::Value) -> Option<AudienceInfo> {
    Some(AudienceInfo {
        name: string(v, "name")?,
        rule: string(v, "rule")?,
        list_ids: v.get("list_ids").and_then(serde_json::Value::as_u64),
        size: number(v, "size")?,
        created: time(v, "created")??,
        rule_changed: time(v, "rule_changed")??,
        members_changed: time(v, "members_changed")?,
        as_of: time(v, "as_of")??,
        timers: number(v, "timers")?,
        next_check: time(v, "next_check")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON a server sends is the serialised library value: reading it back gives the
    /// same value, so both backends print alike.
    #[test]
    fn schema_and_audiences_read_back_from_their_json() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("s.db")).unwrap();
        db.identify(
            "c-1",
            vec![
                ("tier".into(), Some(crate::model::Value::Str("Gold".into()))),
                ("age".into(), Some(crate::model::Value::Int(30))),
            ],
        )
        .unwrap();
        db.track(
            "c-1",
            "purchased",
            vec![("amount".into(), crate::model::Value::Float(9.5))],
            None,
        )
        .unwrap();
        db.define_audience("gold", "tier = Gold").unwrap();
        let schema = Db::schema(&db);
        let json = serde_json::to_value(&schema).unwrap();
        assert_eq!(schema_from_json(&json), Some(schema));
        for info in Db::audiences(&db) {
            let json = serde_json::to_value(&info).unwrap();
            assert_eq!(audience_from_json(&json), Some(info));
        }
        assert_eq!(audience_from_json(&serde_json::json!({"name": "x"})), None);
    }

    #[test]
    fn server_error_codes_become_the_librarys_errors() {
        let e = check(RespValue::Error("NOTFOUND audience \"x\"".into())).unwrap_err();
        assert_eq!(e.to_string(), "not found: audience \"x\"");
        let e = check(RespValue::Error("ERR something".into())).unwrap_err();
        assert_eq!(e.to_string(), "ERR something");
        assert_eq!(check(RespValue::Integer(3)).unwrap(), RespValue::Integer(3));
    }
}
