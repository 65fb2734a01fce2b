//! Logical lines to [`Directive`]s: directive names, variable lists, operators and action
//! lists, with the quoting rules of ModSecurity v2 (`msre_parse_generic`): action values may be
//! single-quoted with `\'` and `\\` as the only escapes; unquoted values end at a comma or
//! whitespace. Variable selectors may also be `/regex/` (which may contain `|`) or, for `XML`,
//! an XPath expression.

use super::lexer::{logical_lines, words, LogicalLine, Word};
use super::names::{self, lookup, suggest};
use super::{
    Action, Directive, DirectiveKind, IdRange, Location, Operator, Rule, RuleSelector, Selector,
    SyntaxError, Variable,
};
use std::path::Path;
use std::sync::Arc;

/// Largest number of variables, actions or ids one directive may list.
const MAX_ITEMS: usize = 10_000;

/// What a file holds: directives, and `Include`s for the loader to resolve in place.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    Directive(Directive),
    Include {
        location: Location,
        pattern: String,
        optional: bool,
    },
}

/// Parses one file's text without resolving `Include`s. Every directive that parses is
/// returned, every one that does not becomes an error, so one run reports all the problems.
pub fn parse_str(source: &str, file: &Path) -> (Vec<Directive>, Vec<SyntaxError>) {
    let (items, mut errors) = parse_str_items(source, file);
    let mut directives = Vec::new();
    for item in items {
        match item {
            Item::Directive(d) => directives.push(d),
            Item::Include { location, .. } => errors.push(SyntaxError {
                location,
                message: "Include needs a file to be relative to: load the rules from a file"
                    .into(),
            }),
        }
    }
    (directives, errors)
}

/// Like [`parse_str`], keeping `Include`s for the loader.
pub(crate) fn parse_str_items(source: &str, file: &Path) -> (Vec<Item>, Vec<SyntaxError>) {
    let file: Arc<Path> = Arc::from(file);
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for line in logical_lines(source) {
        let ctx = Ctx {
            file: &file,
            line: &line,
        };
        match parse_line(&ctx) {
            Ok(item) => items.push(item),
            Err(e) => errors.push(e),
        }
    }
    (items, errors)
}

/// The line being parsed, for turning offsets into locations.
struct Ctx<'a> {
    file: &'a Arc<Path>,
    line: &'a LogicalLine,
}

impl Ctx<'_> {
    fn at(&self, offset: usize) -> Location {
        let (line, column) = self.line.position(offset);
        Location {
            file: self.file.clone(),
            line,
            column,
        }
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            location: self.at(offset),
            message: message.into(),
        }
    }
}

