//! Kubernetes label and field selectors.
//!
//! These follow what the API server does with the `?labelSelector=` and
//! `?fieldSelector=` query parameters (the values are expected to be URL-decoded
//! already):
//!
//! * [`LabelSelector::parse`] mirrors `k8s.io/apimachinery/pkg/labels.Parse`: a
//!   comma-separated list of requirements `k=v`, `k==v`, `k!=v`, `k in (a,b)`,
//!   `k notin (a,b)`, `k` (exists), `!k` (does not exist), and the numeric
//!   `k>5` / `k<5`. Keys and values are validated like upstream (qualified
//!   names, label values).
//! * [`LabelSelector::from_label_selector_json`] mirrors
//!   `metav1.LabelSelectorAsSelector` for `matchLabels` / `matchExpressions`.
//! * [`FieldSelector::parse`] mirrors `k8s.io/apimachinery/pkg/fields.ParseSelector`:
//!   `path=value`, `path==value`, `path!=value`, comma separated, with the
//!   `\,`, `\=` and `\\` escapes of `fields.EscapeValue`.
//!
//! Objects are plain `serde_json::Value`s.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// Why a selector could not be parsed. The message names the offending part;
/// the API server answers 400 BadRequest with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A `labelSelector` string is malformed or has an invalid key or value.
    #[error("unable to parse label selector {selector:?}: {message}")]
    Label { selector: String, message: String },
    /// A `fieldSelector` string is malformed.
    #[error("invalid field selector {selector:?}: {message}")]
    Field { selector: String, message: String },
    /// A metav1.LabelSelector object (`matchLabels` / `matchExpressions`) is invalid.
    #[error("invalid label selector object: {message}")]
    LabelSelectorObject { message: String },
}

// ---------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------

/// The operator of one label requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LabelOperator {
    /// `k=v`
    Equals,
    /// `k==v`
    DoubleEquals,
    /// `k!=v` (also matches objects without the key)
    NotEquals,
    /// `k in (a,b)`
    In,
    /// `k notin (a,b)` (also matches objects without the key)
    NotIn,
    /// `k`
    Exists,
    /// `!k`
    DoesNotExist,
    /// `k>5` (integer comparison; objects without the key or with a
    /// non-integer value do not match)
    GreaterThan,
    /// `k<5`
    LessThan,
}

/// One requirement of a label selector, e.g. `tier in (web,api)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRequirement {
    key: String,
    operator: LabelOperator,
    values: BTreeSet<String>,
}

