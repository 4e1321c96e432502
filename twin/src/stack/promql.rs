//! The Prometheus text exposition format and the subset of PromQL the twin's
//! Prometheus and Thanos answer (pure: no Kubernetes, no I/O).
//!
//! **Exposition** ([`parse_exposition`]): `# HELP`/`# TYPE`/comments skipped,
//! `name{label="value",...} value [timestamp]` with the format's escapes (`\\`, `\"`,
//! `\n`), values as Go parses them (`NaN`, `+Inf`, `-Inf`, `1e3`).
//!
//! **PromQL** ([`parse`], [`Expr::eval`]): instant vector selectors (`up`,
//! `up{job="x"}`, `{__name__=~"ceph_.*"}`, matchers `=`, `!=`, `=~`, `!~` with RE2
//! regexes anchored as Prometheus anchors them), the aggregations `sum`, `count`,
//! `max`, `min`, `avg` with `by (...)`/`without (...)` before or after the argument,
//! parentheses, a comparison of a vector with a number (`up == 0`, `sum(up) < 3`;
//! filtering, so the metric name is kept as Prometheus keeps it), and a number
//! alone (a scalar). Everything else that is PromQL (functions, range selectors,
//! `offset`/`@`, binary arithmetic and set operators, `bool`, other aggregations) is
//! refused with [`QueryError::Unsupported`]; text that is not PromQL gets a
//! [`QueryError::Parse`] shaped like Prometheus's (`1:5: parse error: ...`). Both are
//! answered as Prometheus answers bad queries: HTTP 400, `errorType` `bad_data`.
//!
//! **LogQL** ([`parse_log_query`]): Loki's stream selector (the same matchers) and
//! line filters (`|=`, `!=`, `|~`, `!~`); metric queries and other pipeline stages
//! are [`QueryError::Unsupported`].

use std::collections::BTreeMap;
use std::fmt;

/// A series' labels, `__name__` included.
pub type Labels = BTreeMap<String, String>;

/// One sample of a series.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub value: f64,
}

// ----- exposition -------------------------------------------------------------------

/// Parses the text exposition format (version 0.0.4) into samples; malformed lines
/// are skipped (Prometheus would fail the scrape; the twin's exporters are its own).
pub fn parse_exposition(text: &str) -> Vec<Series> {
    text.lines().filter_map(parse_sample_line).collect()
}

