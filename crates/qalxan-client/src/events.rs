//! Reporting events to the Qalxan server (`POST /api/v1/events`), off the data path.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Largest number of events waiting to be sent; beyond it new events are dropped and counted.
const QUEUE: usize = 10_000;
/// Events per request to the server (its limit is 1,000).
const BATCH: usize = 500;

/// The server and the sensor token a worker reports with.
#[derive(Debug, Clone)]
pub struct ServerLink {
    /// e.g. `https://cert.example`
    pub url: String,
    pub token: String,
    /// The institution the worker protects, if the token is not tied to one.
    pub institution_id: Option<i64>,
}

/// A handle for queueing events; cheap to clone.
#[derive(Clone)]
pub struct EventSink {
    queue: mpsc::Sender<Value>,
    dropped: Arc<AtomicU64>,
    institution_id: Option<i64>,
    sender: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl EventSink {
    /// Starts the background sender.
    pub fn start(link: ServerLink) -> EventSink {
        let (queue, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let institution_id = link.institution_id;
        let sender = tokio::spawn(send_loop(link, rx, dropped.clone()));
        EventSink {
            queue,
            dropped,
            institution_id,
            sender: Arc::new(std::sync::Mutex::new(Some(sender))),
        }
    }

    /// Sends what is queued and stops, waiting at most `timeout` (for short-lived commands
    /// such as `qalxan scan`). Other clones of this sink must be gone for the queue to close.
    pub async fn flush(self, timeout: Duration) -> Result<(), &'static str> {
        let handle = match self.sender.lock() {
            Ok(mut h) => h.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(self.queue);
        match handle {
            Some(h) => match tokio::time::timeout(timeout, h).await {
                Ok(_) => Ok(()),
                Err(_) => Err("the server did not take the events in time"),
            },
            None => Ok(()),
        }
    }

    /// Queues an event without waiting; a full queue drops it.
    pub fn report(&self, kind: &str, severity: &str, attributes: Value) {
        self.report_for(None, kind, severity, None, attributes);
    }

    /// Queues an event carrying a magnitude (a flood's peak in requests per second).
    pub fn report_value(&self, kind: &str, severity: &str, value: i64, attributes: Value) {
        self.report_for(None, kind, severity, Some(value), attributes);
    }

    /// Queues an event for `institution` (a gateway protects several), else the link's.
    pub fn report_for(
        &self,
        institution: Option<i64>,
        kind: &str,
        severity: &str,
        value: Option<i64>,
        attributes: Value,
    ) {
        let mut event = json!({ "kind": kind, "severity": severity, "attributes": attributes });
        if let Some(v) = value {
            event["value"] = json!(v);
        }
        if let Some(id) = institution.or(self.institution_id) {
            event["institution_id"] = json!(id);
        }
        if self.queue.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn send_loop(link: ServerLink, mut rx: mpsc::Receiver<Value>, dropped: Arc<AtomicU64>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the HTTP client for events");
            return;
        }
    };
    let url = format!("{}/api/v1/events", link.url.trim_end_matches('/'));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Wait for one event, then take whatever else is already queued.
        match rx.recv().await {
            Some(e) => batch.push(e),
            None => return,
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(500);
        loop {
            let sent = client
                .post(&url)
                .bearer_auth(&link.token)
                .json(&json!({ "events": batch }))
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => break,
                // The server refused the batch itself: retrying would not help.
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    let detail = r.text().await.unwrap_or_default();
                    tracing::error!(%status, %detail, events = batch.len(), "the server refused events");
                    dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    break;
                }
                other => {
                    let why = match other {
                        Ok(r) => r.status().to_string(),
                        Err(e) => e.to_string(),
                    };
                    tracing::warn!(%why, retry_in = ?delay, "cannot report events yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                    // Keep the queue moving: past a minute of failures, give this batch up.
                    if delay >= Duration::from_secs(30) && rx.len() >= QUEUE / 2 {
                        dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
        batch.clear();
    }
}
