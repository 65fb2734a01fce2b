//! The append-only event log every part reports into, and the hourly rollups the dashboard
//! reads.

use crate::{parse_column, Backend, Result, Store, StoreError};
use qalxan_core::{
    bucket, now_millis, EventKind, FieldError, InstitutionId, Severity, Timestamp, DAY_MS, HOUR_MS,
};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};
use std::collections::{BTreeMap, BTreeSet};

/// Largest `count` one event may carry: far above any real report, far below overflow.
pub const MAX_EVENT_COUNT: i64 = 1_000_000_000;
/// Largest `value` one event may carry.
pub const MAX_EVENT_VALUE: i64 = 1_000_000_000_000;

/// Rollup row that sums every institution (and none).
const ALL_INSTITUTIONS: i64 = -1;
/// Rollup row for events that belong to no institution.
const NO_INSTITUTION: i64 = 0;
/// Rows per INSERT statement: 10 parameters each stays far below SQLite's 32,766 limit.
const ROWS_PER_STATEMENT: usize = 500;
/// The rollup grains.
const WIDTHS: [i64; 2] = [HOUR_MS, DAY_MS];

/// (institution, width, bucket, kind)
type RollupKey = (i64, i64, i64, &'static str);

/// The coarsest rollup grain whose buckets tile bins of `bin_ms` starting at `start`.
fn width_for(start: i64, bin_ms: i64) -> i64 {
    if start % DAY_MS == 0 && bin_ms % DAY_MS == 0 {
        DAY_MS
    } else {
        HOUR_MS
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub occurred_at: i64,
    pub kind: EventKind,
    /// Which part reported it: the server fills this in from the caller's identity.
    pub source: String,
    pub institution_id: Option<InstitutionId>,
    pub severity: Severity,
    /// How many occurrences this event stands for (a gateway may report 500 blocks at once).
    pub count: i64,
    /// A magnitude, such as a flood's peak in requests per second.
    pub value: Option<i64>,
    /// Details, a JSON object.
    pub attributes: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub id: i64,
    pub received_at: Timestamp,
    pub occurred_at: Timestamp,
    pub kind: EventKind,
    pub source: String,
    pub institution_id: Option<InstitutionId>,
    pub severity: Severity,
    pub count: i64,
    pub value: Option<i64>,
    pub attributes: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub institution_id: Option<InstitutionId>,
    pub kind: Option<EventKind>,
    /// Only events with a smaller id: the cursor for the next page.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// One figure over a window: its total, peak and per-bin sums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct KindSeries {
    pub kind: EventKind,
    /// Sum of `count` over the window.
    pub total: i64,
    /// Largest `value` (or `count` where an event has no value) in the window.
    pub peak: i64,
    /// Sum of `count` per bin, oldest first.
    pub bins: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct VictimCount {
    pub institution_id: Option<InstitutionId>,
    pub institution: String,
    pub victims: i64,
}

/// What the dashboard shows for one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Overview {
    pub start: Timestamp,
    pub end: Timestamp,
    pub bin_ms: i64,
    /// One entry per event kind, in [`EventKind::ALL`] order.
    pub series: Vec<KindSeries>,
    /// Incidents opened minus incidents closed, over all time.
    pub open_incidents: i64,
    /// Victims in the window by institution, most first.
    pub victims: Vec<VictimCount>,
}

fn from_row(row: &AnyRow) -> Result<StoredEvent> {
    let attributes: String = row.try_get("attributes")?;
    Ok(StoredEvent {
        id: row.try_get("id")?,
        received_at: Timestamp(row.try_get("received_at")?),
        occurred_at: Timestamp(row.try_get("occurred_at")?),
        kind: parse_column(row, "events", "kind")?,
        source: row.try_get("source")?,
        institution_id: row
            .try_get::<Option<i64>, _>("institution_id")?
            .map(InstitutionId),
        severity: parse_column(row, "events", "severity")?,
        count: row.try_get("count")?,
        value: row.try_get("value")?,
        attributes: serde_json::from_str(&attributes).map_err(|e| StoreError::Corrupt {
            table: "events",
            column: "attributes",
            detail: e.to_string(),
        })?,
    })
}

#[derive(Default, Clone, Copy)]
struct Sums {
    total: i64,
    events: i64,
    peak: i64,
}

impl Store {
    /// Appends a batch of events and their rollups in one transaction; returns their ids.
    pub async fn insert_events(&self, batch: &[NewEvent]) -> Result<Vec<i64>> {
        let mut tx = self.write.begin().await?;
        let ids = write_events(&mut tx, self.backend, batch).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Events, newest first.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT * FROM events WHERE ($1 IS NULL OR institution_id = $1) \
             AND ($2 IS NULL OR kind = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(filter.institution_id.map(|i| i.0))
        .bind(filter.kind.map(EventKind::as_str))
        .bind(filter.before_id)
        .bind(i64::from(filter.limit.clamp(1, 1000)))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The dashboard's figures for `[start, start + bins * bin_ms)` from the rollups, for one
    /// institution or (with `None`) for all.
    pub async fn overview(
        &self,
        start: i64,
        bin_ms: i64,
        bins: usize,
        scope: Option<InstitutionId>,
    ) -> Result<Overview> {
        let end = start + bin_ms * bins as i64;
        let inst = scope.map_or(ALL_INSTITUTIONS, |i| i.0);
        let width = width_for(start, bin_ms);
        let rows = sqlx::query(
            "SELECT kind, (bucket - $1) / $2 AS bin, CAST(SUM(total) AS BIGINT) AS total, \
             MAX(peak) AS peak FROM event_rollups \
             WHERE institution_id = $3 AND width = $4 AND bucket >= $1 AND bucket < $5 \
             GROUP BY 1, 2",
        )
        .bind(start)
        .bind(bin_ms)
        .bind(inst)
        .bind(width)
        .bind(end)
        .fetch_all(&self.read)
        .await?;
        let mut series = empty_series(bins);
        for row in &rows {
            let Ok(kind) = parse_column::<EventKind>(row, "event_rollups", "kind") else {
                // A kind this version does not know (written by a newer one): not ours to show.
                continue;
            };
            add_to_series(&mut series[kind_index(kind)], row)?;
        }
        Ok(Overview {
            start: Timestamp(start),
            end: Timestamp(end),
            bin_ms,
            series,
            open_incidents: self.open_incidents(inst).await?,
            victims: self.victims(start, end, width, scope).await?,
        })
    }

    /// The same figures computed from the raw events instead of the rollups: the reference the
    /// rollups are checked against, and the baseline of the overview benchmark.
    pub async fn overview_from_events(
        &self,
        start: i64,
        bin_ms: i64,
        bins: usize,
        scope: Option<InstitutionId>,
    ) -> Result<Vec<KindSeries>> {
        let end = start + bin_ms * bins as i64;
        let rows = sqlx::query(
            "SELECT kind, (occurred_at - $1) / $2 AS bin, CAST(SUM(count) AS BIGINT) AS total, \
             MAX(COALESCE(value, count)) AS peak FROM events \
             WHERE occurred_at >= $3 AND occurred_at < $4 AND ($5 IS NULL OR institution_id = $5) \
             GROUP BY 1, 2",
        )
        .bind(start)
        .bind(bin_ms)
        .bind(start)
        .bind(end)
        .bind(scope.map(|i| i.0))
        .fetch_all(&self.read)
        .await?;
        let mut series = empty_series(bins);
        for row in &rows {
            let kind: EventKind = parse_column(row, "events", "kind")?;
            add_to_series(&mut series[kind_index(kind)], row)?;
        }
        Ok(series)
    }

    /// All-time sum of `count` per kind over every institution, from the rollups.
    pub async fn event_totals(&self) -> Result<Vec<(EventKind, i64)>> {
        let rows = sqlx::query(
            "SELECT kind, CAST(SUM(total) AS BIGINT) AS total FROM event_rollups \
             WHERE institution_id = $1 AND width = $2 GROUP BY kind",
        )
        .bind(ALL_INSTITUTIONS)
        .bind(DAY_MS)
        .fetch_all(&self.read)
        .await?;
        let mut totals: Vec<(EventKind, i64)> = EventKind::ALL.iter().map(|&k| (k, 0)).collect();
        for row in &rows {
            if let Ok(kind) = parse_column::<EventKind>(row, "event_rollups", "kind") {
                totals[kind_index(kind)].1 = row.try_get("total")?;
            }
        }
        Ok(totals)
    }

    /// How many events are stored, from the rollups.
    pub async fn count_events(&self) -> Result<i64> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(events) AS BIGINT) FROM event_rollups \
             WHERE institution_id = $1 AND width = $2",
        )
        .bind(ALL_INSTITUTIONS)
        .bind(DAY_MS)
        .fetch_one(&self.read)
        .await?;
        Ok(n.unwrap_or(0))
    }

    /// Incidents not closed, affecting `inst` (or any, for [`ALL_INSTITUTIONS`]).
    async fn open_incidents(&self, inst: i64) -> Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM incidents WHERE status <> 'closed' AND ($1 = -1 OR EXISTS \
             (SELECT 1 FROM incident_institutions s WHERE s.incident_id = incidents.id \
             AND s.institution_id = $1))",
        )
        .bind(inst)
        .fetch_one(&self.read)
        .await?;
        Ok(n)
    }

    async fn victims(
        &self,
        start: i64,
        end: i64,
        width: i64,
        scope: Option<InstitutionId>,
    ) -> Result<Vec<VictimCount>> {
        let rows = sqlx::query(
            "SELECT r.institution_id, i.name, CAST(SUM(r.total) AS BIGINT) AS victims \
             FROM event_rollups r LEFT JOIN institutions i ON i.id = r.institution_id \
             WHERE r.kind = $1 AND r.width = $6 AND r.bucket >= $2 AND r.bucket < $3 \
             AND r.institution_id <> $4 AND ($5 IS NULL OR r.institution_id = $5) \
             GROUP BY r.institution_id, i.name ORDER BY victims DESC, i.name",
        )
        .bind(EventKind::VictimRecorded.as_str())
        .bind(start)
        .bind(end)
        .bind(ALL_INSTITUTIONS)
        .bind(scope.map(|i| i.0))
        .bind(width)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.try_get("institution_id")?;
                let name: Option<String> = row.try_get("name")?;
                Ok(VictimCount {
                    institution_id: (id != NO_INSTITUTION).then_some(InstitutionId(id)),
                    institution: name.unwrap_or_else(|| "citizens / no institution".to_owned()),
                    victims: row.try_get("victims")?,
                })
            })
            .collect()
    }
}