impl LabelRequirement {
    /// Builds a requirement, validating the key, the values and the number of
    /// values for the operator exactly like upstream `labels.NewRequirement`.
    /// The error is a human-readable message.
    pub fn new<I, S>(key: &str, operator: LabelOperator, values: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let values: Vec<String> = values.into_iter().map(Into::into).collect();
        validate_label_key(key)?;
        match operator {
            LabelOperator::In | LabelOperator::NotIn => {
                if values.is_empty() {
                    return Err(format!(
                        "key {key:?}: for 'in', 'notin' operators, values set can't be empty"
                    ));
                }
            }
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::NotEquals => {
                if values.len() != 1 {
                    return Err(format!(
                        "key {key:?}: exact-match compatibility requires one single value"
                    ));
                }
            }
            LabelOperator::Exists | LabelOperator::DoesNotExist => {
                if !values.is_empty() {
                    return Err(format!(
                        "key {key:?}: values set must be empty for exists and does not exist"
                    ));
                }
            }
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                if values.len() != 1 {
                    return Err(format!(
                        "key {key:?}: for 'Gt', 'Lt' operators, exactly one value is required"
                    ));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(format!(
                        "key {key:?}: invalid value {:?}: for 'Gt', 'Lt' operators, the value must be an integer",
                        values[0]
                    ));
                }
            }
        }
        for v in &values {
            validate_label_value(key, v)?;
        }
        Ok(LabelRequirement {
            key: key.to_string(),
            operator,
            values: values.into_iter().collect(),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> LabelOperator {
        self.operator
    }

    /// The values, sorted (empty for `Exists` / `DoesNotExist`).
    pub fn values(&self) -> &BTreeSet<String> {
        &self.values
    }

    /// Whether the labels satisfy this requirement (upstream `Requirement.Matches`).
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = label_value(labels, &self.key);
        match self.operator {
            LabelOperator::Equals | LabelOperator::DoubleEquals | LabelOperator::In => {
                value.is_some_and(|v| self.values.contains(&v))
            }
            LabelOperator::NotEquals | LabelOperator::NotIn => {
                value.is_none_or(|v| !self.values.contains(&v))
            }
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
            LabelOperator::GreaterThan | LabelOperator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self
                    .values
                    .iter()
                    .next()
                    .and_then(|v| v.parse::<i64>().ok())
                else {
                    return false;
                };
                if self.operator == LabelOperator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for LabelRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map(String::as_str).unwrap_or("");
        let list = || self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            LabelOperator::Equals => write!(f, "{}={}", self.key, first),
            LabelOperator::DoubleEquals => write!(f, "{}=={}", self.key, first),
            LabelOperator::NotEquals => write!(f, "{}!={}", self.key, first),
            LabelOperator::In => write!(f, "{} in ({})", self.key, list()),
            LabelOperator::NotIn => write!(f, "{} notin ({})", self.key, list()),
            LabelOperator::Exists => write!(f, "{}", self.key),
            LabelOperator::DoesNotExist => write!(f, "!{}", self.key),
            LabelOperator::GreaterThan => write!(f, "{}>{}", self.key, first),
            LabelOperator::LessThan => write!(f, "{}<{}", self.key, first),
        }
    }
}

/// A parsed label selector: the conjunction of its requirements.
///
/// The empty selector matches everything; [`LabelSelector::nothing`] (what a
/// `null` metav1.LabelSelector converts to) matches nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (`labels.Everything()`).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no object (`labels.Nothing()`).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses a `labelSelector` query value. The empty (or all-whitespace)
    /// string matches everything.
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let err = |message: String| SelectorError::Label {
            selector: s.to_string(),
            message,
        };
        let tokens = lex_labels(s).map_err(err)?;
        let mut requirements = LabelParser { tokens, pos: 0 }.parse().map_err(err)?;
        // Like upstream, requirements are kept sorted by key (stable).
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Converts a metav1.LabelSelector JSON object (`matchLabels`,
    /// `matchExpressions` with operators In/NotIn/Exists/DoesNotExist) as
    /// upstream `metav1.LabelSelectorAsSelector` does: `null` selects nothing,
    /// `{}` selects everything.
    pub fn from_label_selector_json(sel: &Value) -> Result<LabelSelector, SelectorError> {
        let err = |message: String| SelectorError::LabelSelectorObject { message };
        let obj = match sel {
            Value::Null => return Ok(LabelSelector::nothing()),
            Value::Object(obj) => obj,
            other => return Err(err(format!("expected an object, found {other}"))),
        };
        let mut requirements = Vec::new();
        match obj.get("matchLabels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(labels)) => {
                for (k, v) in labels {
                    let Some(v) = v.as_str() else {
                        return Err(err(format!(
                            "matchLabels[{k:?}]: expected a string, found {v}"
                        )));
                    };
                    requirements.push(
                        LabelRequirement::new(k, LabelOperator::Equals, [v])
                            .map_err(|m| err(format!("matchLabels: {m}")))?,
                    );
                }
            }
            Some(other) => {
                return Err(err(format!(
                    "matchLabels: expected an object, found {other}"
                )))
            }
        }
        match obj.get("matchExpressions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(exprs)) => {
                for (i, expr) in exprs.iter().enumerate() {
                    let key = expr.get("key").and_then(Value::as_str).ok_or_else(|| {
                        err(format!("matchExpressions[{i}].key: a string is required"))
                    })?;
                    let op = match expr.get("operator").and_then(Value::as_str) {
                        Some("In") => LabelOperator::In,
                        Some("NotIn") => LabelOperator::NotIn,
                        Some("Exists") => LabelOperator::Exists,
                        Some("DoesNotExist") => LabelOperator::DoesNotExist,
                        Some(other) => {
                            return Err(err(format!(
                                "matchExpressions[{i}].operator: {other:?} is not a valid label selector operator"
                            )))
                        }
                        None => {
                            return Err(err(format!(
                                "matchExpressions[{i}].operator: a string is required"
                            )))
                        }
                    };
                    let values: Vec<&str> = match expr.get("values") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(vs)) => vs
                            .iter()
                            .map(|v| {
                                v.as_str().ok_or_else(|| {
                                    err(format!(
                                        "matchExpressions[{i}].values: expected strings, found {v}"
                                    ))
                                })
                            })
                            .collect::<Result<_, _>>()?,
                        Some(other) => {
                            return Err(err(format!(
                                "matchExpressions[{i}].values: expected an array, found {other}"
                            )))
                        }
                    };
                    requirements.push(
                        LabelRequirement::new(key, op, values)
                            .map_err(|m| err(format!("matchExpressions[{i}]: {m}")))?,
                    );
                }
            }
            Some(other) => {
                return Err(err(format!(
                    "matchExpressions: expected an array, found {other}"
                )))
            }
        }
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector {
            requirements,
            nothing: false,
        })
    }

    /// Builds a selector from already-validated requirements.
    pub fn from_requirements(requirements: Vec<LabelRequirement>) -> Self {
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// True when the selector matches everything (no requirements).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for [`LabelSelector::nothing`].
    pub fn is_nothing(&self) -> bool {
        self.nothing
    }

    pub fn requirements(&self) -> &[LabelRequirement] {
        &self.requirements
    }

    /// Whether a label map satisfies every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether an object's `metadata.labels` (missing = no labels) satisfies
    /// every requirement.
    pub fn matches_object(&self, obj: &Value) -> bool {
        match obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
        {
            Some(labels) => self.matches(labels),
            None => self.matches(&Map::new()),
        }
    }
}