fn parse_sample_line(line: &str) -> Option<Series> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return None;
    }
    let mut labels = Labels::new();
    labels.insert("__name__".into(), name.into());
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut end = None;
        loop {
            while chars
                .peek()
                .is_some_and(|(_, c)| c.is_whitespace() || *c == ',')
            {
                chars.next();
            }
            match chars.peek() {
                Some((i, '}')) => {
                    end = Some(*i + 1);
                    break;
                }
                None => break,
                _ => {}
            }
            let mut key = String::new();
            while let Some((_, c)) = chars.peek() {
                if *c == '=' || c.is_whitespace() {
                    break;
                }
                key.push(*c);
                chars.next();
            }
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('=') {
                return None;
            }
            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        }
        rest = &r[end?..];
    }
    let mut fields = rest.split_whitespace();
    let value = parse_go_float(fields.next()?)?;
    Some(Series { labels, value })
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A sample value as Prometheus's API prints it (Go's `FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

// ----- queries ----------------------------------------------------------------------

/// Why a query was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// Not PromQL: Prometheus's `<line>:<col>: parse error: <msg>`.
    Parse { col: usize, msg: String },
    /// PromQL the twin does not evaluate.
    Unsupported(String),
    /// Valid syntax refused by Prometheus's checks (e.g. an empty-matching selector).
    Invalid(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Parse { col, msg } => write!(f, "1:{col}: parse error: {msg}"),
            QueryError::Unsupported(what) => write!(
                f,
                "unsupported by the stormdrill twin's Prometheus: {what} (supported: instant vector selectors, sum/count/max/min/avg with by/without, comparisons with a number)"
            ),
            QueryError::Invalid(msg) => f.write_str(msg),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<regex::Regex>,
}

impl Matcher {
    fn new(name: String, op: MatchOp, value: String, col: usize) -> Result<Matcher, QueryError> {
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(regex::Regex::new(&format!("^(?s:{value})$")).map_err(|e| {
                    QueryError::Parse {
                        col,
                        msg: format!(
                            "error parsing regexp: {}",
                            e.to_string().lines().last().unwrap_or("invalid")
                        ),
                    }
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// Whether a label value (empty when the label is absent) matches.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    pub fn matches_labels(&self, l: &Labels) -> bool {
        self.matches(l.get(&self.name).map(String::as_str).unwrap_or(""))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggOp {
    Sum,
    Count,
    Max,
    Min,
    Avg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

impl CmpOp {
    fn apply(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Lt => a < b,
            CmpOp::Ge => a >= b,
            CmpOp::Le => a <= b,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Expr {
    Number(f64),
    Selector(Vec<Matcher>),
    Aggregate {
        op: AggOp,
        /// (without, labels): `by (labels)` when false.
        grouping: Option<(bool, Vec<String>)>,
        expr: Box<Expr>,
    },
    Compare {
        expr: Box<Expr>,
        op: CmpOp,
        value: f64,
    },
}

/// What a query evaluates to.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Series>),
}

impl Expr {
    /// Evaluates the expression over the current samples (one per series).
    pub fn eval(&self, samples: &[Series]) -> Value {
        match self {
            Expr::Number(n) => Value::Scalar(*n),
            Expr::Selector(ms) => Value::Vector(
                samples
                    .iter()
                    .filter(|s| ms.iter().all(|m| m.matches_labels(&s.labels)))
                    .cloned()
                    .collect(),
            ),
            Expr::Compare { expr, op, value } => match expr.eval(samples) {
                Value::Scalar(_) => Value::Vector(Vec::new()),
                Value::Vector(v) => Value::Vector(
                    v.into_iter()
                        .filter(|s| op.apply(s.value, *value))
                        .collect(),
                ),
            },
            Expr::Aggregate { op, grouping, expr } => {
                let Value::Vector(input) = expr.eval(samples) else {
                    return Value::Vector(Vec::new());
                };
                let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
                for s in input {
                    let key: Labels = match grouping {
                        None => Labels::new(),
                        Some((false, by)) => s
                            .labels
                            .iter()
                            .filter(|(k, _)| by.contains(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        Some((true, without)) => s
                            .labels
                            .iter()
                            .filter(|(k, _)| *k != "__name__" && !without.contains(k))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                    };
                    groups.entry(key).or_default().push(s.value);
                }
                Value::Vector(
                    groups
                        .into_iter()
                        .map(|(labels, vs)| {
                            let n = vs.len() as f64;
                            let value = match op {
                                AggOp::Sum => vs.iter().sum(),
                                AggOp::Count => n,
                                AggOp::Max => vs.iter().copied().fold(f64::NAN, |a, b| {
                                    if a.is_nan() || b > a {
                                        b
                                    } else {
                                        a
                                    }
                                }),
                                AggOp::Min => vs.iter().copied().fold(f64::NAN, |a, b| {
                                    if a.is_nan() || b < a {
                                        b
                                    } else {
                                        a
                                    }
                                }),
                                AggOp::Avg => vs.iter().sum::<f64>() / n,
                            };
                            Series { labels, value }
                        })
                        .collect(),
                )
            }
        }
    }
}

// ----- lexer ------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Duration(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    Comma,
    /// Operators and other punctuation: `=`, `!=`, `=~`, `!~`, `==`, `>`, `<`, `>=`,
    /// `<=`, `+`, `-`, `*`, `/`, `%`, `^`, `@`, `:`.
    Op(&'static str),
    Eof,
}

struct Lexed {
    toks: Vec<(Tok, usize)>,
}

fn lex(q: &str) -> Result<Lexed, QueryError> {
    let chars: Vec<char> = q.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op2 = ["!=", "=~", "!~", "==", ">=", "<=", "|=", "|~"]
            .into_iter()
            .find(|o| *o == two);
        if let Some(o) = op2 {
            toks.push((Tok::Op(o), col));
            i += 2;
            continue;
        }
        let single = match c {
            '{' => Some(Tok::LBrace),
            '}' => Some(Tok::RBrace),
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '[' => Some(Tok::LBracket),
            ',' => Some(Tok::Comma),
            '=' => Some(Tok::Op("=")),
            '>' => Some(Tok::Op(">")),
            '<' => Some(Tok::Op("<")),
            '+' => Some(Tok::Op("+")),
            '-' => Some(Tok::Op("-")),
            '*' => Some(Tok::Op("*")),
            '/' => Some(Tok::Op("/")),
            '%' => Some(Tok::Op("%")),
            '^' => Some(Tok::Op("^")),
            '@' => Some(Tok::Op("@")),
            '|' => Some(Tok::Op("|")),
            ']' => Some(Tok::Op("]")),
            ':' => Some(Tok::Op(":")),
            _ => None,
        };
        if let Some(t) = single {
            toks.push((t, col));
            i += 1;
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            let quote = c;
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(QueryError::Parse {
                        col,
                        msg: "unterminated quoted string".into(),
                    });
                };
                i += 1;
                if d == quote {
                    break;
                }
                if d == '\\' && quote != '`' {
                    let Some(&e) = chars.get(i) else {
                        return Err(QueryError::Parse {
                            col,
                            msg: "unterminated quoted string".into(),
                        });
                    };
                    i += 1;
                    s.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                    continue;
                }
                s.push(d);
            }
            toks.push((Tok::Str(s), col));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '+' || chars[i] == '-') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            if let Ok(n) = text.parse::<f64>() {
                toks.push((Tok::Num(n), col));
            } else if let Some(n) = text
                .strip_prefix("0x")
                .and_then(|h| i64::from_str_radix(h, 16).ok())
            {
                toks.push((Tok::Num(n as f64), col));
            } else if text
                .chars()
                .any(|c| matches!(c, 's' | 'm' | 'h' | 'd' | 'w' | 'y'))
            {
                toks.push((Tok::Duration(text), col));
            } else {
                return Err(QueryError::Parse {
                    col,
                    msg: format!("bad number or duration syntax: \"{text}\""),
                });
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            match text.to_ascii_lowercase().as_str() {
                "inf" => toks.push((Tok::Num(f64::INFINITY), col)),
                "nan" => toks.push((Tok::Num(f64::NAN), col)),
                _ => toks.push((Tok::Ident(text), col)),
            }
            continue;
        }
        return Err(QueryError::Parse {
            col,
            msg: format!("unexpected character: '{c}'"),
        });
    }
    toks.push((Tok::Eof, chars.len() + 1));
    Ok(Lexed { toks })
}

