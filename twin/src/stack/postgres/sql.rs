//! SQL text -> statements: a lexer that keeps every token's position (for the
//! server's `LINE n:` caret) and a recursive-descent parser for the subset the
//! module documents.

use super::engine::{PgError, Ty};

/// A token; `pos` is its 0-based character offset in the query string.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    pub kind: Kind,
    pub pos: usize,
    /// The token as written (for `syntax error at or near "..."`).
    pub text: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// An unquoted identifier or keyword, lower-cased.
    Word(String),
    /// A double-quoted identifier (case kept).
    Quoted(String),
    Str(String),
    Num(String),
    /// `=`, `<>`, `!=`, `<`, `>`, `<=`, `>=`, `+`, `-`, `/`, `||`, `%`.
    Op(String),
    LParen,
    RParen,
    Comma,
    Semi,
    Star,
    Dot,
    /// `::`
    Cast,
}

/// Splits a query string into tokens (comments and whitespace dropped).
pub fn lex(q: &str) -> Result<Vec<Token>, PgError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let text = |a: usize, b: usize| chars[a..b].iter().collect::<String>();
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            if depth > 0 {
                return Err(PgError::syntax_msg("unterminated /* comment", start));
            }
            continue;
        }
        let kind = if c.is_alphabetic() || c == '_' {
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            // E'...' escape strings: treated as plain strings.
            if (c == 'e' || c == 'E') && i == start + 1 && chars.get(i) == Some(&'\'') {
                let (s, next) = string_at(&chars, i)?;
                i = next;
                Kind::Str(s)
            } else {
                Kind::Word(text(start, i).to_lowercase())
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            if i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '_') {
                // `123abc`: PostgreSQL 16 rejects trailing junk after a number.
                let mut j = i;
                while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                return Err(PgError::syntax_msg(
                    &format!(
                        "trailing junk after numeric literal at or near \"{}\"",
                        text(start, j)
                    ),
                    start,
                ));
            }
            Kind::Num(text(start, i))
        } else if c == '\'' {
            let (s, next) = string_at(&chars, i)?;
            i = next;
            Kind::Str(s)
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(PgError::syntax_msg("unterminated quoted identifier", start))
                    }
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        s.push(c);
                        i += 1;
                    }
                }
            }
            if s.is_empty() {
                return Err(PgError::syntax_msg(
                    "zero-length delimited identifier at or near \"\"\"\"",
                    start,
                ));
            }
            Kind::Quoted(s)
        } else {
            i += 1;
            match c {
                '(' => Kind::LParen,
                ')' => Kind::RParen,
                ',' => Kind::Comma,
                ';' => Kind::Semi,
                '*' => Kind::Star,
                '.' => Kind::Dot,
                ':' if chars.get(i) == Some(&':') => {
                    i += 1;
                    Kind::Cast
                }
                '<' | '>' | '!' | '=' | '|' => {
                    if let Some(&n) = chars.get(i) {
                        let two: String = [c, n].iter().collect();
                        if matches!(two.as_str(), "<>" | "<=" | ">=" | "!=" | "||") {
                            i += 1;
                        }
                    }
                    let op = text(start, i);
                    if op == "!" || op == "|" {
                        return Err(PgError::syntax_at(&op, start));
                    }
                    Kind::Op(op)
                }
                '+' | '-' | '/' | '%' => Kind::Op(c.to_string()),
                _ => return Err(PgError::syntax_at(&c.to_string(), start)),
            }
        };
        out.push(Token {
            kind,
            pos: start,
            text: text(start, i),
        });
    }
    Ok(out)
}

/// A single-quoted string starting at `chars[i] == '\''`; returns it and the next index.
fn string_at(chars: &[char], mut i: usize) -> Result<(String, usize), PgError> {
    let start = i;
    let mut s = String::new();
    i += 1;
    loop {
        match chars.get(i) {
            None => {
                let rest: String = chars[start..].iter().collect();
                return Err(PgError::syntax_msg(
                    &format!("unterminated quoted string at or near \"{rest}\""),
                    start,
                ));
            }
            Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                s.push('\'');
                i += 2;
            }
            Some('\'') => return Ok((s, i + 1)),
            Some(&c) => {
                s.push(c);
                i += 1;
            }
        }
    }
}

