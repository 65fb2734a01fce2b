//! Incidents: the case file of an attack. Every change writes a line of the incident's work
//! log (the timeline people read) and an audit row (the trail nobody can rewrite), in the
//! change's own transaction. Incidents are never deleted; they are closed with a reason.
//!
//! An institution's staff see an incident when their institution is among those it affects;
//! scoped queries take that institution as `only`.

use crate::alerts::{self, AlertRecord, Observed};
use crate::audit::{self, Change};
use crate::events::write_events;
use crate::{parse_column, Actor, Result, Store, StoreError};
use qalxan_core::{now_millis, EventKind, FieldError, InstitutionId, Severity, Timestamp, Tlp};
use qalxan_incident::{
    AlertStatus, Category, Impact, Pap, Status, TaskStatus, VictimKind, VictimRole,
};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

/// Longest title; longer ones are refused.
pub const MAX_TITLE: usize = 300;
/// Longest description, comment or note.
pub const MAX_TEXT: usize = 100_000;

/// An incident to open.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: String,
    pub description: String,
    pub category: Category,
    pub severity: Severity,
    pub impact: Impact,
    pub tlp: Tlp,
    pub pap: Pap,
    pub institutions: Vec<InstitutionId>,
    pub lead_user_id: Option<i64>,
}

/// Changes to an incident's description; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct IncidentUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    pub category: Option<Category>,
    pub severity: Option<Severity>,
    pub impact: Option<Impact>,
    pub tlp: Option<Tlp>,
    pub pap: Option<Pap>,
    pub institutions: Option<Vec<InstitutionId>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InstitutionRef {
    pub id: InstitutionId,
    pub name: String,
}

