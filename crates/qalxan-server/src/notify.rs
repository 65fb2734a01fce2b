//! Notifications: new incidents and SLA breaches, sent to webhooks (JSON signed with
//! HMAC-SHA256, as GitHub and Stripe sign theirs) and by e-mail (SMTP with lettre) to the CERT
//! staff whose settings ask for them and, for new incidents not marked TLP:RED, to the affected
//! institutions' staff and contact addresses.
//!
//! One background task does all the sending: handlers only wake it. It finds what is due from
//! the database (incidents not yet announced, timers run out) and claims each notice in the
//! store before sending, so a notice goes out once even when several servers share the
//! database, and incidents opened from the CLI are announced too.

use crate::AppState;
use hmac::{Hmac, Mac};
use qalxan_core::{now_millis, Tlp, DAY_MS};
use qalxan_store::{IncidentFilter, IncidentRecord};
use sha2::Sha256;
use std::time::Duration;

/// Attempts per webhook delivery.
const ATTEMPTS: u32 = 3;

/// What happened to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Opened,
    TriageBreached,
    ContainBreached,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Opened => "incident.opened",
            Notice::TriageBreached => "sla.triage_breached",
            Notice::ContainBreached => "sla.contain_breached",
        }
    }

    fn headline(self) -> &'static str {
        match self {
            Notice::Opened => "New incident",
            Notice::TriageBreached => "Triage overdue",
            Notice::ContainBreached => "Containment overdue",
        }
    }
}

/// `sha256=<hex>`: the signature receivers recompute over the raw body with the shared secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn payload(state: &AppState, notice: Notice, i: &IncidentRecord) -> serde_json::Value {
    let base = state.config().public_url.trim_end_matches('/');
    serde_json::json!({
        "event": notice.as_str(),
        "sent_at": qalxan_core::Timestamp(now_millis()),
        "incident": {
            "id": i.id,
            "title": i.title,
            "category": i.category,
            "severity": i.severity,
            "status": i.status,
            "tlp": i.tlp,
            "opened_at": i.opened_at,
            "institutions": i.institutions.iter().map(|x| &x.name).collect::<Vec<_>>(),
            "url": format!("{base}/incidents/{}", i.id),
        }
    })
}

async fn send_webhooks(
    state: &AppState,
    client: &reqwest::Client,
    notice: Notice,
    i: &IncidentRecord,
) {
    let hooks = match state.store().list_webhooks().await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read webhooks");
            return;
        }
    };
    let body = payload(state, notice, i).to_string();
    for hook in hooks
        .iter()
        .filter(|h| h.active && i.severity >= h.min_severity)
    {
        let delivery = uuid::Uuid::new_v4().to_string();
        for attempt in 1..=ATTEMPTS {
            let sent = client
                .post(&hook.url)
                .header("content-type", "application/json")
                .header("x-qalxan-event", notice.as_str())
                .header("x-qalxan-delivery", &delivery)
                .header(
                    "x-qalxan-signature",
                    signature(&hook.secret, body.as_bytes()),
                )
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => {
                    tracing::warn!(url = %hook.url, status = %r.status(), attempt, "webhook refused")
                }
                Err(e) => tracing::warn!(url = %hook.url, error = %e, attempt, "webhook failed"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt * attempt))).await;
            }
        }
    }
}

/// Who gets an e-mail about `notice`: the CERT staff whose settings ask for it, and for a new
/// incident its institutions' staff and contacts, unless it is TLP:RED (for the named
/// recipients only, never passed to an institution by the sender). One e-mail per address.
async fn mail_recipients(
    state: &AppState,
    notice: Notice,
    i: &IncidentRecord,
) -> Result<Vec<(String, String)>, qalxan_store::StoreError> {
    let store = state.store();
    let mut list = store
        .notification_recipients(i.severity, notice != Notice::Opened)
        .await?;
    let config = state.config();
    if notice == Notice::Opened && i.tlp != Tlp::Red {
        let institutions: Vec<_> = i.institutions.iter().map(|x| x.id).collect();
        let contacts = config
            .notify_institution_contacts
            .then_some(config.institution_contact_min_severity);
        list.extend(
            store
                .institution_recipients(&institutions, i.severity, contacts)
                .await?,
        );
    }
    let mut seen = std::collections::HashSet::new();
    list.retain(|(_, email)| seen.insert(email.trim().to_lowercase()));
    Ok(list)
}

