//! The blocklist from the Qalxan server (`GET /api/v1/intel/lists`), kept fresh in the
//! background: polled every few seconds with `If-None-Match`, so an unchanged list costs a 304;
//! when the server is down or answers badly the last good list stays in force.

use qalxan_intel::compiled::Lists;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::ServerLink;

/// A handle on the current blocklist; cheap to clone.
#[derive(Clone)]
pub struct ListFeed {
    current: Arc<RwLock<Arc<Lists>>>,
    version: Arc<RwLock<String>>,
}

impl ListFeed {
    /// Starts polling `link` every `every`; the list is empty until the first answer.
    pub fn start(link: ServerLink, every: Duration) -> ListFeed {
        let feed = ListFeed {
            current: Arc::new(RwLock::new(Arc::new(Lists::default()))),
            version: Arc::new(RwLock::new(String::new())),
        };
        tokio::spawn(poll(link, every, feed.clone()));
        feed
    }

    /// The list in force now.
    pub fn current(&self) -> Arc<Lists> {
        match self.current.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The server's version (ETag) of the list in force; empty before the first answer.
    pub fn version(&self) -> String {
        match self.version.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn install(&self, lists: Lists, version: String) {
        let lists = Arc::new(lists);
        match self.current.write() {
            Ok(mut l) => *l = lists,
            Err(poisoned) => *poisoned.into_inner() = lists,
        }
        match self.version.write() {
            Ok(mut v) => *v = version,
            Err(poisoned) => *poisoned.into_inner() = version,
        }
    }
}

fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("cannot build the HTTP client for the blocklist: {e}"))
}

/// One pull of the list: `Ok(None)` when it has not changed since `etag`.
async fn pull(
    client: &reqwest::Client,
    link: &ServerLink,
    etag: Option<&str>,
) -> Result<Option<(Lists, Option<String>)>, String> {
    let url = format!("{}/api/v1/intel/lists", link.url.trim_end_matches('/'));
    let mut req = client.get(&url).bearer_auth(&link.token);
    if let Some(e) = etag {
        req = req.header("If-None-Match", e);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("the server is unreachable: {e}"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::NOT_MODIFIED {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!("the server refused: {status}"));
    }
    let new_etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp
        .text()
        .await
        .map_err(|e| format!("the answer broke off: {e}"))?;
    // Parsing a large list takes a while; keep it off the async workers.
    match tokio::task::spawn_blocking(move || Lists::from_text(&text)).await {
        Ok(Ok(lists)) => Ok(Some((lists, new_etag))),
        Ok(Err(e)) => Err(format!("unreadable: {e}")),
        Err(e) => Err(format!("parsing failed: {e}")),
    }
}

/// Pulls the list once (a scan that runs and ends, rather than a daemon).
pub async fn fetch_lists(link: &ServerLink) -> Result<Lists, String> {
    let client = client()?;
    pull(&client, link, None)
        .await?
        .map(|(lists, _)| lists)
        .ok_or_else(|| "the server answered 304 to a first request".to_owned())
}

async fn poll(link: ServerLink, every: Duration, feed: ListFeed) {
    let client = match client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "blocklist updates disabled");
            return;
        }
    };
    let mut etag: Option<String> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pull(&client, &link, etag.as_deref()).await {
            Ok(None) => {}
            Ok(Some((lists, new_etag))) => {
                tracing::info!(entries = lists.len(), version = ?new_etag, "blocklist updated");
                feed.install(lists, new_etag.clone().unwrap_or_default());
                etag = new_etag;
            }
            Err(e) => tracing::warn!(error = %e, "blocklist: keeping the last list"),
        }
    }
}
