//! The `psql` client: its command line, how it feeds a session (`-c` strings as
//! single queries, scripts on stdin split at semicolons), and its output formats
//! (aligned, unaligned, tuples only, CSV) and error reports, byte for byte as psql
//! 16 prints them.

use std::collections::BTreeMap;

use super::engine::{Outcome, PgError, Session, Ty, Value};
use crate::sim::ExecOutput;

/// What psql does after parsing its options.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// `-c` strings and `-f` files, in order.
    pub actions: Vec<Action>,
    pub user: Option<String>,
    pub db: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub password: Option<String>,
    pub tuples_only: bool,
    pub unaligned: bool,
    pub csv: bool,
    pub field_sep: Option<String>,
    pub record_sep: Option<String>,
    pub quiet: bool,
    pub footer: bool,
    pub null_display: String,
    /// `-v NAME=VALUE` (ON_ERROR_STOP and what `:name` interpolates in scripts).
    pub vars: BTreeMap<String, String>,
    /// Warnings psql prints before running (extra arguments).
    pub warnings: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Command(String),
    File(String),
}

/// Parsed command line: run a session, or just print (`--version`, `--help`).
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Options>),
    Print(ExecOutput),
}

/// Backslash commands psql has that the twin does not simulate.
const UNSIMULATED_META: &[&str] = &[
    "\\d*",
    "\\l*",
    "\\c",
    "\\connect",
    "\\conninfo",
    "\\x",
    "\\timing",
    "\\i",
    "\\ir",
    "\\copy",
    "\\o",
    "\\pset",
    "\\g*",
    "\\watch",
    "\\s",
    "\\e*",
    "\\h",
    "\\?",
];

/// Options psql has that the twin does not simulate.
const UNSIMULATED: &str = "xHleabnsSE1oLT";

fn invalid(msg: &str) -> ExecOutput {
    ExecOutput::fail(
        1,
        format!("psql: {msg}\npsql: hint: Try \"psql --help\" for more information.\n"),
    )
}

fn unsimulated(opt: &str) -> ExecOutput {
    ExecOutput::fail(
        1,
        format!("psql (stormdrill twin): option {opt} is not simulated\n"),
    )
}

/// psql's boolean variable values (`on`, `off`, `true`, `1`, unique prefixes...).
pub fn parse_bool(v: &str) -> Option<bool> {
    let l = v.trim().to_ascii_lowercase();
    if l.is_empty() {
        return None;
    }
    if "true".starts_with(&l) || "yes".starts_with(&l) || l == "on" || l == "1" {
        Some(true)
    } else if "false".starts_with(&l) || "no".starts_with(&l) || l == "off" || l == "0" {
        Some(false)
    } else {
        None
    }
}

impl Options {
    pub fn on_error_stop(&self) -> bool {
        self.vars
            .get("ON_ERROR_STOP")
            .and_then(|v| parse_bool(v))
            .unwrap_or(false)
    }

    /// Reads a `-d` conninfo string (`dbname=x user=y`) or URI
    /// (`postgresql://user:pw@host:port/db`); a plain name is the database.
    fn set_dbname(&mut self, v: &str) {
        if let Some(rest) = v
            .strip_prefix("postgresql://")
            .or_else(|| v.strip_prefix("postgres://"))
        {
            let rest = rest.split('?').next().unwrap_or(rest);
            let (auth_host, db) = rest.split_once('/').unwrap_or((rest, ""));
            let (auth, hostport) = match auth_host.rsplit_once('@') {
                Some((a, h)) => (Some(a), h),
                None => (None, auth_host),
            };
            if let Some(a) = auth {
                let (u, p) = a.split_once(':').map_or((a, None), |(u, p)| (u, Some(p)));
                if !u.is_empty() {
                    self.user = Some(u.to_string());
                }
                if let Some(p) = p {
                    self.password = Some(p.to_string());
                }
            }
            if !hostport.is_empty() {
                let (h, p) = hostport
                    .rsplit_once(':')
                    .map_or((hostport, None), |(h, p)| (h, Some(p)));
                if !h.is_empty() {
                    self.host = Some(h.to_string());
                }
                if let Some(p) = p {
                    self.port = Some(p.to_string());
                }
            }
            if !db.is_empty() {
                self.db = Some(db.to_string());
            }
            return;
        }
        if v.contains('=') {
            for kv in v.split_whitespace() {
                let Some((k, val)) = kv.split_once('=') else {
                    continue;
                };
                let val = val.trim_matches('\'').to_string();
                match k {
                    "dbname" => self.db = Some(val),
                    "user" => self.user = Some(val),
                    "host" => self.host = Some(val),
                    "port" => self.port = Some(val),
                    "password" => self.password = Some(val),
                    _ => {}
                }
            }
            return;
        }
        self.db = Some(v.to_string());
    }