/// Free-function form of [`LabelSelector::from_label_selector_json`].
pub fn from_label_selector_json(sel: &Value) -> Result<LabelSelector, SelectorError> {
    LabelSelector::from_label_selector_json(sel)
}

impl FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabelSelector::parse(s)
    }
}

/// The canonical string form (requirements joined by `,`), which parses back
/// to an equal selector. [`LabelSelector::nothing`] renders as `<none>`, which
/// is *not* parseable (upstream renders it as the empty string, which would
/// mean "everything" if parsed back).
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nothing {
            return f.write_str("<none>");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// The value of a label as a string: strings as-is, numbers and booleans in
/// their JSON spelling (labels should always be strings); anything else counts
/// as absent.
fn label_value(labels: &Map<String, Value>, key: &str) -> Option<String> {
    match labels.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Ident,
    In,
    NotIn,
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    Gt,
    Lt,
    Open,
    Close,
    Comma,
    End,
}

fn is_label_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_label_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// The lexer of upstream `labels.Lexer`: special symbols, identifiers (any run
/// of non-whitespace, non-special characters) and the keywords `in`/`notin`.
fn lex_labels(s: &str) -> Result<Vec<(Tok, String)>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && is_label_whitespace(chars[i]) {
            i += 1;
        }
        if i >= chars.len() {
            out.push((Tok::End, String::new()));
            return Ok(out);
        }
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if is_label_special(c) {
            let (tok, len) = match (c, next) {
                ('=', Some('=')) => (Tok::DoubleEq, 2),
                ('!', Some('=')) => (Tok::NotEq, 2),
                ('=', _) => (Tok::Eq, 1),
                ('!', _) => (Tok::Bang, 1),
                ('(', _) => (Tok::Open, 1),
                (')', _) => (Tok::Close, 1),
                (',', _) => (Tok::Comma, 1),
                ('>', _) => (Tok::Gt, 1),
                ('<', _) => (Tok::Lt, 1),
                _ => return Err(format!("unexpected character '{c}'")),
            };
            out.push((tok, chars[i..i + len].iter().collect()));
            i += len;
            continue;
        }
        let start = i;
        while i < chars.len() && !is_label_whitespace(chars[i]) && !is_label_special(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let tok = match word.as_str() {
            "in" => Tok::In,
            "notin" => Tok::NotIn,
            _ => Tok::Ident,
        };
        out.push((tok, word));
    }
}

/// Whether the parser is reading values (where `in`/`notin` are plain
/// identifiers) or looking for an operator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Values,
    KeyAndOperator,
}

struct LabelParser {
    tokens: Vec<(Tok, String)>,
    pos: usize,
}

fn found(tok: Tok, lit: &str) -> String {
    if tok == Tok::End {
        "found end of string".to_string()
    } else {
        format!("found '{lit}'")
    }
}

impl LabelParser {
    fn adjust(tok: Tok, ctx: Ctx) -> Tok {
        match (tok, ctx) {
            (Tok::In | Tok::NotIn, Ctx::Values) => Tok::Ident,
            _ => tok,
        }
    }

    fn lookahead(&self, ctx: Ctx) -> (Tok, String) {
        // The token stream always ends with End and the parser never consumes past it.
        let (tok, lit) = &self.tokens[self.pos.min(self.tokens.len() - 1)];
        (Self::adjust(*tok, ctx), lit.clone())
    }

