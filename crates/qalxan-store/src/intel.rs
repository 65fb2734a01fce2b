//! Threat intelligence: indicators with their sources and sightings, STIX objects per TAXII
//! collection, and the blocklist the defences pull.
//!
//! Imports are written in batches (one multi-row upsert per few hundred indicators, all in one
//! transaction with one audit row naming the source and the counts), because feeds bring
//! millions of values. Re-importing a value merges: the most restrictive TLP and the highest
//! confidence win, the new source is added, `last_seen` moves forward.

use crate::audit::{self, Change};
use crate::rows::{Col, Rows};
use crate::{Actor, Result, Store, StoreError};
use qalxan_core::{now_millis, InstitutionId, Timestamp, Tlp};
use qalxan_intel::{Indicator, Kind, Observable};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::borrow::Cow;
use std::collections::HashMap;

/// The collection imports go to unless told otherwise.
pub const CERT_COLLECTION: &str = "365fed99-08fa-fdcd-a1b3-fb247eb41d01";
/// The collection partners read: the CERT's CLEAR and GREEN intelligence.
pub const SHARED_COLLECTION: &str = "91a7b528-80eb-42ed-a74d-c6fbd5a26116";

/// Rows per statement on bulk writes.
const BATCH: usize = 1000;

fn cols(n: usize) -> String {
    (0..n)
        .map(|i| format!("r.c{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn tlp_rank(t: Tlp) -> i64 {
    match t {
        Tlp::Clear => 0,
        Tlp::Green => 1,
        Tlp::Amber => 2,
        Tlp::AmberStrict => 3,
        Tlp::Red => 4,
    }
}

fn tlp_of_rank(r: i64) -> Tlp {
    match r {
        0 => Tlp::Clear,
        1 => Tlp::Green,
        2 => Tlp::Amber,
        3 => Tlp::AmberStrict,
        _ => Tlp::Red,
    }
}

/// A stored indicator.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IndicatorRecord {
    pub id: i64,
    #[schema(value_type = String)]
    pub kind: Kind,
    pub value: String,
    pub tlp: Tlp,
    pub confidence: i64,
    pub tags: Vec<String>,
    pub description: String,
    pub first_seen: Option<Timestamp>,
    pub last_seen: Option<Timestamp>,
    pub valid_until: Option<Timestamp>,
    pub stix_id: Option<String>,
    /// Whether the gateway and scanners enforce it.
    pub blocking: bool,
    /// The warninglist the value is on ("" when none).
    pub warninglist: String,
    /// How many times the defences saw it.
    pub sightings: i64,
    pub sources: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl IndicatorRecord {
    /// The engine's form, for exports.
    pub fn to_indicator(&self) -> Indicator {
        Indicator {
            kind: self.kind,
            value: self.value.clone(),
            tlp: self.tlp,
            confidence: self.confidence.clamp(0, 100) as u8,
            source: self.sources.first().cloned().unwrap_or_default(),
            tags: self.tags.clone(),
            description: self.description.clone(),
            first_seen: self.first_seen.map(|t| t.0),
            last_seen: self.last_seen.map(|t| t.0),
            valid_until: self.valid_until.map(|t| t.0),
            stix_id: self.stix_id.clone(),
            blocking: self.blocking,
            warninglist: (!self.warninglist.is_empty()).then(|| self.warninglist.clone()),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SightingRecord {
    pub sensor: String,
    pub institution_id: Option<InstitutionId>,
    pub count: i64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// Indicators that did not exist before.
    pub added: u64,
    /// Indicators that existed and were merged with the new report.
    pub updated: u64,
    /// STIX objects (or versions) stored for TAXII.
    pub objects: u64,
}

#[derive(Debug, Clone, Default)]
pub struct IndicatorFilter {
    /// Part of the value (case-insensitive).
    pub q: Option<String>,
    pub kind: Option<Kind>,
    pub tag: Option<String>,
    pub source: Option<String>,
    /// Only indicators at or below this TLP (what the caller may see).
    pub max_tlp: Option<Tlp>,
    pub blocking: Option<bool>,
    /// Only ids below this: the cursor for the next page.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// The name the CERT's STIX identity carries (the `created_by_ref` of generated objects).
const CERT_NAME: &str = "Qalxan CERT";

const COLUMNS: &str = "i.id, i.kind, i.value, i.tlp_rank, i.confidence, i.tags, i.description, \
    i.first_seen, i.last_seen, i.valid_until, i.stix_id, i.blocking, i.warninglist, i.sightings, \
    i.created_at, i.updated_at";

fn from_row(row: &AnyRow, sources: Vec<String>) -> Result<IndicatorRecord> {
    let corrupt = |column: &'static str, detail: String| StoreError::Corrupt {
        table: "indicators",
        column,
        detail,
    };
    let kind: String = row.try_get("kind")?;
    let tags: String = row.try_get("tags")?;
    let ts = |col: &str| -> Result<Option<Timestamp>> {
        Ok(row.try_get::<Option<i64>, _>(col)?.map(Timestamp))
    };
    Ok(IndicatorRecord {
        id: row.try_get("id")?,
        kind: kind
            .parse()
            .map_err(|e: qalxan_intel::ObservableError| corrupt("kind", e.to_string()))?,
        value: row.try_get("value")?,
        tlp: tlp_of_rank(row.try_get("tlp_rank")?),
        confidence: row.try_get("confidence")?,
        tags: serde_json::from_str(&tags).map_err(|e| corrupt("tags", e.to_string()))?,
        description: row.try_get("description")?,
        first_seen: ts("first_seen")?,
        last_seen: ts("last_seen")?,
        valid_until: ts("valid_until")?,
        stix_id: row.try_get("stix_id")?,
        blocking: row.try_get::<i64, _>("blocking")? == 1,
        warninglist: row.try_get("warninglist")?,
        sightings: row.try_get("sightings")?,
        sources,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

/// Merges reports of the same value within one import, so one statement never touches a row
/// twice (PostgreSQL refuses that), and returns them in the order of the `(kind, value)` index:
/// each chunk of an import then lands on neighbouring pages of that index instead of random
/// ones (1 M new values into SQLite: 7.7 s in the indicator statements instead of 23 s).
/// Reports are borrowed; only a value reported twice is copied, to merge into.
fn merge_batch(indicators: &[Indicator]) -> Vec<Merged<'_>> {
    // Sorted on keys held in the vector (kind, the value's first 8 bytes, position) so that most
    // comparisons read no indicator: comparing through references cost 1.3 s per million
    // values in cache misses. The position makes it stable: the first report of a value is
    // the one the others merge into.
    let mut order: Vec<(&'static str, u64, usize)> = indicators
        .iter()
        .enumerate()
        .map(|(i, ind)| {
            let mut head = [0u8; 8];
            let v = ind.value.as_bytes();
            let n = v.len().min(8);
            head[..n].copy_from_slice(&v[..n]);
            (ind.kind.as_str(), u64::from_be_bytes(head), i)
        })
        .collect();
    order.sort_unstable_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| indicators[a.2].value.cmp(&indicators[b.2].value))
            .then(a.2.cmp(&b.2))
    });
    let mut out: Vec<Merged<'_>> = Vec::with_capacity(order.len());
    for ind in order.into_iter().map(|(_, _, i)| &indicators[i]) {
        match out.last_mut() {
            Some((m, sources)) if m.kind == ind.kind && m.value == ind.value => {
                let m = m.to_mut();
                m.tlp = m.tlp.max(ind.tlp);
                m.confidence = m.confidence.max(ind.confidence);
                m.blocking |= ind.blocking;
                for t in &ind.tags {
                    if !m.tags.contains(t) {
                        m.tags.push(t.clone());
                    }
                }
                m.first_seen = m
                    .first_seen
                    .min(ind.first_seen)
                    .or(m.first_seen)
                    .or(ind.first_seen);
                m.last_seen = m.last_seen.max(ind.last_seen);
                if ind.source != m.source && !sources.contains(&ind.source.as_str()) {
                    sources.push(&ind.source);
                }
            }
            _ => out.push((Cow::Borrowed(ind), Vec::new())),
        }
    }
    out
}

/// A value to import, and the sources that reported it besides its `source`.
type Merged<'a> = (Cow<'a, Indicator>, Vec<&'a str>);
type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

const INDICATOR_COLS: &[Col] = {
    use Col::{Int, Text};
    &[
        Text, Text, Text, Int, Int, Text, Text, Int, Int, Int, Text, Int, Text, Int,
    ]
};
const SOURCE_COLS: &[Col] = &[Col::Text, Col::Text, Col::Text, Col::Int];

/// Source rows per statement: a value may come with any number of sources, and SQLite takes at
/// most 32,766 parameters per statement (4 per row).
const SOURCE_BATCH: usize = 4_000;

/// A chunk of an import as its upsert (`statements`: the text for a full chunk, for the last
/// one), bound, and its source rows (in statements of at most [`SOURCE_BATCH`]) when the
/// import has several sources.
fn bind_indicators<'q>(
    backend: crate::Backend,
    chunk: &'q [Merged<'_>],
    statements: (&'q str, &'q str),
    several_sources: bool,
    now: i64,
) -> (AnyQuery<'q>, Vec<Rows<'q>>) {
    let mut rows = Rows::new(backend, INDICATOR_COLS);
    let mut sources: Vec<Rows<'q>> = Vec::new();
    for (ind, srcs) in chunk {
        rows.push([
            ind.kind.as_str().into(),
            ind.value.as_str().into(),
            ind.tlp.as_str().into(),
            tlp_rank(ind.tlp).into(),
            i64::from(ind.confidence).into(),
            if ind.tags.is_empty() {
                "[]".into()
            } else {
                serde_json::to_string(&ind.tags)
                    .unwrap_or_else(|_| "[]".to_owned())
                    .into()
            },
            ind.description.as_str().into(),
            ind.first_seen.into(),
            ind.last_seen.into(),
            ind.valid_until.into(),
            ind.stix_id.as_deref().into(),
            i64::from(ind.blocking).into(),
            ind.warninglist.as_deref().unwrap_or_default().into(),
            now.into(),
        ]);
        if several_sources {
            for s in std::iter::once(ind.source.as_str()).chain(srcs.iter().copied()) {
                if sources.last().is_none_or(|r| r.len() >= SOURCE_BATCH) {
                    sources.push(Rows::new(backend, SOURCE_COLS));
                }
                let Some(current) = sources.last_mut() else {
                    continue;
                };
                current.push([
                    ind.kind.as_str().into(),
                    ind.value.as_str().into(),
                    s.into(),
                    now.into(),
                ]);
            }
        }
    }
    let sql = if chunk.len() == BATCH {
        statements.0
    } else {
        statements.1
    };
    (rows.bind(sqlx::query(sql)), sources)
}

/// A STIX object's version: `modified`, else `created`, else "" (SCOs have neither).
fn object_version(o: &serde_json::Value) -> String {
    o.get("modified")
        .or_else(|| o.get("created"))
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn object_tlp_rank(o: &serde_json::Value, default: Tlp) -> i64 {
    let refs = o
        .get("object_marking_refs")
        .and_then(|r| r.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str())
                .filter_map(qalxan_intel::stix::tlp_of_marking)
                .map(tlp_rank)
                .max()
        })
        .unwrap_or(None);
    refs.unwrap_or(tlp_rank(default))
}

/// A TAXII collection.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Collection {
    pub id: String,
    pub title: String,
    pub description: String,
    /// `cert`, `all` or `institution`.
    pub audience: String,
    pub institution_id: Option<InstitutionId>,
    pub max_tlp: Tlp,
    /// The collection whose objects this one shows (read-only) when set.
    pub view_of: Option<String>,
}

/// A stored STIX object.
#[derive(Debug, Clone)]
pub struct StoredObject {
    pub seq: i64,
    pub stix_id: String,
    pub object_type: String,
    pub spec_version: String,
    pub version: String,
    pub added_at: Timestamp,
    pub body: serde_json::Value,
}

/// What TAXII's objects, manifest and versions endpoints ask for.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    pub added_after: Option<i64>,
    /// Continue after this `seq` (TAXII's `next`).
    pub after_seq: Option<i64>,
    pub ids: Vec<String>,
    pub types: Vec<String>,
    pub spec_versions: Vec<String>,
    /// `last` (default), `first`, `all`, or explicit versions.
    pub versions: Vec<String>,
    pub limit: u32,
}

