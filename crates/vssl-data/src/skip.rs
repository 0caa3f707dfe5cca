//! Bad input never stops a run: it is skipped, counted, and logged once with its path and reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A thread-safe record of skipped inputs.
///
/// The first time a path is skipped it is logged (`tracing::warn!`) with the reason; later skips
/// of the same path are only counted. A summary is available at any time, e.g. for a run report.
#[derive(Debug, Default)]
pub struct SkipLog {
    inner: Mutex<BTreeMap<PathBuf, (String, usize)>>,
}

impl SkipLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `path` was skipped because of `reason`; logs it if it is the first time.
    pub fn skip(&self, path: &Path, reason: impl std::fmt::Display) {
        let mut map = match self.inner.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = map
            .entry(path.to_path_buf())
            .or_insert_with(|| (reason.to_string(), 0));
        entry.1 += 1;
        if entry.1 == 1 {
            tracing::warn!("skipped {}: {}", path.display(), entry.0);
        }
    }

    /// Number of distinct inputs skipped so far.
    pub fn distinct(&self) -> usize {
        self.snapshot().len()
    }

    /// Total number of skips, counting repeats.
    pub fn total(&self) -> usize {
        self.snapshot().iter().map(|(_, _, n)| n).sum()
    }

    /// Every skipped path with its first reason and its count, sorted by path.
    pub fn snapshot(&self) -> Vec<(PathBuf, String, usize)> {
        let map = match self.inner.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.iter()
            .map(|(p, (r, n))| (p.clone(), r.clone(), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_repeats_and_distinct_paths() {
        let log = SkipLog::new();
        log.skip(Path::new("a.mp4"), "truncated");
        log.skip(Path::new("a.mp4"), "truncated again");
        log.skip(Path::new("b.mp4"), "not a video");
        assert_eq!(log.distinct(), 2);
        assert_eq!(log.total(), 3);
        let s = log.snapshot();
        assert_eq!(s[0], (PathBuf::from("a.mp4"), "truncated".to_string(), 2));
    }
}