    fn consume(&mut self, ctx: Ctx) -> (Tok, String) {
        let t = self.lookahead(ctx);
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn parse(mut self) -> Result<Vec<LabelRequirement>, String> {
        let mut reqs = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Ctx::Values);
            match tok {
                Tok::Ident | Tok::Bang => {
                    reqs.push(self.parse_requirement()?);
                    let (t, l) = self.consume(Ctx::Values);
                    match t {
                        Tok::End => return Ok(reqs),
                        Tok::Comma => {
                            let (t2, l2) = self.lookahead(Ctx::Values);
                            if t2 != Tok::Ident && t2 != Tok::Bang {
                                return Err(format!(
                                    "{}, expected: identifier after ','",
                                    found(t2, &l2)
                                ));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "{}, expected: ',' or 'end of string'",
                                found(t, &l)
                            ))
                        }
                    }
                }
                Tok::End => return Ok(reqs),
                _ => {
                    return Err(format!(
                        "{}, expected: !, identifier, or 'end of string'",
                        found(tok, &lit)
                    ))
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<LabelRequirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return LabelRequirement::new(&key, op, Vec::<String>::new());
        }
        let op = self.parse_operator()?;
        let values = match op {
            LabelOperator::In | LabelOperator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        LabelRequirement::new(&key, op, values)
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<LabelOperator>), String> {
        let mut op = None;
        let (mut tok, mut lit) = self.consume(Ctx::Values);
        if tok == Tok::Bang {
            op = Some(LabelOperator::DoesNotExist);
            (tok, lit) = self.consume(Ctx::Values);
        }
        if tok != Tok::Ident {
            return Err(format!("{}, expected: identifier", found(tok, &lit)));
        }
        validate_label_key(&lit)?;
        if op.is_none() {
            let (t, _) = self.lookahead(Ctx::Values);
            if t == Tok::End || t == Tok::Comma {
                op = Some(LabelOperator::Exists);
            }
        }
        Ok((lit, op))
    }

    fn parse_operator(&mut self) -> Result<LabelOperator, String> {
        let (tok, lit) = self.consume(Ctx::KeyAndOperator);
        Ok(match tok {
            Tok::In => LabelOperator::In,
            Tok::NotIn => LabelOperator::NotIn,
            Tok::Eq => LabelOperator::Equals,
            Tok::DoubleEq => LabelOperator::DoubleEquals,
            Tok::NotEq => LabelOperator::NotEquals,
            Tok::Gt => LabelOperator::GreaterThan,
            Tok::Lt => LabelOperator::LessThan,
            _ => {
                return Err(format!(
                    "{}, expected: in, notin, =, ==, !=, gt, lt",
                    found(tok, &lit)
                ))
            }
        })
    }

    /// `( a, b )`; `()` is the single empty value, `(,a)` includes the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (tok, lit) = self.consume(Ctx::Values);
        if tok != Tok::Open {
            return Err(format!("{}, expected: '('", found(tok, &lit)));
        }
        let (tok, lit) = self.lookahead(Ctx::Values);
        match tok {
            Tok::Ident | Tok::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, lit) = self.consume(Ctx::Values);
                if tok != Tok::Close {
                    return Err(format!("{}, expected: ')'", found(tok, &lit)));
                }
                Ok(values)
            }
            Tok::Close => {
                self.consume(Ctx::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!(
                "{}, expected: ',', ')' or identifier",
                found(tok, &lit)
            )),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Ctx::Values);
            match tok {
                Tok::Ident => {
                    values.push(lit);
                    let (t2, l2) = self.lookahead(Ctx::Values);
                    match t2 {
                        Tok::Comma => continue,
                        Tok::Close => return Ok(values),
                        _ => return Err(format!("{}, expected: ',' or ')'", found(t2, &l2))),
                    }
                }
                Tok::Comma => {
                    // `(,a)`, `(a,)` and `(a,,b)` all include the empty value.
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (t2, _) = self.lookahead(Ctx::Values);
                    if t2 == Tok::Close {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if t2 == Tok::Comma {
                        self.consume(Ctx::Values);
                        values.push(String::new());
                    }
                }
                _ => {
                    return Err(format!(
                        "{}, expected: ',', or identifier",
                        found(tok, &lit)
                    ))
                }
            }
        }
    }

    /// The value after `=`, `==`, `!=`, `>`, `<`; nothing (`k=`) is the empty value.
    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (tok, _) = self.lookahead(Ctx::Values);
        if tok == Tok::End || tok == Tok::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Ctx::Values);
        if tok == Tok::Ident {
            Ok(vec![lit])
        } else {
            Err(format!("{}, expected: identifier", found(tok, &lit)))
        }
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, at most 63 characters.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// RFC 1123 subdomain: lowercase alphanumerics, `-` and `.`, starting and
/// ending alphanumeric per dot-separated label, at most 253 characters.
fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
                && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// A label key is a qualified name: `[prefix/]name`.
fn validate_label_key(key: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return Err(format!(
                "invalid label key {key:?}: a qualified name must consist of an optional DNS subdomain prefix and '/' followed by a name"
            ))
        }
    };
    if let Some(prefix) = prefix {
        if !is_dns1123_subdomain(prefix) {
            return Err(format!(
                "invalid label key {key:?}: prefix part must be a lowercase RFC 1123 subdomain (e.g. 'example.com') of at most 253 characters"
            ));
        }
    }
    if !is_qualified_name_part(name) {
        return Err(format!(
            "invalid label key {key:?}: name part must be at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character"
        ));
    }
    Ok(())
}

/// A label value is empty or a qualified-name part.
fn validate_label_value(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || is_qualified_name_part(value) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?} for key {key:?}: must be empty or at most 63 characters of alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric character"
        ))
    }
}

// ---------------------------------------------------------------------------
// Field selectors
// ---------------------------------------------------------------------------

/// The operator of a field requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `path=value`
    Equals,
    /// `path==value`
    DoubleEquals,
    /// `path!=value`
    NotEquals,
}