    fn pset(&mut self, v: &str) -> Result<(), ExecOutput> {
        let (k, val) = v.split_once('=').map_or((v, ""), |(k, val)| (k, val));
        match k {
            "pager" => {}
            "footer" => self.footer = parse_bool(val).unwrap_or(!self.footer),
            "tuples_only" => self.tuples_only = parse_bool(val).unwrap_or(!self.tuples_only),
            "null" => self.null_display = val.to_string(),
            "fieldsep" => self.field_sep = Some(val.to_string()),
            "recordsep" => self.record_sep = Some(val.to_string()),
            "format" => match val {
                "aligned" => self.unaligned = false,
                "unaligned" => self.unaligned = true,
                "csv" => self.csv = true,
                _ => return Err(unsimulated(&format!("-P format={val}"))),
            },
            _ => return Err(unsimulated(&format!("-P {k}"))),
        }
        Ok(())
    }
}

/// Parses psql's command line (argv without `psql`) with the container's environment
/// for PGUSER, PGDATABASE, PGHOST, PGPORT and PGPASSWORD.
pub fn parse_args(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    version: &str,
) -> Result<Parsed, ExecOutput> {
    let mut o = Options {
        footer: true,
        ..Default::default()
    };
    let mut positional = Vec::new();
    let mut i = 0;
    let with_value = "cdfFhpUvRPoLT";
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            if long.is_empty() {
                positional.extend(args[i..].iter().cloned());
                break;
            }
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let takes = matches!(
                name,
                "command"
                    | "dbname"
                    | "file"
                    | "field-separator"
                    | "host"
                    | "port"
                    | "username"
                    | "set"
                    | "variable"
                    | "record-separator"
                    | "pset"
                    | "output"
                    | "log-file"
            );
            let value = if takes {
                match inline {
                    Some(v) => Some(v),
                    None if i < args.len() => {
                        i += 1;
                        Some(args[i - 1].clone())
                    }
                    None => {
                        return Err(invalid(&format!("option '--{name}' requires an argument")))
                    }
                }
            } else {
                None
            };
            let v = value.unwrap_or_default();
            match name {
                "command" => o.actions.push(Action::Command(v)),
                "file" => o.actions.push(Action::File(v)),
                "dbname" => o.set_dbname(&v),
                "host" => o.host = Some(v),
                "port" => o.port = Some(v),
                "username" => o.user = Some(v),
                "field-separator" => o.field_sep = Some(v),
                "record-separator" => o.record_sep = Some(v),
                "set" | "variable" => set_var(&mut o, &v),
                "pset" => o.pset(&v)?,
                "tuples-only" => o.tuples_only = true,
                "no-align" => o.unaligned = true,
                "csv" => o.csv = true,
                "quiet" => o.quiet = true,
                "no-psqlrc" | "no-password" | "password" | "no-readline" => {}
                "version" => {
                    return Ok(Parsed::Print(ExecOutput::ok(format!(
                        "psql (PostgreSQL) {version}\n"
                    ))))
                }
                "help" => return Ok(Parsed::Print(ExecOutput::ok(HELP))),
                "expanded" | "html" | "list" | "echo-all" | "echo-errors" | "echo-queries"
                | "echo-hidden" | "single-step" | "single-line" | "single-transaction"
                | "output" | "log-file" => return Err(unsimulated(&format!("--{name}"))),
                _ => return Err(invalid(&format!("unrecognized option '--{name}'"))),
            }
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                if with_value.contains(c) {
                    let v = if j < chars.len() {
                        let v: String = chars[j..].iter().collect();
                        j = chars.len();
                        v
                    } else if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(invalid(&format!("option requires an argument -- '{c}'")));
                    };
                    match c {
                        'c' => o.actions.push(Action::Command(v)),
                        'f' => o.actions.push(Action::File(v)),
                        'd' => o.set_dbname(&v),
                        'h' => o.host = Some(v),
                        'p' => o.port = Some(v),
                        'U' => o.user = Some(v),
                        'F' => o.field_sep = Some(v),
                        'R' => o.record_sep = Some(v),
                        'v' => set_var(&mut o, &v),
                        'P' => o.pset(&v)?,
                        _ => return Err(unsimulated(&format!("-{c}"))),
                    }
                    continue;
                }
                match c {
                    't' => o.tuples_only = true,
                    'A' => o.unaligned = true,
                    'q' => o.quiet = true,
                    'X' | 'w' | 'W' => {}
                    'V' => {
                        return Ok(Parsed::Print(ExecOutput::ok(format!(
                            "psql (PostgreSQL) {version}\n"
                        ))))
                    }
                    '?' => return Ok(Parsed::Print(ExecOutput::ok(HELP))),
                    c if UNSIMULATED.contains(c) => return Err(unsimulated(&format!("-{c}"))),
                    c => return Err(invalid(&format!("invalid option -- '{c}'"))),
                }
            }
            continue;
        }
        positional.push(a.clone());
    }
    let mut pos = positional.into_iter();
    if let Some(db) = pos.next() {
        if o.db.is_none() {
            o.set_dbname(&db);
        }
    }
    if let Some(u) = pos.next() {
        if o.user.is_none() {
            o.user = Some(u);
        }
    }
    for extra in pos {
        o.warnings.push_str(&format!(
            "psql: warning: extra command-line argument \"{extra}\" ignored\n"
        ));
    }
    o.user = o.user.or_else(|| env("PGUSER"));
    o.db = o.db.or_else(|| env("PGDATABASE"));
    o.host = o.host.or_else(|| env("PGHOST"));
    o.port = o.port.or_else(|| env("PGPORT"));
    o.password = o.password.or_else(|| env("PGPASSWORD"));
    Ok(Parsed::Run(Box::new(o)))
}

