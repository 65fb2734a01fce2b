//! Accounts, their login sessions, and the record of login attempts that throttling reads.
//!
//! The store never sees a password or a session token: callers pass an argon2 hash and a
//! SHA-256 of the token, so a copy of the database gives neither away.

use crate::audit::{self, to_json, Change};
use crate::{conflict_on_unique, parse_column, Actor, Result, Store, StoreError};
use qalxan_core::{now_millis, FieldError, InstitutionId, Role, Timestamp};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub role: Role,
    pub institution_id: Option<InstitutionId>,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub password_changed_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub role: Role,
    pub institution_id: Option<InstitutionId>,
    /// An argon2 PHC string, never the password itself.
    pub password_hash: String,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    /// `Some(None)` removes the institution.
    pub institution_id: Option<Option<InstitutionId>>,
    pub disabled: Option<bool>,
}

/// A logged-in browser session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Recent failed logins, for throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    /// Failures for this account since its last successful login.
    pub account: i64,
    /// Failures from this address, whatever the account.
    pub ip: i64,
}

fn from_row(row: &AnyRow) -> Result<User> {
    Ok(User {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        email: row.try_get("email")?,
        role: parse_column(row, "users", "role")?,
        institution_id: row
            .try_get::<Option<i64>, _>("institution_id")?
            .map(InstitutionId),
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: Timestamp(row.try_get("created_at")?),
        updated_at: Timestamp(row.try_get("updated_at")?),
        password_changed_at: Timestamp(row.try_get("password_changed_at")?),
    })
}