/// One requirement of a field selector, e.g. `spec.nodeName=node-1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    field: String,
    operator: FieldOperator,
    value: String,
}

impl FieldRequirement {
    /// The dotted field path, e.g. `metadata.name`.
    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn operator(&self) -> FieldOperator {
        self.operator
    }

    /// The unescaped value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the object satisfies this requirement. The field is resolved on
    /// the JSON object; a missing field (or `null`) equals the empty string,
    /// numbers and booleans compare in their JSON spelling, and objects/arrays
    /// equal no value.
    pub fn matches(&self, obj: &Value) -> bool {
        let have = resolve_field(obj, &self.field);
        let equal = have.as_deref() == Some(self.value.as_str());
        match self.operator {
            FieldOperator::Equals | FieldOperator::DoubleEquals => equal,
            FieldOperator::NotEquals => !equal,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::DoubleEquals => "==",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_field_value(&self.value))
    }
}

/// A parsed field selector: the conjunction of its requirements. The empty
/// selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        FieldSelector::default()
    }

    /// Parses a `fieldSelector` query value like upstream `fields.ParseSelector`.
    ///
    /// Terms are split on unescaped commas; empty terms are skipped. Each term
    /// splits at the first `!=`, `==` or `=`. The value is unescaped (`\\`,
    /// `\,`, `\=`); any other escape, a trailing backslash, or an unescaped `=`
    /// in the value is an error. Unlike upstream, whitespace around the field
    /// path is trimmed (upstream would reject such a path as an unsupported
    /// field label), and a path must be non-empty dot-separated segments.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let err = |message: String| SelectorError::Field {
            selector: s.to_string(),
            message,
        };
        let mut requirements = Vec::new();
        for term in split_field_terms(s) {
            if term.is_empty() {
                continue;
            }
            let Some((lhs, operator, rhs)) = split_field_term(term) else {
                return Err(err(format!("can't understand '{term}'")));
            };
            let field = lhs.trim();
            if field.is_empty()
                || field.split('.').any(str::is_empty)
                || field.chars().any(char::is_whitespace)
            {
                return Err(err(format!(
                    "invalid field path '{lhs}' in '{term}': expected a dotted path like metadata.name"
                )));
            }
            let value = unescape_field_value(rhs).map_err(|m| err(format!("{m} in '{term}'")))?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                operator,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True when the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The value the selector requires `field` to equal (`field=value` or
    /// `field==value`), if any; e.g. `metadata.name` for watches of one object.
    pub fn required_value(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator != FieldOperator::NotEquals)
            .map(|r| r.value.as_str())
    }

    /// Whether the object satisfies every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| r.matches(obj))
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FieldSelector::parse(s)
    }
}

/// The canonical string form (values escaped), which parses back to an equal selector.
impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Escapes a field selector value like upstream `fields.EscapeValue`.
pub fn escape_field_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas that are not escaped by a backslash (escapes are kept).
fn split_field_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&s[start..i]);
            start = i + 1;
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at the first operator, trying `!=`, `==`, `=` at each position.
fn split_field_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, kind) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::DoubleEquals),
            ("=", FieldOperator::Equals),
        ] {
            if rest.starts_with(op) {
                return Some((&term[..i], kind, &term[i + op.len()..]));
            }
        }
    }
    None
}

/// Upstream `fields.UnescapeValue`.
fn unescape_field_value(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                _ => return Err(format!("invalid escape sequence: \\{c}")),
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => return Err(format!("unescaped character in value: {c}")),
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err("invalid escape sequence: \\ at the end of the value".to_string());
    }
    Ok(out)
}

