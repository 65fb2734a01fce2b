//! Quarantine: infected files moved into a folder where they cannot run or be opened by
//! accident, with a JSON sidecar recording where they came from, and restorable.
//!
//! Content is XOR-ed with a random per-folder key (`.key`, created on first use, mode 0600),
//! so a quarantined file is neither executable nor recognisable by other scanners or viewers;
//! files are stored mode 0600 under random ids.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use md5::Digest;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no quarantined file with id {0}")]
    NotFound(String),
    #[error("{0}: a file already exists there (use --force to overwrite)")]
    Exists(PathBuf),
    #[error("{path}: damaged sidecar: {message}")]
    Sidecar { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuarantineError + '_ {
    move |source| QuarantineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What the sidecar records of a quarantined file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub original_path: PathBuf,
    pub signature: String,
    pub size: u64,
    pub md5: String,
    pub sha256: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// RFC 3339, UTC.
    pub quarantined_at: String,
}

pub struct Quarantine {
    dir: PathBuf,
    key: Vec<u8>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn xor(data: &mut [u8], key: &[u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= key[i % key.len()];
    }
}

#[cfg(unix)]
fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), QuarantineError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))?;
    set_private(path).map_err(io(path))?;
    f.write_all(data).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

impl Quarantine {
    /// Opens (creating if needed) a quarantine folder.
    pub fn open(dir: &Path) -> Result<Self, QuarantineError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        }
        let key_path = dir.join(".key");
        let key = match fs::read(&key_path) {
            Ok(k) if k.len() >= 16 => k,
            Ok(_) => {
                return Err(QuarantineError::Sidecar {
                    path: key_path,
                    message: "key too short".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
                write_private(&key_path, &key)?;
                key
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        Ok(Quarantine {
            dir: dir.to_path_buf(),
            key,
        })
    }

    /// Moves `path` into quarantine, recording `signature`; returns the entry.
    pub fn store(&self, path: &Path, signature: &str) -> Result<Entry, QuarantineError> {
        let mut data = fs::read(path).map_err(io(path))?;
        let meta = fs::metadata(path).map_err(io(path))?;
        let (mode, uid, gid) = owner(&meta);
        let id = hex(&(0..12).map(|_| rand_byte()).collect::<Vec<_>>());
        let entry = Entry {
            id: id.clone(),
            original_path: fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            signature: signature.to_string(),
            size: data.len() as u64,
            md5: hex(&md5::Md5::digest(&data)),
            sha256: hex(&sha2::Sha256::digest(&data)),
            mode,
            uid,
            gid,
            quarantined_at: now_rfc3339(),
        };
        xor(&mut data, &self.key);
        write_private(&self.dir.join(format!("{id}.bin")), &data)?;
        let sidecar = serde_json::to_vec_pretty(&entry).map_err(|e| QuarantineError::Sidecar {
            path: self.dir.join(format!("{id}.json")),
            message: e.to_string(),
        })?;
        write_private(&self.dir.join(format!("{id}.json")), &sidecar)?;
        // Only once the copy is safely written does the original go.
        fs::remove_file(path).map_err(io(path))?;
        Ok(entry)
    }

    pub fn list(&self) -> Result<Vec<Entry>, QuarantineError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = e.map_err(io(&self.dir))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                out.push(read_sidecar(&path)?);
            }
        }
        out.sort_by(|a, b| {
            a.quarantined_at
                .cmp(&b.quarantined_at)
                .then(a.id.cmp(&b.id))
        });
        Ok(out)
    }

    fn entry(&self, id: &str) -> Result<Entry, QuarantineError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(QuarantineError::NotFound(id.to_string()));
        }
        let path = self.dir.join(format!("{id}.json"));
        if !path.exists() {
            return Err(QuarantineError::NotFound(id.to_string()));
        }
        read_sidecar(&path)
    }

    /// Puts a file back where it was (or at `to`); the quarantine copy is removed.
    pub fn restore(
        &self,
        id: &str,
        to: Option<&Path>,
        force: bool,
    ) -> Result<PathBuf, QuarantineError> {
        let entry = self.entry(id)?;
        let target = to
            .map(Path::to_path_buf)
            .unwrap_or_else(|| entry.original_path.clone());
        if target.exists() && !force {
            return Err(QuarantineError::Exists(target));
        }
        let bin = self.dir.join(format!("{id}.bin"));
        let mut data = fs::read(&bin).map_err(io(&bin))?;
        xor(&mut data, &self.key);
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&target, &data).map_err(io(&target))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&target, fs::Permissions::from_mode(entry.mode & 0o7777))
                .map_err(io(&target))?;
        }
        self.delete(id)?;
        Ok(target)
    }

    pub fn delete(&self, id: &str) -> Result<(), QuarantineError> {
        self.entry(id)?;
        for ext in ["bin", "json"] {
            let p = self.dir.join(format!("{id}.{ext}"));
            fs::remove_file(&p).map_err(io(&p))?;
        }
        Ok(())
    }
}

fn read_sidecar(path: &Path) -> Result<Entry, QuarantineError> {
    let bytes = fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| QuarantineError::Sidecar {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(unix)]
fn owner(meta: &fs::Metadata) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    (meta.mode(), meta.uid(), meta.gid())
}

#[cfg(not(unix))]
fn owner(_meta: &fs::Metadata) -> (u32, u32, u32) {
    (0o644, 0, 0)
}

fn rand_byte() -> u8 {
    rand::random()
}

fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(now)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_list_restore_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Quarantine::open(&dir.path().join("q")).expect("opens");
        let file = dir.path().join("bad.exe");
        fs::write(&file, b"MZ evil").expect("write");
        let e = q.store(&file, "Test.Sig").expect("stores");
        assert!(!file.exists());
        let stored = fs::read(dir.path().join("q").join(format!("{}.bin", e.id))).expect("bin");
        assert_ne!(stored, b"MZ evil");
        assert_eq!(q.list().expect("lists"), vec![e.clone()]);
        assert!(matches!(
            q.restore("nope", None, false),
            Err(QuarantineError::NotFound(_))
        ));
        assert!(matches!(
            q.restore("../x", None, false),
            Err(QuarantineError::NotFound(_))
        ));
        let back = q.restore(&e.id, Some(&file), false).expect("restores");
        assert_eq!(fs::read(&back).expect("read"), b"MZ evil");
        assert!(q.list().expect("lists").is_empty());
        let e2 = q.store(&file, "Test.Sig").expect("stores");
        fs::write(&file, b"new").expect("write");
        assert!(matches!(
            q.restore(&e2.id, Some(&file), false),
            Err(QuarantineError::Exists(_))
        ));
        q.delete(&e2.id).expect("deletes");
        assert!(q.list().expect("lists").is_empty());
    }
}
