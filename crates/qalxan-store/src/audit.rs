//! The audit trail: one row per change, written in the change's own transaction.

use crate::{Actor, Result, Store, StoreError};
use qalxan_core::{now_millis, InstitutionId, Timestamp};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    /// `user:NAME`, `token:NAME`, `cli:OSUSER` or `system`.
    pub actor: String,
    pub ip: String,
    /// `create`, `update`, `delete`, `revoke`, `login`, `logout`, `password`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub institution_id: Option<InstitutionId>,
    /// The object before the change (absent for creations).
    pub before: Option<serde_json::Value>,
    /// The object after the change (absent for deletions).
    pub after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub actor: Option<String>,
    /// Only entries with a smaller id: the cursor for the next page.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// One audit row to write.
pub(crate) struct Change<'a> {
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: String,
    pub institution_id: Option<InstitutionId>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    // Serialising our own plain data types cannot fail; a failure would only lose detail.
    serde_json::to_value(value).ok()
}

pub(crate) async fn record<'c, E>(executor: E, actor: &Actor, change: Change<'_>) -> Result<()>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, actor, ip, action, object_type, object_id, institution_id, \
         before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now_millis())
    .bind(&actor.name)
    .bind(&actor.ip)
    .bind(change.action)
    .bind(change.object_type)
    .bind(change.object_id)
    .bind(change.institution_id.map(|i| i.0))
    .bind(change.before.map(|v| v.to_string()))
    .bind(change.after.map(|v| v.to_string()))
    .execute(executor)
    .await?;
    Ok(())
}

fn entry_from_row(row: &AnyRow) -> Result<AuditEntry> {
    let json = |column: &'static str| -> Result<Option<serde_json::Value>> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                table: "audit_log",
                column,
                detail: e.to_string(),
            })
        })
        .transpose()
    };
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at: Timestamp(row.try_get("at")?),
        actor: row.try_get("actor")?,
        ip: row.try_get("ip")?,
        action: row.try_get("action")?,
        object_type: row.try_get("object_type")?,
        object_id: row.try_get("object_id")?,
        institution_id: row
            .try_get::<Option<i64>, _>("institution_id")?
            .map(InstitutionId),
        before: json("before_json")?,
        after: json("after_json")?,
    })
}

impl Store {
    /// Records an action that is not itself a stored change (a login, a logout).
    pub async fn record_audit(
        &self,
        actor: &Actor,
        action: &str,
        object_type: &str,
        object_id: &str,
    ) -> Result<()> {
        record(
            &self.write,
            actor,
            Change {
                action,
                object_type,
                object_id: object_id.to_owned(),
                institution_id: None,
                before: None,
                after: None,
            },
        )
        .await
    }

    /// Audit entries, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log \
             WHERE ($1 IS NULL OR object_type = $1) AND ($2 IS NULL OR object_id = $2) \
               AND ($3 IS NULL OR actor = $3) AND ($4 IS NULL OR id < $4) \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(filter.object_type.as_deref())
        .bind(filter.object_id.as_deref())
        .bind(filter.actor.as_deref())
        .bind(filter.before_id)
        .bind(i64::from(filter.limit.clamp(1, 1000)))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }
}
