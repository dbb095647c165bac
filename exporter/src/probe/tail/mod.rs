//! Following a log file the way `tail -F` does, across rotation, without losing or repeating
//! a line, and counting what it knows it could not read.
//!
//! A file is known by its identity, not by its name or length: the device and inode of the
//! handle that is read, and its first bytes. Each [`Tailer::poll`] looks at the path first:
//!
//! - **a different file at the path** (rename and reopen, logrotate's `create`): the file that
//!   was read is kept open as a *rotated* file and read on through its handle, whatever it is
//!   named now, before and while the new file is read from its start. A writer that never
//!   reopens its log (Caddy) keeps writing the rotated file, and every line of it is read.
//! - **no file at the path** (renamed or deleted, nothing new yet): the open handle is read on.
//! - **the same file, shorter than what was read, or with other first bytes** (logrotate's
//!   `copytruncate`, also when the file has grown past the old position again before the
//!   poll): it is read again from its start, and the rest of the old content from its copy in
//!   the log's folder (a rotated file that begins with the same bytes), from where reading
//!   stopped. Without such a copy, what was seen and not read is counted as skipped
//!   (`truncated`).
//!
//! When the path no longer holds the file that was read, the log's folder is searched for
//! rotated files (names that are the log's followed by `.`, `-` or `_`: `access.log.1`,
//! `access.log-20261206`, `access.log.2.gz`) the tailer has not seen, and each that was
//! modified since the previous poll is read from its start, oldest first: every file of a
//! backlog of renames between two polls is read. A gzip-compressed one is read through a
//! decoder; one of another compressor cannot be, and its size is counted as skipped
//! (`compressed`). A compressed file that begins as a file that was read is its compressed
//! form: only what was not read of it is.
//!
//! A rotated file is let go once it has been read to its end and then
//! - no name links to it any more (removed, or compressed and removed) and it has given
//!   nothing for [`REMOVED_IDLE_POLLS`] polls in a row, so a writer that reopens late still
//!   has its last lines read, or
//! - it has not changed for [`TailOptions::rotated_idle`] (a day by default: longer than a
//!   quiet night).
//!
//! A last line without its newline is then taken as complete. A file let go is remembered by
//! identity, first bytes and how far it was read: if a folder search finds it grown (a writer
//! that kept it open through a long quiet spell), it is read on from there. At most
//! [`TailOptions::max_rotated`] rotated files are followed at once; beyond that the oldest is
//! let go and what it held unread is counted as skipped (`too_many_rotated`).
//!
//! A file that appears at the path after the first poll is new and is read from its start;
//! only a file present at the first poll may start at its end ([`StartAt::End`]). Rotated
//! files present at the first poll are history and are not read (unless they grow).
//!
//! Reads stop at a byte budget per poll; a line cut by the budget is kept until its end has
//! been read, never delivered in pieces.
//!
//! Limits, by construction: lines written between `copytruncate`'s copy and its truncation
//! are in neither file; a file renamed away, written and replaced between two polls is found
//! only if its name marks it as the log's rotated file and it stays in the log's folder; a
//! truncated file that regrows with exactly its old first bytes is not recognised (log lines
//! begin with a time or an address, so this does not happen with access logs).

mod folder;
mod tracked;

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use folder::{same_beginning, Compression, Memory, Sibling};
use tracked::Tracked;

/// How many first bytes of a file identify it besides its device and inode.
pub const FINGERPRINT_BYTES: usize = 1024;
/// How many polls in a row a removed rotated file must give nothing before it is let go.
pub const REMOVED_IDLE_POLLS: u32 = 2;
/// Longest line (without its line end); a longer one is skipped up to its newline and
/// reported as overlong.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Default of [`TailOptions::rotated_idle`].
pub const DEFAULT_ROTATED_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Default of [`TailOptions::max_rotated`].
pub const DEFAULT_MAX_ROTATED: usize = 64;
/// How much earlier than the previous poll a file's modification time may lie and still count
/// as a change since then: file systems stamp times with a coarse clock.
const MODIFIED_SLACK: Duration = Duration::from_secs(2);

/// Where reading starts in a file present at the first poll.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Only what is written after the first poll (default).
    #[default]
    End,
    /// The whole file.
    Beginning,
}