fn did_you_mean(table: &[&'static str], name: &str) -> String {
    match suggest(table, name).as_slice() {
        [] => String::new(),
        found => format!(" (did you mean {}?)", found.join(", ")),
    }
}

fn parse_line(ctx: &Ctx) -> Result<Item, SyntaxError> {
    let words = words(&ctx.line.text).map_err(|(offset, message)| ctx.error(offset, message))?;
    let Some((head, args)) = words.split_first() else {
        return Err(ctx.error(0, "empty directive"));
    };
    let location = ctx.at(head.offset);
    let name = head.text.to_ascii_lowercase();
    let expect = |n: std::ops::RangeInclusive<usize>, usage: &str| -> Result<(), SyntaxError> {
        if n.contains(&args.len()) {
            Ok(())
        } else {
            Err(ctx.error(
                head.offset,
                format!(
                    "{} takes {usage}, found {} argument(s)",
                    head.text,
                    args.len()
                ),
            ))
        }
    };
    let kind = match name.as_str() {
        "include" | "includeoptional" => {
            expect(1..=1, "one file or glob pattern")?;
            return Ok(Item::Include {
                location,
                pattern: args[0].text.clone(),
                optional: name == "includeoptional",
            });
        }
        "secrule" => {
            expect(2..=3, "VARIABLES OPERATOR [ACTIONS]")?;
            DirectiveKind::Rule(Rule {
                variables: parse_variables(ctx, &args[0])?,
                operator: parse_operator(ctx, &args[1])?,
                actions: match args.get(2) {
                    Some(a) => parse_actions(ctx, a)?,
                    None => Vec::new(),
                },
            })
        }
        "secaction" => {
            expect(1..=1, "ACTIONS")?;
            DirectiveKind::Action(parse_actions(ctx, &args[0])?)
        }
        "secdefaultaction" => {
            expect(1..=1, "ACTIONS")?;
            DirectiveKind::DefaultAction(parse_actions(ctx, &args[0])?)
        }
        "secmarker" => {
            expect(1..=1, "a marker name")?;
            DirectiveKind::Marker(args[0].text.clone())
        }
        "secruleremovebyid" => {
            expect(1..=MAX_ITEMS, "rule ids or ranges")?;
            let mut ids = Vec::new();
            for a in args {
                ids.extend(parse_ids(ctx, a)?);
            }
            DirectiveKind::RemoveById(ids)
        }
        "secruleremovebytag" => {
            expect(1..=1, "a tag (regular expression)")?;
            DirectiveKind::RemoveByTag(args[0].text.clone())
        }
        "secruleremovebymsg" => {
            expect(1..=1, "a message (regular expression)")?;
            DirectiveKind::RemoveByMsg(args[0].text.clone())
        }
        "secruleupdatetargetbyid" | "secruleupdatetargetbytag" | "secruleupdatetargetbymsg" => {
            expect(2..=3, "WHICH TARGETS [REPLACED]")?;
            let which = match name.as_str() {
                "secruleupdatetargetbyid" => RuleSelector::Ids(parse_ids(ctx, &args[0])?),
                "secruleupdatetargetbytag" => RuleSelector::Tag(args[0].text.clone()),
                _ => RuleSelector::Msg(args[0].text.clone()),
            };
            DirectiveKind::UpdateTarget {
                which,
                targets: parse_variables(ctx, &args[1])?,
                replaced: args.get(2).map(|w| w.text.clone()),
            }
        }
        "secruleupdateactionbyid" => {
            expect(2..=2, "ID ACTIONS")?;
            let id_text = args[0].text.split(':').next().unwrap_or_default();
            let id = id_text.parse().map_err(|_| {
                ctx.error(
                    args[0].offset,
                    format!("'{}' is not a rule id", args[0].text),
                )
            })?;
            DirectiveKind::UpdateAction {
                id,
                actions: parse_actions(ctx, &args[1])?,
            }
        }
        _ => match lookup(names::SETTINGS, &head.text) {
            Some(canonical) => DirectiveKind::Setting {
                name: canonical,
                args: args.iter().map(|w| w.text.clone()).collect(),
            },
            None => {
                let mut known: Vec<&'static str> = names::SETTINGS.to_vec();
                known.extend(names::RULE_DIRECTIVES);
                return Err(ctx.error(
                    head.offset,
                    format!(
                        "unknown directive '{}'{}",
                        head.text,
                        did_you_mean(&known, &head.text)
                    ),
                ));
            }
        },
    };
    Ok(Item::Directive(Directive { location, kind }))
}

/// `1`, `100-200`, or several separated by commas.
fn parse_ids(ctx: &Ctx, word: &Word) -> Result<Vec<IdRange>, SyntaxError> {
    let mut out = Vec::new();
    for part in word
        .text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let bad = || {
            ctx.error(
                word.offset,
                format!("'{part}' is not a rule id or id range"),
            )
        };
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let id = part.parse().map_err(|_| bad())?;
                (id, id)
            }
        };
        if first > last {
            return Err(bad());
        }
        out.push(IdRange { first, last });
    }
    if out.is_empty() {
        return Err(ctx.error(word.offset, "no rule id given"));
    }
    Ok(out)
}