/// Account names are case-insensitive and limited to characters that are safe in logs and URLs.
pub fn normalize_username(name: &str) -> Result<String, FieldError> {
    let name = name.trim().to_lowercase();
    if name.is_empty() || name.len() > 64 {
        return Err(FieldError::new("username", "must be 1 to 64 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
    {
        return Err(FieldError::new(
            "username",
            format!("'{name}' may contain only letters, digits and . _ - @"),
        ));
    }
    Ok(name)
}

fn check_role_institution(
    role: Role,
    institution: Option<InstitutionId>,
) -> Result<(), FieldError> {
    match (role.requires_institution(), institution) {
        (true, None) => Err(FieldError::new(
            "institution_id",
            format!("role '{role}' needs an institution"),
        )),
        (false, Some(_)) => Err(FieldError::new(
            "institution_id",
            format!("role '{role}' is not tied to an institution"),
        )),
        _ => Ok(()),
    }
}

impl Store {
    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.read)
            .await?)
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY username")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn get_user(&self, id: i64) -> Result<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The account and its password hash, for logging in.
    pub async fn user_credentials(&self, username: &str) -> Result<Option<(User, String)>> {
        let Ok(username) = normalize_username(username) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| Ok((from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<User> {
        let username = normalize_username(&new.username)?;
        check_role_institution(new.role, new.institution_id)?;
        if !new.role.can_log_in() {
            return Err(FieldError::new(
                "role",
                format!("role '{}' is for API tokens only", new.role),
            )
            .into());
        }
        let mut tx = self.write.begin().await?;
        if let Some(inst) = new.institution_id {
            ensure_institution(&mut tx, inst).await?;
        }
        let now = now_millis();
        let row = sqlx::query(
            "INSERT INTO users (username, display_name, email, password_hash, role, institution_id, \
             disabled, created_at, updated_at, password_changed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7, $7) RETURNING *",
        )
        .bind(&username)
        .bind(new.display_name.trim())
        .bind(new.email.trim())
        .bind(&new.password_hash)
        .bind(new.role.as_str())
        .bind(new.institution_id.map(|i| i.0))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("user '{username}' already exists")))?;
        let user = from_row(&row)?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "create",
                object_type: "user",
                object_id: user.id.to_string(),
                institution_id: user.institution_id,
                before: None,
                after: to_json(&user),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn update_user(&self, actor: &Actor, id: i64, update: UserUpdate) -> Result<User> {
        let mut tx = self.write.begin().await?;
        let before = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()?
            .ok_or(StoreError::NotFound("user"))?;
        let role = update.role.unwrap_or(before.role);
        let institution = update.institution_id.unwrap_or(before.institution_id);
        check_role_institution(role, institution)?;
        if !role.can_log_in() {
            return Err(
                FieldError::new("role", format!("role '{role}' is for API tokens only")).into(),
            );
        }
        if let Some(inst) = institution {
            ensure_institution(&mut tx, inst).await?;
        }
        let disabled = update.disabled.unwrap_or(before.disabled);
        if before.role == Role::Admin && (role != Role::Admin || disabled) {
            // On PostgreSQL, lock the admin rows so two concurrent demotions cannot each see the
            // other admin as still active; SQLite's single writer already serialises them.
            let lock = match self.backend {
                crate::Backend::Postgres => " FOR UPDATE",
                crate::Backend::Sqlite => "",
            };
            let admins: Vec<i64> = sqlx::query_scalar(&format!(
                "SELECT id FROM users WHERE role = 'admin' AND disabled = 0{lock}"
            ))
            .fetch_all(&mut *tx)
            .await?;
            if !admins.iter().any(|&a| a != id) {
                return Err(StoreError::Conflict(
                    "this is the last active admin account; make another admin first".to_owned(),
                ));
            }
        }
        let row = sqlx::query(
            "UPDATE users SET display_name = $1, email = $2, role = $3, institution_id = $4, \
             disabled = $5, updated_at = $6 WHERE id = $7 RETURNING *",
        )
        .bind(
            update
                .display_name
                .as_deref()
                .map(str::trim)
                .unwrap_or(&before.display_name),
        )
        .bind(
            update
                .email
                .as_deref()
                .map(str::trim)
                .unwrap_or(&before.email),
        )
        .bind(role.as_str())
        .bind(institution.map(|i| i.0))
        .bind(i64::from(disabled))
        .bind(now_millis())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let after = from_row(&row)?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "update",
                object_type: "user",
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

    /// Replaces an account's password hash and ends its sessions, except `keep_session`
    /// (the session of a user changing their own password).
    pub async fn set_password(
        &self,
        actor: &Actor,
        user_id: i64,
        password_hash: &str,
        keep_session: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let now = now_millis();
        let done = sqlx::query(
            "UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2 \
             WHERE id = $3",
        )
        .bind(password_hash)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR id <> $2)")
            .bind(user_id)
            .bind(keep_session)
            .execute(&mut *tx)
            .await?;
        audit::record(
            &mut *tx,
            actor,
            Change {
                action: "password",
                object_type: "user",
                object_id: user_id.to_string(),
                institution_id: None,
                before: None,
                after: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Opens a login session and records the login in the audit trail, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_session(
        &self,
        actor: &Actor,
        user_id: i64,
        token_hash: &str,
        csrf_token: &str,
        expires_at: i64,
        ip: &str,
        user_agent: &str,
    ) -> Result<Session> {
        let now = now_millis();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, \
             expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $4, $5, $6, $7) RETURNING id",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .bind(expires_at)
        .bind(ip)
        .bind(user_agent.chars().take(300).collect::<String>())
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = row.try_get("id")?;
        audit::record(&mut *tx, actor, session_change("login", id)).await?;
        tx.commit().await?;
        Ok(Session {
            id,
            user_id,
            csrf_token: csrf_token.to_owned(),
            created_at: Timestamp(now),
            expires_at: Timestamp(expires_at),
        })
    }

    /// The live session with this token hash and its (enabled) account.
    pub async fn session(&self, token_hash: &str, now: i64) -> Result<Option<(Session, User)>> {
        let row = sqlx::query(
            "SELECT s.id AS session_id, s.csrf_token, s.created_at AS session_created, \
             s.expires_at, u.* FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            let user = from_row(&r)?;
            let session = Session {
                id: r.try_get("session_id")?,
                user_id: user.id,
                csrf_token: r.try_get("csrf_token")?,
                created_at: Timestamp(r.try_get("session_created")?),
                expires_at: Timestamp(r.try_get("expires_at")?),
            };
            Ok((session, user))
        })
        .transpose()
    }

    /// Ends a session (logout) and records it, in one transaction.
    pub async fn end_session(&self, actor: &Actor, session_id: i64) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        audit::record(&mut *tx, actor, session_change("logout", session_id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes expired sessions and login attempts older than `attempts_before`.
    pub async fn prune(&self, now: i64, attempts_before: i64) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let a = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let b = sqlx::query("DELETE FROM login_attempts WHERE at < $1")
            .bind(attempts_before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(a + b)
    }

    /// Records a login attempt as failed before the password is checked, so parallel guesses
    /// count against the limits at once; [`Store::login_succeeded`] corrects it afterwards.
    pub async fn begin_login_attempt(&self, username: &str, ip: &str) -> Result<i64> {
        let username: String = username.trim().to_lowercase().chars().take(64).collect();
        let id = sqlx::query_scalar(
            "INSERT INTO login_attempts (at, username, ip, success) VALUES ($1, $2, $3, 0) \
             RETURNING id",
        )
        .bind(now_millis())
        .bind(username)
        .bind(ip)
        .fetch_one(&self.write)
        .await?;
        Ok(id)
    }

    pub async fn login_succeeded(&self, attempt_id: i64) -> Result<()> {
        sqlx::query("UPDATE login_attempts SET success = 1 WHERE id = $1")
            .bind(attempt_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Failed logins since `since` for the account (after its last success) and for the address.
    pub async fn login_failures(
        &self,
        username: &str,
        ip: &str,
        since: i64,
    ) -> Result<LoginFailures> {
        let username: String = username.trim().to_lowercase().chars().take(64).collect();
        let account: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM login_attempts WHERE username = $1 AND success = 0 \
             AND at >= $2 AND at > COALESCE((SELECT MAX(at) FROM login_attempts \
             WHERE username = $1 AND success = 1), 0)",
        )
        .bind(&username)
        .bind(since)
        .fetch_one(&self.read)
        .await?;
        let from_ip: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM login_attempts WHERE ip = $1 AND success = 0 AND at >= $2",
        )
        .bind(ip)
        .bind(since)
        .fetch_one(&self.read)
        .await?;
        Ok(LoginFailures {
            account,
            ip: from_ip,
        })
    }
}

fn session_change(action: &'static str, session_id: i64) -> Change<'static> {
    Change {
        action,
        object_type: "session",
        object_id: session_id.to_string(),
        institution_id: None,
        before: None,
        after: None,
    }
}

pub(crate) async fn ensure_institution(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: InstitutionId,
) -> Result<()> {
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM institutions WHERE id = $1")
        .bind(id.0)
        .fetch_optional(&mut **tx)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => {
            Err(FieldError::new("institution_id", format!("no institution with id {id}")).into())
        }
    }
}
