//! Who is asking: passwords (argon2id), login sessions (cookie + CSRF token), API tokens
//! (`Authorization: Bearer`), the client's address, and the [`Principal`] every handler gets.
//!
//! Secrets never reach the store in the clear: passwords as argon2id PHC strings, session and
//! API tokens as SHA-256 (they are 256-bit random values, so a fast hash is enough).

use crate::error::ApiError;
use crate::AppState;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use base64::Engine;
use qalxan_core::{now_millis, FieldError, InstitutionId, Role};
use qalxan_store::{Actor, Session, User};
use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use subtle::ConstantTimeEq;

/// The session cookie. With `Secure`, browsers accept the `__Host-` prefix, which also pins the
/// cookie to this host and path `/`.
pub const SESSION_COOKIE: &str = "qalxan_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-qalxan_session";
/// Header carrying the CSRF token when the API is called with a session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Every API token starts with this, so secret scanners and people can recognise one.
pub const TOKEN_PREFIX: &str = "qx_";

pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 1024;

/// An argon2id hash (PHC string) of `password`, with the OWASP-recommended default cost.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(&e))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Hashing takes tens of milliseconds of CPU on purpose: keep it off the async workers.
pub async fn hash_password_blocking(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(&e))?
}

/// Verifies `password` against `phc`; with no hash (no such account) it verifies against a
/// decoy and fails, so the answer takes as long as for a real account and does not reveal which
/// names exist.
pub async fn verify_password_blocking(password: String, phc: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_password(&password, &phc),
        None => {
            verify_password(&password, decoy_hash());
            false
        }
    })
    .await
    .unwrap_or(false)
}

fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&generate_password()).unwrap_or_default())
}

pub fn check_password_policy(password: &str, username: &str) -> Result<(), FieldError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(FieldError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(FieldError::new("password", "is too long"));
    }
    if password.to_lowercase().contains(&username.to_lowercase()) {
        return Err(FieldError::new(
            "password",
            "must not contain the user name",
        ));
    }
    Ok(())
}

/// A random password: 20 letters and digits (about 119 bits).
pub fn generate_password() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 20)
}

/// A random password for the account `username` that the password policy accepts: a random
/// one may contain the user name (for a one-letter name, about half of them do), and a
/// generated password must never be refused.
pub fn generate_password_for(username: &str) -> String {
    let mut password = generate_password();
    // Bounded: for a name no password can avoid (empty), the policy refuses it afterwards.
    for _ in 0..1000 {
        if check_password_policy(&password, username).is_ok() {
            break;
        }
        password = generate_password();
    }
    password
}

/// 32 random bytes, base64url without padding.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new API token: the secret (shown once), its hash (stored) and its recognisable prefix.
pub struct MintedToken {
    pub secret: String,
    pub hash: String,
    pub prefix: String,
}

pub fn mint_token() -> MintedToken {
    let secret = format!("{TOKEN_PREFIX}{}", random_secret());
    MintedToken {
        hash: sha256_hex(&secret),
        prefix: secret.chars().take(TOKEN_PREFIX.len() + 6).collect(),
        secret,
    }
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    Session { user: Box<User>, session: Session },
    Token { id: i64 },
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub role: Role,
    /// Set for callers tied to one institution: they see only its data.
    pub institution: Option<InstitutionId>,
    /// User name or token name.
    pub name: String,
    pub credential: Credential,
    pub ip: IpAddr,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self.credential {
            Credential::Session { .. } => Actor::user(&self.name, self.ip.to_string()),
            Credential::Token { .. } => Actor::token(&self.name, self.ip.to_string()),
        }
    }

    /// Refuses the request unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role '{}' may not do this",
                self.role
            )))
        }
    }

    /// The institution the caller is confined to, or `None` for CERT staff who see all.
    /// Callers of other roles must have been refused by [`Principal::require`] already.
    pub fn scope(&self) -> Option<InstitutionId> {
        if self.role.sees_all_institutions() {
            None
        } else {
            // Roles tied to an institution see only it; one without an institution sees nothing.
            Some(self.institution.unwrap_or(InstitutionId(0)))
        }
    }

    pub fn can_see(&self, institution: InstitutionId) -> bool {
        self.scope().is_none_or(|own| own == institution)
    }

    pub fn user(&self) -> Option<&User> {
        match &self.credential {
            Credential::Session { user, .. } => Some(user),
            Credential::Token { .. } => None,
        }
    }

    pub fn session(&self) -> Option<&Session> {
        match &self.credential {
            Credential::Session { session, .. } => Some(session),
            Credential::Token { .. } => None,
        }
    }
}

