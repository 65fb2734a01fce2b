//! The OWASP Core Rule Set 3.3 as Debian ships it (`modsecurity-crs`) loads without a single
//! error, and holds what ../shared/research/crs-scope.md counted in it. `.ci/run` installs the
//! package; where it is absent the tests say so and pass.

#![allow(clippy::unwrap_used)]

use qalxan_waf::{load, load_all, DirectiveKind, LoadLimits};
use std::path::{Path, PathBuf};

const RULES: &str = "/usr/share/modsecurity-crs/rules";
const SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";
const LOADER: &str = "/usr/share/modsecurity-crs/owasp-crs.load";

fn installed() -> bool {
    if Path::new(RULES).is_dir() && Path::new(SETUP).is_file() {
        true
    } else {
        eprintln!(
            "SKIPPED: Debian's modsecurity-crs is not installed (apt-get install modsecurity-crs)"
        );
        false
    }
}

#[test]
fn crs_loads_with_the_counts_of_the_scope_study() {
    if !installed() {
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(RULES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    files.insert(0, PathBuf::from(SETUP));
    let set = match load_all(&files, &LoadLimits::default()) {
        Ok(set) => set,
        Err(e) => panic!("CRS does not load:\n{e}"),
    };
    let count =
        |f: fn(&DirectiveKind) -> bool| set.directives.iter().filter(|d| f(&d.kind)).count();
    assert_eq!(count(|k| matches!(k, DirectiveKind::Rule(_))), 790);
    assert_eq!(count(|k| matches!(k, DirectiveKind::Marker(_))), 40);
    assert_eq!(count(|k| matches!(k, DirectiveKind::Action(_))), 10);
    assert_eq!(count(|k| matches!(k, DirectiveKind::DefaultAction(_))), 2);
    let chained = set.summary().chained;
    assert_eq!(
        chained, 166,
        "rules continuing a chain (one per 'chain' action)"
    );
    // Every regular expression argument was kept as written: spot-check one with escapes.
    let has_920160 = set.directives.iter().any(|d| match &d.kind {
        DirectiveKind::Rule(r) => {
            r.actions
                .iter()
                .any(|a| a.name == "id" && a.value.as_deref() == Some("920160"))
                && r.operator.negated
                && r.operator.argument == r"^\d+$"
        }
        _ => false,
    });
    assert!(has_920160);
}

#[test]
fn debians_loader_file_resolves_its_includes() {
    if !installed() || !Path::new(LOADER).is_file() {
        return;
    }
    let set = load(Path::new(LOADER), &LoadLimits::default()).unwrap();
    // The loader, the setup file, the optional exclusion files and the 31 rule files.
    assert!(set.files.len() >= 33, "{:?}", set.files);
    assert_eq!(set.summary().rules, 790);
}

#[test]
fn every_crs_operator_compiles() {
    use qalxan_waf::operator::{CompiledOperator, Op, RegexEngine};
    if !installed() {
        return;
    }
    let set = load(Path::new(LOADER), &LoadLimits::default()).unwrap();
    let (mut linear, mut pcre2, mut errors) = (0, Vec::new(), Vec::new());
    for d in &set.directives {
        let DirectiveKind::Rule(rule) = &d.kind else {
            continue;
        };
        let base = rule.operator.location.file.parent().unwrap().to_path_buf();
        match CompiledOperator::compile(&rule.operator, &base) {
            Ok(c) => match &c.op {
                Op::Rx(re) if re.engine() == RegexEngine::Linear => linear += 1,
                Op::Rx(_) => pcre2.push(rule.operator.location.to_string()),
                _ => {}
            },
            Err(e) => errors.push(e.to_string()),
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
    eprintln!(
        "@rx on the linear engine: {linear}; on PCRE2: {} {pcre2:?}",
        pcre2.len()
    );
    // 3 use lookaround, 2 possessive quantifiers; every other pattern runs in linear time.
    assert!(
        pcre2.len() <= 5,
        "more patterns need backtracking than before: {pcre2:#?}"
    );
}

#[test]
fn crs_compiles_into_a_plan() {
    if !installed() {
        return;
    }
    let set = load(Path::new(LOADER), &LoadLimits::default()).unwrap();
    let plan = match qalxan_waf::Plan::compile(&set) {
        Ok(p) => p,
        Err(errors) => panic!(
            "{}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ),
    };
    assert_eq!(plan.stats.rules, 790 + 10);
    assert_eq!(
        plan.rules().count(),
        790 - 166 + 10,
        "chain heads and SecActions"
    );
}

/// CRS's own DoS protection (REQUEST-912), turned on as crs-setup.conf describes (rule
/// 900700), needs collections that outlive a transaction: with a store, a client that sends
/// two bursts of requests past the threshold is dropped by 912120, others are not; without
/// one, nothing is counted.
#[test]
fn crs_dos_protection_counts_bursts_in_persistent_collections() {
    if !installed() {
        return;
    }
    let after = "SecAction \"id:900700,phase:1,nolog,pass,t:none,\
        setvar:'tx.dos_burst_time_slice=60',setvar:'tx.dos_counter_threshold=10',\
        setvar:'tx.dos_block_timeout=600'\"\n";
    let plan = qalxan_waf::regression::load_crs(
        "SecRuleEngine On\n",
        Path::new(SETUP),
        after,
        Path::new(RULES),
    )
    .unwrap();
    let request = |from: &str, path: &str| qalxan_waf::Request {
        method: b"GET".to_vec(),
        uri: path.as_bytes().to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        headers: vec![
            ("Host".into(), b"www.example.gov".to_vec()),
            ("User-Agent".into(), b"Mozilla/5.0 Firefox/128.0".to_vec()),
            ("Accept".into(), b"text/html".to_vec()),
        ],
        remote_addr: from.into(),
        ..Default::default()
    };
    let store = qalxan_waf::Collections::new(10_000);
    let send = |from: &str, path: &str, store: Option<&qalxan_waf::Collections>| {
        let tx = qalxan_waf::Transaction::new(&plan);
        let tx = match store {
            Some(s) => tx.with_collections(s),
            None => tx,
        };
        let mut tx = tx.request(&request(from, path));
        tx.finish();
        tx.interruption.as_ref().map(|i| (i.rule_id, i.action))
    };
    // Static files do not count; pages do. Two bursts of 10 pages: the second sets the
    // block, which the next request meets.
    for _ in 0..30 {
        assert_eq!(send("192.0.2.1", "/logo.png", Some(&store)), None);
    }
    for _ in 0..20 {
        assert_eq!(send("192.0.2.1", "/index.php", Some(&store)), None);
    }
    assert_eq!(
        send("192.0.2.1", "/index.php", Some(&store)),
        Some((912120, "drop"))
    );
    // Alerts once a minute (912120 logs, then sets a flag for 60 s); 912130 drops silently.
    assert_eq!(
        send("192.0.2.1", "/other.php", Some(&store)),
        Some((912130, "drop"))
    );
    assert_eq!(send("192.0.2.2", "/index.php", Some(&store)), None);
    // Without a store each transaction starts afresh.
    for _ in 0..40 {
        assert_eq!(send("192.0.2.3", "/index.php", None), None);
    }
}

/// Skipping the rules whose literals a transaction lacks, and starting from the prelude,
/// changes nothing: on every request of
/// CRS's regression tests, at paranoia level 4 (every rule runs), the same rules match, with
/// the same data, score and decision as when every rule is evaluated.
#[test]
fn the_shortcuts_change_no_outcome_on_crs_traffic() {
    if !installed() {
        return;
    }
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/crs-3.3-tests");
    if !tests.is_dir() {
        eprintln!("skipped: {} is absent", tests.display());
        return;
    }
    let load =
        || qalxan_waf::regression::load_crs_for_tests(Path::new(SETUP), Path::new(RULES)).unwrap();
    let filtered = load();
    assert!(filtered.stats.prefiltered > 150, "{:?}", filtered.stats);
    // CRS's setup and initialization defaults, run once per plan.
    assert!(filtered.stats.prelude > 20, "{:?}", filtered.stats);
    let scalar = filtered.rules().filter(|r| r.scalar.is_some()).count();
    assert!(scalar > 100, "{scalar} rules compare TX variables directly");
    let full = load().without_shortcuts();
    let requests = qalxan_waf::regression::requests_in(&tests).unwrap();
    assert!(requests.len() > 2000, "{} requests", requests.len());
    let outcome = |plan: &qalxan_waf::Plan, r: &qalxan_waf::Request| {
        let mut tx = qalxan_waf::Transaction::evaluate_request(plan, r);
        tx.finish();
        let matches: Vec<(u64, String, String)> = tx
            .matches
            .iter()
            .map(|m| (m.id, m.variable.clone(), m.data.clone()))
            .collect();
        (
            matches,
            tx.anomaly_score(),
            tx.interruption.as_ref().map(|i| i.status),
        )
    };
    let mut differ = Vec::new();
    for (title, r) in &requests {
        if outcome(&filtered, r) != outcome(&full, r) {
            differ.push(title.clone());
        }
    }
    assert!(differ.is_empty(), "outcomes differ in {differ:?}");
}