/// An incident's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentRecord {
    pub id: i64,
    pub title: String,
    pub description: String,
    /// RSIT `class/type`.
    pub category: String,
    pub severity: Severity,
    pub impact: Impact,
    pub tlp: Tlp,
    pub pap: Pap,
    pub status: Status,
    /// Why it was last closed or reopened.
    pub status_reason: String,
    pub created_by: String,
    pub opened_at: Timestamp,
    pub triaged_at: Option<Timestamp>,
    pub contained_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    pub institutions: Vec<InstitutionRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Member {
    pub user_id: i64,
    pub username: String,
    pub display_name: String,
    /// `lead` or `member`.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Task {
    pub id: i64,
    pub title: String,
    pub owner_user_id: Option<i64>,
    pub owner: Option<String>,
    pub due_at: Option<Timestamp>,
    pub status: TaskStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LogEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    /// `opened`, `comment`, `status`, `update`, `team`, `task`, `observable`, `victim`,
    /// `evidence`, `alert`.
    pub kind: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentObservable {
    pub id: i64,
    pub kind: String,
    pub value: String,
    /// The threat-intelligence indicator it was sent to.
    pub indicator_id: Option<i64>,
    pub added_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewVictim {
    pub kind: VictimKind,
    /// The employer, for employees.
    pub institution_id: Option<InstitutionId>,
    pub role: Option<VictimRole>,
    pub count: i64,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Victim {
    pub id: i64,
    pub kind: VictimKind,
    pub institution_id: Option<InstitutionId>,
    pub role: Option<VictimRole>,
    pub count: i64,
    pub note: String,
    pub recorded_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Evidence {
    pub id: i64,
    pub incident_id: i64,
    pub sha256: String,
    pub name: String,
    pub size: i64,
    /// What the scan engine said: `clean`, or the signatures found.
    pub scan_result: String,
    pub uploaded_by: String,
    pub uploaded_at: Timestamp,
}

/// An incident with everything attached to it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: IncidentRecord,
    pub team: Vec<Member>,
    pub tasks: Vec<Task>,
    pub timeline: Vec<LogEntry>,
    pub observables: Vec<IncidentObservable>,
    pub victims: Vec<Victim>,
    pub evidence: Vec<Evidence>,
    pub alerts: Vec<AlertRecord>,
}

#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    pub institution_id: Option<InstitutionId>,
    pub status: Option<Status>,
    /// Only incidents not closed.
    pub open: bool,
    /// A class (`fraud`) or a full category (`fraud/phishing`).
    pub category: Option<String>,
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// How alerts are promoted: into a new incident or into an existing one.
#[derive(Debug, Clone)]
pub enum PromoteTo {
    New(NewIncident),
    Existing(i64),
}

const COLUMNS: &str = "id, title, description, category, severity, impact, tlp, pap, status, \
    status_reason, created_by, opened_at, triaged_at, contained_at, closed_at, updated_at";

const VISIBLE: &str = "($2 IS NULL OR EXISTS (SELECT 1 FROM incident_institutions s \
    WHERE s.incident_id = incidents.id AND s.institution_id = $2))";

fn record_from_row(row: &AnyRow) -> Result<IncidentRecord> {
    let ts = |c: &str| -> Result<Option<Timestamp>> {
        Ok(row.try_get::<Option<i64>, _>(c)?.map(Timestamp))
    };
    Ok(IncidentRecord {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        category: row.try_get("category")?,
        severity: parse_column(row, "incidents", "severity")?,
        impact: parse_column(row, "incidents", "impact")?,
        tlp: parse_column(row, "incidents", "tlp")?,
        pap: parse_column(row, "incidents", "pap")?,
        status: parse_column(row, "incidents", "status")?,
        status_reason: row.try_get("status_reason")?,
        created_by: row.try_get("created_by")?,
        opened_at: Timestamp(row.try_get("opened_at")?),
        triaged_at: ts("triaged_at")?,
        contained_at: ts("contained_at")?,
        closed_at: ts("closed_at")?,
        updated_at: Timestamp(row.try_get("updated_at")?),
        institutions: Vec::new(),
    })
}

fn check_title(title: &str) -> Result<String> {
    let t = title.trim();
    if t.is_empty() || t.chars().count() > MAX_TITLE {
        return Err(
            FieldError::new("title", format!("must be 1 to {MAX_TITLE} characters")).into(),
        );
    }
    Ok(t.to_owned())
}

fn check_text(field: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT {
        return Err(FieldError::new(field, format!("must be at most {MAX_TEXT} bytes")).into());
    }
    Ok(())
}

type Tx<'a> = Transaction<'a, Any>;

async fn log(tx: &mut Tx<'_>, incident: i64, actor: &Actor, kind: &str, text: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO incident_log (incident_id, at, actor, kind, text) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(incident)
    .bind(now_millis())
    .bind(&actor.name)
    .bind(kind)
    .bind(text)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE incidents SET updated_at = $1 WHERE id = $2")
        .bind(now_millis())
        .bind(incident)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn audit_incident(
    tx: &mut Tx<'_>,
    actor: &Actor,
    action: &str,
    id: i64,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<()> {
    audit::record(
        &mut **tx,
        actor,
        Change {
            action,
            object_type: "incident",
            object_id: id.to_string(),
            institution_id: None,
            before,
            after,
        },
    )
    .await
}

async fn institutions_of(conn: &mut sqlx::AnyConnection, id: i64) -> Result<Vec<InstitutionRef>> {
    let rows = sqlx::query(
        "SELECT i.id, i.name FROM incident_institutions ii JOIN institutions i \
         ON i.id = ii.institution_id WHERE ii.incident_id = $1 ORDER BY i.name",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(InstitutionRef {
                id: InstitutionId(r.try_get("id")?),
                name: r.try_get("name")?,
            })
        })
        .collect()
}

async fn fetch(tx: &mut Tx<'_>, id: i64) -> Result<IncidentRecord> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM incidents WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(StoreError::NotFound("incident"))?;
    let mut r = record_from_row(&row)?;
    r.institutions = institutions_of(&mut *tx, id).await?;
    Ok(r)
}

async fn set_institutions(tx: &mut Tx<'_>, id: i64, list: &[InstitutionId]) -> Result<()> {
    sqlx::query("DELETE FROM incident_institutions WHERE incident_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    let mut seen = Vec::new();
    for (i, inst) in list.iter().enumerate() {
        if seen.contains(inst) {
            continue;
        }
        seen.push(*inst);
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM institutions WHERE id = $1")
            .bind(inst.0)
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            return Err(FieldError::new(
                format!("institutions[{i}]"),
                format!("no institution with id {}", inst.0),
            )
            .into());
        }
        sqlx::query(
            "INSERT INTO incident_institutions (incident_id, institution_id) VALUES ($1, $2)",
        )
        .bind(id)
        .bind(inst.0)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn user_name(tx: &mut Tx<'_>, field: &str, user: i64) -> Result<String> {
    let name: Option<String> =
        sqlx::query_scalar("SELECT username FROM users WHERE id = $1 AND disabled = 0")
            .bind(user)
            .fetch_optional(&mut **tx)
            .await?;
    name.ok_or_else(|| FieldError::new(field, format!("no active user with id {user}")).into())
}

fn brief(r: &IncidentRecord) -> serde_json::Value {
    serde_json::json!({
        "title": r.title, "category": r.category, "severity": r.severity, "impact": r.impact,
        "tlp": r.tlp, "pap": r.pap, "status": r.status, "status_reason": r.status_reason,
        "institutions": r.institutions.iter().map(|i| i.id.0).collect::<Vec<_>>(),
    })
}

fn incident_event(kind: EventKind, r: &IncidentRecord, count: i64) -> crate::NewEvent {
    crate::NewEvent {
        occurred_at: now_millis(),
        kind,
        source: "incidents".to_owned(),
        institution_id: r.institutions.first().map(|i| i.id),
        severity: r.severity,
        count,
        value: None,
        attributes: serde_json::json!({"incident_id": r.id, "category": r.category}),
    }
}

impl Store {
    async fn open_incident(
        &self,
        tx: &mut Tx<'_>,
        actor: &Actor,
        new: &NewIncident,
    ) -> Result<IncidentRecord> {
        let title = check_title(&new.title)?;
        check_text("description", &new.description)?;
        let now = now_millis();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO incidents (title, description, category, severity, impact, tlp, pap, \
             status, created_by, opened_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'new', $8, $9, $9) RETURNING id",
        )
        .bind(&title)
        .bind(new.description.trim())
        .bind(new.category.to_string())
        .bind(new.severity.as_str())
        .bind(new.impact.as_str())
        .bind(new.tlp.as_str())
        .bind(new.pap.as_str())
        .bind(&actor.name)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        set_institutions(tx, id, &new.institutions).await?;
        if let Some(lead) = new.lead_user_id {
            user_name(tx, "lead_user_id", lead).await?;
            sqlx::query(
                "INSERT INTO incident_members (incident_id, user_id, role, added_at) \
                 VALUES ($1, $2, 'lead', $3)",
            )
            .bind(id)
            .bind(lead)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        log(
            tx,
            id,
            actor,
            "opened",
            &format!("Opened as {} ({})", new.category.label(), new.severity),
        )
        .await?;
        let created = fetch(tx, id).await?;
        audit_incident(tx, actor, "create", id, None, Some(brief(&created))).await?;
        write_events(
            tx,
            self.backend,
            &[incident_event(EventKind::IncidentOpened, &created, 1)],
        )
        .await?;
        Ok(created)
    }

    /// Opens an incident (status `new`), with its lead if named.
    pub async fn create_incident(&self, actor: &Actor, new: NewIncident) -> Result<IncidentRecord> {
        let mut tx = self.write.begin().await?;
        let created = self.open_incident(&mut tx, actor, &new).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Incidents, newest first.
    pub async fn list_incidents(&self, f: &IncidentFilter) -> Result<Vec<IncidentRecord>> {
        let category = f.category.as_deref().map(|c| {
            if c.contains('/') {
                c.to_owned()
            } else {
                format!("{c}/%")
            }
        });
        let mut conn = self.read.acquire().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM incidents WHERE ($1 IS NULL OR status = $1) AND {VISIBLE} \
             AND ($3 IS NULL OR category LIKE $3) AND ($4 = 0 OR status <> 'closed') \
             AND ($5 IS NULL OR id < $5) ORDER BY id DESC LIMIT $6"
        ))
        .bind(f.status.map(|s| s.as_str()))
        .bind(f.institution_id.map(|i| i.0))
        .bind(category)
        .bind(i64::from(f.open))
        .bind(f.before_id)
        .bind(i64::from(f.limit.clamp(1, 1000)))
        .fetch_all(&mut *conn)
        .await?;
        let mut out = rows
            .iter()
            .map(record_from_row)
            .collect::<Result<Vec<_>>>()?;
        // The page's institutions in one query, not one per incident.
        let ids: Vec<i64> = out.iter().map(|r| r.id).collect();
        let ids_from = crate::json_ids(self.backend);
        let links = sqlx::query(&format!(
            "SELECT ii.incident_id, i.id, i.name FROM incident_institutions ii \
             JOIN institutions i ON i.id = ii.institution_id \
             WHERE ii.incident_id IN ({ids_from}) ORDER BY i.name"
        ))
        .bind(serde_json::to_string(&ids).unwrap_or_default())
        .fetch_all(&mut *conn)
        .await?;
        let mut by_incident: std::collections::HashMap<i64, Vec<InstitutionRef>> =
            std::collections::HashMap::new();
        for l in &links {
            by_incident
                .entry(l.try_get("incident_id")?)
                .or_default()
                .push(InstitutionRef {
                    id: InstitutionId(l.try_get("id")?),
                    name: l.try_get("name")?,
                });
        }
        for r in &mut out {
            r.institutions = by_incident.remove(&r.id).unwrap_or_default();
        }
        Ok(out)
    }

    /// Whether the incident exists and `only` may see it.
    pub async fn incident_visible(&self, id: i64, only: Option<InstitutionId>) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM incidents WHERE id = $1 AND {VISIBLE}"
        ))
        .bind(id)
        .bind(only.map(|i| i.0))
        .fetch_optional(&self.read)
        .await?;
        Ok(found.is_some())
    }

    /// An incident with its team, tasks, timeline, observables, victims, evidence and alerts.
    pub async fn get_incident(
        &self,
        id: i64,
        only: Option<InstitutionId>,
    ) -> Result<Option<IncidentDetail>> {
        let mut conn = self.read.acquire().await?;
        let Some(row) = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM incidents WHERE id = $1 AND {VISIBLE}"
        ))
        .bind(id)
        .bind(only.map(|i| i.0))
        .fetch_optional(&mut *conn)
        .await?
        else {
            return Ok(None);
        };
        let mut incident = record_from_row(&row)?;
        incident.institutions = institutions_of(&mut conn, id).await?;
        let team = sqlx::query(
            "SELECT m.user_id, u.username, u.display_name, m.role FROM incident_members m \
             JOIN users u ON u.id = m.user_id WHERE m.incident_id = $1 \
             ORDER BY CASE m.role WHEN 'lead' THEN 0 ELSE 1 END, u.username",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(Member {
                user_id: r.try_get("user_id")?,
                username: r.try_get("username")?,
                display_name: r.try_get("display_name")?,
                role: r.try_get("role")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let tasks = sqlx::query(
            "SELECT t.id, t.title, t.owner_user_id, u.username, t.due_at, t.status, t.created_at, \
             t.updated_at FROM incident_tasks t LEFT JOIN users u ON u.id = t.owner_user_id \
             WHERE t.incident_id = $1 ORDER BY t.id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(task_from_row)
        .collect::<Result<Vec<_>>>()?;
        let timeline = sqlx::query(
            "SELECT id, at, actor, kind, text FROM incident_log WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(log_from_row)
        .collect::<Result<Vec<_>>>()?;
        let observables = sqlx::query(
            "SELECT id, kind, value, indicator_id, added_at FROM incident_observables \
             WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            Ok(IncidentObservable {
                id: r.try_get("id")?,
                kind: r.try_get("kind")?,
                value: r.try_get("value")?,
                indicator_id: r.try_get("indicator_id")?,
                added_at: Timestamp(r.try_get("added_at")?),
            })
        })
        .collect::<Result<Vec<_>>>()?;
        let victims = sqlx::query(
            "SELECT id, kind, institution_id, role, count, note, recorded_at FROM incident_victims \
             WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(victim_from_row)
        .collect::<Result<Vec<_>>>()?;
        let evidence = sqlx::query(
            "SELECT id, incident_id, sha256, name, size, scan_result, uploaded_by, uploaded_at \
             FROM incident_evidence WHERE incident_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(evidence_from_row)
        .collect::<Result<Vec<_>>>()?;
        drop(conn);
        let alerts = self
            .list_alerts(&crate::AlertFilter {
                incident_id: Some(id),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        Ok(Some(IncidentDetail {
            incident,
            team,
            tasks,
            timeline,
            observables,
            victims,
            evidence,
            alerts,
        }))
    }

    /// Changes an incident's description, classification or affected institutions.
    pub async fn update_incident(
        &self,
        actor: &Actor,
        id: i64,
        u: IncidentUpdate,
    ) -> Result<IncidentRecord> {
        let mut tx = self.write.begin().await?;
        let before = fetch(&mut tx, id).await?;
        let title = match &u.title {
            Some(t) => check_title(t)?,
            None => before.title.clone(),
        };
        if let Some(d) = &u.description {
            check_text("description", d)?;
        }
        let category = u
            .category
            .map_or(before.category.clone(), |c| c.to_string());
        sqlx::query(
            "UPDATE incidents SET title = $1, description = $2, category = $3, severity = $4, \
             impact = $5, tlp = $6, pap = $7 WHERE id = $8",
        )
        .bind(&title)
        .bind(
            u.description
                .as_deref()
                .map_or(before.description.as_str(), str::trim),
        )
        .bind(&category)
        .bind(u.severity.unwrap_or(before.severity).as_str())
        .bind(u.impact.unwrap_or(before.impact).as_str())
        .bind(u.tlp.unwrap_or(before.tlp).as_str())
        .bind(u.pap.unwrap_or(before.pap).as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(list) = &u.institutions {
            set_institutions(&mut tx, id, list).await?;
        }
        let after = fetch(&mut tx, id).await?;
        let mut changed = Vec::new();
        let (b, a) = (brief(&before), brief(&after));
        if let (Some(b), Some(a)) = (b.as_object(), a.as_object()) {
            for (k, v) in a {
                if b.get(k) != Some(v) {
                    changed.push(format!(
                        "{k}: {} → {}",
                        b.get(k).unwrap_or(&serde_json::Value::Null),
                        v
                    ));
                }
            }
        }
        if u.description.is_some() && before.description != after.description {
            changed.push("description changed".to_owned());
        }
        if !changed.is_empty() {
            log(&mut tx, id, actor, "update", &changed.join("; ")).await?;
            audit_incident(&mut tx, actor, "update", id, Some(b), Some(a)).await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    /// Moves an incident along its workflow (see `Status::check_transition`); the first
    /// move out of `new` stops the triage timer, the first move to `contained` or beyond the
    /// containment timer.
    pub async fn set_incident_status(
        &self,
        actor: &Actor,
        id: i64,
        to: Status,
        reason: &str,
    ) -> Result<IncidentRecord> {
        let reason = reason.trim();
        check_text("reason", reason)?;
        let mut tx = self.write.begin().await?;
        let before = fetch(&mut tx, id).await?;
        before
            .status
            .check_transition(to, reason)
            .map_err(|e| StoreError::Invalid(FieldError::new("status", e.to_string())))?;
        let now = now_millis();
        sqlx::query(
            "UPDATE incidents SET status = $1, status_reason = $2, \
             triaged_at = COALESCE(triaged_at, $3), \
             contained_at = CASE WHEN $4 = 1 THEN COALESCE(contained_at, $3) ELSE contained_at END, \
             closed_at = CASE WHEN $5 = 1 THEN $3 ELSE NULL END WHERE id = $6",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .bind(i64::from(to.is_contained()))
        .bind(i64::from(to.is_closed()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let text = if reason.is_empty() {
            format!("Status {} → {}", before.status, to)
        } else {
            format!("Status {} → {}: {reason}", before.status, to)
        };
        log(&mut tx, id, actor, "status", &text).await?;
        let after = fetch(&mut tx, id).await?;
        audit_incident(
            &mut tx,
            actor,
            "update",
            id,
            Some(brief(&before)),
            Some(brief(&after)),
        )
        .await?;
        if to.is_closed() {
            write_events(
                &mut tx,
                self.backend,
                &[incident_event(EventKind::IncidentClosed, &after, 1)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    /// Forms the incident's team: a lead and members (replacing the previous team).
    pub async fn set_incident_team(
        &self,
        actor: &Actor,
        id: i64,
        lead: Option<i64>,
        members: &[i64],
    ) -> Result<Vec<Member>> {
        let mut tx = self.write.begin().await?;
        fetch(&mut tx, id).await?;
        let before: Vec<(i64, String)> = sqlx::query(
            "SELECT user_id, role FROM incident_members WHERE incident_id = $1 ORDER BY user_id",
        )
        .bind(id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
        sqlx::query("DELETE FROM incident_members WHERE incident_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let now = now_millis();
        let mut names = Vec::new();
        let mut all: Vec<(i64, &str)> = lead.map(|l| (l, "lead")).into_iter().collect();
        for m in members {
            if !all.iter().any(|(u, _)| u == m) {
                all.push((*m, "member"));
            }
        }
        for (i, (user, role)) in all.iter().enumerate() {
            let field = if *role == "lead" {
                "lead_user_id".to_owned()
            } else {
                format!("members[{i}]")
            };
            let name = user_name(&mut tx, &field, *user).await?;
            names.push(if *role == "lead" {
                format!("{name} (lead)")
            } else {
                name
            });
            sqlx::query(
                "INSERT INTO incident_members (incident_id, user_id, role, added_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(user)
            .bind(role)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let text = if names.is_empty() {
            "Team disbanded".to_owned()
        } else {
            format!("Team: {}", names.join(", "))
        };
        log(&mut tx, id, actor, "team", &text).await?;
        audit_incident(
            &mut tx,
            actor,
            "update",
            id,
            Some(serde_json::json!({"team": before})),
            Some(serde_json::json!({"team": all})),
        )
        .await?;
        tx.commit().await?;
        Ok(self
            .get_incident(id, None)
            .await?
            .map(|d| d.team)
            .unwrap_or_default())
    }

    /// Adds a task with an owner and a due date.
    pub async fn add_incident_task(
        &self,
        actor: &Actor,
        id: i64,
        title: &str,
        owner: Option<i64>,
        due_at: Option<i64>,
    ) -> Result<Task> {
        let title = check_title(title)?;
        let mut tx = self.write.begin().await?;
        fetch(&mut tx, id).await?;
        let owner_name = match owner {
            Some(u) => Some(user_name(&mut tx, "owner_user_id", u).await?),
            None => None,
        };
        let now = now_millis();
        let task_id: i64 = sqlx::query_scalar(
            "INSERT INTO incident_tasks (incident_id, title, owner_user_id, due_at, status, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 'open', $5, $5) RETURNING id",
        )
        .bind(id)
        .bind(&title)
        .bind(owner)
        .bind(due_at)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let mut text = format!("Task #{task_id} added: {title}");
        if let Some(o) = &owner_name {
            text.push_str(&format!(" (owner {o})"));
        }
        if let Some(d) = due_at {
            text.push_str(&format!(", due {}", Timestamp(d)));
        }
        log(&mut tx, id, actor, "task", &text).await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "incident_task",
                object_id: task_id.to_string(),
                institution_id: None,
                before: None,
                after: Some(serde_json::json!({"incident_id": id, "title": title, "owner": owner, "due_at": due_at})),
            },
        )
        .await?;
        let task = task_by_id(&mut tx, id, task_id).await?;
        tx.commit().await?;
        Ok(task)
    }

    /// Changes a task's state, owner or due date.
    pub async fn update_incident_task(
        &self,
        actor: &Actor,
        id: i64,
        task_id: i64,
        status: Option<TaskStatus>,
        owner: Option<Option<i64>>,
        due_at: Option<Option<i64>>,
    ) -> Result<Task> {
        let mut tx = self.write.begin().await?;
        let before = task_by_id(&mut tx, id, task_id).await?;
        if let Some(Some(u)) = owner {
            user_name(&mut tx, "owner_user_id", u).await?;
        }
        sqlx::query(
            "UPDATE incident_tasks SET status = $1, owner_user_id = $2, due_at = $3, updated_at = $4 \
             WHERE id = $5",
        )
        .bind(status.unwrap_or(before.status).as_str())
        .bind(owner.unwrap_or(before.owner_user_id))
        .bind(due_at.unwrap_or(before.due_at.map(|t| t.0)))
        .bind(now_millis())
        .bind(task_id)
        .execute(&mut *tx)
        .await?;
        let after = task_by_id(&mut tx, id, task_id).await?;
        let mut changes = Vec::new();
        if before.status != after.status {
            changes.push(format!("{} → {}", before.status, after.status));
        }
        if before.owner != after.owner {
            changes.push(format!(
                "owner {}",
                after.owner.as_deref().unwrap_or("none")
            ));
        }
        if before.due_at != after.due_at {
            changes.push(format!(
                "due {}",
                after.due_at.map_or("none".to_owned(), |t| t.to_string())
            ));
        }
        if !changes.is_empty() {
            log(
                &mut tx,
                id,
                actor,
                "task",
                &format!("Task #{task_id} {}: {}", after.title, changes.join(", ")),
            )
            .await?;
            audit::record(
                &mut *tx,
                actor,
                Change {
                    action: "update",
                    object_type: "incident_task",
                    object_id: task_id.to_string(),
                    institution_id: None,
                    before: audit::to_json(&before),
                    after: audit::to_json(&after),
                },
            )
            .await?;
        }
        tx.commit().await?;
        Ok(after)
    }

    /// Adds a comment to the timeline.
    pub async fn add_incident_comment(
        &self,
        actor: &Actor,
        id: i64,
        text: &str,
    ) -> Result<LogEntry> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FieldError::new("text", "must not be empty").into());
        }
        check_text("text", text)?;
        let mut tx = self.write.begin().await?;
        fetch(&mut tx, id).await?;
        log(&mut tx, id, actor, "comment", text).await?;
        audit_incident(
            &mut tx,
            actor,
            "comment",
            id,
            None,
            Some(serde_json::json!({"text": text})),
        )
        .await?;
        let row = sqlx::query(
            "SELECT id, at, actor, kind, text FROM incident_log WHERE incident_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        log_from_row(&row)
    }

    /// Attaches observables, each linked to the indicator of the same kind and value when the
    /// threat-intelligence store has one. Returns the incident's observables.
    pub async fn add_incident_observables(
        &self,
        actor: &Actor,
        id: i64,
        observables: &[Observed],
    ) -> Result<Vec<IncidentObservable>> {
        let mut tx = self.write.begin().await?;
        fetch(&mut tx, id).await?;
        let now = now_millis();
        let mut added = Vec::new();
        for o in observables {
            let indicator: Option<i64> =
                sqlx::query_scalar("SELECT id FROM indicators WHERE kind = $1 AND value = $2")
                    .bind(&o.kind)
                    .bind(&o.value)
                    .fetch_optional(&mut *tx)
                    .await?;
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM incident_observables WHERE incident_id = $1 AND kind = $2 AND value = $3",
            )
            .bind(id)
            .bind(&o.kind)
            .bind(&o.value)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some(oid) => {
                    sqlx::query("UPDATE incident_observables SET indicator_id = COALESCE($1, indicator_id) WHERE id = $2")
                        .bind(indicator)
                        .bind(oid)
                        .execute(&mut *tx)
                        .await?;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO incident_observables (incident_id, kind, value, indicator_id, added_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(&o.kind)
                    .bind(&o.value)
                    .bind(indicator)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    added.push(format!("{} {}", o.kind, o.value));
                }
            }
        }
        if !added.is_empty() {
            let shown: Vec<&str> = added.iter().take(20).map(String::as_str).collect();
            let more = added.len().saturating_sub(shown.len());
            let mut text = format!("Observables added: {}", shown.join(", "));
            if more > 0 {
                text.push_str(&format!(" and {more} more"));
            }
            log(&mut tx, id, actor, "observable", &text).await?;
            audit_incident(
                &mut tx,
                actor,
                "update",
                id,
                None,
                Some(serde_json::json!({"observables_added": added.len()})),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(self
            .get_incident(id, None)
            .await?
            .map(|d| d.observables)
            .unwrap_or_default())
    }

    /// Records victims; they count in the dashboard's and the reports' victim figures.
    pub async fn add_incident_victims(
        &self,
        actor: &Actor,
        id: i64,
        v: NewVictim,
    ) -> Result<Victim> {
        if !(1..=1_000_000).contains(&v.count) {
            return Err(FieldError::new("count", "must be 1 to 1000000").into());
        }
        check_text("note", &v.note)?;
        if v.kind == VictimKind::Citizen && v.institution_id.is_some() {
            return Err(FieldError::new(
                "institution_id",
                "citizens have no institution; record employees for an institution",
            )
            .into());
        }
        if v.kind == VictimKind::Employee && v.institution_id.is_none() {
            return Err(
                FieldError::new("institution_id", "employees need their institution").into(),
            );
        }
        let mut tx = self.write.begin().await?;
        let incident = fetch(&mut tx, id).await?;
        if let Some(inst) = v.institution_id {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT id FROM institutions WHERE id = $1")
                    .bind(inst.0)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                return Err(FieldError::new(
                    "institution_id",
                    format!("no institution with id {}", inst.0),
                )
                .into());
            }
        }
        let now = now_millis();
        let vid: i64 = sqlx::query_scalar(
            "INSERT INTO incident_victims (incident_id, kind, institution_id, role, count, note, recorded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(id)
        .bind(v.kind.as_str())
        .bind(v.institution_id.map(|i| i.0))
        .bind(v.role.map(|r| r.as_str()).unwrap_or(""))
        .bind(v.count)
        .bind(v.note.trim())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let role = v.role.map(|r| format!(" ({r})")).unwrap_or_default();
        log(
            &mut tx,
            id,
            actor,
            "victim",
            &format!(
                "{} {}{role} recorded",
                v.count,
                if v.kind == VictimKind::Citizen {
                    "citizen(s)"
                } else {
                    "employee(s)"
                }
            ),
        )
        .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "incident_victim",
                object_id: vid.to_string(),
                institution_id: v.institution_id,
                before: None,
                after: Some(serde_json::json!({"incident_id": id, "kind": v.kind, "count": v.count, "role": v.role})),
            },
        )
        .await?;
        write_events(
            &mut tx,
            self.backend,
            &[crate::NewEvent {
                occurred_at: now,
                kind: EventKind::VictimRecorded,
                source: "incidents".to_owned(),
                institution_id: v.institution_id,
                severity: incident.severity,
                count: v.count,
                value: None,
                attributes: serde_json::json!({"incident_id": id, "victim_kind": v.kind, "role": v.role}),
            }],
        )
        .await?;
        let row = sqlx::query(
            "SELECT id, kind, institution_id, role, count, note, recorded_at FROM incident_victims WHERE id = $1",
        )
        .bind(vid)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        victim_from_row(&row)
    }

    /// Stores an evidence file (content once per SHA-256) and attaches it to the incident.
    pub async fn add_incident_evidence(
        &self,
        actor: &Actor,
        id: i64,
        name: &str,
        sha256: &str,
        content: &[u8],
        scan_result: &str,
    ) -> Result<Evidence> {
        let mut tx = self.write.begin().await?;
        fetch(&mut tx, id).await?;
        let have: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM evidence_blobs WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(&mut *tx)
                .await?;
        if have.is_none() {
            sqlx::query("INSERT INTO evidence_blobs (sha256, size, content) VALUES ($1, $2, $3)")
                .bind(sha256)
                .bind(content.len() as i64)
                .bind(content)
                .execute(&mut *tx)
                .await?;
        }
        let eid: i64 = sqlx::query_scalar(
            "INSERT INTO incident_evidence (incident_id, sha256, name, size, scan_result, uploaded_by, uploaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(id)
        .bind(sha256)
        .bind(name)
        .bind(content.len() as i64)
        .bind(scan_result)
        .bind(&actor.name)
        .bind(now_millis())
        .fetch_one(&mut *tx)
        .await?;
        log(
            &mut tx,
            id,
            actor,
            "evidence",
            &format!(
                "Evidence {name} ({} bytes, SHA-256 {sha256}): {scan_result}",
                content.len()
            ),
        )
        .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "incident_evidence",
                object_id: eid.to_string(),
                institution_id: None,
                before: None,
                after: Some(serde_json::json!({"incident_id": id, "name": name, "sha256": sha256, "scan": scan_result})),
            },
        )
        .await?;
        let row = sqlx::query(
            "SELECT id, incident_id, sha256, name, size, scan_result, uploaded_by, uploaded_at \
             FROM incident_evidence WHERE id = $1",
        )
        .bind(eid)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        evidence_from_row(&row)
    }

    /// An evidence file's record and content, if `only` may see its incident.
    pub async fn evidence_content(
        &self,
        incident: i64,
        evidence: i64,
        only: Option<InstitutionId>,
    ) -> Result<Option<(Evidence, Vec<u8>)>> {
        if !self.incident_visible(incident, only).await? {
            return Ok(None);
        }
        let Some(row) = sqlx::query(
            "SELECT e.id, e.incident_id, e.sha256, e.name, e.size, e.scan_result, e.uploaded_by, \
             e.uploaded_at, b.content FROM incident_evidence e JOIN evidence_blobs b \
             ON b.sha256 = e.sha256 WHERE e.id = $1 AND e.incident_id = $2",
        )
        .bind(evidence)
        .bind(incident)
        .fetch_optional(&self.read)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some((evidence_from_row(&row)?, row.try_get("content")?)))
    }

    /// Promotes alerts into a new incident or an existing one: they become `promoted` and
    /// linked; their institutions and observables join the incident.
    pub async fn promote_alerts(
        &self,
        actor: &Actor,
        alert_ids: &[i64],
        to: PromoteTo,
    ) -> Result<IncidentRecord> {
        if alert_ids.is_empty() {
            return Err(FieldError::new("alerts", "name at least one alert").into());
        }
        let mut tx = self.write.begin().await?;
        let mut alerts = Vec::new();
        for &a in alert_ids {
            let alert = alerts::fetch(&mut tx, a).await?;
            if matches!(alert.status, AlertStatus::Merged | AlertStatus::Promoted) {
                return Err(StoreError::Conflict(format!(
                    "alert {a} is already {}",
                    alert.status
                )));
            }
            alerts.push(alert);
        }
        let incident = match to {
            PromoteTo::New(mut new) => {
                for a in &alerts {
                    if let Some(i) = a.institution_id {
                        if !new.institutions.contains(&i) {
                            new.institutions.push(i);
                        }
                    }
                }
                self.open_incident(&mut tx, actor, &new).await?
            }
            PromoteTo::Existing(id) => {
                let existing = fetch(&mut tx, id).await?;
                let mut list: Vec<InstitutionId> =
                    existing.institutions.iter().map(|i| i.id).collect();
                for a in &alerts {
                    if let Some(i) = a.institution_id {
                        if !list.contains(&i) {
                            list.push(i);
                        }
                    }
                }
                set_institutions(&mut tx, id, &list).await?;
                existing
            }
        };
        let now = now_millis();
        for a in &alerts {
            let row = sqlx::query(&format!(
                "UPDATE alerts SET status = 'promoted', incident_id = $1, updated_at = $2 WHERE id = $3 \
                 RETURNING {}",
                alerts::COLUMNS
            ))
            .bind(incident.id)
            .bind(now)
            .bind(a.id)
            .fetch_one(&mut *tx)
            .await?;
            alerts::audit_alert(&mut tx, actor, a, &alerts::from_row(&row)?).await?;
            alerts::count_move(
                &mut tx,
                a.institution_id,
                Some(a.status),
                AlertStatus::Promoted,
                1,
            )
            .await?;
            log(
                &mut tx,
                incident.id,
                actor,
                "alert",
                &format!("Alert #{} linked: {} (×{})", a.id, a.title, a.count),
            )
            .await?;
            for o in &a.observables {
                sqlx::query(
                    "INSERT INTO incident_observables (incident_id, kind, value, indicator_id, added_at) \
                     SELECT $1, $2, $3, (SELECT id FROM indicators WHERE kind = $2 AND value = $3), $4 \
                     WHERE NOT EXISTS (SELECT 1 FROM incident_observables \
                     WHERE incident_id = $1 AND kind = $2 AND value = $3)",
                )
                .bind(incident.id)
                .bind(&o.kind)
                .bind(&o.value)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        let after = fetch(&mut tx, incident.id).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Incidents an indicator's value appears in (its correlation with the CERT's cases).
    pub async fn incidents_for_indicator(
        &self,
        indicator_id: i64,
        only: Option<InstitutionId>,
    ) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT incidents.id, incidents.title FROM incidents JOIN incident_observables o \
             ON o.incident_id = incidents.id JOIN indicators ind ON ind.kind = o.kind AND ind.value = o.value \
             WHERE ind.id = $1 AND {VISIBLE} ORDER BY incidents.id DESC LIMIT 100"
        ))
        .bind(indicator_id)
        .bind(only.map(|i| i.0))
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}

fn log_from_row(r: &AnyRow) -> Result<LogEntry> {
    Ok(LogEntry {
        id: r.try_get("id")?,
        at: Timestamp(r.try_get("at")?),
        actor: r.try_get("actor")?,
        kind: r.try_get("kind")?,
        text: r.try_get("text")?,
    })
}

fn task_from_row(r: &AnyRow) -> Result<Task> {
    Ok(Task {
        id: r.try_get("id")?,
        title: r.try_get("title")?,
        owner_user_id: r.try_get("owner_user_id")?,
        owner: r.try_get("username")?,
        due_at: r.try_get::<Option<i64>, _>("due_at")?.map(Timestamp),
        status: parse_column(r, "incident_tasks", "status")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

async fn task_by_id(tx: &mut Tx<'_>, incident: i64, task: i64) -> Result<Task> {
    let row = sqlx::query(
        "SELECT t.id, t.title, t.owner_user_id, u.username, t.due_at, t.status, t.created_at, \
         t.updated_at FROM incident_tasks t LEFT JOIN users u ON u.id = t.owner_user_id \
         WHERE t.id = $1 AND t.incident_id = $2",
    )
    .bind(task)
    .bind(incident)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("task"))?;
    task_from_row(&row)
}

fn victim_from_row(r: &AnyRow) -> Result<Victim> {
    let role: String = r.try_get("role")?;
    Ok(Victim {
        id: r.try_get("id")?,
        kind: parse_column(r, "incident_victims", "kind")?,
        institution_id: r
            .try_get::<Option<i64>, _>("institution_id")?
            .map(InstitutionId),
        role: if role.is_empty() {
            None
        } else {
            Some(
                role.parse()
                    .map_err(|e: qalxan_core::UnknownName| StoreError::Corrupt {
                        table: "incident_victims",
                        column: "role",
                        detail: e.to_string(),
                    })?,
            )
        },
        count: r.try_get("count")?,
        note: r.try_get("note")?,
        recorded_at: Timestamp(r.try_get("recorded_at")?),
    })
}

fn evidence_from_row(r: &AnyRow) -> Result<Evidence> {
    Ok(Evidence {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        sha256: r.try_get("sha256")?,
        name: r.try_get("name")?,
        size: r.try_get("size")?,
        scan_result: r.try_get("scan_result")?,
        uploaded_by: r.try_get("uploaded_by")?,
        uploaded_at: Timestamp(r.try_get("uploaded_at")?),
    })
}