/// The text of a notification e-mail; the TLP label leads, as CERTs mark what they send.
fn mail_text(notice: Notice, i: &IncidentRecord, url: &str) -> (String, String) {
    let tlp = i.tlp.as_str();
    let subject = format!(
        "[Qalxan] [{tlp}] {}: #{} {} ({})",
        notice.headline(),
        i.id,
        i.title,
        i.severity
    );
    let body = format!(
        "{tlp}\n\n{}: #{} {}\n\nCategory: {}\nSeverity: {}\nStatus: {}\nInstitutions: {}\n\n{url}\n",
        notice.headline(),
        i.id,
        i.title,
        i.category,
        i.severity,
        i.status,
        i.institutions
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    (subject, body)
}

async fn send_mail(state: &AppState, notice: Notice, i: &IncidentRecord) {
    use lettre::message::header::ContentType;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let url = state.config().smtp_url.trim();
    if url.is_empty() {
        return;
    }
    let recipients = match mail_recipients(state, notice, i).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read notification recipients");
            return;
        }
    };
    if recipients.is_empty() {
        return;
    }
    let mailer = match AsyncSmtpTransport::<Tokio1Executor>::from_url(url) {
        Ok(m) => m.timeout(Some(Duration::from_secs(20))).build(),
        Err(e) => {
            tracing::warn!(error = %e, "smtp_url is not usable");
            return;
        }
    };
    let from = match state.config().smtp_from.parse() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "smtp_from is not an address");
            return;
        }
    };
    let p = payload(state, notice, i);
    let (subject, text) = mail_text(notice, i, p["incident"]["url"].as_str().unwrap_or_default());
    for (who, email) in recipients {
        let to = match email.parse() {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(recipient = %who, error = %e, "skipping an unusable e-mail address");
                continue;
            }
        };
        let message = Message::builder()
            .from(lettre::message::Mailbox::clone(&from))
            .to(to)
            .subject(&subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text.clone());
        match message {
            Ok(m) => {
                if let Err(e) = mailer.send(m).await {
                    tracing::warn!(recipient = %who, error = %e, "notification e-mail failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot build the notification e-mail"),
        }
    }
}

/// The notices due now: incidents opened in the last day and not yet announced, and SLA
/// timers that ran out.
async fn due(state: &AppState) -> Vec<(Notice, IncidentRecord)> {
    let open = match state
        .store()
        .list_incidents(&IncidentFilter {
            open: true,
            limit: 1000,
            ..Default::default()
        })
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read open incidents");
            return Vec::new();
        }
    };
    let now = now_millis();
    let policy = state.config().sla();
    // Read what was sent before claiming, so a long-overdue incident costs no write per round.
    let ids: Vec<i64> = open.iter().map(|i| i.id).collect();
    let sent = match state.store().notices_sent(&ids).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the notices sent");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for i in open {
        let (triage, contain) = policy.timers(
            i.severity,
            i.opened_at.0,
            i.triaged_at.map(|t| t.0),
            i.contained_at.map(|t| t.0),
            now,
        );
        let mut wanted = Vec::new();
        if i.opened_at.0 > now - DAY_MS {
            wanted.push(Notice::Opened);
        }
        if triage.overdue && i.triaged_at.is_none() {
            wanted.push(Notice::TriageBreached);
        }
        if contain.overdue && i.contained_at.is_none() {
            wanted.push(Notice::ContainBreached);
        }
        for n in wanted {
            if sent.contains(&(i.id, n.as_str().to_owned())) {
                continue;
            }
            match state.store().claim_notice(i.id, n.as_str()).await {
                Ok(true) => out.push((n, i.clone())),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "cannot claim a notice"),
            }
        }
    }
    out
}

/// The sending task: runs every `sla_check_seconds` and whenever a handler wakes it.
pub async fn run(state: AppState) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "notifications disabled: no HTTP client");
            return;
        }
    };
    let every = Duration::from_secs(u64::from(state.config().sla_check_seconds.max(1)));
    loop {
        for (notice, incident) in due(&state).await {
            send_webhooks(&state, &client, notice, &incident).await;
            send_mail(&state, notice, &incident).await;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = state.incidents_changed().notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::signature;

    #[test]
    fn signatures_are_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
