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

/// Matches each observable; every one that matches an indicator is a sighting of it by
/// `actor` (whether or not `cap` lets the caller see that indicator: the CERT still learns
/// that its RED indicator reached an institution).
pub async fn sightings(
    store: &Store,
    actor: &Actor,
    found: Vec<Found>,
    institution: Option<InstitutionId>,
    cap: Tlp,
) -> Result<Vec<Matched>, StoreError> {
    let mut out = Vec::with_capacity(found.len());
    for f in found {
        let all = store.match_indicator(&f.observable).await?;
        if !all.is_empty() {
            store
                .record_sighting(actor, &f.observable, institution, 1)
                .await?;
        }
        let indicators = all.into_iter().filter(|m| m.tlp <= cap).collect();
        out.push(Matched {
            found: f,
            indicators,
        });
    }
    Ok(out)
}
