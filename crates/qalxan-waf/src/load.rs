//! Reading rule files from disk: `Include` and `IncludeOptional` (with globs, relative to the
//! including file, matches in alphabetical order as Apache reads them), with limits on file
//! size, include depth and file count, and every problem of every file collected.

use crate::syntax::parser::{parse_str_items, Item};
use crate::syntax::{Location, RuleFile, SyntaxError};
use std::path::{Path, PathBuf};

/// Bounds on what loading may read.
#[derive(Debug, Clone, Copy)]
pub struct LoadLimits {
    pub max_file_bytes: u64,
    pub max_include_depth: usize,
    pub max_files: usize,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits {
            max_file_bytes: 32 * 1024 * 1024,
            max_include_depth: 16,
            max_files: 10_000,
        }
    }
}

/// Every problem found while loading, each naming its file (and line and column where known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct LoadErrors {
    pub errors: Vec<SyntaxError>,
}

/// Loads `path` and everything it includes.
pub fn load(path: &Path, limits: &LoadLimits) -> Result<RuleFile, LoadErrors> {
    let mut loader = Loader {
        limits,
        out: RuleFile::default(),
        errors: Vec::new(),
        stack: Vec::new(),
    };
    loader.file(path, None);
    loader.finish()
}

/// Loads several files in order, as one rule set (e.g. the setup file, then the rules).
pub fn load_all(paths: &[PathBuf], limits: &LoadLimits) -> Result<RuleFile, LoadErrors> {
    let mut loader = Loader {
        limits,
        out: RuleFile::default(),
        errors: Vec::new(),
        stack: Vec::new(),
    };
    for p in paths {
        loader.file(p, None);
    }
    loader.finish()
}

/// Parses rule text that has no file of its own (tests, rules typed into a form); `Include`s
/// resolve relative to `name`'s folder.
pub fn load_str(source: &str, name: &Path, limits: &LoadLimits) -> Result<RuleFile, LoadErrors> {
    let mut loader = Loader {
        limits,
        out: RuleFile::default(),
        errors: Vec::new(),
        stack: vec![name.to_path_buf()],
    };
    loader.out.files.push(name.to_path_buf());
    loader.text(source, name);
    loader.finish()
}

struct Loader<'a> {
    limits: &'a LoadLimits,
    out: RuleFile,
    errors: Vec<SyntaxError>,
    /// Files being read, outermost first, to refuse include cycles.
    stack: Vec<PathBuf>,
}

fn file_error(path: &Path, message: String, at: Option<&Location>) -> SyntaxError {
    SyntaxError {
        location: at.cloned().unwrap_or_else(|| Location {
            file: path.into(),
            line: 0,
            column: 0,
        }),
        message,
    }
}

impl Loader<'_> {
    fn finish(self) -> Result<RuleFile, LoadErrors> {
        if self.errors.is_empty() {
            Ok(self.out)
        } else {
            Err(LoadErrors {
                errors: self.errors,
            })
        }
    }

    fn file(&mut self, path: &Path, included_at: Option<&Location>) {
        if self.out.files.len() >= self.limits.max_files {
            self.errors.push(file_error(
                path,
                format!("more than {} rule files", self.limits.max_files),
                included_at,
            ));
            return;
        }
        if self.stack.len() >= self.limits.max_include_depth {
            self.errors.push(file_error(
                path,
                format!(
                    "includes nest deeper than {}",
                    self.limits.max_include_depth
                ),
                included_at,
            ));
            return;
        }
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&canonical) {
            self.errors.push(file_error(
                path,
                format!("{} includes itself", path.display()),
                included_at,
            ));
            return;
        }
        let text = match std::fs::metadata(path) {
            Ok(m) if m.len() > self.limits.max_file_bytes => Err(format!(
                "{} is larger than {} bytes",
                path.display(),
                self.limits.max_file_bytes
            )),
            Ok(_) => std::fs::read(path)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        };
        match text {
            Ok(text) => {
                self.out.files.push(path.to_path_buf());
                self.stack.push(canonical);
                self.text(&text, path);
                self.stack.pop();
            }
            Err(message) => self.errors.push(file_error(path, message, included_at)),
        }
    }

    fn text(&mut self, source: &str, path: &Path) {
        let (items, errors) = parse_str_items(source, path);
        self.errors.extend(errors);
        for item in items {
            match item {
                Item::Directive(d) => self.out.directives.push(d),
                Item::Include {
                    location,
                    pattern,
                    optional,
                } => self.include(path, &pattern, optional, &location),
            }
        }
    }

    fn include(&mut self, from: &Path, pattern: &str, optional: bool, at: &Location) {
        let base = from.parent().unwrap_or(Path::new("."));
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let full_text = full.to_string_lossy().into_owned();
        let matches: Vec<PathBuf> = match glob::glob(&full_text) {
            Ok(paths) => {
                let mut found: Vec<PathBuf> = paths
                    .filter_map(Result::ok)
                    .filter(|p| p.is_file())
                    .collect();
                found.sort();
                found
            }
            Err(e) => {
                self.errors.push(file_error(
                    from,
                    format!("bad include pattern '{pattern}': {e}"),
                    Some(at),
                ));
                return;
            }
        };
        if matches.is_empty() && !optional {
            self.errors.push(file_error(
                from,
                format!("Include: no file matches '{full_text}' (use IncludeOptional if it may be absent)"),
                Some(at),
            ));
        }
        for m in matches {
            self.file(&m, Some(at));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_resolve_relative_in_order_and_refuse_cycles() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("rules")).unwrap();
        std::fs::write(
            d.join("main.conf"),
            "SecMarker A\nInclude rules/*.conf\nIncludeOptional none/*.conf\nSecMarker Z\n",
        )
        .unwrap();
        std::fs::write(d.join("rules/b.conf"), "SecMarker B\n").unwrap();
        std::fs::write(d.join("rules/a.conf"), "SecMarker A2\n").unwrap();
        let set = load(&d.join("main.conf"), &LoadLimits::default()).unwrap();
        let markers: Vec<_> = set
            .directives
            .iter()
            .map(|d| match &d.kind {
                crate::syntax::DirectiveKind::Marker(m) => m.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(markers, ["A", "A2", "B", "Z"]);
        assert_eq!(set.files.len(), 3);

        std::fs::write(d.join("loop.conf"), "Include loop.conf\n").unwrap();
        let err = load(&d.join("loop.conf"), &LoadLimits::default()).unwrap_err();
        assert!(err.to_string().contains("includes itself"), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:1:1:", d.join("loop.conf").display())),
            "{err}"
        );

        std::fs::write(
            d.join("missing.conf"),
            "SecRule ARGZ a\nInclude nothing-here.conf\n",
        )
        .unwrap();
        let err = load(&d.join("missing.conf"), &LoadLimits::default()).unwrap_err();
        assert_eq!(err.errors.len(), 2, "{err}");
        assert!(err.errors[1].message.contains("no file matches"));
    }

    #[test]
    fn big_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.conf");
        std::fs::write(&p, "SecMarker A\n".repeat(100)).unwrap();
        let limits = LoadLimits {
            max_file_bytes: 100,
            ..LoadLimits::default()
        };
        let err = load(&p, &limits).unwrap_err();
        assert!(err.to_string().contains("larger than 100 bytes"), "{err}");
    }
}