/// Resolves a dotted path; `None` when it lands on an object or array.
fn resolve_field(obj: &Value, path: &str) -> Option<String> {
    let mut cur = obj;
    for seg in path.split('.') {
        match cur.get(seg) {
            Some(v) => cur = v,
            None => return Some(String::new()),
        }
    }
    match cur {
        Value::Null => Some(String::new()),
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn label_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Ok(x) => panic!("{s:?} should not parse, got {x:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        for s in ["", "   ", "\t\n"] {
            let x = sel(s);
            assert!(x.is_empty());
            assert!(x.matches(&labels(json!({}))));
            assert!(x.matches(&labels(json!({"a": "b"}))));
            assert_eq!(x.to_string(), "");
        }
        assert!(LabelSelector::everything().matches_object(&json!({})));
    }

    #[test]
    fn equality_operators() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        assert!(sel("app=web").matches(&l));
        assert!(sel("app==web").matches(&l));
        assert!(!sel("app=db").matches(&l));
        assert!(!sel("missing=web").matches(&l));
        assert!(sel("app!=db").matches(&l));
        assert!(!sel("app!=web").matches(&l));
        // != matches objects without the key, as upstream.
        assert!(sel("missing!=x").matches(&l));
        assert_eq!(
            sel("app==web").requirements()[0].operator(),
            LabelOperator::DoubleEquals
        );
    }

    #[test]
    fn empty_value() {
        let l = labels(json!({"a": "", "b": "x"}));
        assert!(sel("a=").matches(&l));
        assert!(sel("a=,b=x").matches(&l));
        assert!(!sel("b=").matches(&l));
        assert!(!sel("c=").matches(&l));
        assert!(sel("a in ()").matches(&l));
        assert!(sel("a in (,x)").matches(&l));
        assert!(sel("b in (x,)").matches(&l));
        assert_eq!(
            sel("a in (x,,y)").requirements()[0]
                .values()
                .iter()
                .collect::<Vec<_>>(),
            vec!["", "x", "y"]
        );
    }

    #[test]
    fn set_operators() {
        let l = labels(json!({"env": "prod"}));
        assert!(sel("env in (prod,staging)").matches(&l));
        assert!(sel("env in(prod)").matches(&l));
        assert!(!sel("env in (dev, staging)").matches(&l));
        assert!(!sel("other in (prod)").matches(&l));
        assert!(sel("env notin (dev,staging)").matches(&l));
        assert!(!sel("env notin (prod)").matches(&l));
        // notin matches objects without the key, as upstream.
        assert!(sel("other notin (prod)").matches(&l));
        // `in` and `notin` are plain identifiers inside a value list.
        assert!(sel("x in (in,notin)").matches(&labels(json!({"x": "notin"}))));
        assert!(sel("x=in").matches(&labels(json!({"x": "in"}))));
    }

    #[test]
    fn existence_operators() {
        let l = labels(json!({"app": "web"}));
        assert!(sel("app").matches(&l));
        assert!(!sel("db").matches(&l));
        assert!(sel("!db").matches(&l));
        assert!(!sel("!app").matches(&l));
        assert!(sel("app,!db").matches(&l));
        assert!(sel(" ! db , app ").matches(&l));
        assert_eq!(
            sel("!db").requirements()[0].operator(),
            LabelOperator::DoesNotExist
        );
        assert_eq!(
            sel("app").requirements()[0].operator(),
            LabelOperator::Exists
        );
    }

    #[test]
    fn numeric_operators() {
        let l = labels(json!({"n": "5", "s": "abc"}));
        assert!(sel("n>4").matches(&l));
        assert!(!sel("n>5").matches(&l));
        assert!(sel("n<6").matches(&l));
        assert!(!sel("s<6").matches(&l));
        assert!(!sel("m>1").matches(&l));
        assert!(label_err("n>x").contains("integer"));
    }

    #[test]
    fn conjunction_and_whitespace() {
        let l = labels(json!({"app": "web", "tier": "front", "env": "prod"}));
        assert!(sel("  app = web ,tier in ( front , back ),  env!=dev ").matches(&l));
        assert!(!sel("app=web,tier=back").matches(&l));
        assert_eq!(sel("app=web,tier=back").requirements().len(), 2);
    }

    #[test]
    fn prefixed_keys() {
        let l = labels(json!({"app.kubernetes.io/name": "nginx", "example.com/x": "1"}));
        assert!(sel("app.kubernetes.io/name=nginx").matches(&l));
        assert!(sel("app.kubernetes.io/name in (nginx,apache),example.com/x").matches(&l));
        assert!(!sel("app.kubernetes.io/name=apache").matches(&l));
    }

    #[test]
    fn matches_object_reads_metadata_labels() {
        let pod = json!({"metadata": {"name": "p", "labels": {"app": "web"}}});
        assert!(sel("app=web").matches_object(&pod));
        assert!(!sel("app=db").matches_object(&pod));
        let bare = json!({"metadata": {"name": "p"}});
        assert!(!sel("app").matches_object(&bare));
        assert!(sel("!app").matches_object(&bare));
        assert!(sel("app!=web").matches_object(&bare));
        assert!(sel("").matches_object(&json!({})));
    }

    #[test]
    fn non_string_label_values() {
        let l = labels(json!({"n": 3, "b": true, "o": {"x": 1}}));
        assert!(sel("n=3").matches(&l));
        assert!(sel("b=true").matches(&l));
        assert!(sel("!o").matches(&l));
    }

    #[test]
    fn syntax_errors_name_the_offending_part() {
        assert!(label_err("app in").contains("found end of string, expected: '('"));
        assert!(label_err("app in (a").contains("expected: ',' or ')'"));
        assert!(label_err("app in (a b)").contains("found 'b'"));
        assert!(label_err("app=web,").contains("identifier after ','"));
        assert!(label_err(",app").contains("found ','"));
        assert!(label_err("app=web=x").contains("found '='"));
        assert!(label_err("app web").contains("found 'web'"));
        assert!(label_err("!app=web").contains("found '='"));
        assert!(label_err("app=(x)").contains("found '('"));
        assert!(label_err("=x").contains("found '='"));
        assert!(sel("app==").matches(&labels(json!({"app": ""}))));
        let e = LabelSelector::parse("app in").unwrap_err();
        assert!(matches!(e, SelectorError::Label { ref selector, .. } if selector == "app in"));
    }

    #[test]
    fn validation_errors() {
        assert!(label_err("Bad Key=x").contains("found 'Key'"));
        assert!(label_err("-bad=x").contains("invalid label key \"-bad\""));
        assert!(label_err("a/b/c=x").contains("invalid label key"));
        assert!(label_err("Example.com/x=y").contains("prefix"));
        assert!(label_err("/x=y").contains("prefix"));
        assert!(label_err("x/=y").contains("name part"));
        assert!(label_err("app=-web").contains("invalid label value \"-web\""));
        assert!(label_err(&format!("app={}", "a".repeat(64))).contains("invalid label value"));
        assert!(LabelSelector::parse(&format!("app={}", "a".repeat(63))).is_ok());
        assert!(label_err("app in (ok,not ok)").contains("found 'ok'"));
        assert!(label_err("app in (ok,-no)").contains("invalid label value"));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "app=web",
            "app==web",
            "app!=web",
            "app in (a,b)",
            "app notin (a,b)",
            "app",
            "!app",
            "n>3",
            "n<3",
            "a=,b in (,x)",
            "app.kubernetes.io/name=x,tier",
        ] {
            let a = sel(s);
            let b = sel(&a.to_string());
            assert_eq!(a, b, "{s}");
        }
        assert_eq!(sel("app in (b, a)").to_string(), "app in (a,b)");
        // Sorted by key, like upstream's String().
        assert_eq!(
            sel("tier=fe,!canary,app=web").to_string(),
            "app=web,!canary,tier=fe"
        );
        let from_json = from_label_selector_json(&json!({
            "matchLabels": {"tier": "fe", "app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert_eq!(
            from_json.to_string(),
            "app=web,!canary,env in (dev,prod),tier=fe"
        );
        assert_eq!("app=x".parse::<LabelSelector>().unwrap(), sel("app=x"));
    }

    #[test]
    fn label_selector_json() {
        let s = LabelSelector::from_label_selector_json(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []}
            ]
        }))
        .unwrap();
        assert_eq!(s.requirements().len(), 5);
        let good = labels(json!({"app": "web", "tier": "front", "team": "a"}));
        assert!(s.matches(&good));
        let mut bad = good.clone();
        bad.insert("legacy".into(), json!("y"));
        assert!(!s.matches(&bad));
        let mut bad = good.clone();
        bad.insert("env".into(), json!("dev"));
        assert!(!s.matches(&bad));
        let mut bad = good.clone();
        bad.remove("team");
        assert!(!s.matches(&bad));
    }

    #[test]
    fn label_selector_json_empty_and_null() {
        let everything = from_label_selector_json(&json!({})).unwrap();
        assert!(everything.is_empty());
        assert!(everything.matches(&labels(json!({"a": "b"}))));
        let everything =
            from_label_selector_json(&json!({"matchLabels": null, "matchExpressions": []}))
                .unwrap();
        assert!(everything.matches_object(&json!({})));
        let nothing = from_label_selector_json(&Value::Null).unwrap();
        assert!(nothing.is_nothing());
        assert!(!nothing.matches(&labels(json!({}))));
        assert!(!nothing.matches_object(&json!({"metadata": {"labels": {"a": "b"}}})));
        assert_eq!(nothing.to_string(), "<none>");
    }

    #[test]
    fn label_selector_json_errors() {
        let err = |v: Value| from_label_selector_json(&v).unwrap_err().to_string();
        assert!(err(
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
        )
        .contains("\"Gt\" is not a valid label selector operator"));
        assert!(
            err(json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}))
                .contains("can't be empty")
        );
        assert!(err(
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
        )
        .contains("must be empty"));
        assert!(err(json!({"matchExpressions": [{"operator": "Exists"}]})).contains("key"));
        assert!(err(json!({"matchLabels": {"a": 1}})).contains("matchLabels"));
        assert!(err(json!({"matchLabels": {"bad key": "x"}})).contains("invalid label key"));
        assert!(err(json!({"matchLabels": {"a": "-x"}})).contains("invalid label value"));
        assert!(err(json!("app=web")).contains("expected an object"));
    }

    #[test]
    fn requirement_constructor_validates() {
        assert!(LabelRequirement::new("a", LabelOperator::Equals, ["x", "y"]).is_err());
        assert!(LabelRequirement::new("a", LabelOperator::Equals, Vec::<String>::new()).is_err());
        assert!(LabelRequirement::new("a", LabelOperator::In, ["x", "y"]).is_ok());
        let s = LabelSelector::from_requirements(vec![LabelRequirement::new(
            "a",
            LabelOperator::Exists,
            Vec::<String>::new(),
        )
        .unwrap()]);
        assert_eq!(s.to_string(), "a");
    }

    fn fsel(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "prod", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "replicas": 3, "hostNetwork": false},
            "status": {"phase": "Running"}
        })
    }

    #[test]
    fn field_selector_basic() {
        let p = pod();
        assert!(fsel("").matches(&p));
        assert!(fsel("").is_empty());
        assert!(fsel("metadata.name=web-1").matches(&p));
        assert!(fsel("metadata.name==web-1").matches(&p));
        assert!(!fsel("metadata.name=web-2").matches(&p));
        assert!(fsel("metadata.name!=web-2").matches(&p));
        assert!(!fsel("metadata.name!=web-1").matches(&p));
        assert!(fsel("metadata.namespace=prod,status.phase=Running").matches(&p));
        assert!(!fsel("metadata.namespace=prod,status.phase=Pending").matches(&p));
        assert!(fsel("status.phase!=Succeeded,status.phase!=Failed").matches(&p));
        assert!(fsel("spec.nodeName=node-a").matches(&p));
        assert!(fsel("spec.replicas=3,spec.hostNetwork=false").matches(&p));
        assert!(!fsel("metadata.labels=x").matches(&p));
        assert!(fsel("metadata.labels!=x").matches(&p));
    }

    #[test]
    fn field_selector_missing_field_is_empty_string() {
        let unscheduled = json!({"metadata": {"name": "p"}, "spec": {}});
        assert!(fsel("spec.nodeName=").matches(&unscheduled));
        assert!(!fsel("spec.nodeName!=").matches(&unscheduled));
        assert!(!fsel("spec.nodeName=").matches(&pod()));
        assert!(fsel("spec.nodeName!=").matches(&pod()));
        assert!(fsel("status.phase=").matches(&json!({})));
        assert!(fsel("spec.nodeName=").matches(&json!({"spec": {"nodeName": null}})));
    }

    #[test]
    fn field_selector_event_paths() {
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "web-1"}, "reason": "Killing"});
        assert!(fsel("involvedObject.kind=Pod,involvedObject.name=web-1").matches(&ev));
        assert!(fsel("reason=Killing").matches(&ev));
        assert!(!fsel("involvedObject.name=web-2").matches(&ev));
    }

    #[test]
    fn field_selector_escapes() {
        let obj = json!({"metadata": {"name": "a,b=c\\d"}});
        let s = fsel(r"metadata.name=a\,b\=c\\d");
        assert_eq!(s.requirements().len(), 1);
        assert_eq!(s.requirements()[0].value(), "a,b=c\\d");
        assert!(s.matches(&obj));
        assert_eq!(s.to_string(), r"metadata.name=a\,b\=c\\d");
        assert_eq!(escape_field_value("a,b=c\\d"), r"a\,b\=c\\d");
        assert_eq!(fsel(&s.to_string()), s);
        // The escaped comma does not split terms.
        let two = fsel(r"metadata.name=x\,y,status.phase=Running");
        assert_eq!(two.requirements().len(), 2);
        assert_eq!(two.required_value("metadata.name"), Some("x,y"));
    }

    #[test]
    fn field_selector_errors() {
        let err = |s: &str| FieldSelector::parse(s).unwrap_err().to_string();
        assert!(err("metadata.name").contains("can't understand 'metadata.name'"));
        assert!(err("a=b,c").contains("can't understand 'c'"));
        assert!(err("metadata.name=a=b").contains("unescaped character in value: ="));
        assert!(err(r"metadata.name=a\x").contains("invalid escape sequence: \\x"));
        assert!(err(r"metadata.name=a\").contains("invalid escape sequence"));
        assert!(err("=x").contains("invalid field path"));
        assert!(err("metadata..name=x").contains("invalid field path"));
        assert!(err("meta data=x").contains("invalid field path"));
        assert!(matches!(
            FieldSelector::parse("x").unwrap_err(),
            SelectorError::Field { ref selector, .. } if selector == "x"
        ));
    }

    #[test]
    fn field_selector_tolerances() {
        // Empty terms are skipped, whitespace around the path is trimmed.
        let s = fsel(",metadata.name=web-1,, status.phase=Running,");
        assert_eq!(s.requirements().len(), 2);
        assert!(s.matches(&pod()));
        assert_eq!(s.requirements()[1].field(), "status.phase");
        assert_eq!(s.requirements()[1].operator(), FieldOperator::Equals);
        assert_eq!(s.required_value("status.phase"), Some("Running"));
        assert_eq!(fsel("a!=b").required_value("a"), None);
        assert_eq!("a=b".parse::<FieldSelector>().unwrap(), fsel("a=b"));
        assert_eq!(fsel("a!=b,c==d").to_string(), "a!=b,c==d");
    }
}
