//! Macro expansion: `%{tx.anomaly_score}`, `%{REQUEST_HEADERS.host}`, `%{MATCHED_VAR}` inside
//! action values and operator arguments. Parsed once when rules compile; expanded per
//! transaction through a [`Resolver`] the evaluator provides.

use std::borrow::Cow;

/// Text with `%{collection.key}` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacroString {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    /// Collection name upper-cased; key as written (lookups are case-insensitive).
    Var {
        collection: String,
        key: Option<String>,
    },
}

/// Gives the value of `%{collection.key}` (or `%{collection}`) in the current transaction.
pub trait Resolver {
    /// Borrowed where the value is stored as it is (TX variables): expanding `%{tx.x}`, the
    /// common case, then copies nothing.
    fn resolve(&self, collection: &str, key: Option<&str>) -> Option<Cow<'_, [u8]>>;
}

/// A resolver that knows nothing: every macro expands to the empty string.
pub struct NoMacros;

impl Resolver for NoMacros {
    fn resolve(&self, _: &str, _: Option<&str>) -> Option<Cow<'_, [u8]>> {
        None
    }
}

impl MacroString {
    pub fn parse(text: &str) -> MacroString {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let Some(len) = rest[start + 2..].find('}') else {
                break;
            };
            if start > 0 {
                parts.push(Part::Literal(rest.as_bytes()[..start].to_vec()));
            }
            let name = &rest[start + 2..start + 2 + len];
            let (collection, key) = match name.split_once('.') {
                Some((c, k)) => (c, Some(k.to_owned())),
                None => (name, None),
            };
            parts.push(Part::Var {
                collection: collection.to_ascii_uppercase(),
                key,
            });
            rest = &rest[start + 3 + len..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.as_bytes().to_vec()));
        }
        MacroString { parts }
    }

    /// Whether the text references anything (so it must be expanded per transaction).
    pub fn is_dynamic(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var { .. }))
    }

    /// Whether every reference is to `collection` (upper-cased): what the text expands to
    /// then depends on that collection alone.
    pub fn reads_only(&self, collection: &str) -> bool {
        self.parts.iter().all(|p| match p {
            Part::Literal(_) => true,
            Part::Var { collection: c, .. } => c == collection,
        })
    }

    /// Whether the text references one of `collections` (upper-cased).
    pub fn reads_any(&self, collections: &[&str]) -> bool {
        self.parts.iter().any(|p| match p {
            Part::Literal(_) => false,
            Part::Var { collection, .. } => collections.contains(&collection.as_str()),
        })
    }

    /// The text when it has no references.
    pub fn literal(&self) -> Option<Cow<'_, [u8]>> {
        match self.parts.as_slice() {
            [] => Some(Cow::Borrowed(&[])),
            [Part::Literal(l)] => Some(Cow::Borrowed(l)),
            _ => None,
        }
    }

    /// The variable a string names when it is one `%{collection.key}` and nothing else:
    /// collection upper-cased, key as written.
    pub fn single_variable(&self) -> Option<(&str, Option<&str>)> {
        match self.parts.as_slice() {
            [Part::Var { collection, key }] => Some((collection, key.as_deref())),
            _ => None,
        }
    }

    pub fn expand<'a>(&'a self, resolver: &'a dyn Resolver) -> Cow<'a, [u8]> {
        if let Some(l) = self.literal() {
            return l;
        }
        // `%{tx.x}` alone, the common case: the value as resolved, without a copy.
        if let [Part::Var { collection, key }] = self.parts.as_slice() {
            return resolver
                .resolve(collection, key.as_deref())
                .unwrap_or_default();
        }
        // Sized once: CRS's composite macros (`/%{tx.0}/`, `%{tx.msg} %{MATCHED_VAR}`) are short.
        let mut out = Vec::with_capacity(64);
        self.expand_into(resolver, &mut out);
        Cow::Owned(out)
    }

    /// Appends the expansion to `out`: for callers that keep a buffer between expansions.
    pub fn expand_into(&self, resolver: &dyn Resolver, out: &mut Vec<u8>) {
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.extend_from_slice(l),
                Part::Var { collection, key } => {
                    if let Some(v) = resolver.resolve(collection, key.as_deref()) {
                        out.extend_from_slice(&v);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tx;

    impl Resolver for Tx {
        fn resolve(&self, collection: &str, key: Option<&str>) -> Option<Cow<'_, [u8]>> {
            match (collection, key) {
                ("TX", Some(k)) if k.eq_ignore_ascii_case("score") => Some(Cow::Borrowed(b"5")),
                ("MATCHED_VAR", None) => Some(Cow::Borrowed(b"x")),
                _ => None,
            }
        }
    }

    #[test]
    fn expands_references() {
        let m = MacroString::parse("+%{tx.score} on %{MATCHED_VAR}%{tx.none}!");
        assert!(m.is_dynamic());
        assert_eq!(m.expand(&Tx).as_ref(), b"+5 on x!");
        let mut out = b"kept:".to_vec();
        m.expand_into(&Tx, &mut out);
        assert_eq!(out, b"kept:+5 on x!");
        assert!(!m.reads_only("TX"));
        assert!(MacroString::parse("%{tx.a}-%{TX.b}").reads_only("TX"));
        assert!(m.reads_any(&["MATCHED_VAR"]) && !m.reads_any(&["ARGS"]));
        let plain = MacroString::parse("GET HEAD %{unclosed");
        assert!(plain.reads_only("TX"));
        assert_eq!(plain.literal().unwrap().as_ref(), b"GET HEAD %{unclosed");
    }
}