/// How a [`Tailer`] follows its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailOptions {
    /// Where reading starts in a file present at the first poll.
    pub start_at: StartAt,
    /// How long a rotated file that is still linked is followed after it last changed.
    pub rotated_idle: Duration,
    /// Most rotated files followed at once.
    pub max_rotated: usize,
}

impl Default for TailOptions {
    fn default() -> Self {
        Self {
            start_at: StartAt::End,
            rotated_idle: DEFAULT_ROTATED_IDLE,
            max_rotated: DEFAULT_MAX_ROTATED,
        }
    }
}

/// Bytes known not to have been read, by why.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Unread bytes of rotated files let go because more than `max_rotated` were followed.
    pub too_many_rotated: u64,
    /// Bytes of compressed rotated files that cannot be read (not gzip), found since the
    /// previous poll.
    pub compressed: u64,
    /// Bytes a truncated file was seen to hold beyond what was read (and an unfinished line),
    /// when no copy of it was found.
    pub truncated: u64,
}

impl Skipped {
    /// The sum.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.too_many_rotated + self.compressed + self.truncated
    }
}

/// What one poll did besides delivering lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollReport {
    /// Bytes read.
    pub bytes: u64,
    /// Rotations seen: another file at the path than the one being read.
    pub renamed: u64,
    /// Truncations seen: the file being read started over.
    pub truncated: u64,
    /// Rotated files found in the log's folder and read: rotated since the previous poll, or
    /// let go earlier and grown since.
    pub found: u64,
    /// Copies of truncated files found in the log's folder and read from where reading was.
    pub copies: u64,
    /// Lines longer than [`MAX_LINE_BYTES`], skipped.
    pub overlong: u64,
    /// Bytes known not to have been read.
    pub skipped: Skipped,
    /// Rotated files followed after this poll.
    pub rotated_open: usize,
    /// Whether a file is being read or could be opened (`false` while nothing exists at the
    /// path and no handle is open).
    pub open: bool,
    /// Whether everything there was to read has been read (the budget did not run out).
    pub caught_up: bool,
}

/// A followed log file; see the [module docs](self).
#[derive(Debug)]
pub struct Tailer {
    path: PathBuf,
    options: TailOptions,
    /// The wall-clock time of the previous poll.
    previous: Option<SystemTime>,
    current: Option<Tracked>,
    /// Files rotated away that are still read, oldest first.
    rotated: VecDeque<Tracked>,
    /// Files let go, or found and left alone.
    memory: Memory,
}

