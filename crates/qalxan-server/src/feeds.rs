//! Threat-intelligence feeds `qalxan serve` pulls on a schedule: partners' TAXII 2.1
//! collections (only objects added since the last pull) and URLs (a MISP feed's manifest.json
//! with its events, a STIX bundle, a MISP event, CSV or a plain list). `qalxan intel pull` and
//! `qalxan intel import URL` use the same fetching code.
//!
//! Each feed runs in its own loop; a feed that fails is retried at its next turn and the others
//! go on. What each pull did is kept for `GET /api/v1/intel/feeds`.

use crate::AppState;
use qalxan_core::{now_millis, Timestamp, Tlp};
use qalxan_store::{Actor, Store, CERT_COLLECTION};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Objects fetched per TAXII page.
const PAGE: &str = "1000";

/// A feed in the configuration (`[[intel_feeds]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Feed {
    /// Shown in logs, in the feed's status and as the indicators' source.
    pub name: String,
    /// `taxii` (an API root and a collection) or `url`.
    pub kind: FeedKind,
    pub url: String,
    /// The TAXII collection's id.
    #[serde(default)]
    pub collection: String,
    /// The environment variable holding the partner's API token (sent as Bearer), so the
    /// token stays out of the configuration file.
    #[serde(default)]
    pub token_env: String,
    /// TLP for what the feed does not mark (default TLP:AMBER).
    #[serde(default = "amber")]
    pub tlp: String,
    #[serde(default = "hourly")]
    pub every_minutes: u32,
}

fn amber() -> String {
    "TLP:AMBER".to_owned()
}

fn hourly() -> u32 {
    60
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedKind {
    Taxii,
    Url,
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("{url}: {message}")]
    Fetch { url: String, message: String },
    #[error("{0}")]
    Format(String),
    #[error("store: {0}")]
    Store(#[from] qalxan_store::StoreError),
}

fn fetch_error(url: &str, message: impl std::fmt::Display) -> FeedError {
    FeedError::Fetch {
        url: url.to_owned(),
        message: message.to_string(),
    }
}

/// The HTTP client feeds are fetched with.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("qalxan/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(120))
        .build()
}

/// One URL's body.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, FeedError> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fetch_error(url, e))?;
    if !resp.status().is_success() {
        return Err(fetch_error(url, format!("HTTP {}", resp.status())));
    }
    Ok(resp
        .bytes()
        .await
        .map_err(|e| fetch_error(url, e))?
        .to_vec())
}

/// The documents a URL names: itself, or a MISP feed's events when it is the feed's manifest.
pub async fn url_documents(
    client: &reqwest::Client,
    url: &str,
) -> Result<Vec<(String, Vec<u8>)>, FeedError> {
    let data = fetch(client, url).await?;
    let manifest = serde_json::from_slice::<serde_json::Value>(&data)
        .ok()
        .and_then(|v| qalxan_intel::misp::manifest_events(&v));
    match manifest {
        Some(uuids) => {
            let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
            let mut out = Vec::with_capacity(uuids.len());
            for u in uuids {
                let event = format!("{base}/{u}.json");
                let body = fetch(client, &event).await?;
                out.push((event, body));
            }
            Ok(out)
        }
        None => Ok(vec![(url.to_owned(), data)]),
    }
}

/// Every object of a TAXII 2.1 collection (added after `added_after`, when given), page by page.
pub async fn taxii_objects(
    client: &reqwest::Client,
    api_root: &str,
    collection: &str,
    added_after: Option<&str>,
    token: Option<&str>,
) -> Result<Vec<serde_json::Value>, FeedError> {
    let base = format!(
        "{}/collections/{collection}/objects/",
        api_root.trim_end_matches('/')
    );
    let mut next: Option<String> = None;
    let mut objects = Vec::new();
    loop {
        let mut req = client
            .get(&base)
            .header("Accept", crate::taxii::TAXII_MEDIA)
            .query(&[("limit", PAGE)]);
        if let Some(a) = added_after {
            req = req.query(&[("added_after", a)]);
        }
        if let Some(n) = &next {
            req = req.query(&[("next", n)]);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| fetch_error(&base, e))?;
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| fetch_error(&base, format!("not JSON: {e}")))?;
        if !status.is_success() {
            return Err(fetch_error(
                &base,
                format!(
                    "HTTP {status}: {}",
                    body["description"].as_str().unwrap_or_default()
                ),
            ));
        }
        if let Some(list) = body["objects"].as_array() {
            objects.extend(list.iter().cloned());
        }
        if objects.len() > qalxan_intel::MAX_OBJECTS {
            return Err(fetch_error(
                &base,
                format!("more than {} objects", qalxan_intel::MAX_OBJECTS),
            ));
        }
        match (body["more"].as_bool(), body["next"].as_str()) {
            (Some(true), Some(n)) => next = Some(n.to_owned()),
            _ => break,
        }
    }
    Ok(objects)
}

