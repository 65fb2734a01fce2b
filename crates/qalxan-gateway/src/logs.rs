//! JSON-lines log files (access and audit), written by a background task so a slow disk never
//! holds up a request; lines queued past the bound are dropped.

use crate::GatewayError;
use serde_json::Value;
use std::path::Path;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct JsonLines {
    queue: Option<mpsc::Sender<Value>>,
}

impl JsonLines {
    /// A writer appending to `path`, or one that discards everything for `None`.
    pub fn open(path: Option<&Path>) -> Result<JsonLines, GatewayError> {
        let Some(path) = path else {
            return Ok(JsonLines { queue: None });
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| GatewayError::Log {
                path: path.to_path_buf(),
                source,
            })?;
        let (tx, mut rx) = mpsc::channel::<Value>(10_000);
        tokio::spawn(async move {
            let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
            while let Some(v) = rx.recv().await {
                let mut line = v.to_string();
                line.push('\n');
                if out.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
                // Flush when nothing else is waiting, so lines appear promptly.
                if rx.is_empty() && out.flush().await.is_err() {
                    break;
                }
            }
        });
        Ok(JsonLines { queue: Some(tx) })
    }

    pub fn write(&self, v: Value) {
        if let Some(q) = &self.queue {
            let _ = q.try_send(v);
        }
    }

    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }
}
