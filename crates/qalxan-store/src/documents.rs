//! Documents the sandbox analysed: the report, the disarm report and the disarmed copy.

use crate::audit::{self, Change};
use crate::{Actor, Result, Store, StoreError};
use qalxan_core::{now_millis, InstitutionId, Timestamp};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A document to record.
pub struct NewDocument {
    pub institution_id: Option<InstitutionId>,
    pub filename: String,
    pub sha256: String,
    pub size: i64,
    pub file_type: String,
    pub verdict: String,
    pub score: i64,
    /// The analysis report (qalxan-docs' Report as JSON).
    pub report: serde_json::Value,
    /// What disarm removed, when it ran.
    pub disarm_report: Option<serde_json::Value>,
    /// Why disarm refused, when it did.
    pub disarm_error: String,
    pub disarmed_name: String,
    pub disarmed: Option<Vec<u8>>,
}

/// A recorded document, without the disarmed bytes.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentRecord {
    pub id: i64,
    pub institution_id: Option<InstitutionId>,
    pub uploaded_by: String,
    pub filename: String,
    pub sha256: String,
    pub size: i64,
    pub file_type: String,
    pub verdict: String,
    pub score: i64,
    pub report: serde_json::Value,
    pub disarm_report: Option<serde_json::Value>,
    pub disarm_error: String,
    pub disarmed_name: String,
    pub disarmed_available: bool,
    pub created_at: Timestamp,
}

const COLUMNS: &str =
    "id, institution_id, uploaded_by, filename, sha256, size, file_type, verdict, \
    score, report, disarm_report, disarm_error, disarmed_name, \
    (CASE WHEN disarmed IS NULL THEN 0 ELSE 1 END) AS has_disarmed, created_at";

fn from_row(row: &AnyRow) -> Result<DocumentRecord> {
    let json = |col: &'static str| -> Result<Option<serde_json::Value>> {
        let text: String = row.try_get(col)?;
        if text.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                table: "documents",
                column: col,
                detail: e.to_string(),
            })
    };
    Ok(DocumentRecord {
        id: row.try_get("id")?,
        institution_id: row
            .try_get::<Option<i64>, _>("institution_id")?
            .map(InstitutionId),
        uploaded_by: row.try_get("uploaded_by")?,
        filename: row.try_get("filename")?,
        sha256: row.try_get("sha256")?,
        size: row.try_get("size")?,
        file_type: row.try_get("file_type")?,
        verdict: row.try_get("verdict")?,
        score: row.try_get("score")?,
        report: json("report")?.unwrap_or(serde_json::Value::Null),
        disarm_report: json("disarm_report")?,
        disarm_error: row.try_get("disarm_error")?,
        disarmed_name: row.try_get("disarmed_name")?,
        disarmed_available: row.try_get::<i64, _>("has_disarmed")? == 1,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

impl Store {
    /// Records an analysed document and its disarmed copy, with an audit entry.
    pub async fn insert_document(&self, actor: &Actor, doc: NewDocument) -> Result<DocumentRecord> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(&format!(
            "INSERT INTO documents (institution_id, uploaded_by, filename, sha256, size, file_type, \
             verdict, score, report, disarm_report, disarm_error, disarmed_name, disarmed, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {COLUMNS}"
        ))
        .bind(doc.institution_id.map(|i| i.0))
        .bind(&actor.name)
        .bind(&doc.filename)
        .bind(&doc.sha256)
        .bind(doc.size)
        .bind(&doc.file_type)
        .bind(&doc.verdict)
        .bind(doc.score)
        .bind(doc.report.to_string())
        .bind(doc.disarm_report.as_ref().map(|r| r.to_string()).unwrap_or_default())
        .bind(&doc.disarm_error)
        .bind(&doc.disarmed_name)
        .bind(doc.disarmed)
        .bind(now_millis())
        .fetch_one(&mut *tx)
        .await?;
        let created = from_row(&row)?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "document",
                object_id: created.id.to_string(),
                institution_id: created.institution_id,
                before: None,
                after: Some(serde_json::json!({
                    "filename": created.filename,
                    "sha256": created.sha256,
                    "verdict": created.verdict,
                    "score": created.score,
                })),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    /// The newest documents, only `only`'s when the caller is scoped to one institution.
    pub async fn list_documents(
        &self,
        only: Option<InstitutionId>,
        limit: u32,
    ) -> Result<Vec<DocumentRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM documents WHERE ($1 IS NULL OR institution_id = $1) \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(only.map(|i| i.0))
        .bind(i64::from(limit.clamp(1, 1000)))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// One document; None also when it belongs to another institution than `only`.
    pub async fn get_document(
        &self,
        id: i64,
        only: Option<InstitutionId>,
    ) -> Result<Option<DocumentRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM documents WHERE id = $1 AND ($2 IS NULL OR institution_id = $2)"
        ))
        .bind(id)
        .bind(only.map(|i| i.0))
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The disarmed copy's file name and bytes.
    pub async fn disarmed_document(
        &self,
        id: i64,
        only: Option<InstitutionId>,
    ) -> Result<Option<(String, Vec<u8>)>> {
        let row = sqlx::query(
            "SELECT disarmed_name, disarmed FROM documents \
             WHERE id = $1 AND ($2 IS NULL OR institution_id = $2) AND disarmed IS NOT NULL",
        )
        .bind(id)
        .bind(only.map(|i| i.0))
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| Ok((r.try_get("disarmed_name")?, r.try_get("disarmed")?)))
            .transpose()
    }
}
