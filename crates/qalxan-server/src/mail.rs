//! The mail part's sightings: the observables of a message (`qalxan-mail`) matched against the
//! indicators, each match counted as a sighting. The API (`POST /api/v1/intel/mail`, what a
//! mail gateway or an institution's abuse mailbox calls) and `qalxan intel mail FILE` share it.

use qalxan_core::{InstitutionId, Tlp};
use qalxan_mail::{Found, Limits, MailError};
use qalxan_store::{Actor, IndicatorRecord, Store, StoreError};
use serde::Serialize;

/// An observable of the message and the indicators it matches.
struct Matched {
    found: Found,
    /// Up to the caller's TLP; empty when the value is no indicator (or none the caller sees).
    indicators: Vec<IndicatorRecord>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MailObservable {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    /// Where in the message: `From`, `Reply-To`, `Received`, `HTML body`, `attachment x.zip`...
    pub place: String,
    /// The indicators it matches (ids); each match was counted as a sighting.
    pub indicators: Vec<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MailCheck {
    pub subject: Option<String>,
    /// Everything the message carries that an indicator could name.
    pub observables: Vec<MailObservable>,
    /// The indicators matched, each once.
    pub matches: Vec<IndicatorRecord>,
    /// Whether one of them is enforced by the defences.
    pub blocked: bool,
    /// Parts, links or observables left out (too many, too deeply attached): when not 0, the
    /// check may be incomplete.
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the message could not be read: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Reads a message (on a blocking thread: it may be large), matches its observables and
/// counts the sightings; what the caller may see is capped at `cap`.
pub async fn check(
    store: &Store,
    actor: &Actor,
    raw: Vec<u8>,
    limits: Limits,
    institution: Option<InstitutionId>,
    cap: Tlp,
) -> Result<MailCheck, CheckError> {
    let analysis =
        tokio::task::spawn_blocking(move || qalxan_mail::analyse(&raw, &limits)).await??;
    let matched = sightings(
        store,
        actor,
        analysis.found,
        analysis.subject.as_deref(),
        institution,
        cap,
    )
    .await?;
    let now = qalxan_core::now_millis();
    let mut matches: Vec<IndicatorRecord> = Vec::new();
    let mut observables = Vec::with_capacity(matched.len());
    for m in matched {
        observables.push(MailObservable {
            kind: m.found.observable.kind.as_str().to_owned(),
            value: m.found.observable.value,
            place: m.found.place,
            indicators: m.indicators.iter().map(|i| i.id).collect(),
        });
        for i in m.indicators {
            if !matches.iter().any(|x| x.id == i.id) {
                matches.push(i);
            }
        }
    }
    Ok(MailCheck {
        subject: analysis.subject,
        blocked: matches
            .iter()
            .any(|m| m.blocking && m.valid_until.is_none_or(|u| u.0 > now)),
        observables,
        matches,
        skipped: analysis.skipped,
    })
}

/// Matches each observable; each indicator matched (whether or not `cap` lets the caller see
/// it: the CERT still learns that its RED indicator reached an institution) is one sighting by
/// `actor`, however many of the message's observables point at it.
async fn sightings(
    store: &Store,
    actor: &Actor,
    found: Vec<Found>,
    subject: Option<&str>,
    institution: Option<InstitutionId>,
    cap: Tlp,
) -> Result<Vec<Matched>, StoreError> {
    let mut out = Vec::with_capacity(found.len());
    let mut seen: Vec<i64> = Vec::new();
    for f in found {
        let all = store.match_indicator(&f.observable).await?;
        for m in &all {
            if !seen.contains(&m.id) {
                seen.push(m.id);
            }
        }
        let indicators = all.into_iter().filter(|m| m.tlp <= cap).collect();
        out.push(Matched {
            found: f,
            indicators,
        });
    }
    let note = serde_json::json!({"in": "e-mail", "subject": subject.map(|s| s.chars().take(200).collect::<String>())});
    store
        .record_sightings(actor, &seen, institution, 1, note)
        .await?;
    Ok(out)
}