// ----- parser -----------------------------------------------------------------------

const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "deg",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

const OTHER_AGGREGATIONS: &[&str] = &[
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

/// Parses a PromQL query of the supported subset.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    let lexed = lex(query)?;
    if lexed.toks.len() == 1 {
        return Err(QueryError::Parse {
            col: 1,
            msg: "no expression found in input".into(),
        });
    }
    let mut p = Parser {
        toks: lexed.toks,
        pos: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        Tok::Eof => Ok(e),
        t => Err(p.unexpected(&t.clone(), "")),
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier \"{s}\""),
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Num(n) => format!("number \"{}\"", format_value(*n)),
        Tok::Duration(d) => format!("duration \"{d}\""),
        Tok::LBrace => "\"{\"".into(),
        Tok::RBrace => "\"}\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::LBracket => "\"[\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Op(o) => format!("\"{o}\""),
        Tok::Eof => "end of input".into(),
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn col(&self) -> usize {
        self.toks[self.pos].1
    }

    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn unexpected(&self, t: &Tok, context: &str) -> QueryError {
        QueryError::Parse {
            col: self.col(),
            msg: format!("unexpected {}{context}", describe(t)),
        }
    }

    fn expr(&mut self) -> Result<Expr, QueryError> {
        let lhs = self.unary()?;
        let op = match self.peek() {
            Tok::Op("==") => CmpOp::Eq,
            Tok::Op("!=") => CmpOp::Ne,
            Tok::Op(">") => CmpOp::Gt,
            Tok::Op("<") => CmpOp::Lt,
            Tok::Op(">=") => CmpOp::Ge,
            Tok::Op("<=") => CmpOp::Le,
            Tok::Op(o @ ("+" | "-" | "*" | "/" | "%" | "^")) => {
                return Err(QueryError::Unsupported(format!(
                    "the binary operator \"{o}\""
                )));
            }
            Tok::Ident(w) if ["and", "or", "unless"].contains(&w.as_str()) => {
                return Err(QueryError::Unsupported(format!("the set operator \"{w}\"")));
            }
            Tok::Ident(w) if ["offset"].contains(&w.as_str()) => {
                return Err(QueryError::Unsupported("the offset modifier".into()));
            }
            Tok::Op("@") => return Err(QueryError::Unsupported("the @ modifier".into())),
            _ => return Ok(lhs),
        };
        self.next();
        if matches!(self.peek(), Tok::Ident(w) if w == "bool") {
            return Err(QueryError::Unsupported("the bool modifier".into()));
        }
        if matches!(self.peek(), Tok::Ident(w) if ["on", "ignoring", "group_left", "group_right"].contains(&w.as_str()))
        {
            return Err(QueryError::Unsupported("vector matching".into()));
        }
        let rhs = self.unary()?;
        match (&lhs, rhs) {
            (Expr::Number(_), _) => Err(QueryError::Unsupported(
                "a comparison with a number on the left".into(),
            )),
            (_, Expr::Number(value)) => {
                let e = Expr::Compare {
                    expr: Box::new(lhs),
                    op,
                    value,
                };
                // Comparisons chain left to right.
                if matches!(self.peek(), Tok::Op("==" | "!=" | ">" | "<" | ">=" | "<=")) {
                    return Err(QueryError::Unsupported("chained comparisons".into()));
                }
                Ok(e)
            }
            _ => Err(QueryError::Unsupported(
                "a comparison between two vectors".into(),
            )),
        }
    }

    fn unary(&mut self) -> Result<Expr, QueryError> {
        let col = self.col();
        match self.next() {
            Tok::Num(n) => Ok(Expr::Number(n)),
            Tok::Op("-") => match self.next() {
                Tok::Num(n) => Ok(Expr::Number(-n)),
                _ => Err(QueryError::Unsupported("unary minus on a vector".into())),
            },
            Tok::Op("+") => match self.next() {
                Tok::Num(n) => Ok(Expr::Number(n)),
                _ => Err(QueryError::Unsupported("unary plus on a vector".into())),
            },
            Tok::LParen => {
                let e = self.expr()?;
                match self.next() {
                    Tok::RParen => Ok(e),
                    t => Err(self.unexpected(&t, "")),
                }
            }
            Tok::LBrace => {
                let ms = self.matchers(None)?;
                self.selector_tail(ms, col)
            }
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                let agg = match lower.as_str() {
                    "sum" => Some(AggOp::Sum),
                    "count" => Some(AggOp::Count),
                    "max" => Some(AggOp::Max),
                    "min" => Some(AggOp::Min),
                    "avg" => Some(AggOp::Avg),
                    _ => None,
                };
                let followed_by_group = matches!(self.peek(), Tok::LParen)
                    || matches!(self.peek(), Tok::Ident(w) if w == "by" || w == "without");
                if let Some(op) = agg.filter(|_| followed_by_group) {
                    return self.aggregate(op);
                }
                if OTHER_AGGREGATIONS.contains(&lower.as_str()) && followed_by_group {
                    return Err(QueryError::Unsupported(format!(
                        "the aggregation \"{name}\""
                    )));
                }
                if matches!(self.peek(), Tok::LParen) {
                    if FUNCTIONS.contains(&name.as_str()) {
                        return Err(QueryError::Unsupported(format!("the function \"{name}\"")));
                    }
                    return Err(QueryError::Parse {
                        col,
                        msg: format!("unknown function with name \"{name}\""),
                    });
                }
                if [
                    "by",
                    "without",
                    "bool",
                    "on",
                    "ignoring",
                    "offset",
                    "and",
                    "or",
                    "unless",
                    "group_left",
                    "group_right",
                ]
                .contains(&lower.as_str())
                {
                    return Err(QueryError::Parse {
                        col,
                        msg: format!("unexpected <{lower}>"),
                    });
                }
                let mut ms = vec![Matcher::new(
                    "__name__".into(),
                    MatchOp::Equal,
                    name.clone(),
                    col,
                )?];
                if matches!(self.peek(), Tok::LBrace) {
                    self.next();
                    ms.extend(self.matchers(Some(&name))?);
                }
                self.selector_tail(ms, col)
            }
            t => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.unexpected(&t, ""))
            }
        }
    }

    fn selector_tail(&mut self, ms: Vec<Matcher>, col: usize) -> Result<Expr, QueryError> {
        if matches!(self.peek(), Tok::LBracket) {
            return Err(QueryError::Unsupported("range vector selectors".into()));
        }
        if !ms.iter().any(|m| !m.matches("")) {
            return Err(QueryError::Parse {
                col,
                msg: "vector selector must contain at least one non-empty matcher".into(),
            });
        }
        Ok(Expr::Selector(ms))
    }

    /// After `{`: matchers up to `}`.
    fn matchers(&mut self, metric: Option<&str>) -> Result<Vec<Matcher>, QueryError> {
        let mut out = Vec::new();
        loop {
            let col = self.col();
            match self.next() {
                Tok::RBrace => return Ok(out),
                Tok::Ident(label) => {
                    if !is_label_name(&label) {
                        return Err(QueryError::Parse {
                            col,
                            msg: format!("invalid label name \"{label}\""),
                        });
                    }
                    let op = match self.next() {
                        Tok::Op("=") => MatchOp::Equal,
                        Tok::Op("!=") => MatchOp::NotEqual,
                        Tok::Op("=~") => MatchOp::Regex,
                        Tok::Op("!~") => MatchOp::NotRegex,
                        t => {
                            return Err(self.unexpected(
                                &t,
                                " in label matching, expected label matching operator",
                            ))
                        }
                    };
                    let vcol = self.col();
                    let value = match self.next() {
                        Tok::Str(s) => s,
                        t => return Err(self.unexpected(&t, " in label matching, expected string")),
                    };
                    if label == "__name__" && metric.is_some() {
                        return Err(QueryError::Parse {
                            col,
                            msg: format!(
                                "metric name must not be set twice: \"{}\" or \"{value}\"",
                                metric.unwrap_or("")
                            ),
                        });
                    }
                    out.push(Matcher::new(label, op, value, vcol)?);
                    match self.next() {
                        Tok::Comma => {}
                        Tok::RBrace => return Ok(out),
                        t => {
                            return Err(
                                self.unexpected(&t, " in label matching, expected \",\" or \"}\"")
                            )
                        }
                    }
                }
                Tok::Eof => {
                    return Err(QueryError::Parse {
                        col,
                        msg: "unexpected end of input inside braces".into(),
                    })
                }
                t => return Err(self.unexpected(&t, " in label matching, expected label")),
            }
        }
    }

    fn grouping(&mut self) -> Result<Option<(bool, Vec<String>)>, QueryError> {
        let without = match self.peek() {
            Tok::Ident(w) if w == "by" => false,
            Tok::Ident(w) if w == "without" => true,
            _ => return Ok(None),
        };
        self.next();
        match self.next() {
            Tok::LParen => {}
            t => return Err(self.unexpected(&t, " in grouping opts, expected \"(\"")),
        }
        let mut labels = Vec::new();
        loop {
            match self.next() {
                Tok::RParen => break,
                Tok::Ident(l) => {
                    labels.push(l);
                    match self.next() {
                        Tok::Comma => {}
                        Tok::RParen => break,
                        t => {
                            return Err(
                                self.unexpected(&t, " in grouping opts, expected \",\" or \")\"")
                            )
                        }
                    }
                }
                t => return Err(self.unexpected(&t, " in grouping opts, expected label")),
            }
        }
        Ok(Some((without, labels)))
    }

    fn aggregate(&mut self, op: AggOp) -> Result<Expr, QueryError> {
        let before = self.grouping()?;
        match self.next() {
            Tok::LParen => {}
            t => return Err(self.unexpected(&t, " in aggregation, expected \"(\"")),
        }
        let inner = self.expr()?;
        match self.next() {
            Tok::RParen => {}
            Tok::Comma => return Err(QueryError::Parse {
                col: self.col(),
                msg:
                    "wrong number of arguments for aggregate expression provided, expected 1, got 2"
                        .into(),
            }),
            t => return Err(self.unexpected(&t, " in aggregation, expected \")\"")),
        }
        let after = self.grouping()?;
        if before.is_some() && after.is_some() {
            return Err(QueryError::Parse {
                col: self.col(),
                msg: "aggregation must only contain one grouping clause".into(),
            });
        }
        if matches!(inner, Expr::Number(_)) {
            return Err(QueryError::Parse {
                col: self.col(),
                msg: "expected type instant vector in aggregation expression, got scalar".into(),
            });
        }
        Ok(Expr::Aggregate {
            op,
            grouping: before.or(after),
            expr: Box::new(inner),
        })
    }
}