/// A TAXII status resource.
#[derive(Debug, Clone, Serialize)]
pub struct TaxiiStatus {
    pub id: String,
    pub collection_id: String,
    pub total: i64,
    pub success: i64,
    pub failure: i64,
    pub details: serde_json::Value,
    pub created_at: Timestamp,
}

impl Store {
    /// Stores what an import read: indicators (merged with existing ones), their sources, and
    /// the STIX objects in `collection`; indicators that came without a STIX object get one,
    /// so TAXII serves everything the CERT knows. One audit row names the source and counts;
    /// new values are an `intel.indicator` event (the dashboard's figure).
    pub async fn import_intel(
        &self,
        actor: &Actor,
        label: &str,
        indicators: &[Indicator],
        objects: &[serde_json::Value],
        collection: &str,
    ) -> Result<ImportSummary> {
        let merged = merge_batch(indicators);
        let mut summary = ImportSummary::default();
        let mut tx = self.write.begin().await?;
        // This import's rows are those whose updated_at is `now` (and, for new ones, created_at
        // too): make it a time no earlier import used, so the sources, generated objects and
        // counts below can select them instead of collecting ids row by row.
        if self.backend == crate::Backend::Postgres {
            // Two imports must not pick the same `now` (SQLite has one writer anyway): one at a
            // time, until this transaction ends.
            // (The lock function returns `void`, which the Any driver cannot decode.)
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(7417001)) AS l")
                .execute(&mut *tx)
                .await?;
        }
        let latest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(updated_at), 0) FROM indicators")
            .fetch_one(&mut *tx)
            .await?;
        let now = now_millis().max(latest + 1);
        // One source for the whole import (a file, a feed): its source rows are written in one
        // statement at the end instead of chunk by chunk.
        let single_source: Option<&str> = match merged.first() {
            Some((first, _))
                if merged
                    .iter()
                    .all(|(i, others)| others.is_empty() && i.source == first.source) =>
            {
                Some(first.source.as_str())
            }
            _ => None,
        };
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM taxii_collections WHERE id = $1")
                .bind(collection)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("collection"));
        }
        let identity = qalxan_intel::stix::cert_identity(CERT_NAME);
        let default_tlp = indicators.iter().map(|i| i.tlp).max().unwrap_or(Tlp::Amber);
        let upsert = |len: usize| {
            format!(
                "INSERT INTO indicators (kind, value, tlp, tlp_rank, confidence, tags, description, \
                 first_seen, last_seen, valid_until, stix_id, blocking, warninglist, sightings, \
                 created_at, updated_at) SELECT {}, 0, r.c13, r.c13 FROM ({}) AS r WHERE true \
                 ON CONFLICT (kind, value) DO UPDATE SET \
                 tlp = CASE WHEN excluded.tlp_rank > indicators.tlp_rank THEN excluded.tlp ELSE indicators.tlp END, \
                 tlp_rank = CASE WHEN excluded.tlp_rank > indicators.tlp_rank THEN excluded.tlp_rank ELSE indicators.tlp_rank END, \
                 confidence = CASE WHEN excluded.confidence > indicators.confidence THEN excluded.confidence ELSE indicators.confidence END, \
                 tags = CASE WHEN indicators.tags = '[]' THEN excluded.tags ELSE indicators.tags END, \
                 description = CASE WHEN indicators.description = '' THEN excluded.description ELSE indicators.description END, \
                 first_seen = CASE WHEN indicators.first_seen IS NULL OR excluded.first_seen < indicators.first_seen THEN excluded.first_seen ELSE indicators.first_seen END, \
                 last_seen = CASE WHEN indicators.last_seen IS NULL OR excluded.last_seen > indicators.last_seen THEN excluded.last_seen ELSE indicators.last_seen END, \
                 valid_until = CASE WHEN excluded.valid_until IS NULL THEN indicators.valid_until ELSE excluded.valid_until END, \
                 stix_id = CASE WHEN indicators.stix_id IS NULL THEN excluded.stix_id ELSE indicators.stix_id END, \
                 blocking = CASE WHEN excluded.blocking = 1 THEN 1 ELSE indicators.blocking END, \
                 updated_at = excluded.updated_at",
                cols(13),
                Rows::source_for(self.backend, INDICATOR_COLS, len)
            )
        };
        // Every chunk but the last is full: two statement texts serve the whole import.
        let upsert_full = upsert(BATCH.min(merged.len()));
        let upsert_last = upsert(merged.len() % BATCH);
        let statements = (upsert_full.as_str(), upsert_last.as_str());
        let several_sources = single_source.is_none();
        let prepare =
            |chunk| bind_indicators(self.backend, chunk, statements, several_sources, now);
        // The next chunk is bound while the database writes this one (on SQLite, in the
        // driver's own thread): the two halves of the work overlap instead of taking turns.
        let mut chunks = merged.chunks(BATCH);
        let mut next = chunks.next().map(prepare);
        while let Some((upsert, sources)) = next.take() {
            let (written, prepared) = tokio::join!(upsert.execute(&mut *tx), async {
                chunks.next().map(prepare)
            });
            written?;
            next = prepared;
            for sources in sources {
                let insert = format!(
                    "INSERT INTO indicator_sources (indicator_id, source, added_at) \
                     SELECT i.id, r.c2, r.c3 FROM ({}) AS r \
                     JOIN indicators i ON i.kind = r.c0 AND i.value = r.c1 WHERE true \
                     ON CONFLICT (indicator_id, source) DO NOTHING",
                    sources.source()
                );
                sources.bind(sqlx::query(&insert)).execute(&mut *tx).await?;
            }
        }
        if let Some(source) = single_source {
            sqlx::query(
                "INSERT INTO indicator_sources (indicator_id, source, added_at) \
                 SELECT id, $1, $2 FROM indicators WHERE updated_at = $2 \
                 ON CONFLICT (indicator_id, source) DO NOTHING",
            )
            .bind(source)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // New indicators that came without a STIX object get one, so TAXII serves everything
        // the CERT knows; a value reported again must not become a new version of its object.
        // Generated objects are drawn from their indicator when read (`stix_objects`): only
        // their row is written here.
        // One statement: the ids are made in SQL from the batch's parts and the row id
        // (`IdBatch`), rows come from the updated_at index in id order, so ids append.
        let batch = qalxan_intel::stix::IdBatch::new(now);
        let id = match self.backend {
            crate::Backend::Sqlite => {
                "printf('indicator--%08x-%04x-4%03x-%04x-%012x', $3, $4, $5, $6, id)"
            }
            crate::Backend::Postgres => {
                "'indicator--' || lpad(to_hex($3::bigint), 8, '0') || '-' \
                 || lpad(to_hex($4::bigint), 4, '0') || '-4' || lpad(to_hex($5::bigint), 3, '0') \
                 || '-' || to_hex($6::bigint) || '-' || lpad(to_hex(id), 12, '0')"
            }
        };
        let [hi, lo, a, b] = batch.parts();
        let generated = sqlx::query(&format!(
            "INSERT INTO stix_objects (collection_id, stix_id, type, spec_version, version, \
             tlp_rank, added_at, body, indicator_id) \
             SELECT $2, {id}, 'indicator', '2.1', $7, tlp_rank, $1, '', id FROM indicators \
             WHERE updated_at = $1 AND created_at = $1 AND stix_id IS NULL ORDER BY id \
             ON CONFLICT (collection_id, stix_id, version) DO NOTHING"
        ))
        .bind(now)
        .bind(collection)
        .bind(hi)
        .bind(lo)
        .bind(a)
        .bind(b)
        .bind(qalxan_intel::stix::format_time(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        summary.objects += generated;
        let counts = sqlx::query(
            "SELECT COUNT(*) AS touched, COALESCE(SUM(CASE WHEN created_at = $1 THEN 1 ELSE 0 END), 0) AS added \
             FROM indicators WHERE updated_at = $1",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let touched: i64 = counts.try_get("touched")?;
        let added: i64 = counts.try_get("added")?;
        summary.added = added as u64;
        summary.updated = (touched - added) as u64;
        if generated > 0 {
            let one = std::iter::once(&identity);
            summary.objects +=
                insert_objects(&mut tx, self.backend, collection, one, default_tlp, now).await?;
        }
        summary.objects += insert_objects(
            &mut tx,
            self.backend,
            collection,
            objects.iter(),
            default_tlp,
            now,
        )
        .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "import",
                object_type: "indicators",
                object_id: label.chars().take(200).collect(),
                institution_id: None,
                before: None,
                after: Some(serde_json::json!({
                    "added": summary.added,
                    "updated": summary.updated,
                    "objects": summary.objects,
                    "collection": collection,
                })),
            },
        )
        .await?;
        tx.commit().await?;
        if summary.added > 0 {
            // The dashboard's "Indicators of attack" figure.
            let event = crate::NewEvent {
                occurred_at: now,
                kind: qalxan_core::EventKind::IndicatorAdded,
                source: actor.name.clone(),
                institution_id: None,
                severity: qalxan_core::Severity::Info,
                count: summary.added as i64,
                value: None,
                attributes: serde_json::json!({"import": label, "updated": summary.updated}),
            };
            self.insert_events(&[event]).await?;
        }
        Ok(summary)
    }

    pub async fn list_indicators(&self, f: &IndicatorFilter) -> Result<Vec<IndicatorRecord>> {
        let like =
            f.q.as_ref()
                .map(|q| format!("%{}%", escape_like(&q.to_lowercase())));
        let tag = f.tag.as_ref().map(|t| {
            format!(
                "%{}%",
                escape_like(&serde_json::to_string(t).unwrap_or_default())
            )
        });
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM indicators i WHERE \
             ($1 IS NULL OR lower(i.value) LIKE $1 ESCAPE '\\') AND ($2 IS NULL OR i.kind = $2) \
             AND ($3 IS NULL OR i.tags LIKE $3 ESCAPE '\\') \
             AND ($4 IS NULL OR EXISTS (SELECT 1 FROM indicator_sources s WHERE s.indicator_id = i.id AND s.source = $4)) \
             AND ($5 IS NULL OR i.tlp_rank <= $5) AND ($6 IS NULL OR i.blocking = $6) \
             AND ($7 IS NULL OR i.id < $7) ORDER BY i.id DESC LIMIT $8"
        ))
        .bind(like)
        .bind(f.kind.map(|k| k.as_str()))
        .bind(tag)
        .bind(f.source.clone())
        .bind(f.max_tlp.map(tlp_rank))
        .bind(f.blocking.map(i64::from))
        .bind(f.before_id)
        .bind(i64::from(f.limit.clamp(1, 10_000)))
        .fetch_all(&self.read)
        .await?;
        self.records(&rows).await
    }

    /// Indicator rows as records, with their sources read in one query.
    async fn records(&self, rows: &[AnyRow]) -> Result<Vec<IndicatorRecord>> {
        let ids: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut sources = self.sources_of(&ids).await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get("id")?;
                from_row(r, sources.remove(&id).unwrap_or_default())
            })
            .collect()
    }

    async fn sources_of(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>> {
        let mut out: HashMap<i64, Vec<String>> = HashMap::new();
        for chunk in ids.chunks(500) {
            if chunk.is_empty() {
                continue;
            }
            let list = chunk
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",");
            let rows = sqlx::query(&format!(
                "SELECT indicator_id, source FROM indicator_sources WHERE indicator_id IN ({list}) \
                 ORDER BY added_at, source"
            ))
            .fetch_all(&self.read)
            .await?;
            for r in rows {
                out.entry(r.try_get("indicator_id")?)
                    .or_default()
                    .push(r.try_get("source")?);
            }
        }
        Ok(out)
    }

    pub async fn get_indicator(
        &self,
        id: i64,
    ) -> Result<Option<(IndicatorRecord, Vec<SightingRecord>)>> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM indicators i WHERE i.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        let Some(record) = self.records(&[row]).await?.pop() else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT sensor, institution_id, count, first_seen, last_seen FROM sightings \
             WHERE indicator_id = $1 ORDER BY last_seen DESC",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        let sightings = rows
            .iter()
            .map(|r| {
                Ok(SightingRecord {
                    sensor: r.try_get("sensor")?,
                    institution_id: r
                        .try_get::<Option<i64>, _>("institution_id")?
                        .map(InstitutionId),
                    count: r.try_get("count")?,
                    first_seen: Timestamp(r.try_get("first_seen")?),
                    last_seen: Timestamp(r.try_get("last_seen")?),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some((record, sightings)))
    }

    /// The stored indicators an observable matches exactly, and the blocking ranges (CIDR) or
    /// parent domains that cover it.
    pub async fn match_indicator(&self, o: &Observable) -> Result<Vec<IndicatorRecord>> {
        let mut candidates: Vec<(String, String)> =
            vec![(o.kind.as_str().to_owned(), o.value.clone())];
        if o.kind == Kind::Domain || o.kind == Kind::Url || o.kind == Kind::Email {
            let host = match o.kind {
                Kind::Url => url_host(&o.value),
                Kind::Email => o.value.rsplit_once('@').map(|(_, d)| d.to_owned()),
                _ => Some(o.value.clone()),
            };
            let mut rest = host.as_deref();
            while let Some(d) = rest {
                if d.contains('.') {
                    candidates.push(("domain".to_owned(), d.to_owned()));
                }
                rest = d.split_once('.').map(|(_, p)| p);
            }
        }
        let mut found: Vec<AnyRow> = Vec::new();
        for (kind, value) in candidates {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM indicators i WHERE i.kind = $1 AND i.value = $2"
            ))
            .bind(&kind)
            .bind(&value)
            .fetch_all(&self.read)
            .await?;
            found.extend(rows);
        }
        if let (Kind::Ipv4 | Kind::Ipv6, Ok(ip)) = (o.kind, o.value.parse::<std::net::IpAddr>()) {
            // Ranges are few next to single values; scan them and test containment.
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM indicators i WHERE i.kind = 'cidr'"
            ))
            .fetch_all(&self.read)
            .await?;
            for r in rows {
                let value: String = r.try_get("value")?;
                if value.parse::<ipnet::IpNet>().is_ok_and(|n| n.contains(&ip)) {
                    found.push(r);
                }
            }
        }
        // A candidate appears once even when several lookups found it.
        let mut out = self.records(&found).await?;
        let mut seen = std::collections::HashSet::new();
        out.retain(|r| seen.insert(r.id));
        Ok(out)
    }

    /// Changes whether an indicator blocks (forcing a warninglisted value), its TLP or expiry.
    pub async fn update_indicator(
        &self,
        actor: &Actor,
        id: i64,
        blocking: Option<bool>,
        tlp: Option<Tlp>,
        valid_until: Option<Option<i64>>,
    ) -> Result<IndicatorRecord> {
        let mut tx = self.write.begin().await?;
        let before = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM indicators i WHERE i.id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("indicator"))?;
        let before = from_row(&before, Vec::new())?;
        let until = match valid_until {
            Some(v) => v,
            None => before.valid_until.map(|t| t.0),
        };
        let now = now_millis().max(before.updated_at.0 + 1);
        let row = sqlx::query(&format!(
            "UPDATE indicators SET blocking = $1, tlp = $2, tlp_rank = $3, valid_until = $4, updated_at = $5 \
             WHERE id = $6 RETURNING {}",
            COLUMNS.replace("i.", "")
        ))
        .bind(i64::from(blocking.unwrap_or(before.blocking)))
        .bind(tlp.unwrap_or(before.tlp).as_str())
        .bind(tlp_rank(tlp.unwrap_or(before.tlp)))
        .bind(until)
        .bind(now)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let after = from_row(&row, Vec::new())?;
        if after.tlp != before.tlp || after.valid_until != before.valid_until {
            new_object_versions(&mut tx, self.backend, &after, now).await?;
        }
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "update",
                object_type: "indicator",
                object_id: id.to_string(),
                institution_id: None,
                before: audit::to_json(&before),
                after: audit::to_json(&after),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(self
            .get_indicator(id)
            .await?
            .map(|(r, _)| r)
            .unwrap_or(after))
    }

    pub async fn delete_indicator(&self, actor: &Actor, id: i64) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let before = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM indicators i WHERE i.id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound("indicator"))?;
        let before = from_row(&before, Vec::new())?;
        sqlx::query("DELETE FROM indicator_sources WHERE indicator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM sightings WHERE indicator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // Its generated STIX object is drawn from it: a deleted indicator is no longer shared.
        sqlx::query("DELETE FROM stix_objects WHERE indicator_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM indicators WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "delete",
                object_type: "indicator",
                object_id: id.to_string(),
                institution_id: None,
                before: audit::to_json(&before),
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that a sensor saw an indicator's value; returns the indicator's id, or None when
    /// no indicator has that value (nothing is stored then).
    pub async fn record_sighting(
        &self,
        actor: &Actor,
        o: &Observable,
        institution: Option<InstitutionId>,
        count: i64,
    ) -> Result<Option<i64>> {
        let matches = self.match_indicator(o).await?;
        let Some(first) = matches.first() else {
            return Ok(None);
        };
        self.record_sightings(
            actor,
            &[first.id],
            institution,
            count,
            serde_json::json!({"value": o.value, "count": count}),
        )
        .await?;
        Ok(Some(first.id))
    }

    /// Counts `count` sightings by `actor` on each of the indicators `ids` (those a message
    /// or a log matched), in one transaction with an audit row per indicator (`seen` says
    /// what was seen).
    pub async fn record_sightings(
        &self,
        actor: &Actor,
        ids: &[i64],
        institution: Option<InstitutionId>,
        count: i64,
        seen: serde_json::Value,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_millis();
        let count = count.clamp(1, 1_000_000_000);
        let mut tx = self.write.begin().await?;
        for &id in ids {
            sqlx::query(
                "INSERT INTO sightings (indicator_id, sensor, institution_id, count, first_seen, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (indicator_id, sensor) DO UPDATE SET \
                 count = sightings.count + excluded.count, last_seen = excluded.last_seen",
            )
            .bind(id)
            .bind(&actor.name)
            .bind(institution.map(|i| i.0))
            .bind(count)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE indicators SET sightings = sightings + $1, last_seen = $2 WHERE id = $3",
            )
            .bind(count)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            audit::record(
                &mut *tx,
                actor,
                Change {
                    action: "sighting",
                    object_type: "indicator",
                    object_id: id.to_string(),
                    institution_id: institution,
                    before: None,
                    after: Some(seen.clone()),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The blocking, unexpired indicators the defences enforce, and a version that changes
    /// whenever that set does (the lists' ETag).
    pub async fn blocklist(&self) -> Result<(String, Vec<Observable>)> {
        let now = now_millis();
        let rows = sqlx::query(
            "SELECT kind, value FROM indicators WHERE blocking = 1 \
             AND (valid_until IS NULL OR valid_until > $1) \
             AND kind IN ('ipv4', 'ipv6', 'cidr', 'domain', 'url', 'md5', 'sha1', 'sha256')",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        let version_row = sqlx::query(
            "SELECT COALESCE(MAX(updated_at), 0) AS v, COUNT(*) AS n FROM indicators WHERE blocking = 1 \
             AND (valid_until IS NULL OR valid_until > $1)",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        let v: i64 = version_row.try_get("v")?;
        let n: i64 = version_row.try_get("n")?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.try_get("kind")?;
            if let Ok(kind) = kind.parse() {
                out.push(Observable {
                    kind,
                    value: r.try_get("value")?,
                });
            }
        }
        Ok((format!("{v}-{n}"), out))
    }

    /// Which of these (kind, value) pairs are already stored: an import's preview.
    pub async fn existing_indicators(
        &self,
        items: &[(Kind, String)],
    ) -> Result<std::collections::HashSet<(Kind, String)>> {
        let mut out = std::collections::HashSet::new();
        for chunk in items.chunks(200) {
            let cond: Vec<String> = (0..chunk.len())
                .map(|i| format!("(kind = ${} AND value = ${})", i * 2 + 1, i * 2 + 2))
                .collect();
            let sql = format!(
                "SELECT kind, value FROM indicators WHERE {}",
                cond.join(" OR ")
            );
            let mut q = sqlx::query(&sql);
            for (k, v) in chunk {
                q = q.bind(k.as_str()).bind(v.clone());
            }
            for r in q.fetch_all(&self.read).await? {
                let kind: String = r.try_get("kind")?;
                if let Ok(k) = kind.parse() {
                    out.insert((k, r.try_get("value")?));
                }
            }
        }
        Ok(out)
    }

    pub async fn count_indicators(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM indicators")
            .fetch_one(&self.read)
            .await?)
    }

    // ---- TAXII ------------------------------------------------------------------------------

    pub async fn taxii_collections(&self) -> Result<Vec<Collection>> {
        let rows = sqlx::query(
            "SELECT id, title, description, audience, institution_id, max_tlp_rank, view_of \
             FROM taxii_collections ORDER BY created_at, title",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Collection {
                    id: r.try_get("id")?,
                    title: r.try_get("title")?,
                    description: r.try_get("description")?,
                    audience: r.try_get("audience")?,
                    institution_id: r
                        .try_get::<Option<i64>, _>("institution_id")?
                        .map(InstitutionId),
                    max_tlp: tlp_of_rank(r.try_get("max_tlp_rank")?),
                    view_of: r.try_get("view_of")?,
                })
            })
            .collect()
    }

    /// Adds a collection (a partner's exchange collection, say).
    pub async fn create_collection(&self, actor: &Actor, c: &Collection) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO taxii_collections (id, title, description, audience, institution_id, \
             max_tlp_rank, view_of, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.id)
        .bind(&c.title)
        .bind(&c.description)
        .bind(&c.audience)
        .bind(c.institution_id.map(|i| i.0))
        .bind(tlp_rank(c.max_tlp))
        .bind(c.view_of.clone())
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::conflict_on_unique(e, || format!("collection {} exists", c.id)))?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "taxii_collection",
                object_id: c.id.clone(),
                institution_id: c.institution_id,
                before: None,
                after: audit::to_json(c),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Objects of a collection (a view shows its source's objects up to its TLP), oldest
    /// first; the bool says whether more follow.
    pub async fn stix_objects(
        &self,
        c: &Collection,
        f: &ObjectFilter,
    ) -> Result<(Vec<StoredObject>, bool)> {
        let source = c.view_of.clone().unwrap_or_else(|| c.id.clone());
        let mut sql = String::from(
            "SELECT seq, stix_id, type, spec_version, version, added_at, body, indicator_id \
             FROM stix_objects o WHERE collection_id = $1 \
             AND (CASE WHEN o.indicator_id IS NULL THEN o.tlp_rank \
                  ELSE (SELECT i.tlp_rank FROM indicators i WHERE i.id = o.indicator_id) END) <= $2 \
             AND ($3 IS NULL OR added_at > $3) AND ($4 IS NULL OR seq > $4)",
        );
        let mut binds: Vec<String> = Vec::new();
        let mut list = |col: &str, values: &[String], sql: &mut String| {
            if values.is_empty() {
                return;
            }
            let start = 5 + binds.len();
            let ph: Vec<String> = (0..values.len())
                .map(|i| format!("${}", start + i))
                .collect();
            sql.push_str(&format!(" AND {col} IN ({})", ph.join(",")));
            binds.extend(values.iter().cloned());
        };
        list("stix_id", &f.ids, &mut sql);
        list("type", &f.types, &mut sql);
        list("spec_version", &f.spec_versions, &mut sql);
        let explicit: Vec<String> = f
            .versions
            .iter()
            .filter(|v| !matches!(v.as_str(), "first" | "last" | "all"))
            .cloned()
            .collect();
        let wants = |w: &str| f.versions.iter().any(|v| v == w);
        let (first, last, all) = (
            wants("first"),
            wants("last") || f.versions.is_empty(),
            wants("all"),
        );
        if !all {
            let mut alts = Vec::new();
            if last {
                alts.push("o.version = (SELECT MAX(x.version) FROM stix_objects x WHERE x.collection_id = o.collection_id AND x.stix_id = o.stix_id)".to_owned());
            }
            if first {
                alts.push("o.version = (SELECT MIN(x.version) FROM stix_objects x WHERE x.collection_id = o.collection_id AND x.stix_id = o.stix_id)".to_owned());
            }
            if !explicit.is_empty() {
                let start = 5 + binds.len();
                let ph: Vec<String> = (0..explicit.len())
                    .map(|i| format!("${}", start + i))
                    .collect();
                alts.push(format!("o.version IN ({})", ph.join(",")));
                binds.extend(explicit);
            }
            sql.push_str(&format!(" AND ({})", alts.join(" OR ")));
        }
        let limit = i64::from(f.limit.clamp(1, 10_000));
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", limit + 1));
        let mut q = sqlx::query(&sql)
            .bind(source)
            .bind(tlp_rank(c.max_tlp))
            .bind(f.added_after)
            .bind(f.after_seq);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.read).await?;
        let more = rows.len() as i64 > limit;
        let rows = &rows[..rows.len().min(limit as usize)];
        // Generated objects are drawn from their indicators, as they are now.
        let lazy: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get::<Option<i64>, _>("indicator_id"))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        let indicators: HashMap<i64, IndicatorRecord> = if lazy.is_empty() {
            HashMap::new()
        } else {
            let ids_from = crate::json_ids(self.backend);
            let found = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM indicators i WHERE i.id IN ({ids_from})"
            ))
            .bind(serde_json::to_string(&lazy).unwrap_or_default())
            .fetch_all(&self.read)
            .await?;
            self.records(&found)
                .await?
                .into_iter()
                .map(|r| (r.id, r))
                .collect()
        };
        let identity = qalxan_intel::stix::cert_identity(CERT_NAME);
        let identity_id = identity["id"].as_str().unwrap_or_default();
        let mut objects = Vec::with_capacity(rows.len());
        for r in rows {
            let added_at: i64 = r.try_get("added_at")?;
            let body = match r.try_get::<Option<i64>, _>("indicator_id")? {
                Some(id) => match indicators.get(&id) {
                    Some(ind) => {
                        let created = ind.created_at.0.min(added_at);
                        let mut ind = ind.to_indicator();
                        ind.stix_id = Some(r.try_get("stix_id")?);
                        qalxan_intel::stix::indicator_object(&ind, created, added_at, identity_id)
                    }
                    // Deleted since this page's query: gone from the collection too.
                    None => continue,
                },
                None => {
                    let body: String = r.try_get("body")?;
                    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                        table: "stix_objects",
                        column: "body",
                        detail: e.to_string(),
                    })?
                }
            };
            objects.push(StoredObject {
                seq: r.try_get("seq")?,
                stix_id: r.try_get("stix_id")?,
                object_type: r.try_get("type")?,
                spec_version: r.try_get("spec_version")?,
                version: r.try_get("version")?,
                added_at: Timestamp(added_at),
                body,
            });
        }
        Ok((objects, more))
    }

    /// Stores objects POSTed to a collection and the status resource that reports on them.
    pub async fn add_taxii_objects(
        &self,
        actor: &Actor,
        collection: &str,
        objects: &[serde_json::Value],
        failures: &[(String, String)],
        default_tlp: Tlp,
        status_id: &str,
    ) -> Result<TaxiiStatus> {
        let now = now_millis();
        let mut tx = self.write.begin().await?;
        insert_objects(
            &mut tx,
            self.backend,
            collection,
            objects.iter(),
            default_tlp,
            now,
        )
        .await?;
        let successes: Vec<serde_json::Value> = objects
            .iter()
            .map(|o| serde_json::json!({"id": o["id"], "version": object_version(o)}))
            .collect();
        let failed: Vec<serde_json::Value> = failures
            .iter()
            .map(|(id, m)| serde_json::json!({"id": id, "version": "", "message": m}))
            .collect();
        let details = serde_json::json!({"successes": successes, "failures": failed});
        let total = (objects.len() + failures.len()) as i64;
        sqlx::query(
            "INSERT INTO taxii_status (id, collection_id, total, success, failure, details, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(status_id)
        .bind(collection)
        .bind(total)
        .bind(objects.len() as i64)
        .bind(failures.len() as i64)
        .bind(details.to_string())
        .bind(&actor.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "taxii_add",
                object_type: "taxii_collection",
                object_id: collection.to_owned(),
                institution_id: None,
                before: None,
                after: Some(serde_json::json!({"status": status_id, "success": objects.len(), "failure": failures.len()})),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(TaxiiStatus {
            id: status_id.to_owned(),
            collection_id: collection.to_owned(),
            total,
            success: objects.len() as i64,
            failure: failures.len() as i64,
            details,
            created_at: Timestamp(now),
        })
    }

    pub async fn taxii_status(&self, id: &str) -> Result<Option<(TaxiiStatus, String)>> {
        let Some(r) = sqlx::query(
            "SELECT id, collection_id, total, success, failure, details, created_by, created_at \
             FROM taxii_status WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        let details: String = r.try_get("details")?;
        Ok(Some((
            TaxiiStatus {
                id: r.try_get("id")?,
                collection_id: r.try_get("collection_id")?,
                total: r.try_get("total")?,
                success: r.try_get("success")?,
                failure: r.try_get("failure")?,
                details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
                created_at: Timestamp(r.try_get("created_at")?),
            },
            r.try_get("created_by")?,
        )))
    }
}

/// Shares a changed indicator (its TLP or its expiry) as a new version of its STIX object in
/// every collection that holds it, so TAXII clients asking for what was added since their
/// last pull get the change: generated objects get a new row drawn from the indicator, objects
/// that came with the indicator a copy with `modified`, markings and `valid_until` updated.
async fn new_object_versions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: crate::Backend,
    ind: &IndicatorRecord,
    now: i64,
) -> Result<()> {
    let version = qalxan_intel::stix::format_time(now);
    let rank = tlp_rank(ind.tlp);
    const LATEST: &str = "o.version = (SELECT MAX(x.version) FROM stix_objects x \
        WHERE x.collection_id = o.collection_id AND x.stix_id = o.stix_id)";
    sqlx::query(&format!(
        "INSERT INTO stix_objects (collection_id, stix_id, type, spec_version, version, tlp_rank, \
         added_at, body, indicator_id) SELECT o.collection_id, o.stix_id, o.type, o.spec_version, \
         $1, $2, $3, '', o.indicator_id FROM stix_objects o WHERE o.indicator_id = $4 AND {LATEST} \
         ON CONFLICT (collection_id, stix_id, version) DO NOTHING"
    ))
    .bind(&version)
    .bind(rank)
    .bind(now)
    .bind(ind.id)
    .execute(&mut **tx)
    .await?;
    let Some(stix_id) = &ind.stix_id else {
        return Ok(());
    };
    let stored = sqlx::query(&format!(
        "SELECT o.collection_id, o.body FROM stix_objects o WHERE o.stix_id = $1 \
         AND o.indicator_id IS NULL AND {LATEST}"
    ))
    .bind(stix_id)
    .fetch_all(&mut **tx)
    .await?;
    for row in stored {
        let collection: String = row.try_get("collection_id")?;
        let body: String = row.try_get("body")?;
        let Ok(serde_json::Value::Object(mut o)) = serde_json::from_str(&body) else {
            continue;
        };
        o.insert("modified".into(), version.clone().into());
        let mut markings: Vec<serde_json::Value> = o
            .get("object_marking_refs")
            .and_then(|m| m.as_array())
            .map(|m| {
                m.iter()
                    .filter(|r| {
                        r.as_str()
                            .and_then(qalxan_intel::stix::tlp_of_marking)
                            .is_none()
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        markings.push(qalxan_intel::stix::tlp_marking_id(ind.tlp).into());
        o.insert("object_marking_refs".into(), markings.into());
        match ind.valid_until {
            Some(t) => o.insert(
                "valid_until".into(),
                qalxan_intel::stix::format_time(t.0).into(),
            ),
            None => o.remove("valid_until"),
        };
        let body = serde_json::Value::Object(o);
        insert_objects(
            tx,
            backend,
            &collection,
            std::iter::once(&body),
            ind.tlp,
            now,
        )
        .await?;
    }
    Ok(())
}

async fn insert_objects<'a>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: crate::Backend,
    collection: &str,
    objects: impl Iterator<Item = &'a serde_json::Value>,
    default_tlp: Tlp,
    now: i64,
) -> Result<u64> {
    use Col::{Int, Text};
    const COLS: &[Col] = &[Text, Text, Text, Text, Int, Text, Text, Int];
    let objects: Vec<&serde_json::Value> = objects.collect();
    let mut added = 0;
    for chunk in objects.chunks(BATCH) {
        let mut rows = Rows::new(backend, COLS);
        for o in chunk {
            rows.push([
                o["id"].as_str().unwrap_or_default().into(),
                o["type"].as_str().unwrap_or_default().into(),
                o.get("spec_version")
                    .and_then(|s| s.as_str())
                    .unwrap_or("2.1")
                    .into(),
                object_version(o).into(),
                object_tlp_rank(o, default_tlp).into(),
                o.to_string().into(),
                collection.into(),
                now.into(),
            ]);
        }
        let sql = format!(
            "INSERT INTO stix_objects (collection_id, stix_id, type, spec_version, version, \
             tlp_rank, added_at, body) SELECT r.c6, r.c0, r.c1, r.c2, r.c3, r.c4, r.c7, r.c5 \
             FROM ({}) AS r WHERE true \
             ON CONFLICT (collection_id, stix_id, version) DO NOTHING",
            rows.source()
        );
        added += rows
            .bind(sqlx::query(&sql))
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    Ok(added)
}

fn url_host(u: &str) -> Option<String> {
    let rest = u.split_once("://")?.1;
    let host = rest.split(['/', '?', '#']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    Some(host.split(':').next()?.to_owned())
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