fn set_var(o: &mut Options, v: &str) {
    match v.split_once('=') {
        Some((k, val)) => o.vars.insert(k.to_string(), val.to_string()),
        None => o.vars.insert(v.to_string(), String::new()),
    };
}

const HELP: &str = "psql is the PostgreSQL interactive terminal.\n\nUsage:\n  psql [OPTION]... [DBNAME [USERNAME]]\n\nGeneral options:\n  -c, --command=COMMAND    run only single command (SQL or internal) and exit\n  -d, --dbname=DBNAME      database name to connect to\n  -f, --file=FILENAME      execute commands from file, then exit\n  -v, --set=, --variable=NAME=VALUE\n                           set psql variable NAME to VALUE\n                           (e.g., -v ON_ERROR_STOP=1)\n  -V, --version            output version information, then exit\n  -X, --no-psqlrc          do not read startup file (~/.psqlrc)\n  -?, --help[=options]     show this help, then exit\n\nOutput format options:\n  -A, --no-align           unaligned table output mode\n      --csv                CSV (Comma-Separated Values) table output mode\n  -F, --field-separator=STRING\n                           field separator for unaligned output (default: \"|\")\n  -P, --pset=VAR[=ARG]     set printing option VAR to ARG (see \\pset command)\n  -q, --quiet              run quietly (no messages, only query output)\n  -R, --record-separator=STRING\n                           record separator for unaligned output (default: newline)\n  -t, --tuples-only        print rows only\n\nConnection options:\n  -h, --host=HOSTNAME      database server host or socket directory\n  -p, --port=PORT          database server port (default: \"5432\")\n  -U, --username=USERNAME  database user name\n  -w, --no-password        never prompt for password\n  -W, --password           force password prompt (should happen automatically)\n";

// ----- output formats -----------------------------------------------------------------

fn width(s: &str) -> usize {
    s.chars().count()
}