// ----- statements -----------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Null(usize),
    Bool(bool, usize),
    /// A number as written.
    Num(String, usize),
    /// A string literal (type unknown until context decides).
    Str(String, usize),
    /// A column, optionally qualified by a table name.
    Column {
        table: Option<String>,
        name: String,
        pos: usize,
    },
    /// `*` (only as `count(*)`'s argument or in a select list).
    Star,
    Func {
        name: String,
        args: Vec<Expr>,
        star: bool,
        pos: usize,
    },
    /// `extract(field FROM expr)`
    Extract {
        field: String,
        arg: Box<Expr>,
        pos: usize,
    },
    Cast {
        expr: Box<Expr>,
        ty: Ty,
        pos: usize,
    },
    Binary {
        op: String,
        left: Box<Expr>,
        right: Box<Expr>,
        pos: usize,
    },
    Neg(Box<Expr>, usize),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
        pos: usize,
    },
    /// `DEFAULT` in an INSERT's VALUES.
    Default,
}

impl Expr {
    /// Where the expression starts (for error carets).
    pub fn pos(&self) -> Option<usize> {
        match self {
            Expr::Null(pos) | Expr::Bool(_, pos) | Expr::Num(_, pos) | Expr::Str(_, pos) => {
                Some(*pos)
            }
            Expr::Column { pos, .. }
            | Expr::Func { pos, .. }
            | Expr::Extract { pos, .. }
            | Expr::Neg(_, pos) => Some(*pos),
            Expr::Cast { expr, .. } | Expr::IsNull { expr, .. } | Expr::Not(expr) => expr.pos(),
            Expr::Binary { left, .. } | Expr::And(left, _) | Expr::Or(left, _) => left.pos(),
            Expr::InList { expr, .. } => expr.pos(),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SelectItem {
    pub expr: Expr,
    pub alias: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OrderKey {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: Option<bool>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: Ty,
    pub serial: bool,
    pub not_null: bool,
    pub primary_key: bool,
    pub unique: bool,
    /// The DEFAULT expression's source text.
    pub default: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    CreateTable {
        name: String,
        if_not_exists: bool,
        columns: Vec<ColumnSpec>,
        primary_key: Option<Vec<String>>,
        uniques: Vec<Vec<String>>,
    },
    Insert {
        table: String,
        table_pos: usize,
        /// (name, position) of each named column; None: every column in order.
        columns: Option<Vec<(String, usize)>>,
        /// Each row's values with their positions, and the row's position.
        rows: Vec<(Vec<(Expr, usize)>, usize)>,
        on_conflict_nothing: bool,
        returning: Vec<SelectItem>,
    },
    Select {
        items: Vec<SelectItem>,
        from: Option<(String, usize)>,
        filter: Option<Expr>,
        order: Vec<OrderKey>,
        limit: Option<Expr>,
        offset: Option<Expr>,
    },
    Update {
        table: String,
        table_pos: usize,
        sets: Vec<(String, usize, Expr)>,
        filter: Option<Expr>,
        returning: Vec<SelectItem>,
    },
    Delete {
        table: String,
        table_pos: usize,
        filter: Option<Expr>,
        returning: Vec<SelectItem>,
    },
    DropTable {
        names: Vec<(String, usize)>,
        if_exists: bool,
    },
    Truncate {
        names: Vec<(String, usize)>,
    },
    Begin,
    Commit,
    Rollback,
}

/// The statements of a query string (empty statements dropped), each with the
/// position where it starts.
pub fn parse(q: &str) -> Result<Vec<(Stmt, usize)>, PgError> {
    let tokens = lex(q)?;
    let end = q.chars().count();
    let mut p = Parser {
        t: &tokens,
        i: 0,
        end,
        src: q,
    };
    let mut out = Vec::new();
    loop {
        while p.eat(&Kind::Semi) {}
        if p.peek().is_none() {
            break;
        }
        let start = p.peek().map_or(end, |t| t.pos);
        let stmt = p.statement()?;
        match p.peek() {
            None => {}
            Some(t) if t.kind == Kind::Semi => {}
            Some(t) => return Err(PgError::syntax_at(&t.text, t.pos)),
        }
        out.push((stmt, start));
    }
    Ok(out)
}

/// Parses one expression (a column DEFAULT stored as text).
pub fn parse_expr(q: &str) -> Result<Expr, PgError> {
    let tokens = lex(q)?;
    let mut p = Parser {
        t: &tokens,
        i: 0,
        end: q.chars().count(),
        src: q,
    };
    let e = p.expr()?;
    if let Some(t) = p.peek() {
        return Err(PgError::syntax_at(&t.text, t.pos));
    }
    Ok(e)
}

/// Reserved words that cannot name a column without quotes (the subset that matters).
const RESERVED: &[&str] = &[
    "all",
    "and",
    "as",
    "asc",
    "begin",
    "by",
    "create",
    "default",
    "delete",
    "desc",
    "distinct",
    "drop",
    "false",
    "from",
    "in",
    "insert",
    "into",
    "is",
    "limit",
    "not",
    "null",
    "offset",
    "on",
    "or",
    "order",
    "primary",
    "returning",
    "select",
    "set",
    "table",
    "true",
    "unique",
    "update",
    "values",
    "where",
    "with",
    "group",
    "having",
    "union",
    "references",
    "check",
    "interval",
];

struct Parser<'a> {
    t: &'a [Token],
    i: usize,
    end: usize,
    src: &'a str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.t.get(self.i)
    }

    fn peek_word(&self) -> Option<&str> {
        match self.peek() {
            Some(Token {
                kind: Kind::Word(w),
                ..
            }) => Some(w),
            _ => None,
        }
    }

    fn peek_word_at(&self, k: usize) -> Option<&str> {
        match self.t.get(self.i + k) {
            Some(Token {
                kind: Kind::Word(w),
                ..
            }) => Some(w),
            _ => None,
        }
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.t.get(self.i).cloned();
        if t.is_some() {
            self.i += 1;
        }
        t
    }

    /// The error for an unexpected token here (or the end of the statement).
    fn unexpected(&self) -> PgError {
        match self.peek() {
            Some(t) if t.kind == Kind::Semi => PgError::syntax_at(";", t.pos),
            Some(t) => PgError::syntax_at(&t.text, t.pos),
            None => PgError::syntax_end(self.end),
        }
    }

    fn eat(&mut self, k: &Kind) -> bool {
        if self.peek().is_some_and(|t| &t.kind == k) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, k: &Kind) -> Result<(), PgError> {
        if self.eat(k) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word() == Some(w) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, w: &str) -> Result<(), PgError> {
        if self.eat_word(w) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    /// An identifier (unreserved word or quoted), with its position.
    fn ident(&mut self) -> Result<(String, usize), PgError> {
        match self.peek() {
            Some(Token {
                kind: Kind::Word(w),
                pos,
                ..
            }) if !RESERVED.contains(&w.as_str()) => {
                let r = (w.clone(), *pos);
                self.i += 1;
                Ok(r)
            }
            Some(Token {
                kind: Kind::Quoted(w),
                pos,
                ..
            }) => {
                let r = (w.clone(), *pos);
                self.i += 1;
                Ok(r)
            }
            _ => Err(self.unexpected()),
        }
    }

    /// A table name, optionally schema-qualified (`public.t`: the schema is dropped).
    fn table_name(&mut self) -> Result<(String, usize), PgError> {
        let (mut name, pos) = self.ident()?;
        if self.eat(&Kind::Dot) {
            let schema = name;
            name = self.ident()?.0;
            if schema != "public" {
                return Err(
                    PgError::new("3F000", &format!("schema \"{schema}\" does not exist")).at(pos),
                );
            }
        }
        Ok((name, pos))
    }

    fn statement(&mut self) -> Result<Stmt, PgError> {
        let Some(w) = self.peek_word().map(String::from) else {
            return Err(self.unexpected());
        };
        match w.as_str() {
            "select" => self.select(),
            "insert" => self.insert(),
            "update" => self.update(),
            "delete" => self.delete(),
            "create" => self.create(),
            "drop" => {
                self.i += 1;
                self.expect_word("table")?;
                let if_exists = if self.eat_word("if") {
                    self.expect_word("exists")?;
                    true
                } else {
                    false
                };
                let mut names = vec![self.table_name()?];
                while self.eat(&Kind::Comma) {
                    names.push(self.table_name()?);
                }
                let _ = self.eat_word("cascade") || self.eat_word("restrict");
                Ok(Stmt::DropTable { names, if_exists })
            }
            "truncate" => {
                self.i += 1;
                self.eat_word("table");
                let mut names = vec![self.table_name()?];
                while self.eat(&Kind::Comma) {
                    names.push(self.table_name()?);
                }
                if self.eat_word("restart") || self.eat_word("continue") {
                    self.expect_word("identity")?;
                }
                Ok(Stmt::Truncate { names })
            }
            "begin" | "start" => {
                self.i += 1;
                if w == "start" {
                    self.expect_word("transaction")?;
                } else if !self.eat_word("transaction") {
                    self.eat_word("work");
                }
                Ok(Stmt::Begin)
            }
            "commit" | "end" => {
                self.i += 1;
                if !self.eat_word("transaction") {
                    self.eat_word("work");
                }
                Ok(Stmt::Commit)
            }
            "rollback" | "abort" => {
                self.i += 1;
                if !self.eat_word("transaction") {
                    self.eat_word("work");
                }
                Ok(Stmt::Rollback)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn select(&mut self) -> Result<Stmt, PgError> {
        self.expect_word("select")?;
        let items = self.select_list()?;
        let from = if self.eat_word("from") {
            Some(self.table_name()?)
        } else {
            None
        };
        if from.is_some() {
            // An optional alias: `FROM t AS x` / `FROM t x` (the alias is accepted, not used).
            if self.eat_word("as") || matches!(self.peek_word(), Some(w) if !RESERVED.contains(&w))
            {
                self.ident()?;
            }
        }
        let filter = if self.eat_word("where") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut order = Vec::new();
        if self.eat_word("order") {
            self.expect_word("by")?;
            loop {
                let expr = self.expr()?;
                let desc = if self.eat_word("desc") {
                    true
                } else {
                    self.eat_word("asc");
                    false
                };
                let nulls_first = if self.eat_word("nulls") {
                    if self.eat_word("first") {
                        Some(true)
                    } else {
                        self.expect_word("last")?;
                        Some(false)
                    }
                } else {
                    None
                };
                order.push(OrderKey {
                    expr,
                    desc,
                    nulls_first,
                });
                if !self.eat(&Kind::Comma) {
                    break;
                }
            }
        }
        let mut limit = None;
        let mut offset = None;
        loop {
            if self.eat_word("limit") {
                limit = if self.eat_word("all") {
                    None
                } else {
                    Some(self.expr()?)
                };
            } else if self.eat_word("offset") {
                offset = Some(self.expr()?);
                let _ = self.eat_word("rows") || self.eat_word("row");
            } else {
                break;
            }
        }
        Ok(Stmt::Select {
            items,
            from,
            filter,
            order,
            limit,
            offset,
        })
    }

    fn select_list(&mut self) -> Result<Vec<SelectItem>, PgError> {
        let mut items = Vec::new();
        loop {
            let expr = if self.eat(&Kind::Star) {
                Expr::Star
            } else {
                self.expr()?
            };
            let alias = if self.eat_word("as") {
                Some(self.ident_or_keyword()?)
            } else if matches!(self.peek_word(), Some(w) if !RESERVED.contains(&w))
                || matches!(
                    self.peek(),
                    Some(Token {
                        kind: Kind::Quoted(_),
                        ..
                    })
                )
            {
                Some(self.ident()?.0)
            } else {
                None
            };
            items.push(SelectItem { expr, alias });
            if !self.eat(&Kind::Comma) {
                break;
            }
        }
        Ok(items)
    }

    /// After AS any word may be a column label.
    fn ident_or_keyword(&mut self) -> Result<String, PgError> {
        match self.next() {
            Some(Token {
                kind: Kind::Word(w) | Kind::Quoted(w),
                ..
            }) => Ok(w),
            _ => {
                self.i = self.i.saturating_sub(1);
                Err(self.unexpected())
            }
        }
    }

    fn returning(&mut self) -> Result<Vec<SelectItem>, PgError> {
        if self.eat_word("returning") {
            self.select_list()
        } else {
            Ok(Vec::new())
        }
    }

    fn insert(&mut self) -> Result<Stmt, PgError> {
        self.expect_word("insert")?;
        self.expect_word("into")?;
        let (table, table_pos) = self.table_name()?;
        let columns = if self.eat(&Kind::LParen) {
            let mut cols = vec![self.ident()?];
            while self.eat(&Kind::Comma) {
                cols.push(self.ident()?);
            }
            self.expect(&Kind::RParen)?;
            Some(cols)
        } else {
            None
        };
        let mut rows = Vec::new();
        if self.eat_word("default") {
            self.expect_word("values")?;
            rows.push((Vec::new(), 0));
        } else {
            self.expect_word("values")?;
            loop {
                let pos = self.peek().map_or(self.end, |t| t.pos);
                self.expect(&Kind::LParen)?;
                let mut vals = Vec::new();
                loop {
                    let vpos = self.peek().map_or(self.end, |t| t.pos);
                    if self.eat_word("default") {
                        vals.push((Expr::Default, vpos));
                    } else {
                        vals.push((self.expr()?, vpos));
                    }
                    if !self.eat(&Kind::Comma) {
                        break;
                    }
                }
                self.expect(&Kind::RParen)?;
                rows.push((vals, pos));
                if !self.eat(&Kind::Comma) {
                    break;
                }
            }
        }
        let mut on_conflict_nothing = false;
        if self.eat_word("on") {
            self.expect_word("conflict")?;
            if self.eat(&Kind::LParen) {
                self.ident()?;
                while self.eat(&Kind::Comma) {
                    self.ident()?;
                }
                self.expect(&Kind::RParen)?;
            }
            self.expect_word("do")?;
            self.expect_word("nothing")?;
            on_conflict_nothing = true;
        }
        let returning = self.returning()?;
        Ok(Stmt::Insert {
            table,
            table_pos,
            columns,
            rows,
            on_conflict_nothing,
            returning,
        })
    }

    fn update(&mut self) -> Result<Stmt, PgError> {
        self.expect_word("update")?;
        let (table, table_pos) = self.table_name()?;
        self.expect_word("set")?;
        let mut sets = Vec::new();
        loop {
            let (col, pos) = self.ident()?;
            match self.next() {
                Some(Token {
                    kind: Kind::Op(o), ..
                }) if o == "=" => {}
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected());
                }
            }
            let e = if self.eat_word("default") {
                Expr::Default
            } else {
                self.expr()?
            };
            sets.push((col, pos, e));
            if !self.eat(&Kind::Comma) {
                break;
            }
        }
        let filter = if self.eat_word("where") {
            Some(self.expr()?)
        } else {
            None
        };
        let returning = self.returning()?;
        Ok(Stmt::Update {
            table,
            table_pos,
            sets,
            filter,
            returning,
        })
    }

    fn delete(&mut self) -> Result<Stmt, PgError> {
        self.expect_word("delete")?;
        self.expect_word("from")?;
        let (table, table_pos) = self.table_name()?;
        let filter = if self.eat_word("where") {
            Some(self.expr()?)
        } else {
            None
        };
        let returning = self.returning()?;
        Ok(Stmt::Delete {
            table,
            table_pos,
            filter,
            returning,
        })
    }

    fn create(&mut self) -> Result<Stmt, PgError> {
        self.expect_word("create")?;
        self.expect_word("table")?;
        let if_not_exists = if self.eat_word("if") {
            self.expect_word("not")?;
            self.expect_word("exists")?;
            true
        } else {
            false
        };
        let (name, _) = self.table_name()?;
        self.expect(&Kind::LParen)?;
        let mut columns = Vec::new();
        let mut primary_key = None;
        let mut uniques = Vec::new();
        loop {
            if self.eat_word("constraint") {
                self.ident()?;
            }
            if self.peek_word() == Some("primary") {
                self.i += 1;
                self.expect_word("key")?;
                primary_key = Some(self.name_list()?);
            } else if self.peek_word() == Some("unique") {
                self.i += 1;
                uniques.push(self.name_list()?);
            } else {
                columns.push(self.column_spec()?);
            }
            if !self.eat(&Kind::Comma) {
                break;
            }
        }
        self.expect(&Kind::RParen)?;
        Ok(Stmt::CreateTable {
            name,
            if_not_exists,
            columns,
            primary_key,
            uniques,
        })
    }

    fn name_list(&mut self) -> Result<Vec<String>, PgError> {
        self.expect(&Kind::LParen)?;
        let mut names = vec![self.ident()?.0];
        while self.eat(&Kind::Comma) {
            names.push(self.ident()?.0);
        }
        self.expect(&Kind::RParen)?;
        Ok(names)
    }

    fn column_spec(&mut self) -> Result<ColumnSpec, PgError> {
        let (name, _) = self.ident()?;
        let (ty, serial) = self.type_name(true)?;
        let mut spec = ColumnSpec {
            name,
            ty,
            serial,
            not_null: false,
            primary_key: false,
            unique: false,
            default: None,
        };
        loop {
            if self.eat_word("constraint") {
                self.ident()?;
            }
            if self.eat_word("not") {
                self.expect_word("null")?;
                spec.not_null = true;
            } else if self.eat_word("null") {
            } else if self.eat_word("primary") {
                self.expect_word("key")?;
                spec.primary_key = true;
            } else if self.eat_word("unique") {
                spec.unique = true;
            } else if self.eat_word("default") {
                let from = self.i;
                self.unary()?;
                let (a, b) = (
                    self.t[from].pos,
                    self.t.get(self.i).map_or(self.end, |t| t.pos),
                );
                let text: String = self.src.chars().skip(a).take(b - a).collect();
                spec.default = Some(text.trim().to_string());
            } else {
                break;
            }
        }
        Ok(spec)
    }

    /// A type name; `allow_serial` for column definitions. Returns (type, serial).
    fn type_name(&mut self, allow_serial: bool) -> Result<(Ty, bool), PgError> {
        let (word, pos) = match self.peek() {
            Some(Token {
                kind: Kind::Word(w) | Kind::Quoted(w),
                pos,
                ..
            }) => (w.clone(), *pos),
            _ => return Err(self.unexpected()),
        };
        self.i += 1;
        let mut serial = false;
        let ty = match word.as_str() {
            "text" | "varchar" | "uuid" | "name" | "citext" => Ty::Text,
            "character" | "char" => {
                self.eat_word("varying");
                Ty::Text
            }
            "integer" | "int" | "int4" | "smallint" | "int2" => Ty::Int4,
            "bigint" | "int8" => Ty::Int8,
            "serial" | "serial4" | "smallserial" | "serial2" if allow_serial => {
                serial = true;
                Ty::Int4
            }
            "bigserial" | "serial8" if allow_serial => {
                serial = true;
                Ty::Int8
            }
            "double" => {
                self.expect_word("precision")?;
                Ty::Float8
            }
            "float8" | "float" | "real" | "float4" => Ty::Float8,
            "numeric" | "decimal" => Ty::Numeric,
            "boolean" | "bool" => Ty::Bool,
            "jsonb" | "json" => Ty::Json,
            "interval" => Ty::Interval,
            "timestamptz" => Ty::Timestamptz,
            "timestamp" => {
                if self.eat(&Kind::LParen) {
                    self.next();
                    self.expect(&Kind::RParen)?;
                }
                if self.eat_word("with") {
                    self.expect_word("time")?;
                    self.expect_word("zone")?;
                    Ty::Timestamptz
                } else {
                    if self.eat_word("without") {
                        self.expect_word("time")?;
                        self.expect_word("zone")?;
                    }
                    Ty::Timestamp
                }
            }
            other => {
                return Err(
                    PgError::new("42704", &format!("type \"{other}\" does not exist")).at(pos),
                );
            }
        };
        // Type modifiers: varchar(64), numeric(10,2).
        if self.eat(&Kind::LParen) {
            loop {
                match self.next() {
                    Some(Token {
                        kind: Kind::Num(_), ..
                    }) => {}
                    _ => {
                        self.i -= 1;
                        return Err(self.unexpected());
                    }
                }
                if !self.eat(&Kind::Comma) {
                    break;
                }
            }
            self.expect(&Kind::RParen)?;
        }
        if self.eat(&Kind::LParen) {
            return Err(self.unexpected());
        }
        Ok((ty, serial))
    }

    // ----- expressions: OR < AND < NOT < comparison < +,- < *,/ < unary < :: -----

    fn expr(&mut self) -> Result<Expr, PgError> {
        let mut left = self.and()?;
        while self.eat_word("or") {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, PgError> {
        let mut left = self.not()?;
        while self.eat_word("and") {
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, PgError> {
        if self.eat_word("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, PgError> {
        let left = self.additive()?;
        if let Some(Token {
            kind: Kind::Op(op),
            pos,
            ..
        }) = self.peek().cloned()
        {
            if matches!(op.as_str(), "=" | "<>" | "!=" | "<" | ">" | "<=" | ">=") {
                self.i += 1;
                let right = self.additive()?;
                let op = if op == "!=" { "<>".to_string() } else { op };
                return Ok(Expr::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                    pos,
                });
            }
        }
        if self.eat_word("is") {
            let negated = self.eat_word("not");
            if self.eat_word("null") {
                return Ok(Expr::IsNull {
                    expr: Box::new(left),
                    negated,
                });
            }
            return Err(self.unexpected());
        }
        let negated = self.peek_word() == Some("not") && self.peek_word_at(1) == Some("in");
        if negated {
            self.i += 1;
        }
        if let Some(Token {
            kind: Kind::Word(w),
            pos,
            ..
        }) = self.peek().cloned()
        {
            if w == "in" {
                self.i += 1;
                self.expect(&Kind::LParen)?;
                let mut list = vec![self.expr()?];
                while self.eat(&Kind::Comma) {
                    list.push(self.expr()?);
                }
                self.expect(&Kind::RParen)?;
                return Ok(Expr::InList {
                    expr: Box::new(left),
                    list,
                    negated,
                    pos,
                });
            }
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, PgError> {
        let mut left = self.multiplicative()?;
        while let Some(Token {
            kind: Kind::Op(op),
            pos,
            ..
        }) = self.peek().cloned()
        {
            if !matches!(op.as_str(), "+" | "-" | "||") {
                break;
            }
            self.i += 1;
            let right = self.multiplicative()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
        Ok(left)
    }

    fn multiplicative(&mut self) -> Result<Expr, PgError> {
        let mut left = self.unary()?;
        loop {
            let (op, pos) = match self.peek() {
                Some(Token {
                    kind: Kind::Star,
                    pos,
                    ..
                }) => ("*".to_string(), *pos),
                Some(Token {
                    kind: Kind::Op(o),
                    pos,
                    ..
                }) if o == "/" || o == "%" => (o.clone(), *pos),
                _ => break,
            };
            self.i += 1;
            let right = self.unary()?;
            left = Expr::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
                pos,
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, PgError> {
        if let Some(Token {
            kind: Kind::Op(o),
            pos,
            ..
        }) = self.peek().cloned()
        {
            if o == "-" || o == "+" {
                self.i += 1;
                let e = self.unary()?;
                return Ok(match (o.as_str(), e) {
                    ("+", e) => e,
                    (_, Expr::Num(n, _)) => Expr::Num(format!("-{n}"), pos),
                    (_, e) => Expr::Neg(Box::new(e), pos),
                });
            }
        }
        let mut e = self.primary()?;
        while let Some(Token {
            kind: Kind::Cast,
            pos,
            ..
        }) = self.peek().cloned()
        {
            self.i += 1;
            let (ty, _) = self.type_name(false)?;
            e = Expr::Cast {
                expr: Box::new(e),
                ty,
                pos,
            };
        }
        Ok(e)
    }

    fn primary(&mut self) -> Result<Expr, PgError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.unexpected());
        };
        match &t.kind {
            Kind::Num(n) => {
                self.i += 1;
                Ok(Expr::Num(n.clone(), t.pos))
            }
            Kind::Str(s) => {
                self.i += 1;
                Ok(Expr::Str(s.clone(), t.pos))
            }
            Kind::LParen => {
                self.i += 1;
                let e = self.expr()?;
                self.expect(&Kind::RParen)?;
                Ok(e)
            }
            Kind::Quoted(q) => {
                self.i += 1;
                self.column_rest(q.clone(), t.pos)
            }
            Kind::Word(w) => {
                let w = w.clone();
                match w.as_str() {
                    "null" => {
                        self.i += 1;
                        Ok(Expr::Null(t.pos))
                    }
                    "true" | "false" => {
                        self.i += 1;
                        Ok(Expr::Bool(w == "true", t.pos))
                    }
                    "current_timestamp" | "localtimestamp" | "current_user" | "current_catalog"
                    | "session_user" | "user" => {
                        self.i += 1;
                        if w.ends_with("timestamp") && self.eat(&Kind::LParen) {
                            self.next();
                            self.expect(&Kind::RParen)?;
                        }
                        let name = match w.as_str() {
                            "current_timestamp" | "localtimestamp" => "now",
                            "current_catalog" => "current_database",
                            _ => "current_user",
                        };
                        Ok(Expr::Func {
                            name: name.into(),
                            args: Vec::new(),
                            star: false,
                            pos: t.pos,
                        })
                    }
                    "timestamptz" | "timestamp" | "text" | "integer" | "int" | "bigint"
                    | "jsonb" | "boolean" | "interval"
                        if matches!(
                            self.t.get(self.i + 1),
                            Some(Token {
                                kind: Kind::Str(_),
                                ..
                            })
                        ) =>
                    {
                        // A typed literal: timestamptz '2024-01-01'.
                        let (ty, _) = self.type_name(false)?;
                        let Some(Token {
                            kind: Kind::Str(s),
                            pos: spos,
                            ..
                        }) = self.next()
                        else {
                            return Err(self.unexpected());
                        };
                        Ok(Expr::Cast {
                            expr: Box::new(Expr::Str(s, spos)),
                            ty,
                            pos: t.pos,
                        })
                    }
                    "extract"
                        if matches!(
                            self.t.get(self.i + 1),
                            Some(Token {
                                kind: Kind::LParen,
                                ..
                            })
                        ) =>
                    {
                        self.i += 2;
                        let field = match self.next() {
                            Some(Token {
                                kind: Kind::Word(f) | Kind::Str(f),
                                ..
                            }) => f.to_lowercase(),
                            _ => {
                                self.i -= 1;
                                return Err(self.unexpected());
                            }
                        };
                        self.expect_word("from")?;
                        let arg = self.expr()?;
                        self.expect(&Kind::RParen)?;
                        Ok(Expr::Extract {
                            field,
                            arg: Box::new(arg),
                            pos: t.pos,
                        })
                    }
                    _ if RESERVED.contains(&w.as_str()) => Err(self.unexpected()),
                    _ if matches!(
                        self.t.get(self.i + 1),
                        Some(Token {
                            kind: Kind::Str(_),
                            ..
                        })
                    ) =>
                    {
                        // `frob 'x'`: a typed literal of an unknown type.
                        Err(
                            PgError::new("42704", &format!("type \"{w}\" does not exist"))
                                .at(t.pos),
                        )
                    }
                    _ => {
                        self.i += 1;
                        if self.eat(&Kind::LParen) {
                            if self.eat(&Kind::Star) {
                                self.expect(&Kind::RParen)?;
                                return Ok(Expr::Func {
                                    name: w,
                                    args: Vec::new(),
                                    star: true,
                                    pos: t.pos,
                                });
                            }
                            let mut args = Vec::new();
                            if !self.eat(&Kind::RParen) {
                                loop {
                                    args.push(self.expr()?);
                                    if !self.eat(&Kind::Comma) {
                                        break;
                                    }
                                }
                                self.expect(&Kind::RParen)?;
                            }
                            return Ok(Expr::Func {
                                name: w,
                                args,
                                star: false,
                                pos: t.pos,
                            });
                        }
                        self.column_rest(w, t.pos)
                    }
                }
            }
            _ => Err(self.unexpected()),
        }
    }

    /// `name` or `table.name` (the first part already read).
    fn column_rest(&mut self, first: String, pos: usize) -> Result<Expr, PgError> {
        if self.eat(&Kind::Dot) {
            if self.eat(&Kind::Star) {
                return Ok(Expr::Star);
            }
            let (name, _) = self.ident_any()?;
            return Ok(Expr::Column {
                table: Some(first),
                name,
                pos,
            });
        }
        Ok(Expr::Column {
            table: None,
            name: first,
            pos,
        })
    }

    fn ident_any(&mut self) -> Result<(String, usize), PgError> {
        match self.peek() {
            Some(Token {
                kind: Kind::Word(w) | Kind::Quoted(w),
                pos,
                ..
            }) => {
                let r = (w.clone(), *pos);
                self.i += 1;
                Ok(r)
            }
            _ => Err(self.unexpected()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexes_with_positions() {
        let t = lex("SELECT a, 'it''s' FROM \"T\" -- c\n WHERE x>=1.5e3;").unwrap();
        let kinds: Vec<&Kind> = t.iter().map(|t| &t.kind).collect();
        assert_eq!(kinds[0], &Kind::Word("select".into()));
        assert_eq!(kinds[3], &Kind::Str("it's".into()));
        assert_eq!(kinds[5], &Kind::Quoted("T".into()));
        assert_eq!(kinds[8], &Kind::Op(">=".into()));
        assert_eq!(kinds[9], &Kind::Num("1.5e3".into()));
        assert_eq!(t[3].pos, 10);
        assert_eq!(t[6].pos, 33);
    }

    #[test]
    fn parses_the_subset() {
        let s = parse("create table if not exists m (id bigserial primary key, ts timestamptz not null default now(), note text); insert into m (note) values ('a'), ('b') returning id").unwrap();
        assert_eq!(s.len(), 2);
        match &s[0].0 {
            Stmt::CreateTable {
                name,
                if_not_exists,
                columns,
                ..
            } => {
                assert_eq!(name, "m");
                assert!(*if_not_exists);
                assert_eq!(columns[0].ty, Ty::Int8);
                assert!(columns[0].serial && columns[0].primary_key);
                assert_eq!(columns[1].default.as_deref(), Some("now()"));
                assert!(columns[1].not_null);
            }
            other => panic!("{other:?}"),
        }
        match &s[1].0 {
            Stmt::Insert {
                rows, returning, ..
            } => {
                assert_eq!(rows.len(), 2);
                assert_eq!(returning.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let s = parse(
            "SELECT max(ts) AS newest FROM m WHERE id > 3 AND note = 'x' ORDER BY id DESC LIMIT 5",
        )
        .unwrap();
        assert!(matches!(&s[0].0, Stmt::Select { order, limit: Some(_), .. } if order[0].desc));
    }

    #[test]
    fn syntax_errors_point_at_the_token() {
        let e = parse("selec 1").unwrap_err();
        assert_eq!(e.message, "syntax error at or near \"selec\"");
        assert_eq!(e.position, Some(0));
        let e = parse("select 1 from").unwrap_err();
        assert_eq!(e.message, "syntax error at end of input");
        assert_eq!(e.position, Some(13));
        let e = parse("select 1 from;").unwrap_err();
        assert_eq!(e.message, "syntax error at or near \";\"");
        let e = parse("create table t (a frob)").unwrap_err();
        assert_eq!(e.message, "type \"frob\" does not exist");
        assert_eq!(e.position, Some(18));
    }
}
