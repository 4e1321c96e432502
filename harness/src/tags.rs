//! Tag expressions for `--tags`: `@a`, `not @a`, `@a and @b`, `@a or @b`, parentheses.
//!
//! Precedence follows Cucumber's tag expressions (tightest first): `not`, `and`, `or`.
//! Gherkin stores tags without their `@`, so matching ignores a leading `@` on both sides.

use std::{fmt, str::FromStr};

/// A parsed tag expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagExpr {
    /// A tag, stored without its `@`.
    Tag(String),
    Not(Box<TagExpr>),
    And(Box<TagExpr>, Box<TagExpr>),
    Or(Box<TagExpr>, Box<TagExpr>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagsError {
    #[error("empty tag expression")]
    Empty,
    #[error("expected a tag such as @smoke at column {column}, found `{found}`")]
    ExpectedTag { column: usize, found: String },
    #[error("unexpected `{found}` at column {column}")]
    Unexpected { column: usize, found: String },
    #[error("parenthesis opened at column {column} is never closed")]
    Unclosed { column: usize },
    #[error("expression ends early: expected {expected}")]
    UnexpectedEnd { expected: &'static str },
}

impl TagExpr {
    /// Whether a scenario carrying `tags` (with or without `@`) is selected.
    pub fn matches<'a, I>(&self, tags: I) -> bool
    where
        I: IntoIterator<Item = &'a str> + Clone,
    {
        match self {
            TagExpr::Tag(want) => tags
                .into_iter()
                .any(|t| t.strip_prefix('@').unwrap_or(t) == want),
            TagExpr::Not(e) => !e.matches(tags),
            TagExpr::And(l, r) => l.matches(tags.clone()) && r.matches(tags),
            TagExpr::Or(l, r) => l.matches(tags.clone()) || r.matches(tags),
        }
    }
}

impl fmt::Display for TagExpr {
    // Fully parenthesised, so the parse can be checked at a glance in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TagExpr::Tag(t) => write!(f, "@{t}"),
            TagExpr::Not(e) => write!(f, "not {e}"),
            TagExpr::And(l, r) => write!(f, "({l} and {r})"),
            TagExpr::Or(l, r) => write!(f, "({l} or {r})"),
        }
    }
}

impl FromStr for TagExpr {
    type Err = TagsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let tokens = tokenize(s);
        if tokens.is_empty() {
            return Err(TagsError::Empty);
        }
        let mut p = Parser { tokens, pos: 0 };
        let expr = p.or()?;
        match p.peek() {
            None => Ok(expr),
            Some(t) => Err(TagsError::Unexpected {
                column: t.column,
                found: t.text.clone(),
            }),
        }
    }
}

#[derive(Debug)]
struct Token {
    text: String,
    /// 1-based column, for error messages.
    column: usize,
}

fn tokenize(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut start = 0;
    for (i, c) in s.chars().enumerate() {
        let column = i + 1;
        if c.is_whitespace() || c == '(' || c == ')' {
            if !word.is_empty() {
                out.push(Token {
                    text: std::mem::take(&mut word),
                    column: start,
                });
            }
            if !c.is_whitespace() {
                out.push(Token {
                    text: c.to_string(),
                    column,
                });
            }
        } else {
            if word.is_empty() {
                start = column;
            }
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(Token {
            text: word,
            column: start,
        });
    }
    out
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, word: &str) -> bool {
        if self.peek().is_some_and(|t| t.text == word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<TagExpr, TagsError> {
        let mut left = self.and()?;
        while self.eat("or") {
            left = TagExpr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<TagExpr, TagsError> {
        let mut left = self.not()?;
        while self.eat("and") {
            left = TagExpr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<TagExpr, TagsError> {
        if self.eat("not") {
            return Ok(TagExpr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<TagExpr, TagsError> {
        let Some(tok) = self.tokens.get(self.pos) else {
            return Err(TagsError::UnexpectedEnd {
                expected: "a tag or `(`",
            });
        };
        let column = tok.column;
        if tok.text == "(" {
            self.pos += 1;
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(match self.peek() {
                    Some(t) => TagsError::Unexpected {
                        column: t.column,
                        found: t.text.clone(),
                    },
                    None => TagsError::Unclosed { column },
                });
            }
            return Ok(inner);
        }
        match tok.text.strip_prefix('@') {
            Some(name) if !name.is_empty() => {
                self.pos += 1;
                Ok(TagExpr::Tag(name.to_owned()))
            }
            _ => Err(TagsError::ExpectedTag {
                column,
                found: tok.text.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> TagExpr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn sel(expr: &str, tags: &[&str]) -> bool {
        parse(expr).matches(tags.iter().copied())
    }

    #[test]
    fn single_tag_with_or_without_at_in_scenario() {
        assert!(sel("@smoke", &["smoke"]));
        assert!(sel("@smoke", &["@smoke"]));
        assert!(!sel("@smoke", &["phase1"]));
        assert!(!sel("@smoke", &[]));
    }

    #[test]
    fn precedence_not_and_or() {
        assert_eq!(parse("@a or @b and @c").to_string(), "(@a or (@b and @c))");
        assert_eq!(parse("not @a and @b").to_string(), "(not @a and @b)");
        assert_eq!(parse("not (@a or @b)").to_string(), "not (@a or @b)");
        assert_eq!(
            parse("@a and @b and @c").to_string(),
            "((@a and @b) and @c)"
        );
    }

    #[test]
    fn evaluation() {
        assert!(sel("@a and @b", &["a", "b"]));
        assert!(!sel("@a and @b", &["a"]));
        assert!(sel("@a or @b", &["b"]));
        assert!(sel("not @slow", &["a"]));
        assert!(!sel("not @slow", &["slow"]));
        assert!(sel("(@a or @b) and not @c", &["b"]));
        assert!(!sel("(@a or @b) and not @c", &["b", "c"]));
        assert!(sel("not not @a", &["a"]));
    }

    #[test]
    fn parentheses_without_spaces() {
        assert!(sel("(@a)and(@b)", &["a", "b"]));
    }

    #[test]
    fn errors_name_the_column() {
        assert_eq!("".parse::<TagExpr>(), Err(TagsError::Empty));
        assert_eq!("   ".parse::<TagExpr>(), Err(TagsError::Empty));
        assert_eq!(
            "@a and smoke".parse::<TagExpr>(),
            Err(TagsError::ExpectedTag {
                column: 8,
                found: "smoke".into()
            })
        );
        assert_eq!(
            "@a and".parse::<TagExpr>(),
            Err(TagsError::UnexpectedEnd {
                expected: "a tag or `(`"
            })
        );
        assert_eq!(
            "(@a or @b".parse::<TagExpr>(),
            Err(TagsError::Unclosed { column: 1 })
        );
        assert_eq!(
            "@a @b".parse::<TagExpr>(),
            Err(TagsError::Unexpected {
                column: 4,
                found: "@b".into()
            })
        );
        assert_eq!(
            "@a )".parse::<TagExpr>(),
            Err(TagsError::Unexpected {
                column: 4,
                found: ")".into()
            })
        );
        assert!(matches!(
            "@".parse::<TagExpr>(),
            Err(TagsError::ExpectedTag { column: 1, .. })
        ));
    }
}
