//! The store against a real database: SQLite by default, PostgreSQL when
//! `QALXAN_TEST_DATABASE_URL` is set (see `qalxan_store::testing`).

#![allow(clippy::unwrap_used)] // A test that cannot unwrap should fail loudly.

use qalxan_core::{EventKind, InstitutionFields, InstitutionId, Period, Role, Severity, HOUR_MS};
use qalxan_store::testing::TestDb;
use qalxan_store::{Actor, AuditFilter, EventFilter, NewEvent, NewUser, StoreError, UserUpdate};

fn ministry() -> InstitutionFields {
    InstitutionFields {
        name: "Ministry of Health".into(),
        sector: "health".into(),
        domains: vec!["health.example".into()],
        ip_ranges: vec!["192.0.2.0/24".into()],
        ..Default::default()
    }
}

fn event(kind: EventKind, at: i64, inst: Option<InstitutionId>, count: i64) -> NewEvent {
    NewEvent {
        occurred_at: at,
        kind,
        source: "test".into(),
        institution_id: inst,
        severity: Severity::High,
        count,
        value: None,
        attributes: serde_json::json!({}),
    }
}

#[tokio::test]
async fn institutions_are_audited_and_unique() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let actor = Actor::user("alice", "192.0.2.9");
    let created = store.create_institution(&actor, ministry()).await.unwrap();
    assert_eq!(created.fields.domains, ["health.example"]);

    let dup = InstitutionFields {
        name: "MINISTRY of health".into(),
        ..Default::default()
    };
    match store.create_institution(&actor, dup).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("already exists"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }

    let mut fields = created.fields.clone();
    fields.contact_email = "soc@health.example".into();
    let updated = store
        .update_institution(&actor, created.id, fields)
        .await
        .unwrap();
    assert_eq!(updated.fields.contact_email, "soc@health.example");

    let trail = store
        .list_audit(&AuditFilter {
            object_type: Some("institution".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(trail.len(), 2);
    assert_eq!(trail[0].action, "update");
    assert_eq!(trail[0].actor, "user:alice");
    assert_eq!(trail[0].ip, "192.0.2.9");
    assert_eq!(trail[0].before.as_ref().unwrap()["contact_email"], "");
    assert_eq!(
        trail[0].after.as_ref().unwrap()["contact_email"],
        "soc@health.example"
    );
    assert_eq!(trail[1].action, "create");
}

#[tokio::test]
async fn audit_log_and_events_cannot_be_rewritten() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    store
        .create_institution(&Actor::system(), ministry())
        .await
        .unwrap();
    store
        .insert_events(&[event(EventKind::RequestBlocked, 1_000_000, None, 1)])
        .await
        .unwrap();
    // Reach past the API, as a bug or an intruder with SQL access through the product would.
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "UPDATE events SET count = 0",
        "DELETE FROM events",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[tokio::test]
async fn institution_role_needs_an_institution() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let new = |role, inst| NewUser {
        username: "Bob".into(),
        display_name: String::new(),
        email: String::new(),
        role,
        institution_id: inst,
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into(),
    };
    let err = store
        .create_user(&Actor::cli(), new(Role::Institution, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("institution_id"), "{err}");
    let err = store
        .create_user(
            &Actor::cli(),
            new(Role::Institution, Some(InstitutionId(99))),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no institution with id 99"),
        "{err}"
    );
    let err = store
        .create_user(&Actor::cli(), new(Role::Sensor, None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("API tokens only"), "{err}");

    let inst = store
        .create_institution(&Actor::cli(), ministry())
        .await
        .unwrap();
    let bob = store
        .create_user(&Actor::cli(), new(Role::Institution, Some(inst.id)))
        .await
        .unwrap();
    assert_eq!(bob.username, "bob");
    let (found, hash) = store.user_credentials("BOB").await.unwrap().unwrap();
    assert_eq!(found.id, bob.id);
    assert!(hash.starts_with("$argon2id$"));
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let admin = store
        .create_user(
            &Actor::system(),
            NewUser {
                username: "admin".into(),
                display_name: String::new(),
                email: String::new(),
                role: Role::Admin,
                institution_id: None,
                password_hash: "x".into(),
            },
        )
        .await
        .unwrap();
    let err = store
        .update_user(
            &Actor::cli(),
            admin.id,
            UserUpdate {
                disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
}

#[tokio::test]
async fn login_failures_count_per_account_and_address() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    for _ in 0..3 {
        store
            .begin_login_attempt("carol", "198.51.100.1")
            .await
            .unwrap();
    }
    store
        .begin_login_attempt("dave", "198.51.100.1")
        .await
        .unwrap();
    let f = store
        .login_failures("Carol", "198.51.100.1", 0)
        .await
        .unwrap();
    assert_eq!((f.account, f.ip), (3, 4));
    // A successful login clears the account's count but not the address's.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let ok = store
        .begin_login_attempt("carol", "198.51.100.1")
        .await
        .unwrap();
    store.login_succeeded(ok).await.unwrap();
    let f = store
        .login_failures("carol", "198.51.100.1", 0)
        .await
        .unwrap();
    assert_eq!((f.account, f.ip), (0, 4));
}

#[tokio::test]
async fn rollups_agree_with_the_raw_events() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let a = store
        .create_institution(&Actor::system(), ministry())
        .await
        .unwrap()
        .id;
    let b = store
        .create_institution(
            &Actor::system(),
            InstitutionFields {
                name: "Central Bank".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;
    let now = 1_795_624_110_123;
    let (start, _) = Period::Month.window(now);
    let kinds = EventKind::ALL;
    let mut batch = Vec::new();
    // A deterministic spread over 40 days (some before the window), three owners, all kinds.
    for i in 0..2_000i64 {
        let at = now - (i * 7_919 * 1_000) % (40 * 24 * HOUR_MS);
        // Each kind cycles through the owners, whatever the number of kinds.
        let inst = [Some(a), Some(b), None][((i / kinds.len() as i64) % 3) as usize];
        let mut e = event(
            kinds[(i % kinds.len() as i64) as usize],
            at,
            inst,
            1 + i % 5,
        );
        if e.kind == EventKind::DdosDetected {
            e.value = Some(1000 + i);
        }
        batch.push(e);
    }
    // Several batches, as several gateways would send them.
    for chunk in batch.chunks(700) {
        store.insert_events(chunk).await.unwrap();
    }
    for period in Period::ALL {
        let (start, _) = period.window(now);
        for scope in [None, Some(a), Some(b)] {
            let rolled = store
                .overview(start, period.bin_ms(), period.bins(), scope)
                .await
                .unwrap();
            let raw = store
                .overview_from_events(start, period.bin_ms(), period.bins(), scope)
                .await
                .unwrap();
            assert_eq!(rolled.series, raw, "{period} scope {scope:?}");
            // Six months hold the whole 40-day spread, so every kind (across institutions:
            // each institution gets only every third kind).
            if *period == Period::HalfYear && scope.is_none() {
                assert!(rolled.series.iter().all(|s| s.total > 0), "{period}");
            }
            assert!(rolled.series.iter().any(|s| s.total > 0), "{period}");
        }
    }
    assert_eq!(store.count_events().await.unwrap(), 2_000);
    let all = store
        .overview(start, Period::Month.bin_ms(), Period::Month.bins(), None)
        .await
        .unwrap();
    let ddos = &all.series[1];
    assert_eq!(ddos.kind, EventKind::DdosDetected);
    assert!(ddos.peak > 1000);
    let victims: i64 = all.victims.iter().map(|v| v.victims).sum();
    assert_eq!(victims, all.series[7].total);
    assert!(all.victims.iter().any(|v| v.institution == "Central Bank"));
    assert!(all.victims.iter().any(|v| v.institution_id.is_none()));
}

#[tokio::test]
async fn events_for_unknown_institutions_are_refused_whole() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let batch = [
        event(EventKind::FileInfected, 1_000, None, 1),
        event(EventKind::FileInfected, 1_000, Some(InstitutionId(42)), 1),
    ];
    let err = store.insert_events(&batch).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "events[1].institution_id: no institution with id 42"
    );
    let stored = store
        .list_events(&EventFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(stored.is_empty());
}

#[tokio::test]
async fn reopening_keeps_data_and_schema() {
    let db = TestDb::new().await.unwrap();
    db.store
        .create_institution(&Actor::system(), ministry())
        .await
        .unwrap();
    db.store.close().await;
    let again = qalxan_store::Store::open(&db.url).await.unwrap();
    assert_eq!(again.list_institutions(None).await.unwrap().len(), 1);
    assert_eq!(
        again.schema_versions().await.unwrap(),
        qalxan_store::migration_versions().0
    );
}
