//! Reports carry text people typed (titles, descriptions, comments, observables): lay arbitrary
//! text out as Markdown and as PDF, and parse it as an RSIT category and an alert from an event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qalxan_incident::report::Document;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = qalxan_incident::Category::parse(&text);
    let parts: Vec<String> = text.split('\u{1}').map(str::to_owned).collect();
    let mut d = Document::default();
    if parts.len() % 2 == 0 {
        d.mark(parts[parts.len() - 1].clone());
    }
    d.heading(1, parts[0].clone());
    for (i, p) in parts.iter().enumerate() {
        match i % 4 {
            0 => d.paragraph(p.clone()),
            1 => d.facts(vec![(p.clone(), p.repeat(3))]),
            2 => d.table(&["a", "b"], vec![vec![p.clone(), String::new()], vec![p.clone()]]),
            _ => d.bars(p.clone(), vec![(p.clone(), p.len() as i64), ("x".into(), -1)]),
        };
    }
    let md = d.to_markdown();
    assert!(!md.is_empty());
    let pdf = qalxan_incident::pdf::render(&d, &parts[0]);
    assert!(pdf.starts_with(b"%PDF-"));
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = qalxan_incident::alert::from_event(
            qalxan_core::EventKind::RequestBlocked,
            qalxan_core::Severity::High,
            Some(1),
            1,
            0,
            &v,
        );
    }
});