/// What one pull brought.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PullSummary {
    pub documents: u64,
    pub added: u64,
    pub updated: u64,
    pub objects: u64,
}

/// Pulls a feed once into the CERT collection.
pub async fn pull(
    store: &Store,
    client: &reqwest::Client,
    feed: &Feed,
    added_after: Option<&str>,
    actor: &Actor,
) -> Result<PullSummary, FeedError> {
    let tlp = Tlp::parse_lenient(&feed.tlp).map_err(|e| FeedError::Format(format!("tlp: {e}")))?;
    let token = (!feed.token_env.is_empty())
        .then(|| std::env::var(&feed.token_env).ok())
        .flatten();
    let mut summary = PullSummary::default();
    let mut add = |s: qalxan_store::ImportSummary| {
        summary.documents += 1;
        summary.added += s.added;
        summary.updated += s.updated;
        summary.objects += s.objects;
    };
    match feed.kind {
        FeedKind::Taxii => {
            let objects = taxii_objects(
                client,
                &feed.url,
                &feed.collection,
                added_after,
                token.as_deref(),
            )
            .await?;
            let parsed = qalxan_intel::stix::import_objects(objects, &feed.name, tlp, "objects")
                .map_err(|e| FeedError::Format(e.to_string()))?;
            add(store
                .import_intel(
                    actor,
                    &feed.name,
                    &parsed.indicators,
                    &parsed.objects,
                    CERT_COLLECTION,
                )
                .await?);
        }
        FeedKind::Url => {
            for (name, data) in url_documents(client, &feed.url).await? {
                let parsed = qalxan_intel::import_any(&data, &feed.name, tlp)
                    .map_err(|e| FeedError::Format(format!("{name}: {e}")))?;
                add(store
                    .import_intel(
                        actor,
                        &name,
                        &parsed.indicators,
                        &parsed.objects,
                        CERT_COLLECTION,
                    )
                    .await?);
            }
        }
    }
    Ok(summary)
}

/// The last pull of a feed, for `GET /api/v1/intel/feeds`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct FeedStatus {
    pub name: String,
    pub url: String,
    pub every_minutes: u32,
    pub last_attempt: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    pub last_error: Option<String>,
    pub last: Option<PullSummary>,
    pub pulls: u64,
}

/// Pulls every configured feed on its schedule, for ever.
pub async fn run(state: AppState) {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "feeds disabled: no HTTP client");
            return;
        }
    };
    let mut tasks = Vec::new();
    for feed in state.config().intel_feeds.clone() {
        let state = state.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let actor = Actor {
                name: format!("feed:{}", feed.name),
                ip: String::new(),
            };
            // TAXII's `added_after` is the server's own time: keep the start of the last pull
            // that succeeded, with a minute of overlap for clock skew (merging is idempotent).
            let mut since: Option<i64> = None;
            loop {
                let started = now_millis();
                let after = since.map(|t| qalxan_core::format_rfc3339(t - 60_000));
                let result = pull(state.store(), &client, &feed, after.as_deref(), &actor).await;
                state.record_feed(&feed, started, &result);
                match result {
                    Ok(s) => {
                        since = Some(started);
                        tracing::info!(feed = %feed.name, added = s.added, merged = s.updated, "feed pulled");
                    }
                    Err(e) => tracing::warn!(feed = %feed.name, error = %e, "feed pull failed"),
                }
                tokio::time::sleep(Duration::from_secs(u64::from(feed.every_minutes.max(1)) * 60)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
