//! Golden files: each `tests/golden/NAME.conf` is parsed and its directives (or errors) printed
//! in a fixed form, compared with `NAME.out`. `UPDATE_GOLDEN=1 cargo test -p qalxan-waf` rewrites
//! the `.out` files after a deliberate change; review the diff.

#![allow(clippy::unwrap_used)]

use qalxan_waf::syntax::{Action, Directive, DirectiveKind, Selector, Variable};
use qalxan_waf::{load, LoadLimits};
use std::fmt::Write;
use std::path::Path;

fn variables(out: &mut String, vars: &[Variable]) {
    for v in vars {
        let sel = match &v.selector {
            None => String::new(),
            Some(Selector::Key(k)) => format!(" key={k:?}"),
            Some(Selector::Regex(k)) => format!(" regex={k:?}"),
            Some(Selector::XPath(k)) => format!(" xpath={k:?}"),
        };
        let flags = format!(
            "{}{}",
            if v.exclude { "!" } else { "" },
            if v.count { "&" } else { "" }
        );
        let _ = writeln!(out, "  var {flags}{}{sel}", v.name);
    }
}

fn actions(out: &mut String, actions: &[Action]) {
    for a in actions {
        let _ = writeln!(out, "  action {} {:?}", a.name, a.value);
    }
}

/// Everything but file paths, which differ between checkouts.
fn dump(d: &Directive) -> String {
    let mut out = format!("{}:{} ", d.location.line, d.location.column);
    match &d.kind {
        DirectiveKind::Rule(r) => {
            out.push_str("SecRule\n");
            variables(&mut out, &r.variables);
            let neg = if r.operator.negated { "!" } else { "" };
            let _ = writeln!(
                out,
                "  op {neg}@{} {:?}",
                r.operator.name, r.operator.argument
            );
            actions(&mut out, &r.actions);
        }
        DirectiveKind::Action(a) => {
            out.push_str("SecAction\n");
            actions(&mut out, a);
        }
        DirectiveKind::DefaultAction(a) => {
            out.push_str("SecDefaultAction\n");
            actions(&mut out, a);
        }
        DirectiveKind::UpdateAction { id, actions: a } => {
            let _ = writeln!(out, "SecRuleUpdateActionById {id}");
            actions(&mut out, a);
        }
        DirectiveKind::UpdateTarget {
            which,
            targets,
            replaced,
        } => {
            let _ = writeln!(out, "SecRuleUpdateTarget {which:?} replaced={replaced:?}");
            variables(&mut out, targets);
        }
        other => {
            let _ = writeln!(out, "{other:?}");
        }
    }
    out
}

fn check(name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let conf = dir.join(format!("{name}.conf"));
    let actual = match load(&conf, &LoadLimits::default()) {
        Ok(set) => set.directives.iter().map(dump).collect::<String>(),
        Err(errors) => errors
            .errors
            .iter()
            .map(|e| format!("{}:{}: {}\n", e.location.line, e.location.column, e.message))
            .collect(),
    };
    let golden = dir.join(format!("{name}.out"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        expected == actual,
        "{name}.out differs (UPDATE_GOLDEN=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

#[test]
fn rules() {
    check("rules");
}

#[test]
fn errors() {
    check("errors");
}
