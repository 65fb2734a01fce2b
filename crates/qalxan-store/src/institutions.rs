//! The constituency: institutions and their contacts, domains and address ranges.

use crate::audit::{self, to_json, Change};
use crate::{conflict_on_unique, json_column, Actor, Result, Store, StoreError};
use qalxan_core::{now_millis, Institution, InstitutionFields, InstitutionId, Timestamp};
use sqlx::any::AnyRow;
use sqlx::Row;

fn from_row(row: &AnyRow) -> Result<Institution> {
    Ok(Institution {
        id: InstitutionId(row.try_get("id")?),
        fields: InstitutionFields {
            name: row.try_get("name")?,
            sector: row.try_get("sector")?,
            contact_name: row.try_get("contact_name")?,
            contact_email: row.try_get("contact_email")?,
            contact_phone: row.try_get("contact_phone")?,
            domains: json_column(row, "institutions", "domains")?,
            ip_ranges: json_column(row, "institutions", "ip_ranges")?,
            notes: row.try_get("notes")?,
        },
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
    })
}

fn name_taken(fields: &InstitutionFields) -> impl FnOnce() -> String + '_ {
    move || format!("an institution named '{}' already exists", fields.name)
}

impl Store {
    /// All institutions, or only `only` when the caller is scoped to one.
    pub async fn list_institutions(&self, only: Option<InstitutionId>) -> Result<Vec<Institution>> {
        let rows = sqlx::query(
            "SELECT * FROM institutions WHERE ($1 IS NULL OR id = $1) ORDER BY name_key",
        )
        .bind(only.map(|i| i.0))
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn get_institution(&self, id: InstitutionId) -> Result<Option<Institution>> {
        let row = sqlx::query("SELECT * FROM institutions WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn create_institution(
        &self,
        actor: &Actor,
        fields: InstitutionFields,
    ) -> Result<Institution> {
        let fields = fields.validated()?;
        let now = now_millis();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "INSERT INTO institutions (name, name_key, sector, contact_name, contact_email, \
             contact_phone, domains, ip_ranges, notes, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING *",
        )
        .bind(&fields.name)
        .bind(fields.name_key())
        .bind(&fields.sector)
        .bind(&fields.contact_name)
        .bind(&fields.contact_email)
        .bind(&fields.contact_phone)
        .bind(serde_json::Value::from(fields.domains.clone()).to_string())
        .bind(serde_json::Value::from(fields.ip_ranges.clone()).to_string())
        .bind(&fields.notes)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, name_taken(&fields)))?;
        let created = from_row(&row)?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "institution",
                object_id: created.id.to_string(),
                institution_id: Some(created.id),
                before: None,
                after: to_json(&created),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_institution(
        &self,
        actor: &Actor,
        id: InstitutionId,
        fields: InstitutionFields,
    ) -> Result<Institution> {
        let fields = fields.validated()?;
        let mut tx = self.write.begin().await?;
        let before = sqlx::query("SELECT * FROM institutions WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()?
            .ok_or(StoreError::NotFound("institution"))?;
        let row = sqlx::query(
            "UPDATE institutions SET name = $1, name_key = $2, sector = $3, contact_name = $4, \
             contact_email = $5, contact_phone = $6, domains = $7, ip_ranges = $8, notes = $9, \
             updated_at = $10 WHERE id = $11 RETURNING *",
        )
        .bind(&fields.name)
        .bind(fields.name_key())
        .bind(&fields.sector)
        .bind(&fields.contact_name)
        .bind(&fields.contact_email)
        .bind(&fields.contact_phone)
        .bind(serde_json::Value::from(fields.domains.clone()).to_string())
        .bind(serde_json::Value::from(fields.ip_ranges.clone()).to_string())
        .bind(&fields.notes)
        .bind(now_millis())
        .bind(id.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, name_taken(&fields)))?;
        let after = from_row(&row)?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "update",
                object_type: "institution",
                object_id: id.to_string(),
                institution_id: Some(id),
                before: to_json(&before),
                after: to_json(&after),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes an institution nothing refers to; one with users, tokens or events is kept
    /// (its history must stay readable) and the refusal says why.
    pub async fn delete_institution(&self, actor: &Actor, id: InstitutionId) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let before = sqlx::query("SELECT * FROM institutions WHERE id = $1")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()?
            .ok_or(StoreError::NotFound("institution"))?;
        for (table, what) in [
            ("users", "user accounts"),
            ("api_tokens", "API tokens"),
            ("events", "events"),
        ] {
            let sql = format!("SELECT COUNT(*) FROM {table} WHERE institution_id = $1");
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(id.0)
                .fetch_one(&mut *tx)
                .await?;
            if n > 0 {
                return Err(StoreError::Conflict(format!(
                    "institution '{}' still has {n} {what}; it cannot be deleted",
                    before.fields.name
                )));
            }
        }
        sqlx::query("DELETE FROM institutions WHERE id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "delete",
                object_type: "institution",
                object_id: id.to_string(),
                institution_id: Some(id),
                before: to_json(&before),
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
