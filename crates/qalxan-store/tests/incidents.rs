//! Incident response storage on SQLite and PostgreSQL: alert aggregation, merging and
//! promotion, the incident workflow with its team, tasks, victims and evidence, institution
//! scoping, and the periodic report's figures.

#![allow(clippy::unwrap_used)]

use qalxan_core::{now_millis, InstitutionFields, InstitutionId, Severity, Tlp, HOUR_MS};
use qalxan_incident::{
    AlertDraft, AlertStatus, Category, Impact, Pap, Status, VictimKind, VictimRole,
};
use qalxan_store::testing::TestDb;
use qalxan_store::{
    Actor, AlertFilter, IncidentFilter, NewIncident, NewVictim, Observed, PromoteTo, Store,
};

fn draft(key: &str, inst: Option<InstitutionId>, count: i64, at: i64) -> AlertDraft {
    AlertDraft {
        key: key.to_owned(),
        rule: "waf.blocked".to_owned(),
        title: format!("Malicious requests ({key})"),
        severity: Severity::Medium,
        institution_id: inst.map(|i| i.0),
        observables: vec![("ipv4".to_owned(), "203.0.113.7".to_owned())],
        count,
        occurred_at: at,
    }
}

async fn institution(store: &Store, name: &str) -> InstitutionId {
    store
        .create_institution(
            &Actor::cli(),
            InstitutionFields {
                name: name.to_owned(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id
}

fn new_incident(title: &str, institutions: Vec<InstitutionId>) -> NewIncident {
    NewIncident {
        title: title.to_owned(),
        description: String::new(),
        category: Category::parse("fraud/phishing").unwrap(),
        severity: Severity::High,
        impact: Impact::Medium,
        tlp: Tlp::Amber,
        pap: Pap::Amber,
        institutions,
        lead_user_id: None,
    }
}

#[tokio::test]
async fn alerts_aggregate_by_key_within_the_window() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let inst = institution(store, "Ministry").await;
    let now = now_millis();
    let a = store
        .ingest_alerts("token:gw-1", &[draft("k1", Some(inst), 1, now)], HOUR_MS)
        .await
        .unwrap();
    assert_eq!((a.created, a.aggregated), (1, 0));
    // Another part, same key: the same alert, count 2, both sources.
    let b = store
        .ingest_alerts(
            "token:gw-2",
            &[draft("k1", Some(inst), 1, now + 1)],
            HOUR_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        (b.created, b.aggregated, b.ids.clone()),
        (0, 1, a.ids.clone())
    );
    let alert = store.get_alert(a.ids[0], None).await.unwrap().unwrap();
    assert_eq!(alert.count, 2);
    assert_eq!(alert.sources, vec!["token:gw-1", "token:gw-2"]);
    // A batch folds in memory too: 500 of one key and 1 of another.
    let mut batch: Vec<AlertDraft> = (0..500)
        .map(|i| draft("k1", Some(inst), 1, now + i))
        .collect();
    batch.push(draft("k2", None, 3, now));
    let c = store
        .ingest_alerts("token:gw-1", &batch, HOUR_MS)
        .await
        .unwrap();
    assert_eq!((c.created, c.aggregated), (1, 1));
    assert_eq!(
        store
            .get_alert(a.ids[0], None)
            .await
            .unwrap()
            .unwrap()
            .count,
        502
    );
    // Outside the window: a new alert.
    let d = store
        .ingest_alerts(
            "token:gw-1",
            &[draft("k1", Some(inst), 1, now + 3 * HOUR_MS)],
            HOUR_MS,
        )
        .await
        .unwrap();
    assert_eq!(d.created, 1);
    assert_ne!(d.ids[0], a.ids[0]);
    // A dismissed alert no longer absorbs.
    store
        .set_alert_status(
            &Actor::cli(),
            d.ids[0],
            AlertStatus::Dismissed,
            "scanner of a partner",
        )
        .await
        .unwrap();
    let e = store
        .ingest_alerts(
            "token:gw-1",
            &[draft("k1", Some(inst), 1, now + 3 * HOUR_MS)],
            HOUR_MS,
        )
        .await
        .unwrap();
    assert_eq!(e.created, 1);
    assert!(store
        .set_alert_status(&Actor::cli(), e.ids[0], AlertStatus::Dismissed, " ")
        .await
        .is_err());
    // Scoping: the institution sees its alerts only.
    let other = institution(store, "Other").await;
    let mine = store
        .list_alerts(&AlertFilter {
            institution_id: Some(inst),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(mine.iter().all(|a| a.institution_id == Some(inst)) && mine.len() == 3);
    assert!(store
        .get_alert(c.ids[1], Some(other))
        .await
        .unwrap()
        .is_none());
    // The monitor's counters agree with the alerts themselves, overall and per institution.
    for scope in [None, Some(inst)] {
        let all = store
            .list_alerts(&AlertFilter {
                institution_id: scope,
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut expected: Vec<(AlertStatus, i64)> = Vec::new();
        for a in &all {
            match expected.iter_mut().find(|(s, _)| *s == a.status) {
                Some((_, n)) => *n += 1,
                None => expected.push((a.status, 1)),
            }
        }
        expected.sort();
        assert_eq!(store.alert_counts(scope).await.unwrap(), expected);
    }
    // Bad input names the field.
    let err = store
        .ingest_alerts(
            "x",
            &[draft("k", Some(InstitutionId(999)), 1, now)],
            HOUR_MS,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("alerts[0].institution_id"),
        "{err}"
    );
}

#[tokio::test]
async fn merge_and_promote_into_an_incident() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let inst = institution(store, "Ministry").await;
    let other = institution(store, "Other").await;
    let now = now_millis();
    let s = store
        .ingest_alerts(
            "token:gw",
            &[
                draft("a", Some(inst), 2, now),
                draft("b", Some(inst), 3, now),
            ],
            HOUR_MS,
        )
        .await
        .unwrap();
    let merged = store
        .merge_alerts(&Actor::cli(), s.ids[0], &[s.ids[1]])
        .await
        .unwrap();
    assert_eq!(merged.count, 5);
    let b = store.get_alert(s.ids[1], None).await.unwrap().unwrap();
    assert_eq!(
        (b.status, b.merged_into),
        (AlertStatus::Merged, Some(s.ids[0]))
    );
    assert_eq!(
        store.alert_counts(Some(inst)).await.unwrap(),
        vec![(AlertStatus::Open, 1), (AlertStatus::Merged, 1)]
    );

    let incident = store
        .promote_alerts(
            &Actor::cli(),
            &[s.ids[0]],
            PromoteTo::New(new_incident("Phishing wave", vec![])),
        )
        .await
        .unwrap();
    assert_eq!(incident.institutions.len(), 1);
    assert_eq!(incident.institutions[0].id, inst);
    let detail = store
        .get_incident(incident.id, Some(inst))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.alerts.len(), 1);
    assert_eq!(detail.observables.len(), 1);
    assert_eq!(detail.observables[0].value, "203.0.113.7");
    assert!(store
        .get_incident(incident.id, Some(other))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store.alert_counts(None).await.unwrap(),
        vec![(AlertStatus::Merged, 1), (AlertStatus::Promoted, 1)]
    );
    assert!(
        store
            .promote_alerts(&Actor::cli(), &[s.ids[0]], PromoteTo::Existing(incident.id))
            .await
            .is_err(),
        "a promoted alert cannot be promoted again"
    );
}

#[tokio::test]
async fn the_workflow_and_the_report() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let actor = Actor::cli();
    let start = now_millis();
    let inst = institution(store, "Ministry").await;
    let inst2 = institution(store, "Agency").await;
    let i = store
        .create_incident(
            &actor,
            new_incident("Credential phishing", vec![inst, inst2]),
        )
        .await
        .unwrap();
    assert_eq!(i.status, Status::New);
    let i2 = store
        .create_incident(
            &actor,
            NewIncident {
                category: Category::parse("availability/ddos").unwrap(),
                severity: Severity::Critical,
                ..new_incident("Flood", vec![inst2])
            },
        )
        .await
        .unwrap();
    let triaged = store
        .set_incident_status(&actor, i.id, Status::Triage, "")
        .await
        .unwrap();
    assert!(triaged.triaged_at.is_some() && triaged.contained_at.is_none());
    let contained = store
        .set_incident_status(&actor, i.id, Status::Contained, "")
        .await
        .unwrap();
    assert!(contained.contained_at.is_some());
    assert!(store
        .set_incident_status(&actor, i.id, Status::Closed, "")
        .await
        .is_err());
    let task = store
        .add_incident_task(&actor, i.id, "Reset passwords", None, Some(start + HOUR_MS))
        .await
        .unwrap();
    let done = store
        .update_incident_task(
            &actor,
            i.id,
            task.id,
            Some(qalxan_incident::TaskStatus::Done),
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(done.status, qalxan_incident::TaskStatus::Done);
    for (kind, inst_id, role, count) in [
        (
            VictimKind::Employee,
            Some(inst),
            Some(VictimRole::Administrative),
            3,
        ),
        (
            VictimKind::Employee,
            Some(inst2),
            Some(VictimRole::Technical),
            2,
        ),
        (VictimKind::Citizen, None, None, 10),
    ] {
        store
            .add_incident_victims(
                &actor,
                i.id,
                NewVictim {
                    kind,
                    institution_id: inst_id,
                    role,
                    count,
                    note: String::new(),
                },
            )
            .await
            .unwrap();
    }
    assert!(store
        .add_incident_victims(
            &actor,
            i.id,
            NewVictim {
                kind: VictimKind::Employee,
                institution_id: None,
                role: None,
                count: 1,
                note: String::new()
            }
        )
        .await
        .is_err());
    let e1 = store
        .add_incident_evidence(&actor, i.id, "mail.eml", "ab", b"hello", "clean")
        .await
        .unwrap();
    let e2 = store
        .add_incident_evidence(&actor, i.id, "copy.eml", "ab", b"hello", "clean")
        .await
        .unwrap();
    assert_ne!(e1.id, e2.id);
    let (ev, bytes) = store
        .evidence_content(i.id, e2.id, Some(inst))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.name.as_str(), bytes.as_slice()),
        ("copy.eml", &b"hello"[..])
    );
    assert!(
        store
            .evidence_content(i2.id, e2.id, None)
            .await
            .unwrap()
            .is_none(),
        "evidence of another incident"
    );
    store
        .add_incident_observables(
            &actor,
            i.id,
            &[Observed {
                kind: "domain".into(),
                value: "login-gov.example".into(),
            }],
        )
        .await
        .unwrap();
    store
        .add_incident_comment(&actor, i.id, "Mail gateway rules updated")
        .await
        .unwrap();
    let closed = store
        .set_incident_status(&actor, i.id, Status::Closed, "resolved")
        .await
        .unwrap();
    assert!(closed.closed_at.is_some());

    let detail = store.get_incident(i.id, None).await.unwrap().unwrap();
    let kinds: Vec<&str> = detail.timeline.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"opened"));
    assert!(kinds.contains(&"comment") && kinds.contains(&"victim") && kinds.contains(&"evidence"));
    assert_eq!(kinds.last(), Some(&"status"));

    let open = store
        .list_incidents(&IncidentFilter {
            open: true,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open.iter().map(|r| r.id).collect::<Vec<_>>(), vec![i2.id]);
    let fraud = store
        .list_incidents(&IncidentFilter {
            category: Some("fraud".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(fraud.len(), 1);

    let f = store
        .periodic_figures(start - 1, now_millis() + 1, None)
        .await
        .unwrap();
    assert_eq!((f.incidents_opened, f.incidents_closed), (2, 1));
    assert_eq!(
        (
            f.employees,
            f.employee_institutions,
            f.administrative,
            f.citizens
        ),
        (5, 2, 3, 10)
    );
    assert_eq!(
        f.by_institution,
        vec![("Agency".to_owned(), 2), ("Ministry".to_owned(), 1)]
    );
    assert_eq!(
        f.by_category,
        vec![("Availability".to_owned(), 1), ("Fraud".to_owned(), 1)]
    );
    assert_eq!(
        qalxan_incident::report::victims_sentence(&f),
        "5 employees from 2 institutions fell victim, 60 % administrative staff; 10 citizens."
    );
    let scoped = store
        .periodic_figures(start - 1, now_millis() + 1, Some(inst))
        .await
        .unwrap();
    assert_eq!(
        (scoped.incidents_opened, scoped.employees, scoped.citizens),
        (1, 3, 10)
    );
    let before = store
        .periodic_figures(start - 10_000, start - 1, None)
        .await
        .unwrap();
    assert_eq!((before.incidents_opened, before.employees), (0, 0));

    // The overview counts open incidents from the incidents themselves.
    let overview = store
        .overview(now_millis() - HOUR_MS, HOUR_MS, 2, None)
        .await
        .unwrap();
    assert_eq!(overview.open_incidents, 1);
}

#[tokio::test]
async fn changed_alerts_follow_every_change_in_scope() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let ministry = institution(store, "Ministry").await;
    let agency = institution(store, "Agency").await;
    let now = now_millis();
    let a = store
        .ingest_alerts("gw", &[draft("a", Some(ministry), 1, now)], HOUR_MS)
        .await
        .unwrap()
        .ids[0];
    let b = store
        .ingest_alerts("gw", &[draft("b", Some(agency), 1, now)], HOUR_MS)
        .await
        .unwrap()
        .ids[0];
    let ids = |list: &[qalxan_store::AlertRecord]| list.iter().map(|r| r.id).collect::<Vec<_>>();
    let all = store.changed_alerts(None, now - 1000, 100).await.unwrap();
    assert_eq!(ids(&all), vec![a, b], "oldest change first");
    let own = store
        .changed_alerts(Some(ministry), now - 1000, 100)
        .await
        .unwrap();
    assert_eq!(ids(&own), vec![a]);
    // A limit keeps the newest changes.
    let newest = store.changed_alerts(None, now - 1000, 1).await.unwrap();
    assert_eq!(ids(&newest), vec![b]);

    // A change stamps the alert again: after `b`'s time only the dismissed `a` is new.
    let cursor = all.last().unwrap().updated_at.0 + 1;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let dismissed = store
        .set_alert_status(&Actor::cli(), a, AlertStatus::Dismissed, "test")
        .await
        .unwrap();
    assert!(dismissed.updated_at.0 >= cursor);
    let since = store.changed_alerts(None, cursor, 100).await.unwrap();
    assert_eq!(ids(&since), vec![a]);
    assert_eq!(since[0].status, AlertStatus::Dismissed);

    // What a filtered view makes of it.
    let open = AlertFilter {
        status: Some(AlertStatus::Open),
        institution_id: Some(ministry),
        ..Default::default()
    };
    assert!(!open.matches(&since[0]));
    assert!(AlertFilter {
        status: None,
        ..open.clone()
    }
    .matches(&since[0]));
    assert!(!AlertFilter {
        institution_id: Some(agency),
        ..Default::default()
    }
    .matches(&since[0]));
}
