//! API tokens for agents, gateways and scripts. Only a SHA-256 of each token is stored.

use crate::audit::{self, to_json, Change};
use crate::users::ensure_institution;
use crate::{parse_column, Actor, Result, Store, StoreError};
use qalxan_core::{now_millis, FieldError, InstitutionId, Role, Timestamp};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// The first characters of the token, so people can tell their tokens apart.
    pub prefix: String,
    pub role: Role,
    pub institution_id: Option<InstitutionId>,
    pub created_by: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiToken {
    pub fn is_usable(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e.0 > now)
    }
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    pub role: Role,
    pub institution_id: Option<InstitutionId>,
    pub expires_at: Option<i64>,
    /// SHA-256 of the secret, hex.
    pub token_hash: String,
    pub prefix: String,
}

fn from_row(row: &AnyRow) -> Result<ApiToken> {
    let ts = |c: &str| -> Result<Option<Timestamp>> {
        Ok(row.try_get::<Option<i64>, _>(c)?.map(Timestamp))
    };
    Ok(ApiToken {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        role: parse_column(row, "api_tokens", "role")?,
        institution_id: row
            .try_get::<Option<i64>, _>("institution_id")?
            .map(InstitutionId),
        created_by: row.try_get("created_by")?,
        created_at: Timestamp(row.try_get("created_at")?),
        expires_at: ts("expires_at")?,
        last_used_at: ts("last_used_at")?,
        revoked_at: ts("revoked_at")?,
    })
}

impl Store {
    pub async fn create_token(&self, actor: &Actor, new: NewToken) -> Result<ApiToken> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(FieldError::new("name", "must be 1 to 100 printable characters").into());
        }
        if new.role == Role::Institution && new.institution_id.is_none() {
            return Err(FieldError::new(
                "institution_id",
                "role 'institution' needs an institution",
            )
            .into());
        }
        let mut tx = self.write.begin().await?;
        if let Some(inst) = new.institution_id {
            ensure_institution(&mut tx, inst).await?;
        }
        let row = sqlx::query(
            "INSERT INTO api_tokens (name, token_hash, prefix, role, institution_id, created_by, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        )
        .bind(name)
        .bind(&new.token_hash)
        .bind(&new.prefix)
        .bind(new.role.as_str())
        .bind(new.institution_id.map(|i| i.0))
        .bind(&actor.name)
        .bind(now_millis())
        .bind(new.expires_at)
        .fetch_one(&mut *tx)
        .await?;
        let token = from_row(&row)?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "api_token",
                object_id: token.id.to_string(),
                institution_id: token.institution_id,
                before: None,
                after: to_json(&token),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(token)
    }

    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn revoke_token(&self, actor: &Actor, id: i64) -> Result<ApiToken> {
        let mut tx = self.write.begin().await?;
        let before = sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()?
            .ok_or(StoreError::NotFound("API token"))?;
        if before.revoked_at.is_some() {
            return Ok(before);
        }
        let row = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 RETURNING *")
            .bind(now_millis())
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let after = from_row(&row)?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "revoke",
                object_type: "api_token",
                object_id: id.to_string(),
                institution_id: after.institution_id,
                before: to_json(&before),
                after: to_json(&after),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Notes that a token was used; at most once a minute per token, to keep reads cheap.
    pub async fn touch_token(&self, id: i64, now: i64) -> Result<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(now)
        .bind(id)
        .bind(now - 60_000)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}
