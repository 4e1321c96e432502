//! The database server proper: types and values, tables stored as JSON files in the
//! data directory, and statement execution with transactions. Pure: it works on a
//! volume's [`Files`] and knows nothing of Kubernetes.
//!
//! Data directory layout (relative to PGDATA): `PG_VERSION` (the major version),
//! `global/twin-cluster.json` (roles, password, databases), `postmaster.pid` (who
//! runs the server) and one file per table, `base/<database>/<table>.json`:
//! `{"columns": [{"name", "type", "not_null", "default"}], "primary_key": [..],
//! "unique": [[..]], "sequences": {"t_id_seq": last}, "rows": [[..], ..]}` with values
//! as JSON (timestamps in PostgreSQL's text form).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::sql::{self, ColumnSpec, Expr, SelectItem, Stmt};
use crate::voldata::Files;

// ----- errors ------------------------------------------------------------------------

/// An error as the server reports it (severity, SQLSTATE, message, detail, hint and
/// the 0-based character position in the query, when it has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgError {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub position: Option<usize>,
}

impl PgError {
    pub fn new(code: &'static str, message: &str) -> PgError {
        PgError {
            severity: "ERROR",
            code,
            message: message.to_string(),
            detail: None,
            hint: None,
            position: None,
        }
    }

    pub fn fatal(code: &'static str, message: &str) -> PgError {
        PgError {
            severity: "FATAL",
            ..PgError::new(code, message)
        }
    }

    pub fn at(mut self, pos: usize) -> PgError {
        self.position = Some(pos);
        self
    }

    pub fn at_opt(mut self, pos: Option<usize>) -> PgError {
        if self.position.is_none() {
            self.position = pos;
        }
        self
    }

    pub fn detail(mut self, d: impl Into<String>) -> PgError {
        self.detail = Some(d.into());
        self
    }

    pub fn hint(mut self, h: impl Into<String>) -> PgError {
        self.hint = Some(h.into());
        self
    }

    pub fn syntax_at(near: &str, pos: usize) -> PgError {
        PgError::new("42601", &format!("syntax error at or near \"{near}\"")).at(pos)
    }

    pub fn syntax_end(pos: usize) -> PgError {
        PgError::new("42601", "syntax error at end of input").at(pos)
    }

    pub fn syntax_msg(msg: &str, pos: usize) -> PgError {
        PgError::new("42601", msg).at(pos)
    }

    fn undefined_table(name: &str, pos: usize) -> PgError {
        PgError::new("42P01", &format!("relation \"{name}\" does not exist")).at(pos)
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:  {}", self.severity, self.message)
    }
}

impl std::error::Error for PgError {}

// ----- types and values ----------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Int4,
    Int8,
    Float8,
    Numeric,
    Text,
    Bool,
    Timestamptz,
    Timestamp,
    Interval,
    Json,
    /// A string literal or NULL whose type the context decides.
    Unknown,
}

impl Ty {
    /// The name in messages (`format_type`).
    pub fn sql_name(self) -> &'static str {
        match self {
            Ty::Int4 => "integer",
            Ty::Int8 => "bigint",
            Ty::Float8 => "double precision",
            Ty::Numeric => "numeric",
            Ty::Text => "text",
            Ty::Bool => "boolean",
            Ty::Timestamptz => "timestamp with time zone",
            Ty::Timestamp => "timestamp without time zone",
            Ty::Interval => "interval",
            Ty::Json => "jsonb",
            Ty::Unknown => "unknown",
        }
    }

    /// The catalog name (`pg_type.typname`), a cast's column header.
    pub fn typname(self) -> &'static str {
        match self {
            Ty::Int4 => "int4",
            Ty::Int8 => "int8",
            Ty::Float8 => "float8",
            Ty::Numeric => "numeric",
            Ty::Text | Ty::Unknown => "text",
            Ty::Bool => "bool",
            Ty::Timestamptz => "timestamptz",
            Ty::Timestamp => "timestamp",
            Ty::Interval => "interval",
            Ty::Json => "jsonb",
        }
    }

    fn from_sql_name(s: &str) -> Option<Ty> {
        [
            Ty::Int4,
            Ty::Int8,
            Ty::Float8,
            Ty::Numeric,
            Ty::Text,
            Ty::Bool,
            Ty::Timestamptz,
            Ty::Timestamp,
            Ty::Interval,
            Ty::Json,
        ]
        .into_iter()
        .find(|t| t.sql_name() == s)
    }

    /// psql right-aligns numbers.
    pub fn is_numeric(self) -> bool {
        matches!(self, Ty::Int4 | Ty::Int8 | Ty::Float8 | Ty::Numeric)
    }

    fn is_timestamp(self) -> bool {
        matches!(self, Ty::Timestamptz | Ty::Timestamp)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    /// A numeric in its text form.
    Numeric(String),
    Text(String),
    Bool(bool),
    /// Microseconds since the Unix epoch (UTC).
    Ts(i64),
    /// Microseconds.
    Interval(i64),
    Json(Json),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Numeric(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The value in its type's output form (what psql prints); None for NULL.
    pub fn text(&self, ty: Ty) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float8_out(*f),
            Value::Numeric(s) | Value::Text(s) => s.clone(),
            Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Value::Ts(us) => timestamp_out(*us, ty != Ty::Timestamp),
            Value::Interval(us) => interval_out(*us),
            Value::Json(j) => jsonb_out(j),
        })
    }

    /// The value as JSON (what [`super::select_json`] returns for non-JSON columns).
    pub fn to_json(&self, ty: Ty) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Int(i) => json!(i),
            Value::Float(f) if f.is_finite() => json!(f),
            Value::Bool(b) => json!(b),
            Value::Json(j) => j.clone(),
            other => Json::String(other.text(ty).unwrap_or_default()),
        }
    }
}

/// float8 output as PostgreSQL 12+ (shortest exact; exponent below 1e-4 and from 1e15).
pub fn float8_out(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..15).contains(&exp) {
        let s = format!("{f}");
        return s;
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

fn ts_of(us: i64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp(
        us.div_euclid(1_000_000),
        (us.rem_euclid(1_000_000) * 1000) as u32,
    )
}

/// `2024-01-01 10:00:00.123+00` (fraction trimmed; `+00` for timestamptz in UTC).
pub fn timestamp_out(us: i64, tz: bool) -> String {
    let Some(t) = ts_of(us) else {
        return "infinity".into();
    };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = us.rem_euclid(1_000_000);
    if frac != 0 {
        let f = format!(".{frac:06}");
        s.push_str(f.trim_end_matches('0'));
    }
    if tz {
        s.push_str("+00");
    }
    s
}

/// `1 day 02:03:04.5`, `00:00:05.123456`, `-00:00:01`.
pub fn interval_out(us: i64) -> String {
    let neg = us < 0;
    let a = us.unsigned_abs();
    let day = 86_400_000_000u64;
    let (days, rest) = (a / day, a % day);
    let (h, m, s, f) = (
        rest / 3_600_000_000,
        rest / 60_000_000 % 60,
        rest / 1_000_000 % 60,
        rest % 1_000_000,
    );
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!(
            "{}{days} day{} ",
            if neg { "-" } else { "" },
            if days == 1 { "" } else { "s" }
        ));
    }
    if rest > 0 || days == 0 {
        if neg {
            out.push('-');
        }
        out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
        if f > 0 {
            out.push_str(format!(".{f:06}").trim_end_matches('0'));
        }
    }
    out.trim_end().to_string()
}

/// jsonb's text form: keys ordered by length then bytes, `", "` and `": "`.
pub fn jsonb_out(j: &Json) -> String {
    match j {
        Json::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}: {}", Json::String((*k).clone()), jsonb_out(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Json::Array(a) => format!(
            "[{}]",
            a.iter().map(jsonb_out).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

fn invalid_input(ty: Ty, s: &str) -> PgError {
    PgError::new(
        "22P02",
        &format!("invalid input syntax for type {}: \"{s}\"", ty.sql_name()),
    )
}

fn parse_ts(s: &str) -> Option<i64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "epoch" => return Some(0),
        "infinity" => return Some(i64::MAX),
        "-infinity" => return Some(i64::MIN),
        _ => {}
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Some(d.timestamp_micros());
    }
    // Split a trailing zone: Z, UTC, +HH, +HH:MM, +HHMM.
    let t = t.replace('T', " ");
    let (body, offset_s) = {
        let upper = t.to_ascii_uppercase();
        if let Some(b) = upper
            .strip_suffix(" UTC")
            .or_else(|| upper.strip_suffix('Z'))
            .or_else(|| upper.strip_suffix(" GMT"))
        {
            (t[..b.len()].trim().to_string(), 0i64)
        } else if let Some(i) = t
            .rfind(['+', '-'])
            .filter(|&i| i > 10 && t[..i].contains(':'))
        {
            let z = &t[i + 1..];
            let sign = if t.as_bytes()[i] == b'-' { -1 } else { 1 };
            let (h, m) = match z.split_once(':') {
                Some((h, m)) => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?),
                None if z.len() == 4 => (z[..2].parse().ok()?, z[2..].parse().ok()?),
                None => (z.parse().ok()?, 0),
            };
            (t[..i].trim().to_string(), sign * (h * 3600 + m * 60))
        } else {
            (t.trim().to_string(), 0)
        }
    };
    let naive = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&body, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(&body, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(Utc.from_utc_datetime(&naive).timestamp_micros() - offset_s * 1_000_000)
}

fn parse_interval(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    let words: Vec<&str> = t.split_whitespace().collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w.contains(':') {
            let neg = w.starts_with('-');
            let parts: Vec<f64> = w
                .trim_start_matches('-')
                .split(':')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let secs = match parts.as_slice() {
                [h, m] => h * 3600.0 + m * 60.0,
                [h, m, s] => h * 3600.0 + m * 60.0 + s,
                _ => return None,
            };
            total += if neg { -secs } else { secs };
            i += 1;
            continue;
        }
        // `5 minutes` or `5min`.
        let split = w.find(|c: char| c.is_alphabetic()).unwrap_or(w.len());
        let (num, unit) = if split == w.len() {
            (w, *words.get(i + 1)?)
        } else {
            (&w[..split], &w[split..])
        };
        if split == w.len() {
            i += 1;
        }
        let n: f64 = num.parse().ok()?;
        let secs = match unit.trim_end_matches('s') {
            "microsecond" | "u" | "usec" | "us" => 1e-6,
            "millisecond" | "m" if unit.starts_with("ms") => 1e-3,
            "millisecond" | "msec" | "ms" => 1e-3,
            "second" | "sec" | "" => 1.0,
            "minute" | "min" | "m" => 60.0,
            "hour" | "hr" | "h" => 3600.0,
            "day" | "d" => 86400.0,
            "week" | "w" => 604_800.0,
            _ => return None,
        };
        total += n * secs;
        i += 1;
    }
    Some((total * 1e6).round() as i64)
}

