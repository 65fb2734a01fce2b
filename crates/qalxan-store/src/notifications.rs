//! Who hears about incidents: webhooks (signed JSON), each person's e-mail settings, and the
//! ledger of notices sent, so a breach is announced once however many servers check.

use crate::audit::{self, Change};
use crate::{parse_column, Actor, Result, Store, StoreError};
use qalxan_core::{now_millis, FieldError, InstitutionId, Severity, Timestamp};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Webhook {
    pub id: i64,
    pub url: String,
    /// Incidents at least this severe are sent.
    pub min_severity: Severity,
    pub active: bool,
    pub created_by: String,
    pub created_at: Timestamp,
    /// The signing key; only the store and the sender see it.
    #[serde(skip)]
    pub secret: String,
}

/// A person's e-mail notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationSettings {
    /// New incidents at least `min_severity` severe.
    pub email_incidents: bool,
    /// SLA breaches of such incidents.
    pub email_sla: bool,
    pub min_severity: Severity,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            email_incidents: true,
            email_sla: true,
            min_severity: Severity::High,
        }
    }
}

fn webhook_from_row(r: &AnyRow) -> Result<Webhook> {
    Ok(Webhook {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        min_severity: parse_column(r, "webhooks", "min_severity")?,
        active: r.try_get::<i64, _>("active")? == 1,
        created_by: r.try_get("created_by")?,
        created_at: Timestamp(r.try_get("created_at")?),
        secret: r.try_get("secret")?,
    })
}

impl Store {
    /// Registers a webhook.
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        url: &str,
        secret: &str,
        min_severity: Severity,
    ) -> Result<Webhook> {
        let url = url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2000 {
            return Err(FieldError::new("url", "must be an http(s) URL").into());
        }
        if secret.len() < 16 {
            return Err(FieldError::new("secret", "must be at least 16 characters").into());
        }
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "INSERT INTO webhooks (url, secret, min_severity, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(url)
        .bind(secret)
        .bind(min_severity.as_str())
        .bind(&actor.name)
        .bind(now_millis())
        .fetch_one(&mut *tx)
        .await?;
        let hook = webhook_from_row(&row)?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "webhook",
                object_id: hook.id.to_string(),
                institution_id: None,
                before: None,
                after: Some(
                    serde_json::json!({"url": hook.url, "min_severity": hook.min_severity}),
                ),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(hook)
    }

    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>> {
        sqlx::query("SELECT * FROM webhooks ORDER BY id")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(webhook_from_row)
            .collect()
    }

    pub async fn delete_webhook(&self, actor: &Actor, id: i64) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT * FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound("webhook"))?;
        let hook = webhook_from_row(&row)?;
        sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "delete",
                object_type: "webhook",
                object_id: id.to_string(),
                institution_id: None,
                before: Some(serde_json::json!({"url": hook.url})),
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn notification_settings(&self, user_id: i64) -> Result<NotificationSettings> {
        let row = sqlx::query("SELECT * FROM notification_settings WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?;
        match row {
            None => Ok(NotificationSettings::default()),
            Some(r) => Ok(NotificationSettings {
                email_incidents: r.try_get::<i64, _>("email_incidents")? == 1,
                email_sla: r.try_get::<i64, _>("email_sla")? == 1,
                min_severity: parse_column(&r, "notification_settings", "min_severity")?,
            }),
        }
    }

    pub async fn set_notification_settings(
        &self,
        actor: &Actor,
        user_id: i64,
        s: NotificationSettings,
    ) -> Result<NotificationSettings> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM notification_settings WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO notification_settings (user_id, email_incidents, email_sla, min_severity) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(i64::from(s.email_incidents))
        .bind(i64::from(s.email_sla))
        .bind(s.min_severity.as_str())
        .execute(&mut *tx)
        .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "update",
                object_type: "notification_settings",
                object_id: user_id.to_string(),
                institution_id: None,
                before: None,
                after: audit::to_json(&s),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(s)
    }

    /// The CERT staff (admins and analysts with an e-mail address) who want to hear about
    /// an incident of `severity`: `sla` picks the SLA-breach setting, else new incidents.
    pub async fn notification_recipients(
        &self,
        severity: Severity,
        sla: bool,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT u.id, u.username, u.email FROM users u WHERE u.disabled = 0 AND u.email <> '' \
             AND u.role IN ('admin', 'analyst') ORDER BY u.id",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let s = self.notification_settings(r.try_get("id")?).await?;
            let wanted = if sla { s.email_sla } else { s.email_incidents };
            if wanted && severity >= s.min_severity {
                out.push((r.try_get("username")?, r.try_get("email")?));
            }
        }
        Ok(out)
    }

    /// Who at the affected `institutions` hears about a new incident of `severity`: their
    /// staff accounts whose settings ask for it, and, when `contacts` is given and the
    /// incident is at least that severe, each institution's contact address. Names and
    /// addresses, one per address.
    pub async fn institution_recipients(
        &self,
        institutions: &[InstitutionId],
        severity: Severity,
        contacts: Option<Severity>,
    ) -> Result<Vec<(String, String)>> {
        if institutions.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = institutions.iter().map(|i| i.0).collect();
        let ids = serde_json::to_string(&ids).unwrap_or_default();
        let ids_from = crate::json_ids(self.backend);
        let users = sqlx::query(&format!(
            "SELECT id, username, email FROM users WHERE disabled = 0 AND email <> '' \
             AND role = 'institution' AND institution_id IN ({ids_from}) ORDER BY id"
        ))
        .bind(&ids)
        .fetch_all(&self.read)
        .await?;
        let mut out: Vec<(String, String)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in &users {
            let s = self.notification_settings(r.try_get("id")?).await?;
            let email: String = r.try_get("email")?;
            if s.email_incidents && severity >= s.min_severity && seen.insert(email.to_lowercase())
            {
                out.push((r.try_get("username")?, email));
            }
        }
        if contacts.is_some_and(|min| severity >= min) {
            let rows = sqlx::query(&format!(
                "SELECT name, contact_email FROM institutions WHERE contact_email <> '' \
                 AND id IN ({ids_from}) ORDER BY id"
            ))
            .bind(&ids)
            .fetch_all(&self.read)
            .await?;
            for r in &rows {
                let email: String = r.try_get("contact_email")?;
                if seen.insert(email.to_lowercase()) {
                    let name: String = r.try_get("name")?;
                    out.push((format!("contact of {name}"), email));
                }
            }
        }
        Ok(out)
    }

    /// The notices already sent for these incidents, so the sender claims only new ones.
    pub async fn notices_sent(
        &self,
        incidents: &[i64],
    ) -> Result<std::collections::HashSet<(i64, String)>> {
        let ids_from = crate::json_ids(self.backend);
        let rows = sqlx::query(&format!(
            "SELECT incident_id, kind FROM incident_notices WHERE incident_id IN ({ids_from})"
        ))
        .bind(serde_json::to_string(incidents).unwrap_or_default())
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("incident_id")?, r.try_get("kind")?)))
            .collect()
    }

    /// Records that `kind` was announced for an incident; false when it already was (by this
    /// or another server).
    pub async fn claim_notice(&self, incident_id: i64, kind: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO incident_notices (incident_id, kind, sent_at) VALUES ($1, $2, $3) \
             ON CONFLICT (incident_id, kind) DO NOTHING",
        )
        .bind(incident_id)
        .bind(kind)
        .bind(now_millis())
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
