//! Alerts: every part's detections, aggregated by key (see `qalxan_incident::alert`).
//!
//! Ingestion is the hot path (a gateway under a flood reports thousands of blocks a second):
//! a batch is folded by key in memory first, the live alerts of its keys are read in one
//! statement, and the increments and the new alerts are written as one JSON-parameter
//! statement each, so a batch of a thousand costs a handful of statements whatever its mix.
//! Ingestion writes no audit row per alert (alerts are machine data, like events); every change
//! a person makes to an alert does.

use crate::audit::{self, Change};
use crate::rows::{Col, Rows};
use crate::{json_column, parse_column, Actor, Backend, Result, Store, StoreError};
use qalxan_core::{now_millis, FieldError, InstitutionId, Severity, Timestamp};
use qalxan_incident::alert::MAX_OBSERVABLES;
use qalxan_incident::{AlertDraft, AlertStatus};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;

/// Alerts per statement on ingestion.
const CHUNK: usize = 1000;
/// Distinct reporters remembered per alert.
const MAX_SOURCES: usize = 20;

/// One observable on an alert or an incident.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Observed {
    /// The threat-intelligence kind (`ipv4`, `domain`, `url`, `sha256`...).
    pub kind: String,
    pub value: String,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertRecord {
    pub id: i64,
    /// What aggregates alerts: alerts with this key fold into this one while it is live.
    pub key: String,
    /// The kind of detection (`waf.blocked`, `scan.infected`...).
    pub rule: String,
    pub title: String,
    pub severity: Severity,
    pub institution_id: Option<InstitutionId>,
    pub observables: Vec<Observed>,
    /// The parts that reported it (`token:gateway-1`...), first ones first.
    pub sources: Vec<String>,
    /// How many detections it stands for.
    pub count: i64,
    pub status: AlertStatus,
    /// Why it was dismissed, when it was.
    pub status_reason: String,
    pub merged_into: Option<i64>,
    pub incident_id: Option<i64>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub institution_id: Option<InstitutionId>,
    pub status: Option<AlertStatus>,
    pub rule: Option<String>,
    pub min_severity: Option<Severity>,
    /// Only alerts seen at or after this time.
    pub since: Option<i64>,
    pub incident_id: Option<i64>,
    /// Only alerts with a smaller id: the cursor for the next page.
    pub before_id: Option<i64>,
    pub limit: u32,
}

impl AlertFilter {
    /// Whether `alert` is one this filter lists (its cursor and limit aside): how a live view
    /// decides whether a changed alert joins or leaves what it shows.
    pub fn matches(&self, alert: &AlertRecord) -> bool {
        self.institution_id
            .is_none_or(|i| alert.institution_id == Some(i))
            && self.status.is_none_or(|s| alert.status == s)
            && self.rule.as_deref().is_none_or(|r| alert.rule == r)
            && self.min_severity.is_none_or(|s| alert.severity >= s)
            && self.since.is_none_or(|t| alert.last_seen.0 >= t)
            && self
                .incident_id
                .is_none_or(|i| alert.incident_id == Some(i))
    }
}

/// What an ingestion did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct IngestSummary {
    /// Alerts created.
    pub created: usize,
    /// Alerts that an existing live alert absorbed.
    pub aggregated: usize,
    /// The alert each distinct key landed in, in the order the keys first appeared.
    pub ids: Vec<i64>,
}

pub(crate) const COLUMNS: &str =
    "id, key, rule, title, severity, institution_id, observables, sources, \
    count, status, status_reason, merged_into, incident_id, first_seen, last_seen, updated_at";

