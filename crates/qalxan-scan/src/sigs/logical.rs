//! Logical signatures (`.ldb`): a target description, a boolean/count expression over
//! subsignatures, and the subsignatures themselves.

use crate::filetype::Target;

/// How a sub-expression's match count is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOp {
    Eq,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Sub(usize),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    /// `expr=N`, `expr>N`, `expr<N`, optionally `,M`: at least M distinct subsignatures.
    Count {
        inner: Box<Expr>,
        op: CountOp,
        n: u32,
        distinct: Option<u32>,
    },
}

/// The target description block (`Engine:51-255,Target:1,FileSize:10-200`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetDesc {
    pub target: Option<Target>,
    pub file_size: Option<(u64, u64)>,
    pub engine: Option<(u32, u32)>,
    pub sections: Option<(u64, u64)>,
    pub entry_point: Option<(u64, u64)>,
}

fn range(v: &str) -> Result<(u64, u64), String> {
    let parse = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("bad number {t:?}"))
    };
    match v.split_once('-') {
        Some((a, b)) => Ok((parse(a)?, parse(b)?)),
        None => {
            let n = parse(v)?;
            Ok((n, n))
        }
    }
}

impl TargetDesc {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut d = TargetDesc::default();
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let (key, value) = item.split_once(':').unwrap_or((item, ""));
            match key {
                "Target" => {
                    let n: u32 = value.parse().map_err(|_| format!("bad Target {value:?}"))?;
                    d.target = Some(
                        Target::from_number(n).ok_or_else(|| format!("unknown target type {n}"))?,
                    );
                }
                "Engine" => {
                    let (a, b) = range(value)?;
                    d.engine = Some((a as u32, b as u32));
                }
                "FileSize" => d.file_size = Some(range(value)?),
                "NumberOfSections" => d.sections = Some(range(value)?),
                "EntryPoint" => d.entry_point = Some(range(value)?),
                // Accepted and not yet acted on: the signature then applies more widely
                // than ClamAV would apply it, never less.
                "Container" | "Intermediates" | "IconGroup1" | "IconGroup2" | "HandlerType" => {}
                other => return Err(format!("unknown target description key {other:?}")),
            }
        }
        Ok(d)
    }
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    subsigs: usize,
}

/// Parses a logical expression over `subsigs` subsignatures.
pub fn parse_expr(s: &str, subsigs: usize) -> Result<Expr, String> {
    let mut p = Parser {
        s: s.as_bytes(),
        pos: 0,
        subsigs,
    };
    let e = p.or()?;
    if p.pos != p.s.len() {
        return Err(format!(
            "unexpected '{}' at column {} of the logical expression",
            p.s[p.pos] as char,
            p.pos + 1
        ));
    }
    Ok(e)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.counted()?];
        while self.peek() == Some(b'&') {
            self.pos += 1;
            items.push(self.counted()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn number(&mut self) -> Result<u32, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                format!(
                    "expected a number at column {} of the logical expression",
                    start + 1
                )
            })
    }

    fn counted(&mut self) -> Result<Expr, String> {
        let inner = self.primary()?;
        let op = match self.peek() {
            Some(b'=') => CountOp::Eq,
            Some(b'>') => CountOp::Gt,
            Some(b'<') => CountOp::Lt,
            _ => return Ok(inner),
        };
        self.pos += 1;
        let n = self.number()?;
        let distinct = if self.peek() == Some(b',') {
            self.pos += 1;
            Some(self.number()?)
        } else {
            None
        };
        Ok(Expr::Count {
            inner: Box::new(inner),
            op,
            n,
            distinct,
        })
    }

    fn primary(&mut self) -> Result<Expr, String> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let e = self.or()?;
            if self.peek() != Some(b')') {
                return Err(format!(
                    "expected ')' at column {} of the logical expression",
                    self.pos + 1
                ));
            }
            self.pos += 1;
            return Ok(e);
        }
        let column = self.pos + 1;
        let n = self.number()? as usize;
        if n >= self.subsigs {
            return Err(format!(
                "subsignature {n} at column {column} does not exist (there are {})",
                self.subsigs
            ));
        }
        Ok(Expr::Sub(n))
    }
}

impl Expr {
    /// The sum of match counts and the number of distinct subsignatures matched under `self`.
    fn tally(&self, counts: &[u32]) -> (u64, u32) {
        match self {
            Expr::Sub(i) => {
                let c = counts.get(*i).copied().unwrap_or(0);
                (c as u64, u32::from(c > 0))
            }
            Expr::And(items) | Expr::Or(items) => items_tally(items, counts),
            Expr::Count { inner, .. } => inner.tally(counts),
        }
    }

    pub fn eval(&self, counts: &[u32]) -> bool {
        match self {
            Expr::Sub(i) => counts.get(*i).is_some_and(|&c| c > 0),
            Expr::And(items) => items.iter().all(|e| e.eval(counts)),
            Expr::Or(items) => items.iter().any(|e| e.eval(counts)),
            Expr::Count {
                inner,
                op,
                n,
                distinct,
            } => {
                let (total, different) = inner.tally(counts);
                let count_ok = match op {
                    CountOp::Eq => total == *n as u64,
                    CountOp::Gt => total > *n as u64,
                    CountOp::Lt => total < *n as u64,
                };
                count_ok && distinct.is_none_or(|d| different >= d)
            }
        }
    }
}

fn items_tally(items: &[Expr], counts: &[u32]) -> (u64, u32) {
    items.iter().fold((0, 0), |(t, d), e| {
        let (a, b) = e.tally(counts);
        (t + a, d + b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_counts_and_errors() {
        let e = parse_expr("0&1|2", 3).expect("parses");
        assert!(e.eval(&[1, 1, 0]));
        assert!(e.eval(&[0, 0, 1]));
        assert!(!e.eval(&[1, 0, 0]));
        let c = parse_expr("0>1", 1).expect("parses");
        assert!(!c.eval(&[1]));
        assert!(c.eval(&[2]));
        let d = parse_expr("(0|1|2)=3,2", 3).expect("parses");
        assert!(d.eval(&[2, 1, 0]));
        assert!(!d.eval(&[3, 0, 0]));
        assert!(parse_expr("0&3", 2).is_err());
        assert!(parse_expr("(0&1", 2).is_err());
        assert!(parse_expr("0&&1", 2).is_err());
    }

    #[test]
    fn target_descriptions() {
        let d = TargetDesc::parse("Engine:51-255,Target:1,FileSize:10-20").expect("parses");
        assert_eq!(d.target, Some(Target::Pe));
        assert_eq!(d.file_size, Some((10, 20)));
        assert!(TargetDesc::parse("Target:99").is_err());
        assert!(TargetDesc::parse("Colour:3").is_err());
    }
}