// ----- LogQL -----------------------------------------------------------------------

/// A line filter of a LogQL pipeline.
#[derive(Clone, Debug)]
pub enum LineFilter {
    Contains(String),
    NotContains(String),
    Matches(regex::Regex),
    NotMatches(regex::Regex),
}

impl LineFilter {
    pub fn keeps(&self, line: &str) -> bool {
        match self {
            LineFilter::Contains(s) => line.contains(s.as_str()),
            LineFilter::NotContains(s) => !line.contains(s.as_str()),
            LineFilter::Matches(r) => r.is_match(line),
            LineFilter::NotMatches(r) => !r.is_match(line),
        }
    }
}

/// A LogQL log query of the supported subset: a stream selector and line filters.
#[derive(Clone, Debug)]
pub struct LogQuery {
    pub matchers: Vec<Matcher>,
    pub filters: Vec<LineFilter>,
}

impl LogQuery {
    pub fn selects(&self, stream: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches_labels(stream))
    }

    pub fn keeps(&self, line: &str) -> bool {
        self.filters.iter().all(|f| f.keeps(line))
    }
}

/// Parses a LogQL log query: `{label="v", label=~"re", ...}` followed by line filters
/// (`|= "text"`, `!= "text"`, `|~ "re"`, `!~ "re"`). Metric queries, parsers and
/// formatters are refused as [`QueryError::Unsupported`].
pub fn parse_log_query(query: &str) -> Result<LogQuery, QueryError> {
    let lexed = lex(query)?;
    let mut p = Parser {
        toks: lexed.toks,
        pos: 0,
    };
    let col = p.col();
    match p.next() {
        Tok::LBrace => {}
        Tok::Ident(f) if matches!(p.peek(), Tok::LParen) => {
            return Err(QueryError::Unsupported(format!("metric queries (\"{f}\")")));
        }
        Tok::Eof => {
            return Err(QueryError::Parse {
                col,
                msg: "syntax error: unexpected $end".into(),
            })
        }
        t => {
            return Err(QueryError::Parse {
                col,
                msg: format!("syntax error: unexpected {}, expecting {{", describe(&t)),
            })
        }
    }
    let matchers = p.matchers(None)?;
    if !matchers.iter().any(|m| !m.matches("")) {
        return Err(QueryError::Invalid("queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will".into()));
    }
    let mut filters = Vec::new();
    loop {
        let col = p.col();
        let op = match p.next() {
            Tok::Eof => break,
            Tok::Op(o @ ("|=" | "!=" | "|~" | "!~")) => o,
            Tok::Op("|") => {
                let what = match p.peek() {
                    Tok::Ident(s) => s.clone(),
                    t => describe(t),
                };
                return Err(QueryError::Unsupported(format!(
                    "the pipeline stage \"| {what}\""
                )));
            }
            t => {
                return Err(QueryError::Parse {
                    col,
                    msg: format!("syntax error: unexpected {}", describe(&t)),
                })
            }
        };
        let col = p.col();
        let text = match p.next() {
            Tok::Str(s) => s,
            t => {
                return Err(QueryError::Parse {
                    col,
                    msg: format!(
                        "syntax error: unexpected {}, expecting STRING",
                        describe(&t)
                    ),
                })
            }
        };
        let re = |t: &str| {
            regex::Regex::new(t).map_err(|e| QueryError::Parse {
                col,
                msg: format!(
                    "invalid regex: {}",
                    e.to_string().lines().last().unwrap_or("")
                ),
            })
        };
        filters.push(match op {
            "|=" => LineFilter::Contains(text),
            "!=" => LineFilter::NotContains(text),
            "|~" => LineFilter::Matches(re(&text)?),
            _ => LineFilter::NotMatches(re(&text)?),
        });
    }
    Ok(LogQuery { matchers, filters })
}

