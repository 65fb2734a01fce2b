//! Threat-intel storage on SQLite and PostgreSQL: merging re-reported values, the blocklist
//! and its version, sightings, TAXII objects with versions and TLP views.

#![allow(clippy::unwrap_used)]

use qalxan_core::Tlp;
use qalxan_intel::{Indicator, Kind, Observable};
use qalxan_store::testing::TestDb;
use qalxan_store::{Actor, IndicatorFilter, ObjectFilter, CERT_COLLECTION, SHARED_COLLECTION};

fn ind(kind: Kind, v: &str, source: &str, tlp: Tlp) -> Indicator {
    let mut i = Indicator::new(Observable::new(kind, v).unwrap(), source);
    i.tlp = tlp;
    i
}

#[tokio::test]
async fn imports_merge_and_feed_the_blocklist() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let actor = Actor::cli();
    let first = vec![
        ind(Kind::Domain, "evil.example", "feed-a", Tlp::Green),
        ind(Kind::Ipv4, "45.9.148.3", "feed-a", Tlp::Clear),
        ind(Kind::Ipv4, "8.8.8.8", "feed-a", Tlp::Clear),
        ind(Kind::Cidr, "203.0.112.0/24", "feed-a", Tlp::Amber),
        ind(Kind::Domain, "evil.example", "feed-a", Tlp::Clear),
    ];
    let s = store
        .import_intel(&actor, "a.txt", &first, &[], CERT_COLLECTION)
        .await
        .unwrap();
    assert_eq!((s.added, s.updated), (4, 0));
    assert_eq!(
        s.objects, 5,
        "4 generated indicators and the CERT's identity"
    );
    let (v1, list) = store.blocklist().await.unwrap();
    let values: Vec<&str> = list.iter().map(|o| o.value.as_str()).collect();
    assert!(values.contains(&"evil.example") && values.contains(&"203.0.112.0/24"));
    assert!(
        !values.contains(&"8.8.8.8"),
        "warninglisted values do not block"
    );

    let mut again = ind(Kind::Domain, "Evil.Example.", "feed-b", Tlp::Red);
    again.confidence = 90;
    let s = store
        .import_intel(&actor, "b.txt", &[again], &[], CERT_COLLECTION)
        .await
        .unwrap();
    assert_eq!((s.added, s.updated), (0, 1));
    let found = store
        .list_indicators(&IndicatorFilter {
            q: Some("EVIL".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].tlp, Tlp::Red, "the most restrictive TLP wins");
    assert_eq!(found[0].confidence, 90);
    assert_eq!(found[0].sources, vec!["feed-a", "feed-b"]);
    let only_a = store
        .list_indicators(&IndicatorFilter {
            source: Some("feed-b".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only_a.len(), 1);
    let green = store
        .list_indicators(&IndicatorFilter {
            max_tlp: Some(Tlp::Green),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(green.len(), 2, "{green:?}");

    // A covering range and a parent domain match too.
    let m = store
        .match_indicator(&Observable::new(Kind::Ipv4, "203.0.112.77").unwrap())
        .await
        .unwrap();
    assert_eq!(m.len(), 1);
    let m = store
        .match_indicator(&Observable::new(Kind::Url, "http://a.evil.example/x").unwrap())
        .await
        .unwrap();
    assert_eq!(m[0].value, "evil.example");

    // Sightings count and show on the indicator.
    let sensor = Actor::token("gw-1", "127.0.0.1");
    let id = store
        .record_sighting(
            &sensor,
            &Observable::new(Kind::Domain, "x.evil.example").unwrap(),
            None,
            3,
        )
        .await
        .unwrap()
        .unwrap();
    store
        .record_sighting(
            &sensor,
            &Observable::new(Kind::Domain, "evil.example").unwrap(),
            None,
            2,
        )
        .await
        .unwrap();
    let (rec, sightings) = store.get_indicator(id).await.unwrap().unwrap();
    assert_eq!(rec.sightings, 5);
    assert_eq!(sightings[0].count, 5);
    assert_eq!(sightings[0].sensor, "token:gw-1");
    assert!(store
        .record_sighting(
            &sensor,
            &Observable::new(Kind::Domain, "benign.example").unwrap(),
            None,
            1
        )
        .await
        .unwrap()
        .is_none());

    // Unblocking changes the blocklist's version; forcing a warninglisted value adds it.
    let dns = store
        .match_indicator(&Observable::new(Kind::Ipv4, "8.8.8.8").unwrap())
        .await
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2));
    store
        .update_indicator(&actor, dns[0].id, Some(true), None, None)
        .await
        .unwrap();
    let (v2, list) = store.blocklist().await.unwrap();
    assert_ne!(v1, v2);
    assert!(list.iter().any(|o| o.value == "8.8.8.8"));
    store
        .update_indicator(&actor, rec.id, None, None, Some(Some(1)))
        .await
        .unwrap();
    let (_, list) = store.blocklist().await.unwrap();
    assert!(
        !list.iter().any(|o| o.value == "evil.example"),
        "expired indicators do not block"
    );
    store.delete_indicator(&actor, rec.id).await.unwrap();
    assert!(store.get_indicator(rec.id).await.unwrap().is_none());
}

#[tokio::test]
async fn taxii_objects_keep_versions_and_views_cap_tlp() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let actor = Actor::cli();
    let obj = |id: &str, modified: &str, marking: &str| {
        serde_json::json!({"type": "indicator", "spec_version": "2.1", "id": id,
            "created": "2024-01-01T00:00:00.000Z", "modified": modified,
            "pattern": "[domain-name:value = 'evil.example']", "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z", "object_marking_refs": [marking]})
    };
    let green = qalxan_intel::stix::tlp_marking_id(Tlp::Green);
    let red = qalxan_intel::stix::tlp_marking_id(Tlp::Red);
    let a = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f";
    let b = "indicator--c3e1f3a4-1b2b-4c4d-8e8f-0a1b2c3d4e5f";
    let objects = vec![
        obj(a, "2024-01-01T00:00:00.000Z", green),
        obj(a, "2024-02-01T00:00:00.000Z", green),
        obj(b, "2024-01-01T00:00:00.000Z", red),
    ];
    store
        .add_taxii_objects(&actor, CERT_COLLECTION, &objects, &[], Tlp::Amber, "s1")
        .await
        .unwrap();
    // Adding the same versions again stores nothing new.
    store
        .add_taxii_objects(&actor, CERT_COLLECTION, &objects, &[], Tlp::Amber, "s2")
        .await
        .unwrap();
    let cols = store.taxii_collections().await.unwrap();
    let cert = cols.iter().find(|c| c.id == CERT_COLLECTION).unwrap();
    let shared = cols.iter().find(|c| c.id == SHARED_COLLECTION).unwrap();
    let f = ObjectFilter {
        limit: 100,
        ..Default::default()
    };
    let (latest, more) = store.stix_objects(cert, &f).await.unwrap();
    assert!(!more);
    assert_eq!(latest.len(), 2, "latest version of each");
    let all = ObjectFilter {
        versions: vec!["all".into()],
        limit: 100,
        ..Default::default()
    };
    assert_eq!(store.stix_objects(cert, &all).await.unwrap().0.len(), 3);
    let (shared_objs, _) = store.stix_objects(shared, &f).await.unwrap();
    assert_eq!(shared_objs.len(), 1, "the shared view stops at TLP:GREEN");
    assert_eq!(shared_objs[0].stix_id, a);
    let page = ObjectFilter {
        versions: vec!["all".into()],
        limit: 2,
        ..Default::default()
    };
    let (p1, more) = store.stix_objects(cert, &page).await.unwrap();
    assert!(more);
    let next = ObjectFilter {
        after_seq: Some(p1[1].seq),
        ..page
    };
    let (p2, more) = store.stix_objects(cert, &next).await.unwrap();
    assert_eq!((p2.len(), more), (1, false));
    let (status, by) = store.taxii_status("s2").await.unwrap().unwrap();
    assert_eq!(
        (status.total, status.success, by.as_str()),
        (3, 3, actor.name.as_str())
    );
}

#[tokio::test]
async fn generated_objects_follow_their_indicator() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let actor = Actor::cli();
    let s = store
        .import_intel(
            &actor,
            "feed.txt",
            &[ind(Kind::Domain, "phish.example", "feed-a", Tlp::Green)],
            &[],
            CERT_COLLECTION,
        )
        .await
        .unwrap();
    assert_eq!(
        s.objects, 2,
        "the indicator's object and the CERT's identity"
    );
    let cols = store.taxii_collections().await.unwrap();
    let cert = cols.iter().find(|c| c.id == CERT_COLLECTION).unwrap();
    let shared = cols.iter().find(|c| c.id == SHARED_COLLECTION).unwrap();
    let f = ObjectFilter {
        types: vec!["indicator".into()],
        limit: 100,
        ..Default::default()
    };
    let (objs, _) = store.stix_objects(shared, &f).await.unwrap();
    assert_eq!(objs.len(), 1, "TLP:GREEN is shared");
    let o = &objs[0];
    assert_eq!(o.body["id"], o.stix_id.as_str());
    assert_eq!(o.body["pattern"], "[domain-name:value = 'phish.example']");
    assert_eq!(o.body["modified"], o.version.as_str());
    assert_eq!(
        o.body["object_marking_refs"][0],
        qalxan_intel::stix::tlp_marking_id(Tlp::Green)
    );
    assert_eq!(o.body["description"], "Reported by feed-a.");

    // Raised to AMBER, it leaves the partners' view; the CERT's shows the new marking.
    let rec = &store
        .list_indicators(&IndicatorFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()[0];
    store
        .update_indicator(&actor, rec.id, None, Some(Tlp::Amber), None)
        .await
        .unwrap();
    assert!(store.stix_objects(shared, &f).await.unwrap().0.is_empty());
    let (objs, _) = store.stix_objects(cert, &f).await.unwrap();
    assert_eq!(objs.len(), 1, "the latest version");
    assert_eq!(
        objs[0].body["object_marking_refs"][0],
        qalxan_intel::stix::tlp_marking_id(Tlp::Amber)
    );
    // The change is a new version, so clients pulling what was added since see it.
    let all = ObjectFilter {
        versions: vec!["all".into()],
        ..f.clone()
    };
    let (versions, _) = store.stix_objects(cert, &all).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].stix_id, versions[1].stix_id);
    assert!(versions[1].version > versions[0].version);
    assert_eq!(versions[1].body["modified"], versions[1].version.as_str());
    assert_eq!(versions[1].body["created"], versions[0].version.as_str());
    // Deleted, it is no longer shared at all.
    store.delete_indicator(&actor, rec.id).await.unwrap();
    assert!(store.stix_objects(cert, &f).await.unwrap().0.is_empty());
}