/// The client's address: the peer, or for a trusted reverse proxy the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(parts: &Parts, state: &AppState) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    if !state.is_trusted_proxy(peer) {
        return peer;
    }
    let forwarded = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !state.is_trusted_proxy(*ip))
        .unwrap_or(peer)
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The API token a request carries: `Authorization: Bearer <token>`, or HTTP Basic with the
/// token as the password (what TAXII and MISP clients can send), any user name.
fn bearer_token(parts: &Parts) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not readable text"))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            Ok(Some(token.trim().to_owned()))
        }
        Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::unauthorized("the Basic credentials are not base64 text"))?;
            let (_, password) = decoded.split_once(':').unwrap_or(("", &decoded));
            Ok(Some(password.to_owned()))
        }
        _ => Err(ApiError::unauthorized(
            "the Authorization header must be 'Bearer <API token>' (or Basic with the token as password)",
        )),
    }
}

/// Identifies the caller by API token or session cookie; `Ok(None)` when the request carries
/// neither (or an expired session).
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Option<Principal>, ApiError> {
    let ip = client_ip(parts, state);
    let now = now_millis();
    if let Some(secret) = bearer_token(parts)? {
        let token = state
            .store()
            .token_by_hash(&sha256_hex(&secret))
            .await?
            .filter(|t| t.is_usable(now))
            .ok_or_else(|| {
                ApiError::unauthorized("the API token is unknown, expired or revoked")
            })?;
        // Recording each use would make every read a write; a minute's precision is enough.
        if token.last_used_at.is_none_or(|t| now - t.0 > 60_000) {
            if let Err(e) = state.store().touch_token(token.id, now).await {
                tracing::warn!(error = %e, token = token.id, "could not record token use");
            }
        }
        return Ok(Some(Principal {
            role: token.role,
            institution: token.institution_id,
            name: token.name,
            credential: Credential::Token { id: token.id },
            ip,
        }));
    }
    let Some(secret) = cookie(parts, state.session_cookie_name()) else {
        return Ok(None);
    };
    let Some((session, user)) = state.store().session(&sha256_hex(secret), now).await? else {
        return Ok(None);
    };
    Ok(Some(Principal {
        role: user.role,
        institution: user.institution_id,
        name: user.username.clone(),
        credential: Credential::Session {
            user: Box::new(user),
            session,
        },
        ip,
    }))
}

/// Extracting a `Principal` in an API handler requires authentication; a cookie-authenticated
/// call that changes something must also carry the session's CSRF token in `X-CSRF-Token`.
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, state).await?.ok_or_else(|| {
            ApiError::unauthorized(
                "log in, or send an API token as 'Authorization: Bearer <token>'",
            )
        })?;
        if let Some(session) = principal.session() {
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !safe && !sent.is_some_and(|t| constant_time_eq(t, &session.csrf_token)) {
                return Err(ApiError::forbidden(
                    "a change made with a session cookie needs the X-CSRF-Token header",
                ));
            }
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc));
        assert!(!verify_password("correct horse batterY", &phc));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = mint_token();
        let b = mint_token();
        assert_ne!(a.secret, b.secret);
        assert!(
            a.secret.starts_with("qx_") && a.secret.len() == 46,
            "{}",
            a.secret
        );
        assert_eq!(a.hash, sha256_hex(&a.secret));
        assert!(a.secret.starts_with(&a.prefix));
    }

    #[test]
    fn password_policy() {
        assert!(check_password_policy("short", "bob").is_err());
        assert!(check_password_policy("bob-is-my-password", "bob").is_err());
        assert!(check_password_policy("a long enough passphrase", "bob").is_ok());
    }

    #[test]
    fn generated_passwords_pass_the_policy_for_any_name() {
        // A random password holds a given letter about half the time: for one-letter names
        // (and, now and then, three-letter ones) it used to be refused.
        for name in ["a", "Q", "7", "bob", "admin"] {
            for _ in 0..200 {
                let p = generate_password_for(name);
                assert_eq!(p.len(), 20);
                assert!(check_password_policy(&p, name).is_ok(), "{name}: {p}");
            }
        }
    }
}
