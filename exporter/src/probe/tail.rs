//! Following a log file the way `tail -F` does, across rotation, without losing or repeating
//! a line.
//!
//! A file is known by its identity, not by its name or length: the device and inode of the
//! handle that is read, and a fingerprint of its first bytes. Each [`Tailer::poll`] looks at
//! the path first:
//!
//! - **a different file at the path** (rename and reopen, logrotate's `create`): the old file
//!   is kept open and finished through its handle, oldest first, before and while the new file
//!   is read from its start. It is let go once it has given nothing for
//!   [`ROTATED_IDLE_POLLS`] polls in a row, so a writer that reopens late still has its last
//!   lines read; a last line without its newline is then taken as complete.
//! - **no file at the path** (renamed or deleted, nothing new yet): the open handle is read on.
//! - **the same file, shorter than what was read, or with other first bytes** (logrotate's
//!   `copytruncate`, also when the file has grown past the old position again before the
//!   poll): it is read again from its start.
//!
//! A file that appears at the path after the first poll is new and is read from its start;
//! only a file present at the first poll may start at its end ([`StartAt::End`]).
//!
//! Reads stop at a byte budget per poll; a line cut by the budget is kept until its end has
//! been read, never delivered in pieces.
//!
//! Limits, by construction: lines written between `copytruncate`'s copy and its truncation,
//! and lines not yet read when the file is truncated, are in the copy and not here; a file
//! renamed away and replaced twice between two polls is never seen; a truncated file that
//! regrows with exactly its old first bytes is not recognised (log lines begin with a time or
//! an address, so this does not happen with access logs).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// How many first bytes of a file identify it besides its device and inode.
pub const FINGERPRINT_BYTES: usize = 1024;
/// How many polls in a row a rotated file must give nothing before it is let go.
pub const ROTATED_IDLE_POLLS: u32 = 2;
/// Most rotated files kept open at once; beyond this the oldest is let go.
pub const MAX_ROTATED: usize = 8;
/// Longest line; a longer one is skipped up to its newline and reported as overlong.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

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

/// What one poll did besides delivering lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PollReport {
    /// Bytes read.
    pub bytes: u64,
    /// Rotations seen: another file at the path than the one being read.
    pub renamed: u64,
    /// Truncations seen: the file being read started over.
    pub truncated: u64,
    /// Lines longer than [`MAX_LINE_BYTES`], skipped.
    pub overlong: u64,
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
    start_at: StartAt,
    looked: bool,
    current: Option<Tracked>,
    /// Files rotated away that are still read, oldest first.
    rotated: VecDeque<Tracked>,
}

/// An open file and how far it has been read.
#[derive(Debug)]
struct Tracked {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes consumed from the start of the file.
    offset: u64,
    /// The file's first `min(offset, FINGERPRINT_BYTES)` bytes, as read.
    head: Vec<u8>,
    /// The start of a line whose end has not been read yet.
    partial: Vec<u8>,
    /// Inside an overlong line: bytes are dropped up to the next newline.
    skipping: bool,
    /// Polls in a row that found nothing new (rotated files only).
    idle: u32,
}