fn empty_series(bins: usize) -> Vec<KindSeries> {
    EventKind::ALL
        .iter()
        .map(|&kind| KindSeries {
            kind,
            total: 0,
            peak: 0,
            bins: vec![0; bins],
        })
        .collect()
}

/// Adds a `(bin, total, peak)` row to its series; rows outside the window are ignored.
fn add_to_series(s: &mut KindSeries, row: &AnyRow) -> Result<()> {
    let bin: i64 = row.try_get("bin")?;
    let total: i64 = row.try_get("total")?;
    if let Some(b) = usize::try_from(bin).ok().and_then(|i| s.bins.get_mut(i)) {
        *b = b.saturating_add(total);
        s.total = s.total.saturating_add(total);
        s.peak = s.peak.max(row.try_get("peak")?);
    }
    Ok(())
}

fn kind_index(kind: EventKind) -> usize {
    EventKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

/// Appends `($1, $2, ...), (...)` for `rows` rows of `columns` parameters.
///
/// SQLite gets anonymous `?` instead: it resolves each numbered parameter by a linear search of
/// the statement's parameter names, which made a 9,000-parameter insert quadratic (a third of
/// the ingest time went to `sqlite3_bind_parameter_name`).
/// Appends events and their rollups inside the caller's transaction, so a change and the
/// figure it moves commit together.
pub(crate) async fn write_events(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: Backend,
    batch: &[NewEvent],
) -> Result<Vec<i64>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    for (i, e) in batch.iter().enumerate() {
        if !(1..=MAX_EVENT_COUNT).contains(&e.count) {
            return Err(FieldError::new(
                format!("events[{i}].count"),
                format!("must be 1 to {MAX_EVENT_COUNT}"),
            )
            .into());
        }
        if e.value.is_some_and(|v| !(0..=MAX_EVENT_VALUE).contains(&v)) {
            return Err(FieldError::new(
                format!("events[{i}].value"),
                format!("must be 0 to {MAX_EVENT_VALUE}"),
            )
            .into());
        }
    }
    let received = now_millis();

    let wanted: BTreeSet<i64> = batch
        .iter()
        .filter_map(|e| e.institution_id)
        .map(|i| i.0)
        .collect();
    for id in wanted {
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM institutions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            let i = batch
                .iter()
                .position(|e| e.institution_id == Some(InstitutionId(id)))
                .unwrap_or_default();
            return Err(FieldError::new(
                format!("events[{i}].institution_id"),
                format!("no institution with id {id}"),
            )
            .into());
        }
    }

    let mut ids = Vec::with_capacity(batch.len());
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO events (received_at, occurred_at, kind, source, institution_id, \
             severity, count, value, attributes) VALUES ",
        );
        push_placeholders(&mut sql, chunk.len(), 9, backend);
        sql.push_str(" RETURNING id");
        let mut query = sqlx::query(&sql);
        for e in chunk {
            query = query
                .bind(received)
                .bind(e.occurred_at)
                .bind(e.kind.as_str())
                .bind(&e.source)
                .bind(e.institution_id.map(|i| i.0))
                .bind(e.severity.as_str())
                .bind(e.count)
                .bind(e.value)
                .bind(e.attributes.to_string());
        }
        for row in query.fetch_all(&mut **tx).await? {
            ids.push(row.try_get::<i64, _>(0)?);
        }
    }

    let mut sums: BTreeMap<RollupKey, Sums> = BTreeMap::new();
    for e in batch {
        let inst = e.institution_id.map_or(NO_INSTITUTION, |i| i.0);
        for width in WIDTHS {
            let b = bucket(e.occurred_at, width);
            for owner in [inst, ALL_INSTITUTIONS] {
                let s = sums.entry((owner, width, b, e.kind.as_str())).or_default();
                s.total = s.total.saturating_add(e.count);
                s.events += 1;
                s.peak = s.peak.max(e.value.unwrap_or(e.count));
            }
        }
    }
    let sums: Vec<_> = sums.into_iter().collect();
    for chunk in sums.chunks(ROWS_PER_STATEMENT) {
        upsert_rollups(tx, chunk, backend).await?;
    }
    Ok(ids)
}

