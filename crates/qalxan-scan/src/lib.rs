//! Qalxan's scan engine: decides whether a file is infected.
//!
//! It reads the signature formats ClamAV users already have ([`sigs`]: hash, body and logical
//! signatures, allow and ignore lists, `.cvd` containers), detects file types by content
//! ([`filetype`]), opens containers recursively ([`formats`]) and matches every layer in one
//! pass per layer ([`scan`]). It knows nothing of sockets or databases: the CLI, the clamd
//! daemon and the server call it.

pub mod filetype;
pub mod formats;
pub mod pe;
pub mod quarantine;
pub mod scan;
pub mod sigs;

pub use scan::{Detection, HashIntel, Limits, Outcome, ScanError, ScanOptions, Scanner};
pub use sigs::{Builder, Database, LoadError, LoadOptions, LoadReport};
