//! Live alert views: server-sent events that follow alerts as they change, for the monitor
//! page (`/alerts/stream`, table rows) and API clients (`/api/v1/alerts/stream`, JSON).
//!
//! Each stream asks the store for the alerts changed since its cursor (every change stamps
//! `updated_at`). This server's own changes wake the streams at once
//! ([`AppState::alerts_changed`]); changes made by other servers sharing the store are seen
//! within [`POLL`]. Asking the store rather than broadcasting in-process keeps every viewer
//! right when several servers share one PostgreSQL.
//!
//! Streams are bounded: at most [`MAX_STREAMS`] at once per server, each for at most
//! [`LIFETIME`] (the browser reconnects with `Last-Event-ID` and is authenticated again, so
//! a revoked session stops watching), and they end when the server shuts down.

use crate::AppState;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use qalxan_core::{now_millis, InstitutionId};
use qalxan_store::{AlertFilter, AlertRecord};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How often a stream asks the store when nothing on this server woke it.
pub(crate) const POLL: Duration = Duration::from_secs(2);
/// How long one stream lasts before the client reconnects.
pub(crate) const LIFETIME: Duration = Duration::from_secs(300);
/// Concurrent streams per server.
pub(crate) const MAX_STREAMS: usize = 256;
/// How far back each poll looks again, so a change stamped before another but committed
/// after it is still seen.
const LOOKBACK_MS: i64 = 5_000;
/// Changes sent per poll; a viewer with more to catch up on is told it lagged.
const BATCH: u32 = 200;

/// What the server keeps for live views.
pub(crate) struct Live {
    changed: watch::Sender<()>,
    stopping: watch::Sender<bool>,
    streams: Arc<Semaphore>,
}

impl Live {
    pub(crate) fn new() -> Live {
        Live {
            changed: watch::Sender::new(()),
            stopping: watch::Sender::new(false),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Wakes every stream: alerts changed on this server.
    pub(crate) fn alerts_changed(&self) {
        self.changed.send_replace(());
    }

    /// Ends every stream (the server is shutting down and waits for open responses).
    pub(crate) fn stop(&self) {
        self.stopping.send_replace(true);
    }
}

/// What a live view gets next.
pub(crate) struct Change {
    /// Alerts that changed, oldest change first.
    pub alerts: Vec<AlertRecord>,
    /// The cursor after them (the event id a reconnecting client sends back).
    pub cursor: i64,
    /// More changed than one batch holds: these are the newest, older changes were skipped
    /// and the viewer should list afresh.
    pub lagged: bool,
}

/// Follows the alerts of one institution (all when `None`) from a cursor (Unix ms).
pub(crate) struct Follower {
    state: AppState,
    scope: Option<InstitutionId>,
    cursor: i64,
    /// Alerts already sent, with the change sent, while they are within the look-back.
    sent: HashMap<i64, i64>,
    changed: watch::Receiver<()>,
    stopping: watch::Receiver<bool>,
    ends: Instant,
    _permit: OwnedSemaphorePermit,
}

impl Follower {
    /// `None` when the server already serves [`MAX_STREAMS`] streams.
    pub(crate) fn new(
        state: &AppState,
        scope: Option<InstitutionId>,
        from: Option<i64>,
    ) -> Option<Follower> {
        let live = state.live();
        let permit = live.streams.clone().try_acquire_owned().ok()?;
        let mut changed = live.changed.subscribe();
        changed.mark_unchanged();
        Some(Follower {
            state: state.clone(),
            scope,
            cursor: from.unwrap_or_else(now_millis),
            sent: HashMap::new(),
            changed,
            stopping: live.stopping.subscribe(),
            ends: Instant::now() + LIFETIME,
            _permit: permit,
        })
    }

    /// The next changes; `None` when the stream should end (its lifetime is over, the server
    /// stops, or the store failed: the client reconnects).
    pub(crate) async fn next(&mut self) -> Option<Change> {
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            let since = self.cursor - LOOKBACK_MS;
            let list = match self
                .state
                .store()
                .changed_alerts(self.scope, since, BATCH)
                .await
            {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(error = %e, "live alert view: the store failed");
                    return None;
                }
            };
            let lagged =
                list.len() as u32 >= BATCH && list.first().is_some_and(|a| a.updated_at.0 > since);
            let newest = list.last().map_or(self.cursor, |a| a.updated_at.0);
            self.cursor = self.cursor.max(newest);
            let fresh: Vec<AlertRecord> = list
                .into_iter()
                .filter(|a| self.sent.get(&a.id) != Some(&a.updated_at.0))
                .collect();
            for a in &fresh {
                self.sent.insert(a.id, a.updated_at.0);
            }
            let horizon = self.cursor - LOOKBACK_MS;
            self.sent.retain(|_, at| *at >= horizon);
            if lagged || !fresh.is_empty() {
                return Some(Change {
                    alerts: fresh,
                    cursor: self.cursor,
                    lagged,
                });
            }
            tokio::select! {
                _ = self.changed.changed() => {}
                _ = self.stopping.changed() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = tokio::time::sleep_until(self.ends) => return None,
            }
        }
    }
}

/// An alert that changed but is no longer one `filter` lists: only a status filter can make
/// a listed alert leave (rule and institution never change, severity only rises).
pub(crate) fn left(filter: &AlertFilter, alert: &AlertRecord) -> bool {
    let any_status = AlertFilter {
        status: None,
        ..filter.clone()
    };
    !filter.matches(alert) && any_status.matches(alert)
}

/// The cursor a reconnecting client resumes from.
pub(crate) fn resume_from(headers: &axum::http::HeaderMap) -> Option<i64> {
    headers
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Ends a batch of events: says when the viewer lagged, and marks the last event with the
/// cursor to resume from.
pub(crate) fn finish(mut events: Vec<Event>, change: &Change) -> Vec<Event> {
    if change.lagged {
        events.push(Event::default().event("lagged").data("list afresh"));
    }
    if let Some(last) = events.pop() {
        events.push(last.id(change.cursor.to_string()));
    }
    events
}

/// Turns a follower into an event stream, rendering each change with `render`.
pub(crate) fn stream<F, Fut>(
    follower: Follower,
    render: F,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnMut(Change) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<Event>> + Send,
{
    let events = futures_util::stream::unfold((follower, render), |(mut f, mut render)| async {
        let change = f.next().await?;
        let events = render(change).await;
        Some((
            futures_util::stream::iter(events.into_iter().map(Ok)),
            (f, render),
        ))
    });
    Sse::new(futures_util::StreamExt::flatten(events)).keep_alive(KeepAlive::default())
}