impl Tailer {
    /// A tailer of `path`; nothing is opened before the first [`Tailer::poll`].
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, options: TailOptions) -> Self {
        Self {
            path: path.into(),
            options,
            previous: None,
            current: None,
            rotated: VecDeque::new(),
            memory: Memory::default(),
        }
    }

    /// The followed path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was written since the last poll, at most `budget` bytes, and hands every
    /// complete line (without its `\n` and a trailing `\r`) to `on_line`, oldest first.
    ///
    /// # Errors
    /// When the path cannot be looked at for another reason than its absence, or a file
    /// cannot be opened or read; what was read before the error has been delivered.
    pub fn poll(&mut self, budget: u64, on_line: &mut dyn FnMut(&[u8])) -> io::Result<PollReport> {
        self.poll_at(Instant::now(), SystemTime::now(), budget, on_line)
    }

    /// [`Tailer::poll`] at a given time: `now` for how long rotated files were quiet, `wall`
    /// to compare with the modification times of files.
    ///
    /// # Errors
    /// As [`Tailer::poll`].
    pub fn poll_at(
        &mut self,
        now: Instant,
        wall: SystemTime,
        budget: u64,
        on_line: &mut dyn FnMut(&[u8]),
    ) -> io::Result<PollReport> {
        let mut report = PollReport::default();
        let previous = self.previous.replace(wall);
        let at_path = match std::fs::metadata(&self.path) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let current_id = self.current.as_ref().map(|c| (c.dev, c.ino));
        if previous.is_none() {
            // Present at the first look: where the configuration says. Rotated files already
            // there are history.
            self.remember_history();
            if at_path.is_some() {
                self.current = self.open(self.options.start_at == StartAt::End, now)?;
            }
        } else if at_path.is_some() && at_path != current_id {
            // Appeared later, or another file: new, so everything in it is new.
            if let Some(new) = self.open(false, now)? {
                if let Some(old) = self.current.replace(new) {
                    self.rotated.push_back(old);
                    report.renamed += 1;
                }
            }
        }
        // Truncations first: the copy of a truncated file is read from where reading stopped,
        // not found again as a rotated file of its own.
        self.follow_truncations(now, &mut report)?;
        if let Some(previous) = previous.filter(|_| at_path != current_id) {
            let since = previous
                .checked_sub(MODIFIED_SLACK)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            self.find_rotated(since, now, &mut report)?;
        }

        let mut budget = budget;
        let mut caught_up = true;
        let mut at_end = Vec::with_capacity(self.rotated.len());
        for t in self.rotated.iter_mut().chain(self.current.as_mut()) {
            let before = report.bytes;
            let end = t.read(&mut budget, on_line, &mut report)?;
            caught_up &= end;
            if report.bytes > before {
                t.quiet_polls = 0;
                t.changed_at = now;
            } else if end {
                t.quiet_polls += 1;
            }
            at_end.push(end);
        }
        self.let_go(&at_end, now, on_line, &mut report)?;
        report.rotated_open = self.rotated.len();
        report.open = self.current.is_some() || !self.rotated.is_empty();
        report.caught_up = caught_up;
        Ok(report)
    }

    /// Opens the file at the path, at its end or its start; `None` when it vanished since it
    /// was looked at.
    fn open(&self, at_end: bool, now: Instant) -> io::Result<Option<Tracked>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !at_end {
            return Tracked::plain(file, 0, Vec::new(), now).map(Some);
        }
        // The identity of the handle, not of the name: the name may already point elsewhere.
        let len = file.metadata()?.len();
        let n = usize::try_from(len).map_or(FINGERPRINT_BYTES, |l| l.min(FINGERPRINT_BYTES));
        let mut head = vec![0; n];
        // A file cut between the stat and this read gives fewer bytes; the next poll then
        // finds it shorter than the offset and reads it from its start.
        let got = file.read_at(&mut head, 0)?;
        head.truncate(got);
        Tracked::plain(file, len, head, now).map(Some)
    }

    fn tracks(&self, dev: u64, ino: u64) -> bool {
        self.rotated
            .iter()
            .chain(self.current.as_ref())
            .any(|t| t.dev == dev && t.ino == ino)
    }

    /// Remembers the rotated files present at the first poll as read to their ends.
    fn remember_history(&mut self) {
        for s in folder::siblings(&self.path) {
            let head = s.head().unwrap_or_default();
            let offset = match s.compression {
                Compression::None => s.len,
                Compression::Gzip | Compression::Other => u64::MAX,
            };
            self.memory.remember(&s, &head, offset);
        }
    }

    /// Searches the log's folder for rotated files to read: those modified since `since` that
    /// were never seen, those let go that grew since, and the rest of a file let go from its
    /// compressed form.
    fn find_rotated(
        &mut self,
        since: SystemTime,
        now: Instant,
        report: &mut PollReport,
    ) -> io::Result<()> {
        let mut found: Vec<(SystemTime, PathBuf, Tracked)> = Vec::new();
        let mut compressed: Vec<(Sibling, Vec<u8>)> = Vec::new();
        for s in folder::siblings(&self.path) {
            if self.tracks(s.dev, s.ino) {
                continue;
            }
            let known = self.memory.get(s.dev, s.ino);
            let recent = s.modified >= since;
            match s.compression {
                Compression::None => {
                    let Some(head) = s.head() else { continue };
                    // Known by identity, and still the same file (an inode may be used again
                    // by a new file): read on from where it was let go if it grew.
                    if let Some(k) = known.filter(|k| k.is(&s, &head)) {
                        if s.len > k.offset {
                            self.memory.forget(s.dev, s.ino);
                            if let Some(t) = self.open_sibling(&s, k.offset, &head, now)? {
                                found.push((s.modified, s.path.clone(), t));
                            }
                        }
                        continue;
                    }
                    // Never seen: rotated since the previous poll if modified since then,
                    // history otherwise.
                    if recent {
                        self.memory.forget(s.dev, s.ino);
                        if let Some(t) = self.open_sibling(&s, 0, &head, now)? {
                            found.push((s.modified, s.path.clone(), t));
                        }
                    } else {
                        self.memory.remember(&s, &head, s.len);
                    }
                }
                Compression::Gzip => {
                    if known.is_some_and(|k| k.len == s.len) {
                        continue;
                    }
                    let Some(head) = s.head() else { continue };
                    compressed.push((s, head));
                }
                Compression::Other => {
                    if known.is_some_and(|k| k.len == s.len) {
                        continue;
                    }
                    if recent {
                        report.skipped.compressed += s.len;
                    }
                    self.memory.remember(&s, &[], u64::MAX);
                }
            }
        }
        self.match_compressed(compressed, since, now, &mut found)?;
        report.found += found.len() as u64;
        found.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        self.rotated.extend(found.into_iter().map(|(_, _, t)| t));
        Ok(())
    }

    /// Tells the compressed forms of files the tailer read from rotated files it never saw.
    ///
    /// A file is compressed once, after it was rotated, and removed: so a removed file that
    /// is followed, or a file let go, has at most one compressed form, the earliest written
    /// gzip file that begins as it does (and is not longer). Of a followed file nothing of it
    /// is read again; of a file let go, only what was not read. Every other gzip file is read
    /// whole if it was written since the previous poll, and is history otherwise.
    fn match_compressed(
        &mut self,
        mut candidates: Vec<(Sibling, Vec<u8>)>,
        since: SystemTime,
        now: Instant,
        found: &mut Vec<(SystemTime, PathBuf, Tracked)>,
    ) -> io::Result<()> {
        candidates.sort_by(|a, b| {
            a.0.modified
                .cmp(&b.0.modified)
                .then_with(|| a.0.path.cmp(&b.0.path))
        });
        // Followed files that are removed: their compressed form may be here.
        let mut followed: Vec<(Vec<u8>, u64)> = self
            .rotated
            .iter()
            .chain(self.current.as_ref())
            .filter(|t| t.is_plain() && !t.linked)
            .map(|t| (t.content_head(), t.seen_len))
            .collect();
        let mut claimed = Vec::new();
        for (s, head) in candidates {
            let size = s.gzip_size();
            let fits = |len: u64| size.is_none_or(|n| n <= len);
            if let Some(i) = followed
                .iter()
                .position(|(h, len)| same_beginning(h, &head) && fits(*len))
            {
                followed.remove(i);
                self.memory.remember(&s, &head, u64::MAX);
                continue;
            }
            if let Some((key, k)) = self
                .memory
                .same_content(&head, &claimed)
                .filter(|(_, k)| fits(k.len))
            {
                claimed.push(key);
                let offset = k.offset;
                self.memory.remember(&s, &head, u64::MAX);
                if size.is_none_or(|n| n > offset) {
                    if let Some(t) = self.open_sibling(&s, offset, &head, now)? {
                        found.push((s.modified, s.path.clone(), t));
                    }
                }
                continue;
            }
            if s.modified >= since {
                self.memory.forget(s.dev, s.ino);
                if let Some(t) = self.open_sibling(&s, 0, &head, now)? {
                    found.push((s.modified, s.path.clone(), t));
                }
            } else {
                self.memory.remember(&s, &head, u64::MAX);
            }
        }
        Ok(())
    }

    /// Opens a rotated file found in the folder to read it from `offset` of its content.
    fn open_sibling(
        &self,
        s: &Sibling,
        offset: u64,
        head: &[u8],
        now: Instant,
    ) -> io::Result<Option<Tracked>> {
        let file = match File::open(&s.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let t = match s.compression {
            Compression::None => {
                let n = usize::try_from(offset).map_or(head.len(), |o| o.min(head.len()));
                Tracked::plain(file, offset, head[..n].to_vec(), now)?
            }
            Compression::Gzip => Tracked::gzip(file, offset, now)?,
            Compression::Other => return Ok(None),
        };
        // The identity of the handle, which the name may no longer lead to.
        if self.tracks(t.dev, t.ino) {
            return Ok(None);
        }
        Ok(Some(t))
    }

    /// Reads every followed file that started over again from its start, and the rest of its
    /// old content from a copy in the folder when there is one.
    fn follow_truncations(&mut self, now: Instant, report: &mut PollReport) -> io::Result<()> {
        let mut copies = Vec::new();
        let tracked: Vec<(u64, u64)> = self
            .rotated
            .iter()
            .chain(self.current.as_ref())
            .map(|t| (t.dev, t.ino))
            .collect();
        let mut siblings: Option<Vec<Sibling>> = None;
        for t in self.rotated.iter_mut().chain(self.current.as_mut()) {
            let seen_before = t.seen_len;
            let look = t.look()?;
            if !t.restarted(look)? {
                continue;
            }
            report.truncated += 1;
            let siblings = siblings.get_or_insert_with(|| folder::siblings(&self.path));
            match copy_of(t, siblings, &tracked, now)? {
                Some(copy) => {
                    report.copies += 1;
                    self.memory.forget(copy.dev, copy.ino);
                    copies.push(copy);
                }
                None => {
                    report.skipped.truncated +=
                        seen_before.saturating_sub(t.offset) + t.partial_len() as u64;
                }
            }
            t.start_over();
        }
        // The old content is older than anything read after it.
        self.rotated.extend(copies);
        Ok(())
    }

    /// Lets go of rotated files that are done, and of the oldest beyond the cap.
    fn let_go(
        &mut self,
        at_end: &[bool],
        now: Instant,
        on_line: &mut dyn FnMut(&[u8]),
        report: &mut PollReport,
    ) -> io::Result<()> {
        let mut kept = VecDeque::with_capacity(self.rotated.len());
        for (t, end) in self.rotated.drain(..).zip(at_end.iter().copied()) {
            let done = if t.is_plain() {
                end && ((!t.linked && t.quiet_polls >= REMOVED_IDLE_POLLS)
                    || now.saturating_duration_since(t.changed_at) >= self.options.rotated_idle)
            } else {
                t.is_done()
            };
            if done {
                release(&mut self.memory, t, on_line, report);
            } else {
                kept.push_back(t);
            }
        }
        while kept.len() > self.options.max_rotated {
            let Some(mut t) = kept.pop_front() else { break };
            t.look()?;
            let unread = t.unread();
            if unread > 0 {
                // What it holds unread, and the unfinished line whose end is in it, is skipped
                // and counted: it is accounted for up to its length now.
                report.skipped.too_many_rotated += unread + t.partial_len() as u64;
                t.drop_partial();
                t.offset = t.offset.max(t.seen_len);
            }
            release(&mut self.memory, t, on_line, report);
        }
        self.rotated = kept;
        Ok(())
    }
}

