//! The OData `$filter` subset the simulator understands, evaluated on the JSON of an
//! entity.
//!
//! ```text
//! expr       := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" expr ")" | comparison
//! comparison := field ("eq"|"ne"|"gt"|"ge"|"lt"|"le") literal
//!             | field "in" "(" literal ("," literal)* ")"
//! literal    := 'text' ('' is a quote) | bare word (number, date-time, null, true, false)
//! ```
//!
//! Keywords are case-insensitive. `eq`/`ne`/`in` compare strings case-insensitively;
//! `gt`/`ge`/`lt`/`le` compare numbers as numbers and everything else as text (ISO 8601
//! timestamps of one format order correctly as text).

use std::cmp::Ordering;

use serde_json::Value;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp { field: String, op: Op, value: Lit },
    In { field: String, values: Vec<Lit> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A literal: quoted text, or a bare word.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Text(String),
    Bare(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Text(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            ',' => {
                out.push(Token::Comma);
                i += 1;
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("a quoted string is not closed".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            text.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            text.push(c);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Text(text));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | ',' | '\'')
                {
                    i += 1;
                }
                out.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            if self.next() != Some(Token::Close) {
                return Err("a parenthesis is not closed".into());
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let field = match self.next() {
            Some(Token::Word(w)) if is_identifier(&w) => w,
            Some(other) => return Err(format!("expected a property name, found {other:?}")),
            None => return Err("expected a property name, found the end".into()),
        };
        let op = match self.next() {
            Some(Token::Word(w)) => w.to_ascii_lowercase(),
            _ => return Err(format!("expected an operator after {field}")),
        };
        let op = match op.as_str() {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "in" => {
                if self.next() != Some(Token::Open) {
                    return Err(format!("expected '(' after {field} in"));
                }
                let mut values = vec![self.literal()?];
                loop {
                    match self.next() {
                        Some(Token::Comma) => values.push(self.literal()?),
                        Some(Token::Close) => break,
                        _ => return Err("expected ',' or ')' in an in-list".into()),
                    }
                }
                return Ok(Expr::In { field, values });
            }
            other => return Err(format!("unknown operator {other:?}")),
        };
        let value = self.literal()?;
        Ok(Expr::Cmp { field, op, value })
    }

    fn literal(&mut self) -> Result<Lit, String> {
        match self.next() {
            Some(Token::Text(t)) => Ok(Lit::Text(t)),
            Some(Token::Word(w)) => Ok(Lit::Bare(w)),
            Some(other) => Err(format!("expected a value, found {other:?}")),
            None => Err("expected a value, found the end".into()),
        }
    }
}

fn is_identifier(w: &str) -> bool {
    let mut chars = w.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '/')
        && !["and", "or", "not"].contains(&w.to_ascii_lowercase().as_str())
}

/// Parses a (decoded) `$filter` value.
pub(crate) fn parse(s: &str) -> Result<Expr, String> {
    let tokens = tokenize(s)?;
    if tokens.is_empty() {
        return Err("the filter is empty".into());
    }
    let mut parser = Parser { tokens, at: 0 };
    let expr = parser.or()?;
    if let Some(t) = parser.peek() {
        return Err(format!("unexpected {t:?}"));
    }
    Ok(expr)
}

impl Expr {
    /// Every property the filter names.
    pub(crate) fn fields(&self) -> Vec<&str> {
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => {
                let mut f = a.fields();
                f.extend(b.fields());
                f
            }
            Expr::Not(a) => a.fields(),
            Expr::Cmp { field, .. } | Expr::In { field, .. } => vec![field.as_str()],
        }
    }

    /// Whether it has an `or` anywhere.
    pub(crate) fn has_or(&self) -> bool {
        match self {
            Expr::Or(..) => true,
            Expr::And(a, b) => a.has_or() || b.has_or(),
            Expr::Not(a) => a.has_or(),
            Expr::Cmp { .. } | Expr::In { .. } => false,
        }
    }

    /// Whether the JSON object `entity` matches.
    pub(crate) fn matches(&self, entity: &Value) -> bool {
        match self {
            Expr::Or(a, b) => a.matches(entity) || b.matches(entity),
            Expr::And(a, b) => a.matches(entity) && b.matches(entity),
            Expr::Not(a) => !a.matches(entity),
            Expr::Cmp { field, op, value } => {
                let actual = entity.get(field).unwrap_or(&Value::Null);
                let ord = compare(actual, value);
                match op {
                    Op::Eq => ord == Some(Ordering::Equal),
                    Op::Ne => ord != Some(Ordering::Equal),
                    Op::Gt => ord == Some(Ordering::Greater),
                    Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                    Op::Lt => ord == Some(Ordering::Less),
                    Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                }
            }
            Expr::In { field, values } => {
                let actual = entity.get(field).unwrap_or(&Value::Null);
                values
                    .iter()
                    .any(|v| compare(actual, v) == Some(Ordering::Equal))
            }
        }
    }
}