fn push_placeholders(sql: &mut String, rows: usize, columns: usize, backend: Backend) {
    use std::fmt::Write;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            let sep = if c == 0 { "" } else { ", " };
            let _ = match backend {
                Backend::Sqlite => write!(sql, "{sep}?"),
                Backend::Postgres => write!(sql, "{sep}${}", r * columns + c + 1),
            };
        }
        sql.push(')');
    }
}

async fn upsert_rollups(
    tx: &mut sqlx::Transaction<'_, Any>,
    rows: &[(RollupKey, Sums)],
    backend: Backend,
) -> Result<()> {
    let mut sql = String::from(
        "INSERT INTO event_rollups (institution_id, width, bucket, kind, total, events, peak) \
         VALUES ",
    );
    push_placeholders(&mut sql, rows.len(), 7, backend);
    sql.push_str(
        " ON CONFLICT (institution_id, width, bucket, kind) DO UPDATE SET \
         total = event_rollups.total + excluded.total, \
         events = event_rollups.events + excluded.events, \
         peak = CASE WHEN excluded.peak > event_rollups.peak THEN excluded.peak ELSE event_rollups.peak END",
    );
    let mut query = sqlx::query(&sql);
    for ((inst, width, bucket, kind), s) in rows {
        query = query
            .bind(*inst)
            .bind(*width)
            .bind(*bucket)
            .bind(*kind)
            .bind(s.total)
            .bind(s.events)
            .bind(s.peak);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::push_placeholders;
    use crate::Backend;

    #[test]
    fn placeholders_number_every_parameter() {
        let mut sql = String::new();
        push_placeholders(&mut sql, 2, 3, Backend::Postgres);
        assert_eq!(sql, "($1, $2, $3), ($4, $5, $6)");
        let mut sql = String::new();
        push_placeholders(&mut sql, 2, 2, Backend::Sqlite);
        assert_eq!(sql, "(?, ?), (?, ?)");
    }
}
