//! Qalxan's incident-response engine: the vocabulary and rules of the CERT's daily work,
//! without I/O, SQL or HTTP.
//!
//! - [`taxonomy`]: the Reference Security Incident Taxonomy (RSIT) incidents are classified by;
//! - [`workflow`]: incident statuses and the moves between them, impact, PAP, victims, alert
//!   and task states, and the SLA timers;
//! - [`alert`]: the alert each detection raises and the key that aggregates a flood of them;
//! - [`report`] and [`pdf`]: reports for the authorities as one document model rendered as
//!   Markdown and as PDF.

pub mod alert;
pub mod pdf;
pub mod report;
pub mod taxonomy;
pub mod workflow;

pub use alert::AlertDraft;
pub use report::{periodic_document, Audience, Block, Document, PeriodicFigures};
pub use taxonomy::{Category, CategoryError};
pub use workflow::{
    AlertStatus, Impact, Pap, SlaPolicy, Status, TaskStatus, Timer, TransitionError, VictimKind,
    VictimRole,
};
