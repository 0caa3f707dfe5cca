//! Collections of videos: a folder tree or a list file (TrackingNet / Kinetics-like layouts).
//!
//! [`VideoList`] only lists paths. [`VideoCollection`] pairs a list with an *opener* (any
//! `Fn(&Path) -> Result<Box<dyn FrameSource>>`, normally `source::folder::open_source`) and the
//! number of frames a sample needs, and hands out usable sources: an entry that cannot be opened
//! or is too short is recorded in a [`SkipLog`] (logged once with its path and reason) and the
//! next entry in list order is tried, so the outcome depends only on the data, never on timing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use rayon::prelude::*;

use super::{is_image, is_video, read_dir_sorted, read_text};
use crate::skip::SkipLog;
use crate::source::FrameSource;
use crate::{Error, Result};

/// What an entry of a [`VideoList`] is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A video file (known extension, see [`super::VIDEO_EXTENSIONS`]).
    VideoFile,
    /// A folder of JPEG/PNG frames.
    FrameFolder,
}

/// One video of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VideoEntry {
    /// Path of the video file or frame folder.
    pub path: PathBuf,
    /// File or folder.
    pub kind: EntryKind,
}

/// The videos of a dataset, as paths (nothing is opened).
#[derive(Debug, Clone)]
pub struct VideoList {
    root: PathBuf,
    entries: Vec<VideoEntry>,
}

/// Folder depth beyond which [`VideoList::from_dir`] stops (guards against link cycles).
const MAX_DEPTH: usize = 32;

impl VideoList {
    /// Every video under `root`, recursively: files with a known video extension, and *leaf*
    /// folders (no sub-folder) holding at least one JPEG/PNG frame, like TrackingNet's
    /// `TRAIN_k/zips/<video>/<n>.jpg` or Kinetics frame dumps. Hidden files and folders are
    /// ignored; symbolic links are followed. Entries are sorted by path.
    ///
    /// Errors when `root` cannot be listed or holds no video at all.
    pub fn from_dir(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref();
        let mut entries = walk(root, 0)?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        if entries.is_empty() {
            return Err(Error::file(
                root,
                "no video found: no video file and no folder of JPEG/PNG frames under it",
            ));
        }
        Ok(Self {
            root: root.to_path_buf(),
            entries,
        })
    }

    /// The videos named in the list file `path`: one path per line, relative to the folder of the
    /// list (absolute paths are kept), blank lines and lines starting with `#` ignored,
    /// surrounding whitespace trimmed. A path that is a folder is a frame folder, anything else
    /// a video file (a missing one is skipped when it fails to open). The list's order is kept.
    ///
    /// Errors when the list cannot be read or names no video.
    pub fn from_list_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = read_text(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let entries: Vec<VideoEntry> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let p = base.join(l);
                let kind = if p.is_dir() {
                    EntryKind::FrameFolder
                } else {
                    EntryKind::VideoFile
                };
                VideoEntry { path: p, kind }
            })
            .collect();
        if entries.is_empty() {
            return Err(Error::file(path, "no video found: the list names no path"));
        }
        Ok(Self {
            root: path.to_path_buf(),
            entries,
        })
    }

    /// A list of the given entries (kept in this order); `root` names the collection in errors.
    pub fn from_entries(root: impl Into<PathBuf>, entries: Vec<VideoEntry>) -> Self {
        Self {
            root: root.into(),
            entries,
        }
    }

    /// The folder or list file the collection came from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[VideoEntry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Pairs the list with `opener`; a usable entry must have at least `min_frames` frames.
    pub fn with_opener<O>(self, opener: O, min_frames: usize) -> VideoCollection<O>
    where
        O: Fn(&Path) -> Result<Box<dyn FrameSource>> + Send + Sync,
    {
        let state = (0..self.entries.len())
            .map(|_| AtomicU8::new(UNKNOWN))
            .collect();
        VideoCollection {
            list: self,
            opener,
            min_frames,
            skips: Arc::new(SkipLog::new()),
            state,
        }
    }
}

/// Lists the videos under `dir` (unsorted across sub-trees; the caller sorts).
fn walk(dir: &Path, depth: usize) -> Result<Vec<VideoEntry>> {
    let (dirs, files) = read_dir_sorted(dir)?;
    let mut out: Vec<VideoEntry> = files
        .iter()
        .filter(|p| is_video(p))
        .map(|p| VideoEntry {
            path: p.clone(),
            kind: EntryKind::VideoFile,
        })
        .collect();
    if dirs.is_empty() {
        if files.iter().any(|p| is_image(p)) {
            out.push(VideoEntry {
                path: dir.to_path_buf(),
                kind: EntryKind::FrameFolder,
            });
        }
    } else if depth < MAX_DEPTH {
        // Sub-trees are listed in parallel: a TrackingNet chunk has thousands of folders and
        // listing is latency-bound on network file systems. An unreadable sub-folder is left out
        // (with a warning) rather than failing the whole tree.
        let subs: Vec<Vec<VideoEntry>> = dirs
            .par_iter()
            .map(|d| match walk(d, depth + 1) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("left out {}: {e}", d.display());
                    Vec::new()
                }
            })
            .collect();
        out.extend(subs.into_iter().flatten());
    }
    Ok(out)
}

