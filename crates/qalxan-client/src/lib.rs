//! The Qalxan server's API from the side of its workers: gateways, scanners and agents report
//! what they did as events (`POST /api/v1/events`), batched, retried, and never on the data
//! path: a slow or absent server never slows a scan or a request. Gateways and scanners pull
//! the blocklist the same way ([`ListFeed`]).

mod events;
mod lists;

pub use events::{EventSink, ServerLink};
pub use lists::{fetch_lists, ListFeed};