pub(crate) fn from_row(row: &AnyRow) -> Result<AlertRecord> {
    Ok(AlertRecord {
        id: row.try_get("id")?,
        key: row.try_get("key")?,
        rule: row.try_get("rule")?,
        title: row.try_get("title")?,
        severity: parse_column(row, "alerts", "severity")?,
        institution_id: row
            .try_get::<Option<i64>, _>("institution_id")?
            .map(InstitutionId),
        observables: json_column(row, "alerts", "observables")?,
        sources: json_column(row, "alerts", "sources")?,
        count: row.try_get("count")?,
        status: parse_column(row, "alerts", "status")?,
        status_reason: row.try_get("status_reason")?,
        merged_into: row.try_get("merged_into")?,
        incident_id: row.try_get("incident_id")?,
        first_seen: Timestamp(row.try_get("first_seen")?),
        last_seen: Timestamp(row.try_get("last_seen")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

/// A batch's alerts with one key, folded.
struct Group {
    key: String,
    rule: String,
    title: String,
    severity: Severity,
    institution_id: Option<i64>,
    observables: Vec<Observed>,
    count: i64,
    first: i64,
    last: i64,
}

fn add_observables(into: &mut Vec<Observed>, more: impl IntoIterator<Item = Observed>) {
    for o in more {
        if into.len() >= MAX_OBSERVABLES {
            break;
        }
        if !into.contains(&o) {
            into.push(o);
        }
    }
}

/// The SQL list `'a', 'b'` of the severities at or above `min`.
fn severities_from(min: Severity) -> String {
    Severity::ALL
        .iter()
        .filter(|s| **s >= min)
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Stores alerts from `source`, folding each into the live alert of its key when that
    /// alert was last seen within `window_ms` of it.
    pub async fn ingest_alerts(
        &self,
        source: &str,
        drafts: &[AlertDraft],
        window_ms: i64,
    ) -> Result<IngestSummary> {
        let mut groups: Vec<Group> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, d) in drafts.iter().enumerate() {
            if d.key.is_empty() {
                return Err(
                    FieldError::new(format!("alerts[{i}].key"), "must not be empty").into(),
                );
            }
            if !(1..=crate::MAX_EVENT_COUNT).contains(&d.count) {
                return Err(FieldError::new(
                    format!("alerts[{i}].count"),
                    format!("must be 1 to {}", crate::MAX_EVENT_COUNT),
                )
                .into());
            }
            let observed = d.observables.iter().map(|(kind, value)| Observed {
                kind: kind.clone(),
                value: value.clone(),
            });
            match index.get(d.key.as_str()) {
                Some(&g) => {
                    let g = &mut groups[g];
                    g.count = g.count.saturating_add(d.count);
                    g.severity = g.severity.max(d.severity);
                    g.first = g.first.min(d.occurred_at);
                    if d.occurred_at >= g.last {
                        g.last = d.occurred_at;
                    }
                    add_observables(&mut g.observables, observed);
                }
                None => {
                    index.insert(&d.key, groups.len());
                    let mut observables = Vec::new();
                    add_observables(&mut observables, observed);
                    groups.push(Group {
                        key: d.key.clone(),
                        rule: d.rule.clone(),
                        title: d.title.clone(),
                        severity: d.severity,
                        institution_id: d.institution_id,
                        observables,
                        count: d.count,
                        first: d.occurred_at,
                        last: d.occurred_at,
                    });
                }
            }
        }
        let mut summary = IngestSummary::default();
        if groups.is_empty() {
            return Ok(summary);
        }
        let now = now_millis();
        let mut tx = self.write.begin().await?;
        let mut institutions: Vec<i64> = groups.iter().filter_map(|g| g.institution_id).collect();
        institutions.sort_unstable();
        institutions.dedup();
        for id in institutions {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT id FROM institutions WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                let i = drafts
                    .iter()
                    .position(|d| d.institution_id == Some(id))
                    .unwrap_or_default();
                return Err(FieldError::new(
                    format!("alerts[{i}].institution_id"),
                    format!("no institution with id {id}"),
                )
                .into());
            }
        }

        // The batch's keys drive the join (CROSS JOIN keeps them the outer loop in SQLite), so
        // each key is one probe of the live-key index however many alerts are stored.
        let keys_from = match self.backend {
            Backend::Sqlite => "json_each($1) AS j",
            Backend::Postgres => "json_array_elements_text($1::json) AS j(value)",
        };
        let mut ids = vec![0i64; groups.len()];
        for (chunk_no, chunk) in groups.chunks(CHUNK).enumerate() {
            let base = chunk_no * CHUNK;
            let keys: Vec<&str> = chunk.iter().map(|g| g.key.as_str()).collect();
            let cutoff = chunk.iter().map(|g| g.first).min().unwrap_or(now) - window_ms;
            let rows = sqlx::query(&format!(
                "SELECT a.id, a.key, a.severity, a.observables, a.sources, a.last_seen \
                 FROM {keys_from} CROSS JOIN alerts AS a WHERE a.key = j.value \
                 AND a.status IN ('open', 'acknowledged') AND a.last_seen >= $2 ORDER BY a.id"
            ))
            .bind(serde_json::to_string(&keys).unwrap_or_default())
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
            // The newest live alert of each key (rows come oldest first).
            let mut live: HashMap<String, AnyRow> = HashMap::new();
            for row in rows {
                live.insert(row.try_get("key")?, row);
            }
            use Col::{Int, Text};
            let mut updates = Rows::new(self.backend, &[Int, Int, Int, Text, Text, Text, Int]);
            let mut inserts = Vec::new();
            let mut insert_rows = Rows::new(
                self.backend,
                &[Text, Text, Text, Text, Int, Text, Text, Int, Int, Int, Int],
            );
            for (j, g) in chunk.iter().enumerate() {
                let existing = match live.get(&g.key) {
                    Some(row) if row.try_get::<i64, _>("last_seen")? >= g.first - window_ms => {
                        Some(row)
                    }
                    _ => None,
                };
                match existing {
                    Some(row) => {
                        let id: i64 = row.try_get("id")?;
                        let severity: Severity = parse_column(row, "alerts", "severity")?;
                        let mut observables: Vec<Observed> =
                            json_column(row, "alerts", "observables")?;
                        add_observables(&mut observables, g.observables.iter().cloned());
                        let mut sources: Vec<String> = json_column(row, "alerts", "sources")?;
                        if sources.len() < MAX_SOURCES && !sources.iter().any(|s| s == source) {
                            sources.push(source.to_owned());
                        }
                        let last_seen = row.try_get::<i64, _>("last_seen")?.max(g.last);
                        updates.push([
                            id.into(),
                            g.count.into(),
                            last_seen.into(),
                            severity.max(g.severity).as_str().into(),
                            serde_json::to_string(&observables)
                                .unwrap_or_default()
                                .into(),
                            serde_json::to_string(&sources).unwrap_or_default().into(),
                            now.into(),
                        ]);
                        ids[base + j] = id;
                        summary.aggregated += 1;
                    }
                    None => {
                        inserts.push(base + j);
                        insert_rows.push([
                            g.key.as_str().into(),
                            g.rule.as_str().into(),
                            g.title.as_str().into(),
                            g.severity.as_str().into(),
                            g.institution_id.into(),
                            serde_json::to_string(&g.observables)
                                .unwrap_or_default()
                                .into(),
                            serde_json::to_string(&[source]).unwrap_or_default().into(),
                            g.count.into(),
                            g.first.into(),
                            g.last.into(),
                            now.into(),
                        ]);
                    }
                }
            }
            if !updates.is_empty() {
                let sql = format!(
                    "UPDATE alerts SET count = alerts.count + r.c1, last_seen = r.c2, \
                     severity = r.c3, observables = r.c4, sources = r.c5, updated_at = r.c6 \
                     FROM ({}) AS r WHERE alerts.id = r.c0",
                    updates.source()
                );
                updates.bind(sqlx::query(&sql)).execute(&mut *tx).await?;
            }
            if !inserts.is_empty() {
                let sql = format!(
                    "INSERT INTO alerts (key, rule, title, severity, institution_id, observables, \
                     sources, count, first_seen, last_seen, updated_at, status) \
                     SELECT r.c0, r.c1, r.c2, r.c3, r.c4, r.c5, r.c6, r.c7, r.c8, r.c9, r.c10, \
                     'open' FROM ({}) AS r RETURNING id",
                    insert_rows.source()
                );
                let created = insert_rows
                    .bind(sqlx::query(&sql))
                    .fetch_all(&mut *tx)
                    .await?;
                // SQLite and PostgreSQL return rows of INSERT ... SELECT in the SELECT's order.
                if created.len() != inserts.len() {
                    return Err(StoreError::Conflict(
                        "alert insert returned an unexpected number of rows".into(),
                    ));
                }
                for (slot, row) in inserts.iter().zip(&created) {
                    ids[*slot] = row.try_get(0)?;
                }
                summary.created += inserts.len();
                let mut per_institution: HashMap<Option<i64>, i64> = HashMap::new();
                for slot in &inserts {
                    *per_institution
                        .entry(groups[*slot].institution_id)
                        .or_default() += 1;
                }
                for (inst, n) in per_institution {
                    count_move(&mut tx, inst.map(InstitutionId), None, AlertStatus::Open, n)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        summary.ids = ids;
        Ok(summary)
    }

    /// Alerts, newest first.
    pub async fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<AlertRecord>> {
        let severities = f
            .min_severity
            .map(|s| format!(" AND severity IN ({})", severities_from(s)))
            .unwrap_or_default();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE ($1 IS NULL OR institution_id = $1) \
             AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR rule = $3) \
             AND ($4 IS NULL OR last_seen >= $4) AND ($5 IS NULL OR incident_id = $5) \
             AND ($6 IS NULL OR id < $6){severities} ORDER BY id DESC LIMIT $7"
        ))
        .bind(f.institution_id.map(|i| i.0))
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.rule.as_deref())
        .bind(f.since)
        .bind(f.incident_id)
        .bind(f.before_id)
        .bind(i64::from(f.limit.clamp(1, 1000)))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Alerts of `institution_id` (all when `None`) that changed at or after `since` (Unix
    /// ms), the most recent `limit` changes, oldest first: what a live view applies to what it
    /// shows.
    pub async fn changed_alerts(
        &self,
        institution_id: Option<InstitutionId>,
        since: i64,
        limit: u32,
    ) -> Result<Vec<AlertRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE updated_at >= $1 \
             AND ($2 IS NULL OR institution_id = $2) ORDER BY updated_at DESC, id DESC LIMIT $3"
        ))
        .bind(since)
        .bind(institution_id.map(|i| i.0))
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.read)
        .await?;
        let mut list = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        list.reverse();
        Ok(list)
    }

    /// One alert, if it exists and `only` (the caller's institution, if scoped) may see it.
    pub async fn get_alert(
        &self,
        id: i64,
        only: Option<InstitutionId>,
    ) -> Result<Option<AlertRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE id = $1 AND ($2 IS NULL OR institution_id = $2)"
        ))
        .bind(id)
        .bind(only.map(|i| i.0))
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Acknowledges or dismisses an alert (a dismissal needs a reason); acknowledged and
    /// dismissed alerts can be reopened.
    pub async fn set_alert_status(
        &self,
        actor: &Actor,
        id: i64,
        status: AlertStatus,
        reason: &str,
    ) -> Result<AlertRecord> {
        if !matches!(
            status,
            AlertStatus::Open | AlertStatus::Acknowledged | AlertStatus::Dismissed
        ) {
            return Err(FieldError::new(
                "status",
                "use merge or promote for merged and promoted alerts",
            )
            .into());
        }
        if status == AlertStatus::Dismissed && reason.trim().is_empty() {
            return Err(FieldError::new("reason", "dismissing an alert needs a reason").into());
        }
        let mut tx = self.write.begin().await?;
        let before = fetch(&mut tx, id).await?;
        if matches!(before.status, AlertStatus::Merged | AlertStatus::Promoted) {
            return Err(StoreError::Conflict(format!(
                "alert {id} is {}; it can no longer change",
                before.status
            )));
        }
        let row = sqlx::query(&format!(
            "UPDATE alerts SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4 \
             RETURNING {COLUMNS}"
        ))
        .bind(status.as_str())
        .bind(reason.trim())
        .bind(now_millis())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let after = from_row(&row)?;
        if before.status != after.status {
            count_move(
                &mut tx,
                after.institution_id,
                Some(before.status),
                after.status,
                1,
            )
            .await?;
        }
        audit_alert(&mut tx, actor, &before, &after).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Folds `others` into `into`: their counts and observables join it, they become `merged`.
    pub async fn merge_alerts(
        &self,
        actor: &Actor,
        into: i64,
        others: &[i64],
    ) -> Result<AlertRecord> {
        let mut tx = self.write.begin().await?;
        let target = fetch(&mut tx, into).await?;
        if matches!(target.status, AlertStatus::Merged | AlertStatus::Dismissed) {
            return Err(StoreError::Conflict(format!(
                "alert {into} is {}",
                target.status
            )));
        }
        let mut merged = target.clone();
        for &id in others {
            if id == into {
                continue;
            }
            let other = fetch(&mut tx, id).await?;
            if matches!(other.status, AlertStatus::Merged | AlertStatus::Promoted) {
                return Err(StoreError::Conflict(format!(
                    "alert {id} is already {}",
                    other.status
                )));
            }
            merged.count = merged.count.saturating_add(other.count);
            merged.severity = merged.severity.max(other.severity);
            merged.first_seen = merged.first_seen.min(other.first_seen);
            merged.last_seen = merged.last_seen.max(other.last_seen);
            add_observables(&mut merged.observables, other.observables.iter().cloned());
            for s in &other.sources {
                if merged.sources.len() < MAX_SOURCES && !merged.sources.contains(s) {
                    merged.sources.push(s.clone());
                }
            }
            let row = sqlx::query(&format!(
                "UPDATE alerts SET status = 'merged', merged_into = $1, updated_at = $2 \
                 WHERE id = $3 RETURNING {COLUMNS}"
            ))
            .bind(into)
            .bind(now_millis())
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            audit_alert(&mut tx, actor, &other, &from_row(&row)?).await?;
            count_move(
                &mut tx,
                other.institution_id,
                Some(other.status),
                AlertStatus::Merged,
                1,
            )
            .await?;
        }
        let row = sqlx::query(&format!(
            "UPDATE alerts SET count = $1, severity = $2, first_seen = $3, last_seen = $4, \
             observables = $5, sources = $6, updated_at = $7 WHERE id = $8 RETURNING {COLUMNS}"
        ))
        .bind(merged.count)
        .bind(merged.severity.as_str())
        .bind(merged.first_seen.0)
        .bind(merged.last_seen.0)
        .bind(serde_json::to_string(&merged.observables).unwrap_or_default())
        .bind(serde_json::to_string(&merged.sources).unwrap_or_default())
        .bind(now_millis())
        .bind(into)
        .fetch_one(&mut *tx)
        .await?;
        let after = from_row(&row)?;
        audit_alert(&mut tx, actor, &target, &after).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Alerts per status, for the monitor page's counters.
    pub async fn alert_counts(
        &self,
        only: Option<InstitutionId>,
    ) -> Result<Vec<(AlertStatus, i64)>> {
        let rows = sqlx::query(
            "SELECT status, CAST(SUM(n) AS BIGINT) AS n FROM alert_counts \
             WHERE ($1 IS NULL OR institution_id = $1) GROUP BY status",
        )
        .bind(only.map(|i| i.0))
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let n: i64 = row.try_get("n")?;
            if n > 0 {
                out.push((parse_column(row, "alert_counts", "status")?, n));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Moves `n` alerts of an institution (`None`: of none) into `status` and out of `from`.
pub(crate) async fn count_move(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    institution: Option<InstitutionId>,
    from: Option<AlertStatus>,
    to: AlertStatus,
    n: i64,
) -> Result<()> {
    let inst = institution.map_or(0, |i| i.0);
    for (status, delta) in from.map(|f| (f, -n)).into_iter().chain([(to, n)]) {
        sqlx::query(
            "INSERT INTO alert_counts (institution_id, status, n) VALUES ($1, $2, $3) \
             ON CONFLICT (institution_id, status) DO UPDATE SET n = alert_counts.n + excluded.n",
        )
        .bind(inst)
        .bind(status.as_str())
        .bind(delta)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(crate) async fn fetch(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: i64,
) -> Result<AlertRecord> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("alert"))?;
    from_row(&row)
}

pub(crate) async fn audit_alert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    actor: &Actor,
    before: &AlertRecord,
    after: &AlertRecord,
) -> Result<()> {
    let brief = |a: &AlertRecord| {
        serde_json::json!({
            "status": a.status, "reason": a.status_reason, "count": a.count,
            "merged_into": a.merged_into, "incident_id": a.incident_id,
        })
    };
    audit::record(
        &mut **tx,
        actor,
        Change {
            action: "update",
            object_type: "alert",
            object_id: after.id.to_string(),
            institution_id: after.institution_id,
            before: Some(brief(before)),
            after: Some(brief(after)),
        },
    )
    .await
}