#[tokio::test]
async fn an_imported_object_changes_as_a_new_version() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let actor = Actor::cli();
    let id = "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f";
    let object = serde_json::json!({"type": "indicator", "spec_version": "2.1", "id": id,
        "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
        "pattern": "[domain-name:value = 'evil.example']", "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
        "object_marking_refs": [qalxan_intel::stix::tlp_marking_id(Tlp::Green)]});
    let mut i = ind(Kind::Domain, "evil.example", "partner", Tlp::Green);
    i.stix_id = Some(id.to_owned());
    store
        .import_intel(&actor, "bundle.json", &[i], &[object], CERT_COLLECTION)
        .await
        .unwrap();
    let rec = &store
        .list_indicators(&IndicatorFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()[0];
    store
        .update_indicator(
            &actor,
            rec.id,
            None,
            Some(Tlp::Amber),
            Some(Some(1_900_000_000_000)),
        )
        .await
        .unwrap();
    let cols = store.taxii_collections().await.unwrap();
    let cert = cols.iter().find(|c| c.id == CERT_COLLECTION).unwrap();
    let shared = cols.iter().find(|c| c.id == SHARED_COLLECTION).unwrap();
    let all = ObjectFilter {
        ids: vec![id.to_owned()],
        versions: vec!["all".into()],
        limit: 10,
        ..Default::default()
    };
    let (versions, _) = store.stix_objects(cert, &all).await.unwrap();
    assert_eq!(versions.len(), 2);
    let new = &versions[1].body;
    assert_eq!(new["created"], "2024-01-01T00:00:00.000Z");
    assert_eq!(new["modified"], versions[1].version.as_str());
    assert_eq!(
        new["object_marking_refs"],
        serde_json::json!([qalxan_intel::stix::tlp_marking_id(Tlp::Amber)])
    );
    assert_eq!(new["valid_until"], "2030-03-17T17:46:40.000Z");
    // Partners keep the GREEN version they had; the AMBER one is not theirs.
    let (theirs, _) = store.stix_objects(shared, &all).await.unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].version, "2024-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn one_import_with_several_sources_and_generated_ids() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    let actor = Actor::cli();
    // Out of order and with repeats, as a merged feed brings them.
    let reports = vec![
        ind(Kind::Domain, "zeta.example", "feed-b", Tlp::Amber),
        ind(Kind::Domain, "alpha.example", "feed-a", Tlp::Green),
        ind(Kind::Domain, "zeta.example", "feed-a", Tlp::Green),
        ind(
            Kind::Md5,
            "d41d8cd98f00b204e9800998ecf8427e",
            "feed-c",
            Tlp::Green,
        ),
        ind(Kind::Domain, "zeta.example", "feed-b", Tlp::Red),
    ];
    let s = store
        .import_intel(&actor, "mixed", &reports, &[], CERT_COLLECTION)
        .await
        .unwrap();
    assert_eq!((s.added, s.updated), (3, 0));
    assert_eq!(
        s.objects, 4,
        "3 generated indicators and the CERT's identity"
    );
    let all = store
        .list_indicators(&IndicatorFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let zeta = all.iter().find(|r| r.value == "zeta.example").unwrap();
    assert_eq!(zeta.sources, vec!["feed-a", "feed-b"]);
    assert_eq!(zeta.tlp, Tlp::Red, "the most restrictive report wins");
    let alpha = all.iter().find(|r| r.value == "alpha.example").unwrap();
    assert_eq!(alpha.sources, vec!["feed-a"]);

    // Generated ids are made in SQL: version-4 UUIDs whose last group is the indicator's row
    // id, sorting as the rows were created.
    let cert = store
        .taxii_collections()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == CERT_COLLECTION)
        .unwrap();
    let f = ObjectFilter {
        types: vec!["indicator".into()],
        limit: 100,
        ..Default::default()
    };
    let (objs, _) = store.stix_objects(&cert, &f).await.unwrap();
    assert_eq!(objs.len(), 3);
    let mut ids: Vec<&str> = Vec::new();
    for o in &objs {
        let uuid = o.stix_id.strip_prefix("indicator--").unwrap();
        let parsed = uuid::Uuid::parse_str(uuid).unwrap();
        assert_eq!(parsed.get_version_num(), 4, "{uuid}");
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{uuid}");
        let row = i64::from_str_radix(&uuid[24..], 16).unwrap();
        assert!(all.iter().any(|r| r.id == row), "{uuid} names a row");
        ids.push(&o.stix_id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "distinct ids");
}

#[tokio::test]
async fn a_value_with_thousands_of_sources_imports_in_one_go() {
    let db = TestDb::new().await.unwrap();
    let store = &db.store;
    // 9,000 (value, source) pairs: more than one SQLite statement takes at 4 parameters a row.
    let reports: Vec<Indicator> = (0..9_000)
        .map(|i| {
            ind(
                Kind::Domain,
                "shared.example",
                &format!("partner-{i}"),
                Tlp::Green,
            )
        })
        .collect();
    let s = store
        .import_intel(&Actor::cli(), "many", &reports, &[], CERT_COLLECTION)
        .await
        .unwrap();
    assert_eq!((s.added, s.updated), (1, 0));
    let found = store
        .list_indicators(&IndicatorFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found[0].sources.len(), 9_000);
}