/// `REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|&TX:score|XML:/*`
pub(crate) fn parse_variables_text(
    text: &str,
    at: &dyn Fn(usize) -> Location,
) -> Result<Vec<Variable>, SyntaxError> {
    let err = |i: usize, message: String| SyntaxError {
        location: at(i),
        message,
    };
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b'|' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let (mut exclude, mut count) = (false, false);
        while i < b.len() && (b[i] == b'!' || b[i] == b'&') {
            if b[i] == b'!' {
                exclude = true;
            } else {
                count = true;
            }
            i += 1;
        }
        let name_start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let raw_name = &text[name_start..i];
        if raw_name.is_empty() {
            return Err(err(
                start,
                format!("expected a variable name at '{}'", &text[start..]),
            ));
        }
        let name = lookup(names::VARIABLES, raw_name).ok_or_else(|| {
            err(
                name_start,
                format!(
                    "unknown variable '{raw_name}'{}",
                    did_you_mean(names::VARIABLES, raw_name)
                ),
            )
        })?;
        let mut selector = None;
        if b.get(i) == Some(&b':') {
            i += 1;
            let sel_start = i;
            if name == "XML" {
                while i < b.len() && b[i] != b'|' {
                    i += 1;
                }
                selector = Some(Selector::XPath(text[sel_start..i].trim().to_owned()));
            } else if b.get(i) == Some(&b'/') {
                i += 1;
                let re_start = i;
                while i < b.len() && b[i] != b'/' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if i >= b.len() {
                    return Err(err(
                        sel_start,
                        "missing closing '/' of the selector's regular expression".into(),
                    ));
                }
                selector = Some(Selector::Regex(text[re_start..i].to_owned()));
                i += 1;
            } else if b.get(i) == Some(&b'\'') {
                i += 1;
                let key_start = i;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                if i >= b.len() {
                    return Err(err(
                        sel_start,
                        "missing closing quote of the selector".into(),
                    ));
                }
                selector = Some(Selector::Key(text[key_start..i].to_owned()));
                i += 1;
            } else {
                while i < b.len() && b[i] != b'|' && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                selector = Some(Selector::Key(text[sel_start..i].to_owned()));
            }
            if matches!(&selector, Some(Selector::Key(k) | Selector::XPath(k)) if k.is_empty()) {
                return Err(err(sel_start, format!("empty selector after '{name}:'")));
            }
        }
        if i < b.len() && b[i] != b'|' && !b[i].is_ascii_whitespace() {
            return Err(err(
                i,
                format!("unexpected '{}' in the variable list", &text[i..]),
            ));
        }
        if exclude && selector.is_none() {
            return Err(err(
                start,
                format!("'!{name}' excludes nothing: name what to exclude, e.g. '!{name}:key'"),
            ));
        }
        out.push(Variable {
            location: at(start),
            exclude,
            count,
            name,
            selector,
        });
        if out.len() > MAX_ITEMS {
            return Err(err(start, "too many variables".into()));
        }
    }
    if out.is_empty() {
        return Err(err(0, "no variables given".into()));
    }
    Ok(out)
}

fn parse_variables(ctx: &Ctx, word: &Word) -> Result<Vec<Variable>, SyntaxError> {
    parse_variables_text(&word.text, &|i| ctx.at(word.offset + i))
}

fn parse_operator(ctx: &Ctx, word: &Word) -> Result<Operator, SyntaxError> {
    let text = word.text.as_str();
    let lead = text.len() - text.trim_start().len();
    let mut rest = &text[lead..];
    let negated = rest.starts_with('!');
    if negated {
        rest = &rest[1..];
    }
    let offset = word.offset + text.len() - rest.len();
    let Some(after_at) = rest.strip_prefix('@') else {
        // No operator named: ModSecurity treats the text as a regular expression.
        return Ok(Operator {
            location: ctx.at(word.offset),
            negated,
            name: "rx",
            argument: rest.to_owned(),
        });
    };
    let name_len = after_at
        .find(|c: char| c.is_whitespace())
        .unwrap_or(after_at.len());
    let raw = &after_at[..name_len];
    let name = lookup(names::OPERATORS, raw).ok_or_else(|| {
        ctx.error(
            offset,
            format!(
                "unknown operator '@{raw}'{}",
                did_you_mean(names::OPERATORS, raw)
            ),
        )
    })?;
    Ok(Operator {
        location: ctx.at(offset),
        negated,
        name,
        argument: after_at[name_len..].trim_start().to_owned(),
    })
}