/// How `actual` compares with `literal`; `None` when they cannot be compared.
fn compare(actual: &Value, literal: &Lit) -> Option<Ordering> {
    let text = match literal {
        Lit::Text(t) => t.as_str(),
        Lit::Bare(b) => b.as_str(),
    };
    match actual {
        Value::Null => {
            if matches!(literal, Lit::Bare(b) if b.eq_ignore_ascii_case("null")) {
                Some(Ordering::Equal)
            } else {
                None
            }
        }
        Value::Bool(b) => {
            let other = text.parse::<bool>().ok()?;
            Some(b.cmp(&other))
        }
        Value::Number(n) => {
            let a = n.as_f64()?;
            let b = text.parse::<f64>().ok()?;
            a.partial_cmp(&b)
        }
        Value::String(s) => Some(
            s.bytes()
                .map(|b| b.to_ascii_lowercase())
                .cmp(text.bytes().map(|b| b.to_ascii_lowercase())),
        ),
        // Arrays match when any element does (machineTags and the like).
        Value::Array(items) => items
            .iter()
            .filter_map(|v| compare(v, literal))
            .find(|o| *o == Ordering::Equal)
            .or(Some(Ordering::Less)),
        Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes() {
        let a = json!({"id": "a", "machineId": "m1", "status": "InProgress", "n": 3});
        let b = json!({"id": "b", "machineId": "m2", "status": "Succeeded", "n": 10});
        let check = |f: &str, expect: [bool; 2]| {
            let e = parse(f).unwrap_or_else(|err| panic!("{f}: {err}"));
            assert_eq!([e.matches(&a), e.matches(&b)], expect, "{f}");
        };
        check("id eq 'a'", [true, false]);
        check("id eq 'a' or id eq 'b' or id eq 'c'", [true, true]);
        check(
            "machineId eq 'm1' and status eq 'InProgress'",
            [true, false],
        );
        check(
            "machineId eq 'm2' and status eq 'InProgress'",
            [false, false],
        );
        check(
            "(machineId eq 'm1' or machineId eq 'm2') and status ne 'Succeeded'",
            [true, false],
        );
        check(
            "machineId eq 'm1' or machineId eq 'm2' and status eq 'x'",
            [true, false],
        );
        check("not (id eq 'a')", [false, true]);
        check("id in ('b','c')", [false, true]);
        check("n gt 5", [false, true]);
        check("n le 3", [true, false]);
        check("STATUS EQ 'inprogress'", [false, false]); // property names are exact
        check("status EQ 'inprogress'", [true, false]);
        check("title eq null", [true, true]);
        assert!(parse("id eq 'it''s'").is_ok());
        for bad in [
            "",
            "id",
            "id eq",
            "id eq 'a",
            "(id eq 'a'",
            "id eq 'a' and",
            "id zz 'a'",
            "id eq 'a')",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        let e = parse("id eq 'a' or (machineId eq 'x' and status eq 'y')").expect("parses");
        assert_eq!(e.fields(), vec!["id", "machineId", "status"]);
        assert!(e.has_or());
        let or = |f: &str| parse(f).map(|e| e.has_or()).ok();
        assert_eq!(
            or("not (id eq 'a' and (id eq 'b' OR id eq 'c'))"),
            Some(true)
        );
        assert_eq!(or("id eq 'a or b' and id in ('c', 'd')"), Some(false));
    }
}