impl Tailer {
    /// A tailer of `path`; nothing is opened before the first [`Tailer::poll`].
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, start_at: StartAt) -> Self {
        Self {
            path: path.into(),
            start_at,
            looked: false,
            current: None,
            rotated: VecDeque::new(),
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
        let mut report = PollReport::default();
        let first = !self.looked;
        self.looked = true;
        let at_path = match std::fs::metadata(&self.path) {
            Ok(m) => Some((m.dev(), m.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match (&self.current, at_path) {
            (None, Some(_)) => {
                // Present at the first look: where the configuration says. Appeared later:
                // new, so everything in it is new.
                let from_end = first && self.start_at == StartAt::End;
                self.current = self.open(from_end)?;
            }
            (Some(cur), Some(id)) if (cur.dev, cur.ino) != id => {
                if let Some(new) = self.open(false)? {
                    if let Some(old) = self.current.replace(new) {
                        self.rotated.push_back(old);
                    }
                    report.renamed += 1;
                }
            }
            _ => {}
        }
        let mut budget = budget;
        let mut caught_up = true;
        for t in self.rotated.iter_mut().chain(self.current.as_mut()) {
            if t.restarted()? {
                report.truncated += 1;
            }
            let before = t.offset;
            let at_end = t.read(&mut budget, on_line, &mut report)?;
            caught_up &= at_end;
            t.idle = if at_end && t.offset == before {
                t.idle + 1
            } else {
                0
            };
        }
        // Let go of rotated files that are done, and of the oldest beyond the cap.
        let mut kept = VecDeque::with_capacity(self.rotated.len());
        while let Some(t) = self.rotated.pop_front() {
            let over_cap = self.rotated.len() + kept.len() >= MAX_ROTATED;
            if t.idle >= ROTATED_IDLE_POLLS || over_cap {
                t.finish(on_line);
            } else {
                kept.push_back(t);
            }
        }
        self.rotated = kept;
        report.open = self.current.is_some() || !self.rotated.is_empty();
        report.caught_up = caught_up;
        Ok(report)
    }

    /// Opens the file at the path, at its end or its start; `None` when it vanished since it
    /// was looked at.
    fn open(&self, at_end: bool) -> io::Result<Option<Tracked>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        // The identity of the handle, not of the name: the name may already point elsewhere.
        let meta = file.metadata()?;
        let mut t = Tracked {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset: 0,
            head: Vec::new(),
            partial: Vec::new(),
            skipping: false,
            idle: 0,
        };
        if at_end {
            let len = meta.len();
            let n = usize::try_from(len).map_or(FINGERPRINT_BYTES, |l| l.min(FINGERPRINT_BYTES));
            t.head = vec![0; n];
            // A file cut between the stat and this read gives fewer bytes; the next poll then
            // finds it shorter than the offset and reads it from its start.
            let got = t.file.read_at(&mut t.head, 0)?;
            t.head.truncate(got);
            t.offset = len;
        }
        Ok(Some(t))
    }
}

impl Tracked {
    /// Whether the file started over since it was last read (shorter than what was read, or
    /// other first bytes); if so, it is read again from its start.
    fn restarted(&mut self) -> io::Result<bool> {
        let len = self.file.metadata()?.len();
        let shorter = len < self.offset;
        let rewritten = !shorter && !self.head.is_empty() && {
            let mut now = vec![0; self.head.len()];
            self.file.read_exact_at(&mut now, 0)?;
            now != self.head
        };
        if shorter || rewritten {
            self.offset = 0;
            self.head.clear();
            self.partial.clear();
            self.skipping = false;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads on from the offset within the budget, delivering complete lines. Returns whether
    /// the end of the file was reached.
    fn read(
        &mut self,
        budget: &mut u64,
        on_line: &mut dyn FnMut(&[u8]),
        report: &mut PollReport,
    ) -> io::Result<bool> {
        let mut buf = vec![0u8; 64 * 1024];
        self.file.seek(SeekFrom::Start(self.offset))?;
        loop {
            if *budget == 0 {
                // At the end anyway when nothing more is there.
                return Ok(self.file.metadata()?.len() <= self.offset);
            }
            let want = buf
                .len()
                .min(usize::try_from(*budget).unwrap_or(usize::MAX));
            let n = match self.file.read(&mut buf[..want]) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let data = &buf[..n];
            if self.head.len() < FINGERPRINT_BYTES {
                let below = usize::try_from(self.offset).unwrap_or(usize::MAX);
                if below == self.head.len() {
                    let take = (FINGERPRINT_BYTES - self.head.len()).min(n);
                    self.head.extend_from_slice(&data[..take]);
                }
            }
            self.offset += n as u64;
            *budget -= n as u64;
            report.bytes += n as u64;
            self.split(data, on_line, report);
        }
    }

    /// Splits freshly read bytes into lines, joining the held start of a line.
    fn split(&mut self, mut data: &[u8], on_line: &mut dyn FnMut(&[u8]), report: &mut PollReport) {
        while let Some(pos) = data.iter().position(|b| *b == b'\n') {
            let (piece, rest) = (&data[..pos], &data[pos + 1..]);
            if self.skipping {
                self.skipping = false;
            } else if self.partial.len() + piece.len() > MAX_LINE_BYTES {
                report.overlong += 1;
                self.partial.clear();
            } else if self.partial.is_empty() {
                deliver(piece, on_line);
            } else {
                self.partial.extend_from_slice(piece);
                deliver(&self.partial, on_line);
                self.partial.clear();
            }
            data = rest;
        }
        if self.skipping {
            return;
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() > MAX_LINE_BYTES {
            self.partial.clear();
            self.skipping = true;
            report.overlong += 1;
        }
    }

    /// Hands over a last line that never got its newline: the file is done.
    fn finish(self, on_line: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() && !self.skipping {
            deliver(&self.partial, on_line);
        }
    }
}

fn deliver(line: &[u8], on_line: &mut dyn FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    on_line(line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(t: &mut Tailer, budget: u64) -> (Vec<String>, PollReport) {
        let mut got = Vec::new();
        let r = t
            .poll(budget, &mut |l| {
                got.push(String::from_utf8_lossy(l).into_owned())
            })
            .expect("poll");
        (got, r)
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    #[test]
    fn copytruncate_with_regrowth_past_the_old_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "a1\na2\n");
        let mut t = Tailer::new(&p, StartAt::Beginning);
        assert_eq!(lines(&mut t, u64::MAX).0, ["a1", "a2"]);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&p, "b1\nb2\nb3\n");
        let (got, r) = lines(&mut t, u64::MAX);
        assert_eq!(got, ["b1", "b2", "b3"]);
        assert_eq!(r.truncated, 1);
    }

    #[test]
    fn a_renamed_file_is_finished_before_the_budget_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "");
        let mut t = Tailer::new(&p, StartAt::End);
        assert!(lines(&mut t, 10).0.is_empty());
        append(&p, "old1\nold2\nold3\n");
        std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        append(&p, "new1\n");
        // Seven bytes: "old1\n" and a cut "ol", held back.
        let (got, r) = lines(&mut t, 7);
        assert_eq!(got, ["old1"]);
        assert_eq!(r.renamed, 1);
        assert!(!r.caught_up);
        let (got, _) = lines(&mut t, u64::MAX);
        assert_eq!(got, ["old2", "old3", "new1"]);
    }

    #[test]
    fn a_file_created_after_the_first_poll_is_read_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("late.log");
        let mut t = Tailer::new(&p, StartAt::End);
        let (got, r) = lines(&mut t, u64::MAX);
        assert!(got.is_empty() && !r.open);
        append(&p, "first\nsecond\n");
        assert_eq!(lines(&mut t, u64::MAX).0, ["first", "second"]);
    }

    #[test]
    fn overlong_lines_are_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        append(&p, &format!("ok1\n{long}\nok2\n"));
        let mut t = Tailer::new(&p, StartAt::Beginning);
        let (got, r) = lines(&mut t, u64::MAX);
        let lengths: Vec<usize> = got.iter().map(String::len).collect();
        assert_eq!(lengths, [3, 3], "only the two short lines");
        assert_eq!(r.overlong, 1);
        // Cut by the budget in the middle of the long line: still skipped whole.
        append(&p, &format!("{long}\nok3\n"));
        let mut lengths = Vec::new();
        for _ in 0..4 {
            let (got, _) = lines(&mut t, 50_000);
            lengths.extend(got.iter().map(String::len));
        }
        assert_eq!(lengths, [3]);
    }
}