/// Actions that must have a value (`id:1`), and those that may (`allow:phase`).
const NEEDS_VALUE: &[&str] = &[
    "accuracy",
    "append",
    "ctl",
    "deprecatevar",
    "exec",
    "expirevar",
    "id",
    "initcol",
    "logdata",
    "maturity",
    "msg",
    "pause",
    "phase",
    "prepend",
    "proxy",
    "redirect",
    "rev",
    "sanitiseArg",
    "sanitiseRequestHeader",
    "sanitiseResponseHeader",
    "setenv",
    "setrsc",
    "setsid",
    "setuid",
    "setvar",
    "severity",
    "skip",
    "skipAfter",
    "status",
    "t",
    "tag",
    "ver",
    "xmlns",
];
const MAY_HAVE_VALUE: &[&str] = &["allow", "block", "deny", "drop", "pass"];

pub(crate) fn parse_actions_text(
    text: &str,
    at: &dyn Fn(usize) -> Location,
) -> Result<Vec<Action>, SyntaxError> {
    let err = |i: usize, message: String| SyntaxError {
        location: at(i),
        message,
    };
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b':' && b[i] != b',' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let raw = &text[start..i];
        let name = lookup(names::ACTIONS, raw).ok_or_else(|| {
            err(
                start,
                format!(
                    "unknown action '{raw}'{}",
                    did_you_mean(names::ACTIONS, raw)
                ),
            )
        })?;
        let mut value = None;
        if b.get(i) == Some(&b':') {
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if b.get(i) == Some(&b'\'') {
                let quote = i;
                i += 1;
                let mut v = Vec::new();
                loop {
                    match b.get(i) {
                        None => {
                            return Err(err(
                                quote,
                                format!("missing closing quote in the value of '{name}'"),
                            ))
                        }
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => match b.get(i + 1) {
                            Some(&c @ (b'\'' | b'\\')) => {
                                v.push(c);
                                i += 2;
                            }
                            // ModSecurity v2 refuses other escapes; CRS writes none. Keep them.
                            _ => {
                                v.push(b'\\');
                                i += 1;
                            }
                        },
                        Some(&c) => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                value = Some(String::from_utf8_lossy(&v).into_owned());
            } else {
                let v_start = i;
                while i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = Some(text[v_start..i].to_owned());
            }
        }
        if i < b.len() && b[i] != b',' && !b[i].is_ascii_whitespace() {
            return Err(err(i, format!("expected ',' after action '{name}'")));
        }
        match (
            &value,
            NEEDS_VALUE.contains(&name),
            MAY_HAVE_VALUE.contains(&name),
        ) {
            (None, true, _) => {
                return Err(err(
                    start,
                    format!("action '{name}' needs a value ('{name}:...')"),
                ))
            }
            (Some(_), false, false) => {
                return Err(err(start, format!("action '{name}' takes no value")))
            }
            _ => {}
        }
        if let Some(v) = &value {
            check_action_value(name, v).map_err(|m| err(start, m))?;
        }
        out.push(Action {
            location: at(start),
            name,
            value,
        });
        if out.len() > MAX_ITEMS {
            return Err(err(start, "too many actions".into()));
        }
    }
    Ok(out)
}

fn parse_actions(ctx: &Ctx, word: &Word) -> Result<Vec<Action>, SyntaxError> {
    parse_actions_text(&word.text, &|i| ctx.at(word.offset + i))
}

/// Checks the values whose form is fixed, so mistakes surface when the file is loaded.
fn check_action_value(name: &str, value: &str) -> Result<(), String> {
    match name {
        "id" => match value.trim().parse::<u64>() {
            Ok(id) if id > 0 => Ok(()),
            _ => Err(format!("id '{value}' must be a positive integer")),
        },
        "phase" => match value.trim().to_ascii_lowercase().as_str() {
            "1" | "2" | "3" | "4" | "5" | "request" | "response" | "logging" => Ok(()),
            _ => Err(format!(
                "phase '{value}' must be 1 to 5, request, response or logging"
            )),
        },
        "t" => lookup(names::TRANSFORMATIONS, value.trim())
            .map(|_| ())
            .ok_or_else(|| {
                format!(
                    "unknown transformation '{value}'{}",
                    did_you_mean(names::TRANSFORMATIONS, value.trim())
                )
            }),
        "status" => match value.trim().parse::<u16>() {
            Ok(100..=599) => Ok(()),
            _ => Err(format!("status '{value}' must be an HTTP status code")),
        },
        "skip" => value
            .trim()
            .parse::<u32>()
            .map(|_| ())
            .map_err(|_| format!("skip '{value}' must be a number of rules")),
        "severity" => {
            const SEVERITIES: &[&str] = &[
                "EMERGENCY",
                "ALERT",
                "CRITICAL",
                "ERROR",
                "WARNING",
                "NOTICE",
                "INFO",
                "DEBUG",
            ];
            let v = value.trim();
            if v.parse::<u8>().is_ok_and(|n| n <= 7)
                || SEVERITIES.iter().any(|s| s.eq_ignore_ascii_case(v))
            {
                Ok(())
            } else {
                Err(format!(
                    "severity '{value}' must be 0 to 7 or a name such as CRITICAL"
                ))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Result<DirectiveKind, String> {
        let (items, errors) = parse_str_items(src, Path::new("t.conf"));
        if let Some(e) = errors.first() {
            return Err(e.to_string());
        }
        match items.into_iter().next() {
            Some(Item::Directive(d)) => Ok(d.kind),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_crs_rule() {
        let src = r#"SecRule REQUEST_COOKIES|!REQUEST_COOKIES:/__utm/|&TX:x|XML:/* "!@rx ^\d+$" \
    "id:920160,\
    phase:1,\
    block,\
    t:none,t:urlDecodeUni,\
    msg:'Content-Length isn\'t numeric',\
    setvar:'tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}'""#;
        let DirectiveKind::Rule(rule) = one(src).unwrap() else {
            panic!()
        };
        let vars: Vec<_> = rule
            .variables
            .iter()
            .map(|v| (v.exclude, v.count, v.name, v.selector.clone()))
            .collect();
        assert_eq!(
            vars,
            [
                (false, false, "REQUEST_COOKIES", None),
                (
                    true,
                    false,
                    "REQUEST_COOKIES",
                    Some(Selector::Regex("__utm".into()))
                ),
                (false, true, "TX", Some(Selector::Key("x".into()))),
                (false, false, "XML", Some(Selector::XPath("/*".into()))),
            ]
        );
        assert!(rule.operator.negated);
        assert_eq!(
            (rule.operator.name, rule.operator.argument.as_str()),
            ("rx", r"^\d+$")
        );
        let actions: Vec<_> = rule
            .actions
            .iter()
            .map(|a| (a.name, a.value.as_deref()))
            .collect();
        assert_eq!(
            actions,
            [
                ("id", Some("920160")),
                ("phase", Some("1")),
                ("block", None),
                ("t", Some("none")),
                ("t", Some("urlDecodeUni")),
                ("msg", Some("Content-Length isn't numeric")),
                (
                    "setvar",
                    Some("tx.anomaly_score_pl1=+%{tx.critical_anomaly_score}")
                ),
            ]
        );
        assert_eq!(rule.actions[2].location.line, 4);
        assert_eq!(rule.actions[2].location.column, 5);
    }

    #[test]
    fn implicit_rx_and_regex_selectors_with_bars() {
        let DirectiveKind::Rule(rule) =
            one(r#"SecRule ARGS:/^(?:a|b)$/ "foo|bar" "id:1,pass""#).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            rule.variables[0].selector,
            Some(Selector::Regex("^(?:a|b)$".into()))
        );
        assert_eq!(
            (rule.operator.name, rule.operator.argument.as_str()),
            ("rx", "foo|bar")
        );
    }

    #[test]
    fn errors_name_the_place_and_suggest() {
        let e = one("SecRule ARGZ \"@rx a\" \"id:1\"").unwrap_err();
        assert_eq!(
            e,
            "t.conf:1:9: unknown variable 'ARGZ' (did you mean ARGS?)"
        );
        let e = one("SecRule ARGS \"@rxx a\" \"id:1\"").unwrap_err();
        assert_eq!(
            e,
            "t.conf:1:15: unknown operator '@rxx' (did you mean rx, rbl?)"
        );
        let e = one("SecRule ARGS \"@rx a\" \\\n  \"id:1,\\\n  t:lowercas\"").unwrap_err();
        assert_eq!(
            e,
            "t.conf:3:3: unknown transformation 'lowercas' (did you mean lowercase?)"
        );
        let e = one("SecRule ARGS \"@rx a\" \"id:1,msg:'open\"").unwrap_err();
        assert!(
            e.contains("missing closing quote in the value of 'msg'"),
            "{e}"
        );
        let e = one("SecRuel ARGS \"@rx a\"").unwrap_err();
        assert!(
            e.starts_with("t.conf:1:1: unknown directive 'SecRuel' (did you mean SecRule"),
            "{e}"
        );
        let e = one("SecRule ARGS").unwrap_err();
        assert_eq!(
            e,
            "t.conf:1:1: SecRule takes VARIABLES OPERATOR [ACTIONS], found 1 argument(s)"
        );
        let e = one("SecAction \"id:abc,pass\"").unwrap_err();
        assert!(e.contains("id 'abc' must be a positive integer"), "{e}");
        let e = one("SecAction \"id:1,phase:9\"").unwrap_err();
        assert!(e.contains("phase '9'"), "{e}");
        let e = one("SecRule !ARGS \"@rx a\" \"id:1\"").unwrap_err();
        assert!(e.contains("excludes nothing"), "{e}");
        let e = one("SecAction \"id:1,capture:yes\"").unwrap_err();
        assert!(e.contains("'capture' takes no value"), "{e}");
    }

    #[test]
    fn other_directives() {
        assert_eq!(
            one("SecRuleRemoveById 1 100-200,300").unwrap(),
            DirectiveKind::RemoveById(vec![
                IdRange { first: 1, last: 1 },
                IdRange {
                    first: 100,
                    last: 200
                },
                IdRange {
                    first: 300,
                    last: 300
                },
            ])
        );
        assert_eq!(
            one("secruleengine DetectionOnly").unwrap(),
            DirectiveKind::Setting {
                name: "SecRuleEngine",
                args: vec!["DetectionOnly".into()]
            }
        );
        let DirectiveKind::UpdateTarget { which, targets, .. } =
            one("SecRuleUpdateTargetById 942100 \"!ARGS:password\"").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            which,
            RuleSelector::Ids(vec![IdRange {
                first: 942100,
                last: 942100
            }])
        );
        assert!(targets[0].exclude);
        let (items, errors) =
            parse_str_items("IncludeOptional rules/*.conf\n", Path::new("t.conf"));
        assert!(errors.is_empty());
        assert!(
            matches!(&items[0], Item::Include { optional: true, pattern, .. } if pattern == "rules/*.conf")
        );
    }

    #[test]
    fn every_bad_line_is_reported() {
        let (items, errors) = parse_str(
            "SecRule ARGZ a\nSecMarker OK\nSecAction \"id:x\"\n",
            Path::new("t.conf"),
        );
        assert_eq!(items.len(), 1);
        let lines: Vec<_> = errors.iter().map(|e| e.location.line).collect();
        assert_eq!(lines, [1, 3]);
    }
}