/// A string's value as `ty` (the type's input function).
pub fn parse_input(s: &str, ty: Ty) -> Result<Value, PgError> {
    let t = s.trim();
    let bad = || invalid_input(ty, s);
    Ok(match ty {
        Ty::Text | Ty::Unknown => Value::Text(s.to_string()),
        Ty::Int4 | Ty::Int8 => {
            let i: i128 = t.parse().map_err(|_| bad())?;
            let (lo, hi) = if ty == Ty::Int4 {
                (i32::MIN as i128, i32::MAX as i128)
            } else {
                (i64::MIN as i128, i64::MAX as i128)
            };
            if i < lo || i > hi {
                return Err(PgError::new(
                    "22003",
                    &format!("value \"{s}\" is out of range for type {}", ty.sql_name()),
                ));
            }
            Value::Int(i as i64)
        }
        Ty::Float8 => Value::Float(match t.to_ascii_lowercase().as_str() {
            "nan" => f64::NAN,
            "infinity" | "inf" | "+infinity" => f64::INFINITY,
            "-infinity" | "-inf" => f64::NEG_INFINITY,
            _ => t.parse().map_err(|_| bad())?,
        }),
        Ty::Numeric => {
            if t.parse::<f64>().is_err() || t.contains(['i', 'I', 'n', 'N']) {
                return Err(bad());
            }
            Value::Numeric(normalize_numeric(t))
        }
        Ty::Bool => {
            let l = t.to_ascii_lowercase();
            let is = |full: &str| !l.is_empty() && full.starts_with(&l);
            if is("true") || is("yes") || l == "on" || l == "1" {
                Value::Bool(true)
            } else if is("false") || is("no") || l == "off" || l == "of" || l == "0" {
                Value::Bool(false)
            } else {
                return Err(bad());
            }
        }
        Ty::Timestamptz | Ty::Timestamp => Value::Ts(parse_ts(t).ok_or_else(bad)?),
        Ty::Interval => Value::Interval(parse_interval(t).ok_or_else(bad)?),
        Ty::Json => Value::Json(serde_json::from_str(s).map_err(|_| {
            PgError::new("22P02", "invalid input syntax for type json").detail(format!(
                "Token \"{}\" is invalid.",
                t.split_whitespace().next().unwrap_or(t)
            ))
        })?),
    })
}

/// `+001.50` -> `1.50`, `.5` -> `0.5`, `1e3` -> `1000`.
fn normalize_numeric(t: &str) -> String {
    if t.contains(['e', 'E']) {
        return t
            .parse::<f64>()
            .map(|f| format!("{f}"))
            .unwrap_or_else(|_| t.to_string());
    }
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.trim_start_matches('+')),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut s = String::new();
    if neg && (int != "0" || frac.chars().any(|c| c != '0')) {
        s.push('-');
    }
    s.push_str(int);
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    s
}

/// Stored form of a value in a table file.
fn value_to_json(v: &Value, ty: Ty) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(i) => json!(i),
        Value::Float(f) if f.is_finite() => json!(f),
        Value::Bool(b) => json!(b),
        Value::Json(j) => j.clone(),
        other => Json::String(other.text(ty).unwrap_or_default()),
    }
}

fn value_from_json(j: &Json, ty: Ty) -> Value {
    match (j, ty) {
        (Json::Null, _) => Value::Null,
        (_, Ty::Json) => Value::Json(j.clone()),
        (Json::Number(n), Ty::Int4 | Ty::Int8) => n.as_i64().map(Value::Int).unwrap_or(Value::Null),
        (Json::Number(n), Ty::Float8) => Value::Float(n.as_f64().unwrap_or(0.0)),
        (Json::Bool(b), Ty::Bool) => Value::Bool(*b),
        (Json::String(s), t) => parse_input(s, t).unwrap_or(Value::Null),
        (other, t) => parse_input(&other.to_string(), t).unwrap_or(Value::Null),
    }
}

// ----- tables --------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: Ty,
    pub not_null: bool,
    /// The DEFAULT expression's text.
    pub default: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    pub primary_key: Option<Vec<usize>>,
    pub uniques: Vec<Vec<usize>>,
    pub sequences: BTreeMap<String, i64>,
    pub rows: Vec<Vec<Value>>,
    /// Why the file could not be read, if it could not.
    pub corrupt: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ColumnFile {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    not_null: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct TableFile {
    columns: Vec<ColumnFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    primary_key: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    unique: Vec<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    sequences: BTreeMap<String, i64>,
    rows: Vec<Vec<Json>>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    fn names(&self, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| self.columns[i].name.clone()).collect()
    }

    pub fn encode(&self) -> Vec<u8> {
        let f = TableFile {
            columns: self
                .columns
                .iter()
                .map(|c| ColumnFile {
                    name: c.name.clone(),
                    ty: c.ty.sql_name().into(),
                    not_null: c.not_null,
                    default: c.default.clone(),
                })
                .collect(),
            primary_key: self.primary_key.as_ref().map(|k| self.names(k)),
            unique: self.uniques.iter().map(|u| self.names(u)).collect(),
            sequences: self.sequences.clone(),
            rows: self
                .rows
                .iter()
                .map(|r| {
                    r.iter()
                        .zip(&self.columns)
                        .map(|(v, c)| value_to_json(v, c.ty))
                        .collect()
                })
                .collect(),
        };
        // One row per line keeps the file readable and diffable.
        let mut out = String::from("{\"columns\":");
        out.push_str(&serde_json::to_string(&f.columns).unwrap_or_default());
        if let Some(pk) = &f.primary_key {
            out.push_str(",\"primary_key\":");
            out.push_str(&serde_json::to_string(pk).unwrap_or_default());
        }
        if !f.unique.is_empty() {
            out.push_str(",\"unique\":");
            out.push_str(&serde_json::to_string(&f.unique).unwrap_or_default());
        }
        if !f.sequences.is_empty() {
            out.push_str(",\"sequences\":");
            out.push_str(&serde_json::to_string(&f.sequences).unwrap_or_default());
        }
        out.push_str(",\"rows\":[");
        for (i, r) in f.rows.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            out.push_str(&serde_json::to_string(r).unwrap_or_default());
        }
        out.push_str("\n]}\n");
        out.into_bytes()
    }

    pub fn decode(name: &str, bytes: &[u8]) -> Table {
        let f: TableFile = match serde_json::from_slice(bytes) {
            Ok(f) => f,
            Err(e) => {
                return Table {
                    name: name.into(),
                    corrupt: Some(e.to_string()),
                    ..Default::default()
                }
            }
        };
        let columns: Vec<Column> = f
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                ty: Ty::from_sql_name(&c.ty).unwrap_or(Ty::Text),
                not_null: c.not_null,
                default: c.default.clone(),
            })
            .collect();
        let idx = |names: &[String]| {
            names
                .iter()
                .filter_map(|n| columns.iter().position(|c| &c.name == n))
                .collect::<Vec<_>>()
        };
        let rows = f
            .rows
            .iter()
            .map(|r| {
                columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| r.get(i).map_or(Value::Null, |j| value_from_json(j, c.ty)))
                    .collect()
            })
            .collect();
        Table {
            name: name.into(),
            primary_key: f.primary_key.as_deref().map(idx),
            uniques: f.unique.iter().map(|u| idx(u)).collect(),
            sequences: f.sequences,
            rows,
            columns,
            corrupt: None,
        }
    }

    /// Constraint name and columns of every unique constraint (primary key first).
    fn unique_constraints(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        if let Some(pk) = &self.primary_key {
            out.push((format!("{}_pkey", self.name), pk.clone()));
        }
        for u in &self.uniques {
            out.push((
                format!("{}_{}_key", self.name, self.names(u).join("_")),
                u.clone(),
            ));
        }
        out
    }
}

// ----- the cluster (what initdb creates) ----------------------------------------------------

/// Roles and databases of a data directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub superuser: String,
    #[serde(default)]
    pub password: String,
    pub databases: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

pub const CLUSTER_FILE: &str = "global/twin-cluster.json";

pub fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_string()
    } else {
        format!("{}/{path}", prefix.trim_end_matches('/'))
    }
}

/// The data directory's cluster, if initdb ran.
pub fn read_cluster(files: &Files, pgdata: &str) -> Option<Cluster> {
    files
        .get(&join(pgdata, CLUSTER_FILE))
        .and_then(|b| serde_json::from_slice(b).ok())
}

/// initdb: creates the cluster (superuser, its password, databases `postgres`,
/// `template0`, `template1` and `db`).
pub fn initdb(
    files: &mut Files,
    pgdata: &str,
    major: &str,
    user: &str,
    password: &str,
    db: &str,
) -> Cluster {
    let mut databases = vec![
        "postgres".to_string(),
        "template0".into(),
        "template1".into(),
    ];
    if !databases.iter().any(|d| d == db) {
        databases.push(db.to_string());
    }
    let c = Cluster {
        superuser: user.into(),
        password: password.into(),
        databases,
        roles: vec![user.into()],
    };
    files.put(&join(pgdata, "PG_VERSION"), format!("{major}\n"));
    files.put(
        &join(pgdata, CLUSTER_FILE),
        serde_json::to_vec_pretty(&c).unwrap_or_default(),
    );
    c
}

// ----- sessions and statements ------------------------------------------------------------