/// A Prometheus duration (`15d`, `720h`, `1h30m`, `2y`) in seconds.
pub fn parse_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            0.001
        } else {
            match c {
                's' => 1.0,
                'm' => 60.0,
                'h' => 3600.0,
                'd' => 86_400.0,
                'w' => 604_800.0,
                'y' => 31_536_000.0,
                _ => return None,
            }
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
        any = true;
    }
    if !num.is_empty() {
        // A bare number is seconds (as Prometheus's API accepts for `step`).
        total += num.parse::<f64>().ok()?;
        any = true;
    }
    any.then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Series> {
        parse_exposition(
            "# HELP up x\n# TYPE up gauge\nup{job=\"a\",instance=\"1\"} 1\nup{job=\"a\",instance=\"2\"} 0\nup{job=\"b\",instance=\"3\"} 1\nceph_health_status 0.0\nweird{l=\"a\\\"b\\\\c\"} +Inf 123\n",
        )
    }

    fn vector(q: &str) -> Vec<Series> {
        match parse(q).unwrap().eval(&samples()) {
            Value::Vector(v) => v,
            Value::Scalar(_) => panic!("scalar"),
        }
    }

    #[test]
    fn exposition() {
        let s = samples();
        assert_eq!(s.len(), 5);
        assert_eq!(s[4].labels["l"], "a\"b\\c");
        assert_eq!(s[4].value, f64::INFINITY);
        assert_eq!(s[3].labels["__name__"], "ceph_health_status");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }

    #[test]
    fn selectors_aggregations_comparisons() {
        assert_eq!(vector("up").len(), 3);
        assert_eq!(vector("up{job=\"a\"}").len(), 2);
        assert_eq!(vector("up{job!=\"a\"}").len(), 1);
        assert_eq!(vector("up{job=~\"a|b\"}").len(), 3);
        assert_eq!(vector("up{job=~\"a.\"}").len(), 0, "regexes are anchored");
        assert_eq!(vector("{__name__=~\"ceph_.*\"}").len(), 1);
        let s = vector("sum(up)");
        assert_eq!((s.len(), s[0].value), (1, 2.0));
        assert!(s[0].labels.is_empty());
        let by = vector("sum by (job) (up)");
        assert_eq!(by.len(), 2);
        assert_eq!(by[0].labels["job"], "a");
        assert_eq!(by[0].value, 1.0);
        assert_eq!(vector("count(up) by (job)")[0].value, 2.0);
        assert_eq!(vector("max(up)")[0].value, 1.0);
        assert_eq!(vector("min(up)")[0].value, 0.0);
        assert!((vector("avg(up)")[0].value - 2.0 / 3.0).abs() < 1e-9);
        let without = vector("sum without (instance) (up)");
        assert_eq!(without.len(), 2);
        assert!(!without[0].labels.contains_key("__name__"));
        let down = vector("up == 0");
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].labels["__name__"], "up");
        assert_eq!(vector("count(up == 0)")[0].value, 1.0);
        assert_eq!(vector("sum(up) < 3").len(), 1);
        assert!(vector("count(up{job=\"zzz\"})").is_empty());
        assert_eq!(parse("42").unwrap().eval(&[]), Value::Scalar(42.0));
    }

    #[test]
    fn errors() {
        let unsupported = |q: &str| matches!(parse(q), Err(QueryError::Unsupported(_)));
        assert!(unsupported("rate(up[5m])"));
        assert!(unsupported("up[5m]"));
        assert!(unsupported("up + 1"));
        assert!(unsupported("topk(3, up)"));
        assert!(unsupported("up offset 5m"));
        assert!(unsupported("up and up"));
        assert_eq!(
            parse("up{").unwrap_err().to_string(),
            "1:4: parse error: unexpected end of input inside braces"
        );
        assert!(parse("foo(up)")
            .unwrap_err()
            .to_string()
            .contains("unknown function with name \"foo\""));
        assert!(parse("{job=~\".*\"}")
            .unwrap_err()
            .to_string()
            .contains("at least one non-empty matcher"));
        assert!(parse("up )")
            .unwrap_err()
            .to_string()
            .contains("parse error: unexpected"));
        assert!(parse("")
            .unwrap_err()
            .to_string()
            .contains("no expression found"));
        assert!(parse("up{job=~\"(\"}")
            .unwrap_err()
            .to_string()
            .contains("parse error"));
    }

    #[test]
    fn log_queries() {
        let q = parse_log_query(
            "{namespace=\"openalex\", pod=~\"fastapi-.*\"} |= \"GET\" != \"health\"",
        )
        .unwrap();
        let l: Labels = [
            ("namespace".to_string(), "openalex".to_string()),
            ("pod".to_string(), "fastapi-abc".to_string()),
        ]
        .into();
        assert!(q.selects(&l));
        assert!(q.keeps("GET /works"));
        assert!(!q.keeps("GET /health"));
        assert!(matches!(
            parse_log_query("count_over_time({a=\"b\"}[5m])"),
            Err(QueryError::Unsupported(_))
        ));
        assert!(matches!(
            parse_log_query("{a=\"b\"} | json"),
            Err(QueryError::Unsupported(_))
        ));
        assert!(matches!(
            parse_log_query("{a=~\".*\"}"),
            Err(QueryError::Invalid(_))
        ));
        assert!(matches!(
            parse_log_query("a"),
            Err(QueryError::Parse { .. })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15d"), Some(15.0 * 86_400.0));
        assert_eq!(parse_duration("720h"), Some(720.0 * 3600.0));
        assert_eq!(parse_duration("1h30m"), Some(5400.0));
        assert_eq!(parse_duration("500ms"), Some(0.5));
        assert_eq!(parse_duration("x"), None);
    }
}