/// A result set as psql prints it with these options.
pub fn format_rows(o: &Options, columns: &[(String, Ty)], rows: &[Vec<Value>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(columns)
                .map(|(v, (_, t))| v.text(*t).unwrap_or_else(|| o.null_display.clone()))
                .collect()
        })
        .collect();
    let footer = (o.footer && !o.tuples_only).then(|| {
        format!(
            "({} row{})",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        )
    });
    if o.csv {
        return csv(o, columns, &cells, rows);
    }
    if o.unaligned {
        return unaligned(o, columns, &cells, footer);
    }
    aligned(o, columns, &cells, footer)
}

fn aligned(
    o: &Options,
    columns: &[(String, Ty)],
    cells: &[Vec<String>],
    footer: Option<String>,
) -> String {
    let n = columns.len();
    let mut w: Vec<usize> = columns.iter().map(|(h, _)| width(h)).collect();
    for r in cells {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(width(c));
        }
    }
    let mut out = String::new();
    if !o.tuples_only {
        for (i, (h, _)) in columns.iter().enumerate() {
            let space = w[i] - width(h);
            out.push(' ');
            out.push_str(&" ".repeat(space / 2));
            out.push_str(h);
            out.push_str(&" ".repeat(space.div_ceil(2)));
            out.push(' ');
            if i + 1 < n {
                out.push('|');
            }
        }
        out.push('\n');
        let dashes: Vec<String> = w.iter().map(|&x| "-".repeat(x + 2)).collect();
        out.push_str(&dashes.join("+"));
        out.push('\n');
    }
    for r in cells {
        for (i, c) in r.iter().enumerate() {
            if i == 0 {
                out.push(' ');
            }
            let pad = w[i] - width(c);
            if columns[i].1.is_numeric() {
                out.push_str(&" ".repeat(pad));
                out.push_str(c);
            } else {
                out.push_str(c);
                if i + 1 < n {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < n {
                out.push_str(" | ");
            }
        }
        out.push('\n');
    }
    if let Some(f) = footer {
        out.push_str(&f);
        out.push('\n');
    }
    out.push('\n');
    out
}

fn unaligned(
    o: &Options,
    columns: &[(String, Ty)],
    cells: &[Vec<String>],
    footer: Option<String>,
) -> String {
    let fs = o.field_sep.as_deref().unwrap_or("|");
    let rs = o.record_sep.as_deref().unwrap_or("\n");
    let mut out = String::new();
    let mut need_rs = false;
    if !o.tuples_only {
        out.push_str(
            &columns
                .iter()
                .map(|(h, _)| h.as_str())
                .collect::<Vec<_>>()
                .join(fs),
        );
        need_rs = true;
    }
    for r in cells {
        if need_rs {
            out.push_str(rs);
        }
        out.push_str(&r.join(fs));
        need_rs = true;
    }
    if let Some(f) = footer {
        if need_rs {
            out.push_str(rs);
        }
        out.push_str(&f);
        need_rs = true;
    }
    if need_rs {
        out.push('\n');
    }
    out
}

fn csv(
    o: &Options,
    columns: &[(String, Ty)],
    cells: &[Vec<String>],
    rows: &[Vec<Value>],
) -> String {
    let sep = o
        .field_sep
        .as_deref()
        .filter(|s| s.len() == 1)
        .unwrap_or(",");
    let field = |s: &str| {
        if s.contains(sep) || s.contains(['"', '\n', '\r']) || s == "\\." {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    if !o.tuples_only {
        out.push_str(
            &columns
                .iter()
                .map(|(h, _)| field(h))
                .collect::<Vec<_>>()
                .join(sep),
        );
        out.push('\n');
    }
    for (r, vals) in cells.iter().zip(rows) {
        let line: Vec<String> = r
            .iter()
            .zip(vals)
            .map(|(c, v)| if v.is_null() { String::new() } else { field(c) })
            .collect();
        out.push_str(&line.join(sep));
        out.push('\n');
    }
    out
}

/// libpq's report of an error position: the query line (cut to about 60 columns
/// around the position) and a caret under the position.
pub fn error_position(query: &str, loc: usize) -> String {
    const DISPLAY_SIZE: usize = 60;
    const MIN_RIGHT_CUT: usize = 10;
    let chars: Vec<char> = query
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .collect();
    let cnt = chars.len();
    if loc > cnt {
        return String::new();
    }
    let (mut lineno, mut ibeg, mut iend) = (1, 0, cnt);
    for i in 0..cnt {
        let c = chars[i];
        if c == '\r' || c == '\n' {
            if i < loc {
                if c == '\r' || i == 0 || chars[i - 1] != '\r' {
                    lineno += 1;
                }
                ibeg = i + 1;
            } else {
                iend = i;
                break;
            }
        }
    }
    let (mut beg_trunc, mut end_trunc) = (false, false);
    if iend - ibeg > DISPLAY_SIZE {
        if ibeg + DISPLAY_SIZE >= loc + MIN_RIGHT_CUT {
            while iend - ibeg > DISPLAY_SIZE {
                iend -= 1;
            }
            end_trunc = true;
        } else {
            while loc + MIN_RIGHT_CUT < iend {
                iend -= 1;
                end_trunc = true;
            }
            while iend - ibeg > DISPLAY_SIZE {
                ibeg += 1;
                beg_trunc = true;
            }
        }
    }
    let mut msg = format!("LINE {lineno}: ");
    if beg_trunc {
        msg.push_str("...");
    }
    let scroffset = width(&msg) + loc - ibeg;
    msg.extend(&chars[ibeg..iend]);
    if end_trunc {
        msg.push_str("...");
    }
    msg.push('\n');
    msg.push_str(&" ".repeat(scroffset));
    msg.push_str("^\n");
    msg
}

/// An error as psql prints it (severity and message, position, DETAIL, HINT).
pub fn format_error(e: &PgError, query: &str) -> String {
    let mut s = format!("{}:  {}\n", e.severity, e.message);
    if let Some(p) = e.position {
        s.push_str(&error_position(query, p));
    }
    if let Some(d) = &e.detail {
        s.push_str(&format!("DETAIL:  {d}\n"));
    }
    if let Some(h) = &e.hint {
        s.push_str(&format!("HINT:  {h}\n"));
    }
    s
}

// ----- running ------------------------------------------------------------------------------

/// What a psql run wrote, and whether the server logged errors (for the server's log).
pub struct Run {
    pub out: ExecOutput,
    /// (error, statement) pairs, as the server logs them.
    pub errors: Vec<(PgError, String)>,
}

struct Runner<'s, 'f> {
    o: Options,
    session: &'s mut Session<'f>,
    stdout: String,
    stderr: String,
    errors: Vec<(PgError, String)>,
}

impl Runner<'_, '_> {
    /// Sends one query string; false when it failed.
    fn send(&mut self, q: &str) -> bool {
        let (results, error) = self.session.simple_query(q);
        for r in results {
            for n in &r.notices {
                self.stderr.push_str(&format!("NOTICE:  {n}\n"));
            }
            match r.outcome {
                Outcome::Rows {
                    columns,
                    rows,
                    tag,
                    returning,
                } => {
                    self.stdout.push_str(&format_rows(&self.o, &columns, &rows));
                    if returning && !self.o.quiet {
                        self.stdout.push_str(&tag);
                        self.stdout.push('\n');
                    }
                }
                Outcome::Command(tag) => {
                    if !self.o.quiet {
                        self.stdout.push_str(&tag);
                        self.stdout.push('\n');
                    }
                }
            }
        }
        match error {
            None => true,
            Some(e) => {
                self.stderr.push_str(&format_error(&e, q));
                self.errors.push((e, q.to_string()));
                false
            }
        }
    }

    /// A backslash command; false when it failed. `quit` is set by `\q`.
    fn meta(&mut self, line: &str, quit: &mut bool) -> bool {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first().copied().unwrap_or("\\") {
            "\\q" | "\\quit" => {
                *quit = true;
                true
            }
            "\\set" => {
                if let Some(k) = words.get(1) {
                    self.o.vars.insert(k.to_string(), words[2..].concat());
                }
                true
            }
            "\\unset" => {
                if let Some(k) = words.get(1) {
                    self.o.vars.remove(*k);
                }
                true
            }
            "\\echo" => {
                self.stdout.push_str(&words[1..].join(" "));
                self.stdout.push('\n');
                true
            }
            "\\t" => {
                self.o.tuples_only = words
                    .get(1)
                    .and_then(|v| parse_bool(v))
                    .unwrap_or(!self.o.tuples_only);
                true
            }
            "\\a" => {
                self.o.unaligned = !self.o.unaligned;
                true
            }
            cmd if UNSIMULATED_META.iter().any(|m| {
                cmd == *m || (m.ends_with('*') && cmd.starts_with(m.trim_end_matches('*')))
            }) =>
            {
                self.stderr
                    .push_str(&format!("psql (stormdrill twin): {cmd} is not simulated\n"));
                false
            }
            cmd => {
                self.stderr.push_str(&format!("invalid command {cmd}\n"));
                false
            }
        }
    }

    /// A script (stdin): statements split at top-level semicolons, each sent alone;
    /// `:var`, `:'var'` and `:"var"` interpolated. Returns false when it stopped on
    /// an error (ON_ERROR_STOP).
    fn script(&mut self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        let mut buf = String::new();
        let mut i = 0;
        let mut depth = 0usize;
        let mut quit = false;
        while i < chars.len() && !quit {
            let c = chars[i];
            let empty = buf.trim().is_empty();
            if empty && c.is_whitespace() {
                i += 1;
                continue;
            }
            if c == '-' && chars.get(i + 1) == Some(&'-') {
                while i < chars.len() && chars[i] != '\n' {
                    if !empty {
                        buf.push(chars[i]);
                    }
                    i += 1;
                }
                continue;
            }
            if c == '\\' {
                let start = i;
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                let line: String = chars[start..i].iter().collect();
                if !empty {
                    // `\g` and `\gset` end a statement; other commands run after it.
                    let q = std::mem::take(&mut buf);
                    let ok = self.send(&q);
                    if !ok && self.o.on_error_stop() {
                        return false;
                    }
                    if line.trim() == "\\g" || line.trim() == "\\p\\g" {
                        continue;
                    }
                }
                let ok = self.meta(&line, &mut quit);
                if !ok && self.o.on_error_stop() {
                    return false;
                }
                continue;
            }
            match c {
                '\'' | '"' => {
                    buf.push(c);
                    i += 1;
                    while i < chars.len() {
                        buf.push(chars[i]);
                        i += 1;
                        if chars[i - 1] == c {
                            if chars.get(i) == Some(&c) {
                                buf.push(c);
                                i += 1;
                                continue;
                            }
                            break;
                        }
                    }
                }
                '/' if chars.get(i + 1) == Some(&'*') => {
                    while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                        buf.push(chars[i]);
                        i += 1;
                    }
                    if i < chars.len() {
                        buf.push_str("*/");
                        i += 2;
                    }
                }
                ':' if chars.get(i + 1) == Some(&':') => {
                    buf.push_str("::");
                    i += 2;
                }
                ':' => {
                    let (quote, start) = match chars.get(i + 1) {
                        Some('\'') => (Some('\''), i + 2),
                        Some('"') => (Some('"'), i + 2),
                        _ => (None, i + 1),
                    };
                    let mut j = start;
                    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                        j += 1;
                    }
                    let name: String = chars[start..j].iter().collect();
                    let closed = quote.is_none_or(|q| chars.get(j) == Some(&q));
                    match self
                        .o
                        .vars
                        .get(&name)
                        .filter(|_| !name.is_empty() && closed)
                    {
                        Some(v) => {
                            match quote {
                                Some('\'') => buf.push_str(&format!("'{}'", v.replace('\'', "''"))),
                                Some(_) => buf.push_str(&format!("\"{}\"", v.replace('"', "\"\""))),
                                None => buf.push_str(v),
                            }
                            i = if quote.is_some() { j + 1 } else { j };
                        }
                        None => {
                            buf.push(':');
                            i += 1;
                        }
                    }
                }
                '(' => {
                    depth += 1;
                    buf.push(c);
                    i += 1;
                }
                ')' => {
                    depth = depth.saturating_sub(1);
                    buf.push(c);
                    i += 1;
                }
                ';' if depth == 0 => {
                    buf.push(';');
                    i += 1;
                    let q = std::mem::take(&mut buf);
                    let ok = self.send(&q);
                    if !ok && self.o.on_error_stop() {
                        return false;
                    }
                }
                _ => {
                    buf.push(c);
                    i += 1;
                }
            }
        }
        if !quit && !buf.trim().is_empty() {
            let q = std::mem::take(&mut buf);
            let ok = self.send(q.trim_end());
            if !ok && self.o.on_error_stop() {
                return false;
            }
        }
        true
    }
}

/// Runs psql's actions (or the script on stdin) over an established session.
pub fn run(o: &Options, session: &mut Session<'_>, stdin: Option<&[u8]>) -> Run {
    let mut r = Runner {
        o: o.clone(),
        session,
        stdout: String::new(),
        stderr: o.warnings.clone(),
        errors: Vec::new(),
    };
    let mut exit_code = 0;
    if o.actions.is_empty() {
        let text = String::from_utf8_lossy(stdin.unwrap_or_default()).into_owned();
        if !r.script(&text) {
            exit_code = 3;
        }
    } else {
        for a in &o.actions {
            let ok = match a {
                Action::Command(q) if q.trim_start().starts_with('\\') => {
                    r.meta(q.trim(), &mut false)
                }
                Action::Command(q) => {
                    if q.trim().is_empty() {
                        true
                    } else {
                        r.send(q)
                    }
                }
                Action::File(f) if f == "-" => {
                    let text = String::from_utf8_lossy(stdin.unwrap_or_default()).into_owned();
                    if r.script(&text) {
                        true
                    } else {
                        exit_code = 3;
                        break;
                    }
                }
                Action::File(f) => {
                    r.stderr
                        .push_str(&format!("psql: error: {f}: No such file or directory\n"));
                    false
                }
            };
            exit_code = if ok { 0 } else { 1 };
            if !ok && r.o.on_error_stop() {
                break;
            }
        }
    }
    r.session.close();
    Run {
        out: ExecOutput {
            stdout: r.stdout.into_bytes(),
            stderr: r.stderr.into_bytes(),
            exit_code,
        },
        errors: r.errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(args: &[&str]) -> Options {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse_args(&args, &|_| None, "16.4").unwrap() {
            Parsed::Run(o) => *o,
            Parsed::Print(p) => panic!("{p:?}"),
        }
    }

    #[test]
    fn parses_the_command_line() {
        let o = opts(&[
            "-U",
            "openalex",
            "-d",
            "openalex",
            "-qAt",
            "-F,",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "select 1",
            "-X",
        ]);
        assert_eq!(o.user.as_deref(), Some("openalex"));
        assert_eq!(o.db.as_deref(), Some("openalex"));
        assert!(o.quiet && o.unaligned && o.tuples_only);
        assert_eq!(o.field_sep.as_deref(), Some(","));
        assert!(o.on_error_stop());
        assert_eq!(o.actions, vec![Action::Command("select 1".into())]);
        let o = opts(&["-tAc", "select 2", "postgresql://u:pw@db.example:5433/x"]);
        assert_eq!(o.actions, vec![Action::Command("select 2".into())]);
        assert_eq!(
            (
                o.user.as_deref(),
                o.host.as_deref(),
                o.port.as_deref(),
                o.db.as_deref()
            ),
            (Some("u"), Some("db.example"), Some("5433"), Some("x"))
        );
        assert_eq!(o.password.as_deref(), Some("pw"));
        let o = opts(&[
            "--username=a",
            "--command",
            "select 3",
            "--set=ON_ERROR_STOP=on",
            "mydb",
        ]);
        assert_eq!(
            (o.user.as_deref(), o.db.as_deref()),
            (Some("a"), Some("mydb"))
        );
        assert!(o.on_error_stop());
        let e = parse_args(&["-Z".to_string()], &|_| None, "16.4").unwrap_err();
        assert_eq!(
            String::from_utf8_lossy(&e.stderr),
            "psql: invalid option -- 'Z'\npsql: hint: Try \"psql --help\" for more information.\n"
        );
        assert!(
            matches!(parse_args(&["--version".to_string()], &|_| None, "16.4"), Ok(Parsed::Print(p)) if p.stdout == b"psql (PostgreSQL) 16.4\n")
        );
    }

    fn cols() -> Vec<(String, Ty)> {
        vec![("id".into(), Ty::Int8), ("note".into(), Ty::Text)]
    }

    #[test]
    fn aligned_output_matches_psql() {
        let o = opts(&[]);
        let rows = vec![
            vec![Value::Int(1), Value::Text("hello".into())],
            vec![Value::Int(2), Value::Null],
        ];
        assert_eq!(
            format_rows(&o, &cols(), &rows),
            " id | note  \n----+-------\n  1 | hello\n  2 | \n(2 rows)\n\n"
        );
        assert_eq!(
            format_rows(&o, &cols(), &[]),
            " id | note \n----+------\n(0 rows)\n\n"
        );
        let count = vec![("count".to_string(), Ty::Int8)];
        let one = vec![vec![Value::Int(2)]];
        assert_eq!(
            format_rows(&o, &count, &one),
            " count \n-------\n     2\n(1 row)\n\n"
        );
        let t = opts(&["-t"]);
        assert_eq!(format_rows(&t, &count, &one), "     2\n\n");
        assert_eq!(format_rows(&t, &count, &[]), "\n");
        // A right-aligned NULL in the last column still pads.
        let sums = vec![
            ("count".to_string(), Ty::Int8),
            ("sum".to_string(), Ty::Int8),
            ("sum".to_string(), Ty::Int8),
        ];
        assert_eq!(
            format_rows(&o, &sums, &[vec![Value::Int(0), Value::Null, Value::Null]]),
            " count | sum | sum \n-------+-----+-----\n     0 |     |    \n(1 row)\n\n"
        );
    }

    #[test]
    fn unaligned_and_csv_output_match_psql() {
        let rows = vec![
            vec![Value::Int(1), Value::Text("hello".into())],
            vec![Value::Int(2), Value::Null],
        ];
        assert_eq!(
            format_rows(&opts(&["-A"]), &cols(), &rows),
            "id|note\n1|hello\n2|\n(2 rows)\n"
        );
        assert_eq!(
            format_rows(&opts(&["-At"]), &cols(), &rows),
            "1|hello\n2|\n"
        );
        assert_eq!(
            format_rows(&opts(&["-At", "-F", ","]), &cols(), &rows),
            "1,hello\n2,\n"
        );
        assert_eq!(
            format_rows(&opts(&["-A"]), &cols(), &[]),
            "id|note\n(0 rows)\n"
        );
        assert_eq!(format_rows(&opts(&["-At"]), &cols(), &[]), "");
        let rows = vec![vec![Value::Int(1), Value::Text("a,\"b\"".into())]];
        assert_eq!(
            format_rows(&opts(&["--csv"]), &cols(), &rows),
            "id,note\n1,\"a,\"\"b\"\"\"\n"
        );
    }

    #[test]
    fn error_carets_match_libpq() {
        assert_eq!(
            error_position("select * from nope", 14),
            "LINE 1: select * from nope\n                      ^\n"
        );
        assert_eq!(
            error_position("select 1 from", 13),
            "LINE 1: select 1 from\n                     ^\n"
        );
        let q = "select * from markers where note = 'a' and n = 1 and v = 0.5 and ts > '2020-01-01' and id = 'thisisnotanumber' order by id";
        let loc = q.find("'thisisnot").unwrap();
        assert_eq!(
            error_position(q, loc),
            "LINE 1: ... n = 1 and v = 0.5 and ts > '2020-01-01' and id = 'thisisnot...\n                                                             ^\n"
        );
        let q = "select this_is_a_very_long_column_name_that_does_not_exist, another_long_identifier_here, third_one from markers where x = 1";
        assert_eq!(error_position(q, 7), "LINE 1: select this_is_a_very_long_column_name_that_does_not_exist, ...\n               ^\n");
        assert_eq!(
            error_position("select 1;\nselect *\nfrom nope;", 24),
            "LINE 3: from nope;\n             ^\n"
        );
    }
}