/// What one statement returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A result set (SELECT, or DML with RETURNING: then `tag` is the command's).
    Rows {
        columns: Vec<(String, Ty)>,
        rows: Vec<Vec<Value>>,
        tag: String,
        returning: bool,
    },
    /// A command without rows: its tag (`INSERT 0 1`, `CREATE TABLE`, ...).
    Command(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct StmtResult {
    pub outcome: Outcome,
    /// NOTICE messages (without the `NOTICE:  ` prefix).
    pub notices: Vec<String>,
}

struct Txn {
    now: i64,
    /// Tables written in this transaction (None: dropped).
    tables: BTreeMap<String, Option<Arc<Table>>>,
    explicit: bool,
    failed: bool,
}

/// A connection to one database of a data directory.
pub struct Session<'a> {
    files: &'a mut Files,
    pgdata: String,
    pub db: String,
    pub user: String,
    /// `PostgreSQL 16.4 (Debian ...) on ...` for version().
    pub version: String,
    /// The clock: microseconds since the epoch (fixed per transaction, as now()).
    clock: Box<dyn Fn() -> i64 + 'a>,
    txn: Option<Txn>,
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

impl<'a> Session<'a> {
    pub fn new(
        files: &'a mut Files,
        pgdata: &str,
        db: &str,
        user: &str,
        version: &str,
    ) -> Session<'a> {
        Session {
            files,
            pgdata: pgdata.to_string(),
            db: db.into(),
            user: user.into(),
            version: version.into(),
            clock: Box::new(now_micros),
            txn: None,
        }
    }

    /// Replaces the clock (tests).
    #[cfg(test)]
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + 'a) -> Session<'a> {
        self.clock = Box::new(clock);
        self
    }

    fn table_path(&self, name: &str) -> String {
        join(&self.pgdata, &format!("base/{}/{name}.json", self.db))
    }

    /// True while an explicit transaction block is open.
    pub fn in_transaction(&self) -> bool {
        self.txn.as_ref().is_some_and(|t| t.explicit)
    }

    fn table(&mut self, name: &str) -> Option<Arc<Table>> {
        if let Some(t) = self.txn.as_ref().and_then(|t| t.tables.get(name)) {
            return t.clone();
        }
        let path = self.table_path(name);
        let n = name.to_string();
        self.files.decoded(&path, move |b| Table::decode(&n, b))
    }

    fn existing_table(&mut self, name: &str, pos: usize) -> Result<Arc<Table>, PgError> {
        let t = self
            .table(name)
            .ok_or_else(|| PgError::undefined_table(name, pos))?;
        if let Some(why) = &t.corrupt {
            return Err(PgError::new(
                "XX001",
                &format!("could not read relation \"{name}\": {why}"),
            ));
        }
        Ok(t)
    }

    fn put_table(&mut self, name: &str, t: Option<Table>) {
        if let Some(txn) = self.txn.as_mut() {
            txn.tables.insert(name.to_string(), t.map(Arc::new));
        }
    }

    fn begin_implicit(&mut self) {
        if self.txn.is_none() {
            self.txn = Some(Txn {
                now: (self.clock)(),
                tables: BTreeMap::new(),
                explicit: false,
                failed: false,
            });
        }
    }

    fn commit(&mut self) {
        if let Some(txn) = self.txn.take() {
            if txn.failed {
                return;
            }
            for (name, t) in txn.tables {
                let path = self.table_path(&name);
                match t {
                    Some(t) => {
                        let bytes = t.encode();
                        self.files.put_decoded(&path, bytes, t);
                    }
                    None => {
                        self.files.remove(&path);
                    }
                }
            }
        }
    }

    /// Ends the session: an open transaction block is rolled back (the connection closed).
    pub fn close(&mut self) {
        self.txn = None;
    }

    /// Runs a query string as the simple query protocol does: every statement in
    /// turn, in one implicit transaction unless the string controls it (BEGIN /
    /// COMMIT). Returns the results up to the first error, and that error.
    pub fn simple_query(&mut self, q: &str) -> (Vec<StmtResult>, Option<PgError>) {
        let stmts = match sql::parse(q) {
            Ok(s) => s,
            Err(e) => {
                self.fail();
                return (Vec::new(), Some(e));
            }
        };
        let mut out = Vec::new();
        for (stmt, _) in stmts {
            match self.statement(stmt) {
                Ok(r) => out.push(r),
                Err(e) => {
                    self.fail();
                    return (out, Some(e));
                }
            }
        }
        if self.txn.as_ref().is_some_and(|t| !t.explicit) {
            self.commit();
        }
        (out, None)
    }

    /// An error: an implicit transaction is rolled back, an explicit one is aborted.
    fn fail(&mut self) {
        match self.txn.as_mut() {
            Some(t) if t.explicit => t.failed = true,
            _ => self.txn = None,
        }
    }

    fn statement(&mut self, stmt: Stmt) -> Result<StmtResult, PgError> {
        let done = |tag: &str| {
            Ok(StmtResult {
                outcome: Outcome::Command(tag.to_string()),
                notices: Vec::new(),
            })
        };
        match &stmt {
            Stmt::Begin => {
                let notices = if self.in_transaction() {
                    vec!["there is already a transaction in progress".to_string()]
                } else {
                    Vec::new()
                };
                if let Some(t) = self.txn.as_mut() {
                    t.explicit = true;
                } else {
                    self.txn = Some(Txn {
                        now: (self.clock)(),
                        tables: BTreeMap::new(),
                        explicit: true,
                        failed: false,
                    });
                }
                return Ok(StmtResult {
                    outcome: Outcome::Command("BEGIN".into()),
                    notices,
                });
            }
            Stmt::Commit | Stmt::Rollback => {
                let open = self.in_transaction();
                let failed = self.txn.as_ref().is_some_and(|t| t.failed);
                if matches!(stmt, Stmt::Commit) && !failed {
                    self.commit();
                } else {
                    self.txn = None;
                }
                let tag = if matches!(stmt, Stmt::Commit) && !failed {
                    "COMMIT"
                } else {
                    "ROLLBACK"
                };
                let notices = if open {
                    Vec::new()
                } else {
                    vec!["there is no transaction in progress".to_string()]
                };
                return Ok(StmtResult {
                    outcome: Outcome::Command(tag.into()),
                    notices,
                });
            }
            _ => {}
        }
        if self.txn.as_ref().is_some_and(|t| t.failed) {
            return Err(PgError::new(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        self.begin_implicit();
        match stmt {
            Stmt::CreateTable {
                name,
                if_not_exists,
                columns,
                primary_key,
                uniques,
            } => {
                if self.table(&name).is_some() {
                    if if_not_exists {
                        return Ok(StmtResult {
                            outcome: Outcome::Command("CREATE TABLE".into()),
                            notices: vec![format!("relation \"{name}\" already exists, skipping")],
                        });
                    }
                    return Err(PgError::new(
                        "42P07",
                        &format!("relation \"{name}\" already exists"),
                    ));
                }
                let t = create_table(&name, &columns, primary_key, uniques)?;
                self.put_table(&name, Some(t));
                done("CREATE TABLE")
            }
            Stmt::DropTable { names, if_exists } => {
                let mut notices = Vec::new();
                for (name, pos) in &names {
                    if self.table(name).is_none() {
                        if if_exists {
                            notices.push(format!("table \"{name}\" does not exist, skipping"));
                            continue;
                        }
                        let _ = pos;
                        return Err(PgError::new(
                            "42P01",
                            &format!("table \"{name}\" does not exist"),
                        ));
                    }
                    self.put_table(name, None);
                }
                Ok(StmtResult {
                    outcome: Outcome::Command("DROP TABLE".into()),
                    notices,
                })
            }
            Stmt::Truncate { names } => {
                for (name, pos) in &names {
                    let mut t = (*self.existing_table(name, *pos)?).clone();
                    t.rows.clear();
                    self.put_table(name, Some(t));
                }
                done("TRUNCATE TABLE")
            }
            Stmt::Insert {
                table,
                table_pos,
                columns,
                rows,
                on_conflict_nothing,
                returning,
            } => self.insert(
                &table,
                table_pos,
                columns,
                rows,
                on_conflict_nothing,
                &returning,
            ),
            Stmt::Select {
                items,
                from,
                filter,
                order,
                limit,
                offset,
            } => self.select(
                &items,
                from,
                filter.as_ref(),
                &order,
                limit.as_ref(),
                offset.as_ref(),
            ),
            Stmt::Update {
                table,
                table_pos,
                sets,
                filter,
                returning,
            } => self.update(&table, table_pos, sets, filter.as_ref(), &returning),
            Stmt::Delete {
                table,
                table_pos,
                filter,
                returning,
            } => {
                let t = self.existing_table(&table, table_pos)?;
                let scope = self.scope(Some(&t), false);
                let f = filter.as_ref().map(|f| bind_where(&scope, f)).transpose()?;
                let ret = bind_items(&scope, &returning)?;
                let mut kept = Vec::new();
                let mut gone = Vec::new();
                for r in &t.rows {
                    if matches_filter(f.as_ref(), r)? {
                        gone.push(r.clone());
                    } else {
                        kept.push(r.clone());
                    }
                }
                let n = gone.len();
                let out = returning_rows(&ret, &gone)?;
                let mut t = (*t).clone();
                t.rows = kept;
                self.put_table(&table, Some(t));
                Ok(dml_result(format!("DELETE {n}"), ret, out))
            }
            Stmt::Begin | Stmt::Commit | Stmt::Rollback => unreachable!("handled above"),
        }
    }

    fn scope<'t>(&self, table: Option<&'t Table>, agg: bool) -> Scope<'t> {
        Scope {
            table,
            agg,
            now: self.txn.as_ref().map_or_else(now_micros, |t| t.now),
            db: self.db.clone(),
            user: self.user.clone(),
            version: self.version.clone(),
        }
    }

    fn insert(
        &mut self,
        table: &str,
        table_pos: usize,
        columns: Option<Vec<(String, usize)>>,
        rows: Vec<(Vec<(Expr, usize)>, usize)>,
        on_conflict_nothing: bool,
        returning: &[SelectItem],
    ) -> Result<StmtResult, PgError> {
        let t = self.existing_table(table, table_pos)?;
        let targets: Vec<(usize, Option<usize>)> = match &columns {
            Some(cols) => {
                let mut v: Vec<(usize, Option<usize>)> = Vec::new();
                for (name, pos) in cols {
                    let i = t.column(name).ok_or_else(|| {
                        PgError::new(
                            "42703",
                            &format!("column \"{name}\" of relation \"{table}\" does not exist"),
                        )
                        .at(*pos)
                    })?;
                    if v.iter().any(|(j, _)| *j == i) {
                        return Err(PgError::new(
                            "42701",
                            &format!("column \"{name}\" specified more than once"),
                        )
                        .at(*pos));
                    }
                    v.push((i, Some(*pos)));
                }
                v
            }
            None => (0..t.columns.len()).map(|i| (i, None)).collect(),
        };
        let scope = self.scope(None, false);
        let ret_scope = self.scope(Some(&t), false);
        let ret = bind_items(&ret_scope, returning)?;
        // Bind every value first: type errors surface before any row is written.
        let mut bound_rows = Vec::new();
        for (vals, _) in &rows {
            if vals.len() > targets.len() {
                let pos = vals[targets.len()].1;
                return Err(PgError::new(
                    "42601",
                    "INSERT has more expressions than target columns",
                )
                .at(pos));
            }
            if vals.len() < targets.len() && !vals.is_empty() {
                let pos = targets[vals.len()].1.unwrap_or(table_pos);
                return Err(PgError::new(
                    "42601",
                    "INSERT has more target columns than expressions",
                )
                .at(pos));
            }
            let mut b = Vec::new();
            for ((e, pos), (ci, _)) in vals.iter().zip(&targets) {
                if matches!(e, Expr::Default) {
                    b.push(None);
                    continue;
                }
                let col = &t.columns[*ci];
                b.push(Some(bind_assign(&scope, e, *pos, col)?));
            }
            bound_rows.push(b);
        }
        let mut t2 = (*t).clone();
        let mut inserted = Vec::new();
        for b in bound_rows {
            let mut row = vec![None; t2.columns.len()];
            for (v, (ci, _)) in b.iter().zip(&targets) {
                if let Some(bound) = v {
                    row[*ci] = Some(eval(&bound.b, None, &[])?);
                }
            }
            let row = self.fill_defaults(&mut t2, row)?;
            check_not_null(&t2, &row)?;
            match check_unique(&t2, &row, None) {
                Ok(()) => {}
                Err(_) if on_conflict_nothing => continue,
                Err(e) => return Err(e),
            }
            t2.rows.push(row.clone());
            inserted.push(row);
        }
        let n = inserted.len();
        let out = returning_rows(&ret, &inserted)?;
        self.put_table(table, Some(t2));
        Ok(dml_result(format!("INSERT 0 {n}"), ret, out))
    }

    /// Evaluates the defaults of the columns left unset (serial columns draw from
    /// their sequence).
    fn fill_defaults(&self, t: &mut Table, row: Vec<Option<Value>>) -> Result<Vec<Value>, PgError> {
        let mut out = Vec::with_capacity(row.len());
        for (i, v) in row.into_iter().enumerate() {
            let v = match v {
                Some(v) => v,
                None => match t.columns[i].default.clone() {
                    None => Value::Null,
                    Some(d) => self.eval_default(t, i, &d)?,
                },
            };
            out.push(v);
        }
        Ok(out)
    }

    fn eval_default(&self, t: &mut Table, col: usize, text: &str) -> Result<Value, PgError> {
        if let Some(seq) = text
            .strip_prefix("nextval('")
            .and_then(|s| s.split('\'').next())
        {
            let n = t.sequences.entry(seq.to_string()).or_insert(0);
            *n += 1;
            return Ok(Value::Int(*n));
        }
        let e = sql::parse_expr(text)?;
        let scope = self.scope(None, false);
        let c = t.columns[col].clone();
        let b = bind_assign(&scope, &e, 0, &c).map_err(|e| e.no_position())?;
        eval(&b.b, None, &[])
    }

    fn update(
        &mut self,
        table: &str,
        table_pos: usize,
        sets: Vec<(String, usize, Expr)>,
        filter: Option<&Expr>,
        returning: &[SelectItem],
    ) -> Result<StmtResult, PgError> {
        let t = self.existing_table(table, table_pos)?;
        let scope = self.scope(Some(&t), false);
        let f = filter.map(|f| bind_where(&scope, f)).transpose()?;
        let ret = bind_items(&scope, returning)?;
        let mut assigns = Vec::new();
        for (name, pos, e) in &sets {
            let ci = t.column(name).ok_or_else(|| {
                PgError::new(
                    "42703",
                    &format!("column \"{name}\" of relation \"{table}\" does not exist"),
                )
                .at(*pos)
            })?;
            let b = if matches!(e, Expr::Default) {
                None
            } else {
                Some(bind_assign(
                    &scope,
                    e,
                    e.pos().unwrap_or(*pos),
                    &t.columns[ci],
                )?)
            };
            assigns.push((ci, b));
        }
        let mut t2 = (*t).clone();
        let mut changed = Vec::new();
        for ri in 0..t2.rows.len() {
            if !matches_filter(f.as_ref(), &t2.rows[ri])? {
                continue;
            }
            let old = t2.rows[ri].clone();
            let mut new = old.clone();
            for (ci, b) in &assigns {
                new[*ci] = match b {
                    Some(b) => eval(&b.b, Some(&old), &[])?,
                    None => match t2.columns[*ci].default.clone() {
                        Some(d) => self.eval_default(&mut t2, *ci, &d)?,
                        None => Value::Null,
                    },
                };
            }
            check_not_null(&t2, &new)?;
            check_unique(&t2, &new, Some(ri))?;
            t2.rows[ri] = new.clone();
            changed.push(new);
        }
        let n = changed.len();
        let out = returning_rows(&ret, &changed)?;
        self.put_table(table, Some(t2));
        Ok(dml_result(format!("UPDATE {n}"), ret, out))
    }

    fn select(
        &mut self,
        items: &[SelectItem],
        from: Option<(String, usize)>,
        filter: Option<&Expr>,
        order: &[sql::OrderKey],
        limit: Option<&Expr>,
        offset: Option<&Expr>,
    ) -> Result<StmtResult, PgError> {
        let table = match &from {
            Some((name, pos)) => Some(self.existing_table(name, *pos)?),
            None => None,
        };
        let agg = items.iter().any(|i| has_aggregate(&i.expr))
            || order.iter().any(|k| has_aggregate(&k.expr));
        let scope = self.scope(table.as_deref(), agg);
        if table.is_none() && items.iter().any(|i| i.expr == Expr::Star) {
            return Err(PgError::new(
                "42601",
                "SELECT * with no tables specified is not valid",
            ));
        }
        let f = filter
            .map(|f| {
                bind_where(
                    &Scope {
                        agg: false,
                        ..scope.clone()
                    },
                    f,
                )
            })
            .transpose()?;
        let mut aggs = Vec::new();
        let bound = bind_items_agg(&scope, items, &mut aggs)?;
        let columns: Vec<(String, Ty)> = bound.iter().map(|(n, b)| (n.clone(), b.ty)).collect();
        // ORDER BY: an output column's position or name, else an expression.
        let mut keys = Vec::new();
        for k in order {
            let key = match &k.expr {
                Expr::Num(n, pos) => {
                    let i: usize = n.parse().unwrap_or(0);
                    if i == 0 || i > bound.len() {
                        return Err(PgError::new(
                            "42P10",
                            &format!("ORDER BY position {n} is not in select list"),
                        )
                        .at(*pos));
                    }
                    Key::Output(i - 1)
                }
                Expr::Column {
                    table: None, name, ..
                } if bound.iter().any(|(n, _)| n == name) => {
                    Key::Output(bound.iter().position(|(n, _)| n == name).unwrap_or(0))
                }
                e => Key::Expr(bind(&scope, e, &mut aggs)?),
            };
            keys.push((key, k.desc, k.nulls_first.unwrap_or(k.desc)));
        }
        let count_of = |e: Option<&Expr>, what: &str| -> Result<Option<usize>, PgError> {
            let Some(e) = e else { return Ok(None) };
            let b = bind(&self.scope(None, false), e, &mut Vec::new())?;
            match eval(&b.b, None, &[])? {
                Value::Null => Ok(None),
                Value::Int(n) if n >= 0 => Ok(Some(n as usize)),
                Value::Int(_) => Err(PgError::new(
                    "2201W",
                    &format!("{what} must not be negative"),
                )),
                _ => Err(PgError::new(
                    "42804",
                    &format!(
                        "argument of {what} must be type bigint, not type {}",
                        b.ty.sql_name()
                    ),
                )
                .at_opt(e.pos())),
            }
        };
        let limit = count_of(limit, "LIMIT")?;
        let offset = count_of(offset, "OFFSET")?.unwrap_or(0);
        let empty: Vec<Value> = Vec::new();
        let source: Vec<&Vec<Value>> = match &table {
            Some(t) => t.rows.iter().collect(),
            None => vec![&empty],
        };
        let mut picked = Vec::new();
        for r in source {
            if matches_filter(f.as_ref(), r)? {
                picked.push(r);
            }
        }
        // (output row, sort keys)
        let mut rows: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
        if agg {
            let mut vals = Vec::new();
            for a in &aggs {
                vals.push(a.compute(&picked)?);
            }
            let out: Vec<Value> = bound
                .iter()
                .map(|(_, b)| eval(&b.b, None, &vals))
                .collect::<Result<_, _>>()?;
            let ks = keys
                .iter()
                .map(|(k, _, _)| match k {
                    Key::Output(i) => Ok(out[*i].clone()),
                    Key::Expr(b) => eval(&b.b, None, &vals),
                })
                .collect::<Result<_, _>>()?;
            rows.push((out, ks));
        } else {
            // Without ORDER BY, rows past OFFSET + LIMIT are never looked at.
            let wanted = if keys.is_empty() {
                limit.map_or(usize::MAX, |l| l.saturating_add(offset))
            } else {
                usize::MAX
            };
            for r in picked.into_iter().take(wanted) {
                let out: Vec<Value> = bound
                    .iter()
                    .map(|(_, b)| eval(&b.b, Some(r), &[]))
                    .collect::<Result<_, _>>()?;
                let ks = keys
                    .iter()
                    .map(|(k, _, _)| match k {
                        Key::Output(i) => Ok(out[*i].clone()),
                        Key::Expr(b) => eval(&b.b, Some(r), &[]),
                    })
                    .collect::<Result<_, _>>()?;
                rows.push((out, ks));
            }
        }
        if !keys.is_empty() {
            rows.sort_by(|a, b| {
                for (i, (_, desc, nulls_first)) in keys.iter().enumerate() {
                    let (x, y) = (&a.1[i], &b.1[i]);
                    let o = match (x.is_null(), y.is_null()) {
                        (true, true) => std::cmp::Ordering::Equal,
                        (true, false) => {
                            if *nulls_first {
                                std::cmp::Ordering::Less
                            } else {
                                std::cmp::Ordering::Greater
                            }
                        }
                        (false, true) => {
                            if *nulls_first {
                                std::cmp::Ordering::Greater
                            } else {
                                std::cmp::Ordering::Less
                            }
                        }
                        (false, false) => {
                            let o = compare(x, y).unwrap_or(std::cmp::Ordering::Equal);
                            if *desc {
                                o.reverse()
                            } else {
                                o
                            }
                        }
                    };
                    if o != std::cmp::Ordering::Equal {
                        return o;
                    }
                }
                std::cmp::Ordering::Equal
            });
        }
        let rows: Vec<Vec<Value>> = rows
            .into_iter()
            .skip(offset)
            .take(limit.unwrap_or(usize::MAX))
            .map(|(r, _)| r)
            .collect();
        let tag = format!("SELECT {}", rows.len());
        Ok(StmtResult {
            outcome: Outcome::Rows {
                columns,
                rows,
                tag,
                returning: false,
            },
            notices: Vec::new(),
        })
    }
}

impl PgError {
    fn no_position(mut self) -> PgError {
        self.position = None;
        self
    }
}

enum Key {
    Output(usize),
    Expr(Typed),
}

fn dml_result(tag: String, ret: Vec<(String, Typed)>, rows: Vec<Vec<Value>>) -> StmtResult {
    if ret.is_empty() {
        return StmtResult {
            outcome: Outcome::Command(tag),
            notices: Vec::new(),
        };
    }
    let columns = ret.iter().map(|(n, b)| (n.clone(), b.ty)).collect();
    StmtResult {
        outcome: Outcome::Rows {
            columns,
            rows,
            tag,
            returning: true,
        },
        notices: Vec::new(),
    }
}

fn returning_rows(
    ret: &[(String, Typed)],
    rows: &[Vec<Value>],
) -> Result<Vec<Vec<Value>>, PgError> {
    if ret.is_empty() {
        return Ok(Vec::new());
    }
    rows.iter()
        .map(|r| ret.iter().map(|(_, b)| eval(&b.b, Some(r), &[])).collect())
        .collect()
}

fn create_table(
    name: &str,
    specs: &[ColumnSpec],
    primary_key: Option<Vec<String>>,
    uniques: Vec<Vec<String>>,
) -> Result<Table, PgError> {
    let mut t = Table {
        name: name.into(),
        ..Default::default()
    };
    let mut pk: Option<Vec<usize>> = None;
    for (i, c) in specs.iter().enumerate() {
        if t.column(&c.name).is_some() {
            return Err(PgError::new(
                "42701",
                &format!("column \"{}\" specified more than once", c.name),
            ));
        }
        let mut default = c.default.clone();
        if c.serial {
            let seq = format!("{name}_{}_seq", c.name);
            default = Some(format!("nextval('{seq}'::regclass)"));
            t.sequences.insert(seq, 0);
        } else if let Some(d) = &default {
            sql::parse_expr(d)?;
        }
        t.columns.push(Column {
            name: c.name.clone(),
            ty: c.ty,
            not_null: c.not_null || c.serial || c.primary_key,
            default,
        });
        if c.primary_key {
            if pk.is_some() {
                return Err(PgError::new(
                    "42P16",
                    &format!("multiple primary keys for table \"{name}\" are not allowed"),
                ));
            }
            pk = Some(vec![i]);
        }
        if c.unique {
            t.uniques.push(vec![i]);
        }
    }
    let idx = |t: &Table, names: &[String]| -> Result<Vec<usize>, PgError> {
        names
            .iter()
            .map(|n| {
                t.column(n).ok_or_else(|| {
                    PgError::new(
                        "42703",
                        &format!("column \"{n}\" named in key does not exist"),
                    )
                })
            })
            .collect()
    };
    if let Some(names) = primary_key {
        if pk.is_some() {
            return Err(PgError::new(
                "42P16",
                &format!("multiple primary keys for table \"{name}\" are not allowed"),
            ));
        }
        let k = idx(&t, &names)?;
        for &i in &k {
            t.columns[i].not_null = true;
        }
        pk = Some(k);
    }
    for u in uniques {
        let k = idx(&t, &u)?;
        t.uniques.push(k);
    }
    t.primary_key = pk;
    Ok(t)
}

fn row_text(t: &Table, row: &[Value]) -> String {
    row.iter()
        .zip(&t.columns)
        .map(|(v, c)| v.text(c.ty).unwrap_or_else(|| "null".into()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_not_null(t: &Table, row: &[Value]) -> Result<(), PgError> {
    for (v, c) in row.iter().zip(&t.columns) {
        if c.not_null && v.is_null() {
            return Err(PgError::new(
                "23502",
                &format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    c.name, t.name
                ),
            )
            .detail(format!("Failing row contains ({}).", row_text(t, row))));
        }
    }
    Ok(())
}

/// Checks `row` against the unique constraints (ignoring row `skip`, the row being updated).
fn check_unique(t: &Table, row: &[Value], skip: Option<usize>) -> Result<(), PgError> {
    for (name, cols) in t.unique_constraints() {
        if cols.iter().any(|&c| row[c].is_null()) {
            continue;
        }
        let clash = t.rows.iter().enumerate().any(|(i, r)| {
            Some(i) != skip
                && cols
                    .iter()
                    .all(|&c| compare(&r[c], &row[c]) == Some(std::cmp::Ordering::Equal))
        });
        if clash {
            let names = cols
                .iter()
                .map(|&c| t.columns[c].name.clone())
                .collect::<Vec<_>>()
                .join(", ");
            let vals = cols
                .iter()
                .map(|&c| row[c].text(t.columns[c].ty).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(PgError::new(
                "23505",
                &format!("duplicate key value violates unique constraint \"{name}\""),
            )
            .detail(format!("Key ({names})=({vals}) already exists.")));
        }
    }
    Ok(())
}

// ----- binding and evaluation ------------------------------------------------------------------

#[derive(Clone)]
struct Scope<'t> {
    table: Option<&'t Table>,
    /// The query aggregates: bare columns are errors outside aggregates.
    agg: bool,
    now: i64,
    db: String,
    user: String,
    version: String,
}

/// A bound expression and its type.
#[derive(Clone, Debug)]
struct Typed {
    b: B,
    ty: Ty,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum AggKind {
    CountStar,
    Count,
    Max,
    Min,
    Sum,
}

#[derive(Clone, Debug)]
struct Agg {
    kind: AggKind,
    arg: Option<Typed>,
    ty: Ty,
}

impl Agg {
    fn compute(&self, rows: &[&Vec<Value>]) -> Result<Value, PgError> {
        if self.kind == AggKind::CountStar {
            return Ok(Value::Int(rows.len() as i64));
        }
        let arg = self.arg.as_ref().expect("aggregate argument");
        let mut acc = Value::Null;
        let mut n = 0i64;
        for r in rows {
            let v = eval(&arg.b, Some(r), &[])?;
            if v.is_null() {
                continue;
            }
            n += 1;
            acc = match (self.kind, acc) {
                (AggKind::Count, _) => Value::Null,
                (_, Value::Null) => match (self.kind, v) {
                    (AggKind::Sum, Value::Int(i)) => Value::Int(i),
                    (AggKind::Sum, v) => Value::Float(v.as_f64().unwrap_or(0.0)),
                    (_, v) => v,
                },
                (AggKind::Max, a) => {
                    if compare(&v, &a) == Some(std::cmp::Ordering::Greater) {
                        v
                    } else {
                        a
                    }
                }
                (AggKind::Min, a) => {
                    if compare(&v, &a) == Some(std::cmp::Ordering::Less) {
                        v
                    } else {
                        a
                    }
                }
                (AggKind::Sum, Value::Int(a)) => match v {
                    Value::Int(b) => Value::Int(
                        a.checked_add(b)
                            .ok_or_else(|| PgError::new("22003", "bigint out of range"))?,
                    ),
                    v => Value::Float(a as f64 + v.as_f64().unwrap_or(0.0)),
                },
                (AggKind::Sum, a) => {
                    Value::Float(a.as_f64().unwrap_or(0.0) + v.as_f64().unwrap_or(0.0))
                }
                (AggKind::CountStar, a) => a,
            };
        }
        Ok(match self.kind {
            AggKind::Count => Value::Int(n),
            AggKind::Sum if self.ty == Ty::Numeric => match acc {
                Value::Null => Value::Null,
                Value::Int(i) => Value::Numeric(i.to_string()),
                v => Value::Numeric(v.as_f64().map(|f| format!("{f}")).unwrap_or_default()),
            },
            _ => acc,
        })
    }
}

#[derive(Clone, Debug)]
enum B {
    Const(Value),
    Col(usize),
    Agg(usize),
    Cmp(String, Box<B>, Box<B>),
    And(Box<B>, Box<B>),
    Or(Box<B>, Box<B>),
    Not(Box<B>),
    IsNull(Box<B>, bool),
    In(Box<B>, Vec<B>, bool),
    Arith(String, Box<B>, Box<B>, Ty),
    Concat(Box<B>, Box<B>),
    Neg(Box<B>),
    Cast(Box<B>, Ty, Ty),
    Func(String, Vec<B>),
    Extract(String, Box<B>, Ty),
}

fn has_aggregate(e: &Expr) -> bool {
    match e {
        Expr::Func { name, .. } if matches!(name.as_str(), "count" | "max" | "min" | "sum") => true,
        Expr::Func { args, .. } => args.iter().any(has_aggregate),
        Expr::Extract { arg, .. } => has_aggregate(arg),
        Expr::Cast { expr, .. }
        | Expr::Neg(expr, _)
        | Expr::Not(expr)
        | Expr::IsNull { expr, .. } => has_aggregate(expr),
        Expr::Binary { left, right, .. } | Expr::And(left, right) | Expr::Or(left, right) => {
            has_aggregate(left) || has_aggregate(right)
        }
        Expr::InList { expr, list, .. } => has_aggregate(expr) || list.iter().any(has_aggregate),
        _ => false,
    }
}

/// The column header PostgreSQL gives an expression.
fn header(e: &Expr) -> String {
    match e {
        Expr::Column { name, .. } => name.clone(),
        Expr::Func { name, .. } => name.clone(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Cast { expr, ty, .. } => match expr.as_ref() {
            Expr::Column { .. } | Expr::Func { .. } | Expr::Extract { .. } | Expr::Cast { .. } => {
                header(expr)
            }
            _ => ty.typname().into(),
        },
        Expr::Bool(..) => "bool".into(),
        _ => "?column?".into(),
    }
}

fn bind_items(scope: &Scope, items: &[SelectItem]) -> Result<Vec<(String, Typed)>, PgError> {
    bind_items_agg(scope, items, &mut Vec::new())
}

fn bind_items_agg(
    scope: &Scope,
    items: &[SelectItem],
    aggs: &mut Vec<Agg>,
) -> Result<Vec<(String, Typed)>, PgError> {
    let mut out = Vec::new();
    for it in items {
        if it.expr == Expr::Star {
            let Some(t) = scope.table else {
                return Err(PgError::new(
                    "42601",
                    "SELECT * with no tables specified is not valid",
                ));
            };
            if scope.agg {
                if let Some(c) = t.columns.first() {
                    return Err(grouping_error(&t.name, &c.name, None));
                }
            }
            for (i, c) in t.columns.iter().enumerate() {
                out.push((
                    c.name.clone(),
                    Typed {
                        b: B::Col(i),
                        ty: c.ty,
                    },
                ));
            }
            continue;
        }
        let b = bind(scope, &it.expr, aggs)?;
        let b = if b.ty == Ty::Unknown {
            Typed { ty: Ty::Text, ..b }
        } else {
            b
        };
        out.push((it.alias.clone().unwrap_or_else(|| header(&it.expr)), b));
    }
    Ok(out)
}

fn grouping_error(table: &str, col: &str, pos: Option<usize>) -> PgError {
    PgError::new("42803", &format!("column \"{table}.{col}\" must appear in the GROUP BY clause or be used in an aggregate function")).at_opt(pos)
}

fn bind_where(scope: &Scope, e: &Expr) -> Result<Typed, PgError> {
    if has_aggregate(e) {
        return Err(
            PgError::new("42803", "aggregate functions are not allowed in WHERE")
                .at_opt(first_aggregate_pos(e)),
        );
    }
    let b = bind(scope, e, &mut Vec::new())?;
    match b.ty {
        Ty::Bool => Ok(b),
        Ty::Unknown => Ok(Typed {
            b: coerce_const(b.b, Ty::Bool, e.pos())?,
            ty: Ty::Bool,
        }),
        other => Err(PgError::new(
            "42804",
            &format!(
                "argument of WHERE must be type boolean, not type {}",
                other.sql_name()
            ),
        )
        .at_opt(e.pos())),
    }
}

fn first_aggregate_pos(e: &Expr) -> Option<usize> {
    match e {
        Expr::Func { name, pos, .. }
            if matches!(name.as_str(), "count" | "max" | "min" | "sum") =>
        {
            Some(*pos)
        }
        Expr::Binary { left, right, .. } | Expr::And(left, right) | Expr::Or(left, right) => {
            first_aggregate_pos(left).or_else(|| first_aggregate_pos(right))
        }
        Expr::Not(x) | Expr::Cast { expr: x, .. } | Expr::IsNull { expr: x, .. } => {
            first_aggregate_pos(x)
        }
        _ => None,
    }
}

fn matches_filter(f: Option<&Typed>, row: &[Value]) -> Result<bool, PgError> {
    match f {
        None => Ok(true),
        Some(f) => Ok(eval(&f.b, Some(row), &[])? == Value::Bool(true)),
    }
}

/// Binds a value assigned to a column (INSERT, UPDATE, DEFAULT): assignment casts.
fn bind_assign(scope: &Scope, e: &Expr, pos: usize, col: &Column) -> Result<Typed, PgError> {
    let b = bind(scope, e, &mut Vec::new())?;
    let to = col.ty;
    if b.ty == to {
        return Ok(b);
    }
    if b.ty == Ty::Unknown {
        return Ok(Typed {
            b: coerce_const(b.b, to, Some(pos))?,
            ty: to,
        });
    }
    let ok = matches!(
        (b.ty, to),
        (
            Ty::Int4 | Ty::Int8 | Ty::Float8 | Ty::Numeric,
            Ty::Int4 | Ty::Int8 | Ty::Float8 | Ty::Numeric
        ) | (_, Ty::Text)
            | (
                Ty::Timestamptz | Ty::Timestamp,
                Ty::Timestamptz | Ty::Timestamp
            )
    );
    if !ok {
        return Err(PgError::new(
            "42804",
            &format!(
                "column \"{}\" is of type {} but expression is of type {}",
                col.name,
                to.sql_name(),
                b.ty.sql_name()
            ),
        )
        .at(pos)
        .hint("You will need to rewrite or cast the expression."));
    }
    Ok(Typed {
        b: B::Cast(Box::new(b.b), b.ty, to),
        ty: to,
    })
}

/// A constant of unknown type (string literal, NULL) read as `ty`.
fn coerce_const(b: B, ty: Ty, pos: Option<usize>) -> Result<B, PgError> {
    match b {
        B::Const(Value::Text(s)) => Ok(B::Const(parse_input(&s, ty).map_err(|e| e.at_opt(pos))?)),
        other => Ok(other),
    }
}

fn numeric_rank(t: Ty) -> Option<u8> {
    match t {
        Ty::Int4 => Some(0),
        Ty::Int8 => Some(1),
        Ty::Numeric => Some(2),
        Ty::Float8 => Some(3),
        _ => None,
    }
}

fn bind(scope: &Scope, e: &Expr, aggs: &mut Vec<Agg>) -> Result<Typed, PgError> {
    let t = |b: B, ty: Ty| Ok(Typed { b, ty });
    match e {
        Expr::Null(_) => t(B::Const(Value::Null), Ty::Unknown),
        Expr::Bool(v, _) => t(B::Const(Value::Bool(*v)), Ty::Bool),
        Expr::Num(n, pos) => {
            if !n.contains(['.', 'e', 'E']) {
                if let Ok(i) = n.parse::<i64>() {
                    let ty = if i32::try_from(i).is_ok() {
                        Ty::Int4
                    } else {
                        Ty::Int8
                    };
                    return t(B::Const(Value::Int(i)), ty);
                }
            }
            let v = parse_input(n, Ty::Numeric).map_err(|e| e.at(*pos))?;
            t(B::Const(v), Ty::Numeric)
        }
        Expr::Str(s, _) => t(B::Const(Value::Text(s.clone())), Ty::Unknown),
        Expr::Default => Err(PgError::new(
            "42601",
            "DEFAULT is not allowed in this context",
        )),
        Expr::Star => Err(PgError::syntax_at("*", 0)),
        Expr::Column { table, name, pos } => {
            let Some(tb) = scope.table else {
                let shown = match table {
                    Some(q) => {
                        return Err(PgError::new(
                            "42P01",
                            &format!("missing FROM-clause entry for table \"{q}\""),
                        )
                        .at(*pos))
                    }
                    None => name.clone(),
                };
                return Err(
                    PgError::new("42703", &format!("column \"{shown}\" does not exist")).at(*pos),
                );
            };
            let Some(i) = tb.column(name) else {
                let shown = match table {
                    Some(q) => format!("column {q}.{name} does not exist"),
                    None => format!("column \"{name}\" does not exist"),
                };
                return Err(PgError::new("42703", &shown).at(*pos));
            };
            if scope.agg {
                return Err(grouping_error(&tb.name, name, Some(*pos)));
            }
            t(B::Col(i), tb.columns[i].ty)
        }
        Expr::Func {
            name,
            args,
            star,
            pos,
        } => bind_func(scope, name, args, *star, *pos, aggs),
        Expr::Extract { field, arg, pos } => {
            let a = bind(scope, arg, aggs)?;
            let a = if a.ty == Ty::Unknown {
                Typed {
                    b: coerce_const(a.b, Ty::Timestamptz, arg.pos())?,
                    ty: Ty::Timestamptz,
                }
            } else {
                a
            };
            let ok = matches!(
                field.as_str(),
                "epoch"
                    | "year"
                    | "month"
                    | "day"
                    | "hour"
                    | "minute"
                    | "second"
                    | "dow"
                    | "doy"
                    | "milliseconds"
                    | "microseconds"
            );
            if !ok || !(a.ty.is_timestamp() || a.ty == Ty::Interval) {
                return Err(PgError::new(
                    "0A000",
                    &format!(
                        "unit \"{field}\" not supported for type {}",
                        a.ty.sql_name()
                    ),
                )
                .at(*pos));
            }
            t(B::Extract(field.clone(), Box::new(a.b), a.ty), Ty::Numeric)
        }
        Expr::Cast { expr, ty, pos } => {
            let a = bind(scope, expr, aggs)?;
            if a.ty == Ty::Unknown {
                return t(coerce_const(a.b, *ty, expr.pos().or(Some(*pos)))?, *ty);
            }
            if a.ty == *ty {
                return Ok(a);
            }
            let ok = match (a.ty, *ty) {
                (_, Ty::Text) | (Ty::Text, _) => true,
                (f, to) if numeric_rank(f).is_some() && numeric_rank(to).is_some() => true,
                (Ty::Int4 | Ty::Int8, Ty::Bool) | (Ty::Bool, Ty::Int4) => true,
                (f, to) if f.is_timestamp() && to.is_timestamp() => true,
                (Ty::Json, to) if numeric_rank(to).is_some() || to == Ty::Bool => true,
                _ => false,
            };
            if !ok {
                return Err(PgError::new(
                    "42846",
                    &format!("cannot cast type {} to {}", a.ty.sql_name(), ty.sql_name()),
                )
                .at(*pos));
            }
            t(B::Cast(Box::new(a.b), a.ty, *ty), *ty)
        }
        Expr::Neg(x, pos) => {
            let a = bind(scope, x, aggs)?;
            if numeric_rank(a.ty).is_none() && a.ty != Ty::Interval {
                return Err(PgError::new("42883", &format!("operator does not exist: - {}", a.ty.sql_name()))
                    .at(*pos)
                    .hint("No operator matches the given name and argument type. You might need to add an explicit type cast."));
            }
            t(B::Neg(Box::new(a.b)), a.ty)
        }
        Expr::And(l, r) | Expr::Or(l, r) => {
            let l2 = bool_operand(
                scope,
                l,
                aggs,
                if matches!(e, Expr::And(..)) {
                    "AND"
                } else {
                    "OR"
                },
            )?;
            let r2 = bool_operand(
                scope,
                r,
                aggs,
                if matches!(e, Expr::And(..)) {
                    "AND"
                } else {
                    "OR"
                },
            )?;
            let b = if matches!(e, Expr::And(..)) {
                B::And(Box::new(l2), Box::new(r2))
            } else {
                B::Or(Box::new(l2), Box::new(r2))
            };
            t(b, Ty::Bool)
        }
        Expr::Not(x) => t(
            B::Not(Box::new(bool_operand(scope, x, aggs, "NOT")?)),
            Ty::Bool,
        ),
        Expr::IsNull { expr, negated } => {
            let a = bind(scope, expr, aggs)?;
            t(B::IsNull(Box::new(a.b), *negated), Ty::Bool)
        }
        Expr::InList {
            expr,
            list,
            negated,
            pos,
        } => {
            let a = bind(scope, expr, aggs)?;
            let mut items = Vec::new();
            for x in list {
                let (l, r) = unify(
                    a.clone(),
                    bind(scope, x, aggs)?,
                    "=",
                    *pos,
                    expr.pos(),
                    x.pos(),
                )?;
                items.push(r);
                let _ = l;
            }
            let a = if a.ty == Ty::Unknown {
                Typed {
                    b: a.b,
                    ty: Ty::Text,
                }
            } else {
                a
            };
            t(B::In(Box::new(a.b), items, *negated), Ty::Bool)
        }
        Expr::Binary {
            op,
            left,
            right,
            pos,
        } => {
            let l = bind(scope, left, aggs)?;
            let r = bind(scope, right, aggs)?;
            match op.as_str() {
                "=" | "<>" | "<" | ">" | "<=" | ">=" => {
                    let (l, r) = unify(l, r, op, *pos, left.pos(), right.pos())?;
                    t(B::Cmp(op.clone(), Box::new(l), Box::new(r)), Ty::Bool)
                }
                "||" => {
                    let l = if l.ty == Ty::Unknown {
                        Typed { ty: Ty::Text, ..l }
                    } else {
                        l
                    };
                    let r = if r.ty == Ty::Unknown {
                        Typed { ty: Ty::Text, ..r }
                    } else {
                        r
                    };
                    if l.ty != Ty::Text && r.ty != Ty::Text {
                        return Err(op_error(op, l.ty, r.ty, *pos));
                    }
                    let (lt, rt) = (l.ty, r.ty);
                    let lb = if lt == Ty::Text {
                        l.b
                    } else {
                        B::Cast(Box::new(l.b), lt, Ty::Text)
                    };
                    let rb = if rt == Ty::Text {
                        r.b
                    } else {
                        B::Cast(Box::new(r.b), rt, Ty::Text)
                    };
                    t(B::Concat(Box::new(lb), Box::new(rb)), Ty::Text)
                }
                _ => bind_arith(op, l, r, *pos, left.pos(), right.pos()),
            }
        }
    }
}

fn bool_operand(scope: &Scope, e: &Expr, aggs: &mut Vec<Agg>, what: &str) -> Result<B, PgError> {
    let a = bind(scope, e, aggs)?;
    match a.ty {
        Ty::Bool => Ok(a.b),
        Ty::Unknown => coerce_const(a.b, Ty::Bool, e.pos()),
        other => Err(PgError::new(
            "42804",
            &format!(
                "argument of {what} must be type boolean, not type {}",
                other.sql_name()
            ),
        )
        .at_opt(e.pos())),
    }
}

fn op_error(op: &str, l: Ty, r: Ty, pos: usize) -> PgError {
    PgError::new("42883", &format!("operator does not exist: {} {op} {}", l.sql_name(), r.sql_name()))
        .at(pos)
        .hint("No operator matches the given name and argument types. You might need to add explicit type casts.")
}

/// Brings both sides of a comparison to one type (unknown literals take the other
/// side's type; numbers compare across types).
fn unify(
    l: Typed,
    r: Typed,
    op: &str,
    pos: usize,
    lpos: Option<usize>,
    rpos: Option<usize>,
) -> Result<(B, B), PgError> {
    match (l.ty, r.ty) {
        (Ty::Unknown, Ty::Unknown) => Ok((l.b, r.b)),
        (Ty::Unknown, t) => Ok((coerce_const(l.b, t, lpos)?, r.b)),
        (t, Ty::Unknown) => Ok((l.b, coerce_const(r.b, t, rpos)?)),
        (a, b) if a == b => Ok((l.b, r.b)),
        (a, b) if numeric_rank(a).is_some() && numeric_rank(b).is_some() => Ok((l.b, r.b)),
        (a, b) if a.is_timestamp() && b.is_timestamp() => Ok((l.b, r.b)),
        (a, b) => Err(op_error(op, a, b, pos)),
    }
}

fn bind_arith(
    op: &str,
    l: Typed,
    r: Typed,
    pos: usize,
    lpos: Option<usize>,
    rpos: Option<usize>,
) -> Result<Typed, PgError> {
    // Unknown literals take the other side's type (an interval beside a timestamp).
    let (l, r) = match (l.ty, r.ty) {
        (Ty::Unknown, Ty::Unknown) => (
            Typed {
                b: coerce_const(l.b, Ty::Int4, lpos)?,
                ty: Ty::Int4,
            },
            Typed {
                b: coerce_const(r.b, Ty::Int4, rpos)?,
                ty: Ty::Int4,
            },
        ),
        (Ty::Unknown, t) => {
            let lt = if t.is_timestamp() && op == "+" {
                Ty::Interval
            } else {
                t
            };
            (
                Typed {
                    b: coerce_const(l.b, lt, lpos)?,
                    ty: lt,
                },
                r,
            )
        }
        (t, Ty::Unknown) => {
            let rt = if t.is_timestamp() { Ty::Interval } else { t };
            (
                l,
                Typed {
                    b: coerce_const(r.b, rt, rpos)?,
                    ty: rt,
                },
            )
        }
        _ => (l, r),
    };
    let ty = match (l.ty, r.ty, op) {
        (a, b, _) if numeric_rank(a).is_some() && numeric_rank(b).is_some() => {
            if numeric_rank(a) >= numeric_rank(b) {
                a
            } else {
                b
            }
        }
        (a, Ty::Interval, "+" | "-") if a.is_timestamp() => a,
        (Ty::Interval, b, "+") if b.is_timestamp() => b,
        (a, b, "-") if a.is_timestamp() && b.is_timestamp() => Ty::Interval,
        (Ty::Interval, Ty::Interval, "+" | "-") => Ty::Interval,
        (a, b, _) => return Err(op_error(op, a, b, pos)),
    };
    Ok(Typed {
        b: B::Arith(op.to_string(), Box::new(l.b), Box::new(r.b), ty),
        ty,
    })
}

fn bind_func(
    scope: &Scope,
    name: &str,
    args: &[Expr],
    star: bool,
    pos: usize,
    aggs: &mut Vec<Agg>,
) -> Result<Typed, PgError> {
    let t = |b: B, ty: Ty| Ok(Typed { b, ty });
    let no_args = |ty: Ty, v: Value| -> Result<Typed, PgError> { Ok(Typed { b: B::Const(v), ty }) };
    match name {
        "count" | "max" | "min" | "sum" => {
            if !scope.agg {
                return Err(PgError::new(
                    "42803",
                    "aggregate functions are not allowed in this context",
                )
                .at(pos));
            }
            let inner = Scope {
                agg: false,
                ..scope.clone()
            };
            if star {
                if name != "count" {
                    return Err(PgError::syntax_at("*", pos));
                }
                aggs.push(Agg {
                    kind: AggKind::CountStar,
                    arg: None,
                    ty: Ty::Int8,
                });
                return t(B::Agg(aggs.len() - 1), Ty::Int8);
            }
            if args.len() != 1 {
                return Err(no_function(name, &vec![Ty::Unknown; args.len()], pos));
            }
            if has_aggregate(&args[0]) {
                return Err(
                    PgError::new("42803", "aggregate function calls cannot be nested")
                        .at_opt(first_aggregate_pos(&args[0])),
                );
            }
            let a = bind(&inner, &args[0], &mut Vec::new())?;
            let a = if a.ty == Ty::Unknown {
                Typed { ty: Ty::Text, ..a }
            } else {
                a
            };
            let (kind, ty) = match name {
                "count" => (AggKind::Count, Ty::Int8),
                "max" => (AggKind::Max, a.ty),
                "min" => (AggKind::Min, a.ty),
                _ => match a.ty {
                    Ty::Int4 => (AggKind::Sum, Ty::Int8),
                    Ty::Int8 | Ty::Numeric => (AggKind::Sum, Ty::Numeric),
                    Ty::Float8 => (AggKind::Sum, Ty::Float8),
                    Ty::Interval => (AggKind::Sum, Ty::Interval),
                    other => return Err(no_function(name, &[other], pos)),
                },
            };
            if matches!(kind, AggKind::Max | AggKind::Min) && matches!(ty, Ty::Json | Ty::Bool) {
                return Err(no_function(name, &[ty], pos));
            }
            aggs.push(Agg {
                kind,
                arg: Some(a),
                ty,
            });
            t(B::Agg(aggs.len() - 1), ty)
        }
        "now" | "transaction_timestamp" | "statement_timestamp" | "clock_timestamp"
            if args.is_empty() =>
        {
            no_args(
                Ty::Timestamptz,
                Value::Ts(if name == "clock_timestamp" {
                    now_micros()
                } else {
                    scope.now
                }),
            )
        }
        "version" if args.is_empty() => no_args(Ty::Text, Value::Text(scope.version.clone())),
        "current_database" if args.is_empty() => no_args(Ty::Text, Value::Text(scope.db.clone())),
        "current_user" if args.is_empty() => no_args(Ty::Text, Value::Text(scope.user.clone())),
        "pg_is_in_recovery" if args.is_empty() => no_args(Ty::Bool, Value::Bool(false)),
        "lower" | "upper" | "length" | "to_timestamp" | "abs" | "coalesce" => {
            let mut bound = Vec::new();
            for a in args {
                bound.push(bind(scope, a, aggs)?);
            }
            let tys: Vec<Ty> = bound.iter().map(|b| b.ty).collect();
            let ty = match (name, tys.as_slice()) {
                ("lower" | "upper", [Ty::Text | Ty::Unknown]) => Ty::Text,
                ("length", [Ty::Text | Ty::Unknown]) => Ty::Int4,
                ("to_timestamp", [a]) if numeric_rank(*a).is_some() => Ty::Timestamptz,
                ("abs", [a]) if numeric_rank(*a).is_some() => *a,
                ("coalesce", [first, ..]) => tys
                    .iter()
                    .copied()
                    .find(|t| *t != Ty::Unknown)
                    .unwrap_or(*first),
                _ => return Err(no_function(name, &tys, pos)),
            };
            let mut bs = Vec::new();
            for b in bound {
                bs.push(if b.ty == Ty::Unknown {
                    coerce_const(
                        b.b,
                        if ty == Ty::Unknown {
                            Ty::Text
                        } else if name == "coalesce" {
                            ty
                        } else {
                            Ty::Text
                        },
                        None,
                    )?
                } else {
                    b.b
                });
            }
            t(
                B::Func(name.to_string(), bs),
                if ty == Ty::Unknown { Ty::Text } else { ty },
            )
        }
        _ => {
            let mut tys = Vec::new();
            for a in args {
                tys.push(bind(scope, a, aggs)?.ty);
            }
            Err(no_function(name, &tys, pos))
        }
    }
}

fn no_function(name: &str, tys: &[Ty], pos: usize) -> PgError {
    let list = tys
        .iter()
        .map(|t| t.sql_name())
        .collect::<Vec<_>>()
        .join(", ");
    PgError::new("42883", &format!("function {name}({list}) does not exist"))
        .at(pos)
        .hint("No function matches the given name and argument types. You might need to add explicit type casts.")
}

/// Orders two non-null values (None: not comparable).
fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Text(x), Value::Text(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Ts(x), Value::Ts(y)) | (Value::Interval(x), Value::Interval(y)) => Some(x.cmp(y)),
        (Value::Json(x), Value::Json(y)) => Some(jsonb_out(x).cmp(&jsonb_out(y))),
        (x, y) => {
            let (x, y) = (x.as_f64()?, y.as_f64()?);
            // PostgreSQL orders NaN above every number.
            Some(
                x.partial_cmp(&y)
                    .unwrap_or_else(|| x.is_nan().cmp(&y.is_nan())),
            )
        }
    }
}

fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

fn eval(b: &B, row: Option<&[Value]>, aggs: &[Value]) -> Result<Value, PgError> {
    Ok(match b {
        B::Const(v) => v.clone(),
        B::Col(i) => row.and_then(|r| r.get(*i)).cloned().unwrap_or(Value::Null),
        B::Agg(i) => aggs.get(*i).cloned().unwrap_or(Value::Null),
        B::Cmp(op, l, r) => {
            let (l, r) = (eval(l, row, aggs)?, eval(r, row, aggs)?);
            if l.is_null() || r.is_null() {
                return Ok(Value::Null);
            }
            let o = compare(&l, &r).unwrap_or(std::cmp::Ordering::Equal);
            use std::cmp::Ordering::*;
            Value::Bool(match op.as_str() {
                "=" => o == Equal,
                "<>" => o != Equal,
                "<" => o == Less,
                ">" => o == Greater,
                "<=" => o != Greater,
                _ => o != Less,
            })
        }
        B::And(l, r) => {
            let (l, r) = (truth(&eval(l, row, aggs)?), truth(&eval(r, row, aggs)?));
            match (l, r) {
                (Some(false), _) | (_, Some(false)) => Value::Bool(false),
                (Some(true), Some(true)) => Value::Bool(true),
                _ => Value::Null,
            }
        }
        B::Or(l, r) => {
            let (l, r) = (truth(&eval(l, row, aggs)?), truth(&eval(r, row, aggs)?));
            match (l, r) {
                (Some(true), _) | (_, Some(true)) => Value::Bool(true),
                (Some(false), Some(false)) => Value::Bool(false),
                _ => Value::Null,
            }
        }
        B::Not(x) => match truth(&eval(x, row, aggs)?) {
            Some(v) => Value::Bool(!v),
            None => Value::Null,
        },
        B::IsNull(x, negated) => Value::Bool(eval(x, row, aggs)?.is_null() != *negated),
        B::In(x, list, negated) => {
            let v = eval(x, row, aggs)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut saw_null = false;
            for item in list {
                let w = eval(item, row, aggs)?;
                if w.is_null() {
                    saw_null = true;
                } else if compare(&v, &w) == Some(std::cmp::Ordering::Equal) {
                    return Ok(Value::Bool(!negated));
                }
            }
            if saw_null {
                Value::Null
            } else {
                Value::Bool(*negated)
            }
        }
        B::Arith(op, l, r, ty) => arith(op, eval(l, row, aggs)?, eval(r, row, aggs)?, *ty)?,
        B::Concat(l, r) => match (eval(l, row, aggs)?, eval(r, row, aggs)?) {
            (Value::Null, _) | (_, Value::Null) => Value::Null,
            (a, b) => Value::Text(format!(
                "{}{}",
                a.text(Ty::Text).unwrap_or_default(),
                b.text(Ty::Text).unwrap_or_default()
            )),
        },
        B::Neg(x) => match eval(x, row, aggs)? {
            Value::Int(i) => Value::Int(
                i.checked_neg()
                    .ok_or_else(|| PgError::new("22003", "integer out of range"))?,
            ),
            Value::Float(f) => Value::Float(-f),
            Value::Numeric(s) => Value::Numeric(normalize_numeric(&match s.strip_prefix('-') {
                Some(p) => p.to_string(),
                None => format!("-{s}"),
            })),
            Value::Interval(i) => Value::Interval(-i),
            other => other,
        },
        B::Cast(x, from, to) => cast(eval(x, row, aggs)?, *from, *to)?,
        B::Func(name, args) => {
            let vals: Vec<Value> = args
                .iter()
                .map(|a| eval(a, row, aggs))
                .collect::<Result<_, _>>()?;
            match (name.as_str(), vals.as_slice()) {
                ("coalesce", vs) => vs
                    .iter()
                    .find(|v| !v.is_null())
                    .cloned()
                    .unwrap_or(Value::Null),
                (_, [Value::Null, ..]) => Value::Null,
                ("lower", [Value::Text(s)]) => Value::Text(s.to_lowercase()),
                ("upper", [Value::Text(s)]) => Value::Text(s.to_uppercase()),
                ("length", [Value::Text(s)]) => Value::Int(s.chars().count() as i64),
                ("to_timestamp", [v]) => {
                    Value::Ts((v.as_f64().unwrap_or(0.0) * 1e6).round() as i64)
                }
                ("abs", [Value::Int(i)]) => Value::Int(i.abs()),
                ("abs", [Value::Float(f)]) => Value::Float(f.abs()),
                ("abs", [Value::Numeric(s)]) => {
                    Value::Numeric(s.trim_start_matches('-').to_string())
                }
                _ => Value::Null,
            }
        }
        B::Extract(field, x, _ty) => match eval(x, row, aggs)? {
            Value::Null => Value::Null,
            Value::Ts(us) | Value::Interval(us) if field == "epoch" => {
                Value::Numeric(micros_numeric(us))
            }
            Value::Ts(us) => {
                use chrono::{Datelike, Timelike};
                let d = ts_of(us).unwrap_or_default();
                Value::Numeric(match field.as_str() {
                    "year" => d.year().to_string(),
                    "month" => d.month().to_string(),
                    "day" => d.day().to_string(),
                    "hour" => d.hour().to_string(),
                    "minute" => d.minute().to_string(),
                    "dow" => d.weekday().num_days_from_sunday().to_string(),
                    "doy" => d.ordinal().to_string(),
                    "second" => {
                        micros_numeric(i64::from(d.second()) * 1_000_000 + us.rem_euclid(1_000_000))
                    }
                    "milliseconds" => format!(
                        "{:.3}",
                        (i64::from(d.second()) * 1_000_000 + us.rem_euclid(1_000_000)) as f64
                            / 1000.0
                    ),
                    _ => (i64::from(d.second()) * 1_000_000 + us.rem_euclid(1_000_000)).to_string(),
                })
            }
            Value::Interval(us) => {
                let a = us.abs();
                let sign = if us < 0 { -1 } else { 1 };
                Value::Numeric(match field.as_str() {
                    "day" => (sign * a / 86_400_000_000).to_string(),
                    "hour" => (sign * (a / 3_600_000_000 % 24)).to_string(),
                    "minute" => (sign * (a / 60_000_000 % 60)).to_string(),
                    "second" => micros_numeric(sign * (a % 60_000_000)),
                    _ => "0".into(),
                })
            }
            _ => Value::Null,
        },
    })
}

/// Microseconds as a numeric of scale 6 (`1704067200.000000`).
fn micros_numeric(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
}

fn arith(op: &str, l: Value, r: Value, ty: Ty) -> Result<Value, PgError> {
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    let div0 = || PgError::new("22012", "division by zero");
    let range = || PgError::new("22003", &format!("{} out of range", ty.sql_name()));
    Ok(match (&l, &r, ty) {
        (Value::Int(a), Value::Int(b), Ty::Int4 | Ty::Int8) => {
            let v = match op {
                "+" => a.checked_add(*b),
                "-" => a.checked_sub(*b),
                "*" => a.checked_mul(*b),
                "/" => {
                    if *b == 0 {
                        return Err(div0());
                    }
                    a.checked_div(*b)
                }
                _ => {
                    if *b == 0 {
                        return Err(div0());
                    }
                    a.checked_rem(*b)
                }
            }
            .ok_or_else(range)?;
            if ty == Ty::Int4 && i32::try_from(v).is_err() {
                return Err(range());
            }
            Value::Int(v)
        }
        (Value::Ts(a), Value::Interval(b), _) => Value::Ts(if op == "+" { a + b } else { a - b }),
        (Value::Interval(a), Value::Ts(b), _) => Value::Ts(a + b),
        (Value::Ts(a), Value::Ts(b), _) => Value::Interval(a - b),
        (Value::Interval(a), Value::Interval(b), _) => {
            Value::Interval(if op == "+" { a + b } else { a - b })
        }
        _ => {
            let (a, b) = (l.as_f64().unwrap_or(0.0), r.as_f64().unwrap_or(0.0));
            if (op == "/" || op == "%") && b == 0.0 {
                return Err(div0());
            }
            let v = match op {
                "+" => a + b,
                "-" => a - b,
                "*" => a * b,
                "/" => a / b,
                _ => a % b,
            };
            if ty == Ty::Numeric {
                Value::Numeric(format!("{v}"))
            } else {
                Value::Float(v)
            }
        }
    })
}

/// A runtime cast `from` -> `to`.
fn cast(v: Value, from: Ty, to: Ty) -> Result<Value, PgError> {
    if v.is_null() || from == to {
        return Ok(v);
    }
    Ok(match (&v, to) {
        (Value::Float(_) | Value::Numeric(_), Ty::Int4 | Ty::Int8) => {
            let f = v.as_f64().unwrap_or(0.0).round();
            let lim = if to == Ty::Int4 {
                i32::MAX as f64
            } else {
                i64::MAX as f64
            };
            if !f.is_finite() || f.abs() > lim {
                return Err(PgError::new(
                    "22003",
                    &format!("{} out of range", to.sql_name()),
                ));
            }
            Value::Int(f as i64)
        }
        (Value::Int(i), Ty::Int4) if i32::try_from(*i).is_err() => {
            return Err(PgError::new("22003", "integer out of range"))
        }
        (Value::Int(i), Ty::Float8) => Value::Float(*i as f64),
        (Value::Numeric(s), Ty::Float8) => Value::Float(s.parse().unwrap_or(0.0)),
        (Value::Int(i), Ty::Numeric) => Value::Numeric(i.to_string()),
        (Value::Float(f), Ty::Numeric) => Value::Numeric(format!("{f}")),
        (Value::Int(i), Ty::Bool) => Value::Bool(*i != 0),
        (Value::Bool(b), Ty::Int4) => Value::Int(i64::from(*b)),
        (Value::Ts(_), Ty::Timestamptz | Ty::Timestamp) => v.clone(),
        (Value::Json(Json::Number(n)), t) => parse_input(&n.to_string(), t)?,
        (Value::Json(Json::Bool(b)), Ty::Bool) => Value::Bool(*b),
        (Value::Json(j), t) if t != Ty::Text => {
            return Err(PgError::new(
                "22023",
                &format!(
                    "cannot cast jsonb {} to type {}",
                    json_kind(j),
                    t.sql_name()
                ),
            ));
        }
        (_, Ty::Text) => Value::Text(v.text(from).unwrap_or_default()),
        (Value::Text(s), t) => parse_input(s, t)?,
        _ => v.clone(),
    })
}

fn json_kind(j: &Json) -> &'static str {
    match j {
        Json::Object(_) => "object",
        Json::Array(_) => "array",
        Json::String(_) => "string",
        Json::Number(_) => "numeric",
        Json::Bool(_) => "boolean",
        Json::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_postgres() {
        assert_eq!(float8_out(1e20), "1e+20");
        assert_eq!(float8_out(1.5e-5), "1.5e-05");
        assert_eq!(float8_out(123456789012345.0), "123456789012345");
        assert_eq!(float8_out(1234567890123456.0), "1.234567890123456e+15");
        assert_eq!(float8_out(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float8_out(3.0), "3");
        assert_eq!(float8_out(0.0001), "0.0001");
    }

    #[test]
    fn timestamps_and_intervals() {
        let us = parse_ts("2024-01-01 10:00:00+00").unwrap();
        assert_eq!(timestamp_out(us, true), "2024-01-01 10:00:00+00");
        assert_eq!(parse_ts("2024-01-01T10:00:00Z"), Some(us));
        assert_eq!(parse_ts("2024-01-01 12:00:00+02"), Some(us));
        assert_eq!(parse_ts("2024-01-01 10:00:00.5"), Some(us + 500_000));
        assert_eq!(
            timestamp_out(us + 101_846, true),
            "2024-01-01 10:00:00.101846+00"
        );
        assert_eq!(timestamp_out(us + 500_000, false), "2024-01-01 10:00:00.5");
        assert_eq!(parse_ts("2024-01-01"), parse_ts("2024-01-01 00:00:00"));
        assert!(parse_ts("yesterday-ish").is_none());
        assert_eq!(interval_out(5_123_456), "00:00:05.123456");
        assert_eq!(interval_out(-1_000_000), "-00:00:01");
        assert_eq!(
            interval_out(86_400_000_000 + 7_200_000_000),
            "1 day 02:00:00"
        );
        assert_eq!(interval_out(2 * 86_400_000_000), "2 days");
        assert_eq!(parse_interval("5 minutes"), Some(300_000_000));
        assert_eq!(parse_interval("1 hour 30 min"), Some(5_400_000_000));
        assert_eq!(parse_interval("00:01:02.5"), Some(62_500_000));
        assert_eq!(parse_interval("10s"), Some(10_000_000));
    }

    #[test]
    fn jsonb_orders_keys_like_postgres() {
        let j: Json = serde_json::from_str(r#"{"b": [1,2], "aa": {"x": null}, "c": "s"}"#).unwrap();
        assert_eq!(
            jsonb_out(&j),
            r#"{"b": [1, 2], "c": "s", "aa": {"x": null}}"#
        );
    }

    #[test]
    fn inputs_are_checked() {
        assert_eq!(parse_input(" 42 ", Ty::Int4), Ok(Value::Int(42)));
        assert_eq!(
            parse_input("abc", Ty::Int4).unwrap_err().message,
            "invalid input syntax for type integer: \"abc\""
        );
        assert_eq!(
            parse_input("9999999999", Ty::Int4).unwrap_err().message,
            "value \"9999999999\" is out of range for type integer"
        );
        assert_eq!(
            parse_input("x", Ty::Int8).unwrap_err().message,
            "invalid input syntax for type bigint: \"x\""
        );
        assert_eq!(parse_input("yes", Ty::Bool), Ok(Value::Bool(true)));
        assert_eq!(
            parse_input("001.50", Ty::Numeric),
            Ok(Value::Numeric("1.50".into()))
        );
    }

    #[test]
    fn table_files_round_trip() {
        let t = Table {
            name: "m".into(),
            columns: vec![
                Column {
                    name: "id".into(),
                    ty: Ty::Int8,
                    not_null: true,
                    default: Some("nextval('m_id_seq'::regclass)".into()),
                },
                Column {
                    name: "ts".into(),
                    ty: Ty::Timestamptz,
                    not_null: false,
                    default: None,
                },
                Column {
                    name: "j".into(),
                    ty: Ty::Json,
                    not_null: false,
                    default: None,
                },
            ],
            primary_key: Some(vec![0]),
            sequences: BTreeMap::from([("m_id_seq".to_string(), 2)]),
            rows: vec![
                vec![
                    Value::Int(1),
                    Value::Ts(1_700_000_000_123_456),
                    Value::Json(json!({"a": 1})),
                ],
                vec![Value::Int(2), Value::Null, Value::Null],
            ],
            ..Default::default()
        };
        let back = Table::decode("m", &t.encode());
        assert_eq!(back.columns, t.columns);
        assert_eq!(back.rows, t.rows);
        assert_eq!(back.primary_key, t.primary_key);
        assert_eq!(back.sequences, t.sequences);
        assert!(Table::decode("m", b"not json").corrupt.is_some());
    }
}