/// Finishes a file and remembers how far it was read.
fn release(
    memory: &mut Memory,
    mut t: Tracked,
    on_line: &mut dyn FnMut(&[u8]),
    report: &mut PollReport,
) {
    t.finish(on_line, report);
    let offset = if t.is_plain() { t.offset } else { u64::MAX };
    memory.remember_file(t.dev, t.ino, t.born, &t.head, offset, t.seen_len);
}

/// A copy of the truncated file `t` in the folder (a rotated file that begins with what `t`
/// began with and is at least as long as what was read of it), opened at the position `t` was
/// read to, with `t`'s unfinished line.
fn copy_of(
    t: &mut Tracked,
    siblings: &[Sibling],
    tracked: &[(u64, u64)],
    now: Instant,
) -> io::Result<Option<Tracked>> {
    if t.head.is_empty() {
        return Ok(None);
    }
    let mut candidates: Vec<&Sibling> = siblings
        .iter()
        .filter(|s| s.compression != Compression::Other && !tracked.contains(&(s.dev, s.ino)))
        .filter(|s| s.compression != Compression::None || s.len >= t.offset)
        .collect();
    // A plain copy first (no decompression), then the most recently modified.
    candidates.sort_by(|a, b| {
        (a.compression != Compression::None)
            .cmp(&(b.compression != Compression::None))
            .then(b.modified.cmp(&a.modified))
            .then(a.path.cmp(&b.path))
    });
    for s in candidates {
        let Some(head) = s.head() else { continue };
        if !head.starts_with(&t.head) {
            continue;
        }
        let Ok(file) = File::open(&s.path) else {
            continue;
        };
        let mut copy = match s.compression {
            Compression::None => Tracked::plain(file, t.offset, t.head.clone(), now)?,
            _ => Tracked::gzip(file, t.offset, now)?,
        };
        copy.take_partial(t);
        return Ok(Some(copy));
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