const UNKNOWN: u8 = 0;
const USABLE: u8 = 1;
const BAD: u8 = 2;

/// A [`VideoList`] with an opener: hands out usable frame sources, skipping bad entries.
///
/// The verdict on each entry (usable or bad) is remembered, so a bad file is opened (and logged)
/// once per run, not once per epoch. `Sync`: worker threads share one collection.
pub struct VideoCollection<O> {
    list: VideoList,
    opener: O,
    min_frames: usize,
    skips: Arc<SkipLog>,
    state: Vec<AtomicU8>,
}

impl<O> std::fmt::Debug for VideoCollection<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoCollection")
            .field("root", &self.list.root)
            .field("len", &self.list.len())
            .field("min_frames", &self.min_frames)
            .finish_non_exhaustive()
    }
}

impl<O> VideoCollection<O>
where
    O: Fn(&Path) -> Result<Box<dyn FrameSource>> + Send + Sync,
{
    /// Uses `skips` (e.g. one log shared by every dataset of a run) instead of a private log.
    pub fn with_skip_log(mut self, skips: Arc<SkipLog>) -> Self {
        self.skips = skips;
        self
    }

    /// The underlying list.
    pub fn list(&self) -> &VideoList {
        &self.list
    }

    /// Number of entries (usable or not).
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when the collection has no entry.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Frames a usable entry must have.
    pub fn min_frames(&self) -> usize {
        self.min_frames
    }

    /// The log of skipped entries.
    pub fn skips(&self) -> &Arc<SkipLog> {
        &self.skips
    }

    /// Opens entry `index` with the opener and checks it has at least `min_frames` frames.
    /// Does not skip: the error names the entry and what is wrong.
    pub fn open_entry(&self, index: usize) -> Result<Box<dyn FrameSource>> {
        let entry = self.list.entries.get(index).ok_or_else(|| {
            Error::op(
                "VideoCollection::open_entry",
                format!("entry {index} asked, the collection has {}", self.len()),
            )
        })?;
        let source = (self.opener)(&entry.path)?;
        let n = source.len();
        if n < self.min_frames {
            return Err(Error::file(
                &entry.path,
                format!("too short: {n} frames, a sample needs {}", self.min_frames),
            ));
        }
        Ok(source)
    }

    /// Records entry `index` as bad (e.g. a frame failed to decode while sampling it): it is
    /// logged once and never handed out again.
    pub fn mark_bad(&self, index: usize, reason: impl std::fmt::Display) {
        if let (Some(entry), Some(state)) = (self.list.entries.get(index), self.state.get(index)) {
            state.store(BAD, Ordering::Relaxed);
            self.skips.skip(&entry.path, reason);
        }
    }

    /// The first usable entry at or after `index` (wrapping around), opened: `(entry index,
    /// source)`. Entries that fail to open or are too short are skipped (recorded in the skip
    /// log) and the next one is tried, so the same data always gives the same answer.
    ///
    /// Errors when no entry of the collection is usable, naming its root.
    pub fn open_usable(&self, index: usize) -> Result<(usize, Box<dyn FrameSource>)> {
        let n = self.len();
        if n == 0 {
            return Err(self.no_usable());
        }
        for k in 0..n {
            let i = (index % n + k) % n;
            if self.state[i].load(Ordering::Relaxed) == BAD {
                continue;
            }
            match self.open_entry(i) {
                Ok(source) => {
                    self.state[i].store(USABLE, Ordering::Relaxed);
                    return Ok((i, source));
                }
                Err(e) => self.mark_bad(i, e),
            }
        }
        Err(self.no_usable())
    }

    /// Opens every entry once (in parallel) and returns the indices of the usable ones; the
    /// others are recorded in the skip log. Optional: [`Self::open_usable`] finds bad entries
    /// lazily anyway; probing first gives an exact count before a run starts.
    ///
    /// Errors when no entry is usable.
    pub fn probe(&self) -> Result<Vec<usize>> {
        let usable: Vec<usize> = (0..self.len())
            .into_par_iter()
            .filter(|&i| match self.state[i].load(Ordering::Relaxed) {
                USABLE => true,
                BAD => false,
                _ => match self.open_entry(i) {
                    Ok(_) => {
                        self.state[i].store(USABLE, Ordering::Relaxed);
                        true
                    }
                    Err(e) => {
                        self.mark_bad(i, e);
                        false
                    }
                },
            })
            .collect();
        if usable.is_empty() {
            return Err(self.no_usable());
        }
        Ok(usable)
    }

    fn no_usable(&self) -> Error {
        Error::file(
            &self.list.root,
            format!(
                "no usable video: all {} entries were skipped ({} distinct inputs in the skip log; \
                 each is logged with its reason)",
                self.len(),
                self.skips.distinct()
            ),
        )
    }
}
