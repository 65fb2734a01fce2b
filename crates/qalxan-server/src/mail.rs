//! The mail part's sightings: the observables of a message (`qalxan-mail`) matched against the
//! indicators, each match counted as a sighting. The API (`POST /api/v1/intel/mail`, what a
//! mail gateway or an institution's abuse mailbox calls) and `qalxan intel mail FILE` share it.

use qalxan_core::{InstitutionId, Tlp};
use qalxan_mail::Found;
use qalxan_store::{Actor, IndicatorRecord, Store, StoreError};

/// An observable of the message and the indicators it matches.
pub struct Matched {
    pub found: Found,
    /// Up to the caller's TLP; empty when the value is no indicator (or none the caller sees).
    pub indicators: Vec<IndicatorRecord>,
}

/// Matches each observable; each indicator matched (whether or not `cap` lets the caller see
/// it: the CERT still learns that its RED indicator reached an institution) is one sighting by
/// `actor`, however many of the message's observables point at it.
pub async fn sightings(
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
