//! One file the tailer reads: its identity, how far it was read, and the start of a line whose
//! end has not arrived yet. A plain file is read at its offset through its handle, whatever it
//! is named now; a gzip-compressed rotated file is read once, from its start, through a
//! decoder.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::{Instant, SystemTime};

use flate2::read::MultiGzDecoder;

use super::{PollReport, FINGERPRINT_BYTES, MAX_LINE_BYTES};

/// Bytes read per `read` call.
const READ_BUFFER: usize = 64 * 1024;

/// Where a tracked file's bytes come from.
pub(super) enum Source {
    /// A plain file, read at the offset (it may still grow).
    Plain(File),
    /// A gzip-compressed file, read front to back once; `skip` bytes of its content were
    /// read before, from the file it was compressed from, and are passed over.
    Gzip {
        decoder: Box<MultiGzDecoder<File>>,
        skip: u64,
        done: bool,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Plain(_) => f.write_str("Plain"),
            Source::Gzip { skip, done, .. } => f
                .debug_struct("Gzip")
                .field("skip", skip)
                .field("done", done)
                .finish_non_exhaustive(),
        }
    }
}

/// What the file looks like through its handle now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Look {
    pub(super) len: u64,
}

/// A file being read and how far.
#[derive(Debug)]
pub(super) struct Tracked {
    pub(super) source: Source,
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// When the file was created, where the file system says.
    pub(super) born: Option<SystemTime>,
    /// Bytes consumed from the start of the content.
    pub(super) offset: u64,
    /// The content's first `min(offset, FINGERPRINT_BYTES)` bytes, as read.
    pub(super) head: Vec<u8>,
    /// The start of a line whose end has not been read yet.
    partial: Vec<u8>,
    /// Inside an overlong line: bytes are dropped up to the next newline.
    skipping: bool,
    /// Polls in a row that found nothing new.
    pub(super) quiet_polls: u32,
    /// When it last gave bytes (or was first read).
    pub(super) changed_at: Instant,
    /// Its length at the last look (plain files).
    pub(super) seen_len: u64,
    /// Whether a name linked to it at the last look.
    pub(super) linked: bool,
}

impl Tracked {
    /// A plain file, read from `offset` on; `head` holds its first bytes up to there.
    pub(super) fn plain(file: File, offset: u64, head: Vec<u8>, now: Instant) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            born: meta.created().ok(),
            source: Source::Plain(file),
            offset,
            head,
            partial: Vec::new(),
            skipping: false,
            quiet_polls: 0,
            changed_at: now,
            seen_len: meta.len(),
            linked: meta.nlink() > 0,
        })
    }

    /// A gzip-compressed file whose first `skip` bytes of content were read before.
    pub(super) fn gzip(file: File, skip: u64, now: Instant) -> io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            dev: meta.dev(),
            ino: meta.ino(),
            born: meta.created().ok(),
            source: Source::Gzip {
                decoder: Box::new(MultiGzDecoder::new(file)),
                skip,
                done: false,
            },
            offset: 0,
            head: Vec::new(),
            partial: Vec::new(),
            skipping: false,
            quiet_polls: 0,
            changed_at: now,
            seen_len: meta.len(),
            linked: meta.nlink() > 0,
        })
    }

    /// Whether this is a plain file (one that may still grow).
    pub(super) fn is_plain(&self) -> bool {
        matches!(self.source, Source::Plain(_))
    }

    /// The content's first bytes as they are now ([`FINGERPRINT_BYTES`] at most), read or
    /// not; for a compressed file, those read.
    pub(super) fn content_head(&self) -> Vec<u8> {
        match &self.source {
            Source::Plain(f) => {
                let mut head = vec![0; FINGERPRINT_BYTES];
                let mut n = 0;
                while n < head.len() {
                    match f.read_at(&mut head[n..], n as u64) {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                head.truncate(n);
                head
            }
            Source::Gzip { .. } => self.head.clone(),
        }
    }

    /// Whether a compressed file has been read to its end.
    pub(super) fn is_done(&self) -> bool {
        matches!(self.source, Source::Gzip { done: true, .. })
    }

    /// Looks at the file through its handle (plain files; a compressed one is taken as it was):
    /// its length, and whether a name still links to it.
    pub(super) fn look(&mut self) -> io::Result<Look> {
        if let Source::Plain(f) = &self.source {
            let meta = f.metadata()?;
            self.seen_len = meta.len();
            self.linked = meta.nlink() > 0;
        }
        Ok(Look { len: self.seen_len })
    }

    /// Whether the file started over since it was last read: shorter than what was read, or
    /// other first bytes. Compressed files never do.
    pub(super) fn restarted(&self, look: Look) -> io::Result<bool> {
        let Source::Plain(f) = &self.source else {
            return Ok(false);
        };
        if look.len < self.offset {
            return Ok(true);
        }
        if self.head.is_empty() {
            return Ok(false);
        }
        let mut now = vec![0; self.head.len()];
        f.read_exact_at(&mut now, 0)?;
        Ok(now != self.head)
    }

    /// Bytes of the line whose end has not been read yet.
    pub(super) fn partial_len(&self) -> usize {
        self.partial.len()
    }

    /// Forgets the unfinished line (its end will not be read).
    pub(super) fn drop_partial(&mut self) {
        self.partial.clear();
        self.skipping = false;
    }

    /// Takes over the unfinished line of `other`, whose content this file continues.
    pub(super) fn take_partial(&mut self, other: &mut Tracked) {
        self.partial = std::mem::take(&mut other.partial);
        self.skipping = other.skipping;
    }

    /// Reads the file again from its start, forgetting the old content.
    pub(super) fn start_over(&mut self) {
        self.offset = 0;
        self.head.clear();
        self.partial.clear();
        self.skipping = false;
    }

    /// Reads on within the budget, delivering complete lines. Returns whether the end of the
    /// content was reached.
    pub(super) fn read(
        &mut self,
        budget: &mut u64,
        on_line: &mut dyn FnMut(&[u8]),
        report: &mut PollReport,
    ) -> io::Result<bool> {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            if *budget == 0 {
                return Ok(match &self.source {
                    Source::Plain(f) => f.metadata()?.len() <= self.offset,
                    Source::Gzip { done, .. } => *done,
                });
            }
            let want = buf
                .len()
                .min(usize::try_from(*budget).unwrap_or(usize::MAX));
            let n = match &mut self.source {
                Source::Plain(f) => match f.read_at(&mut buf[..want], self.offset) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                },
                Source::Gzip {
                    decoder,
                    skip,
                    done,
                } => {
                    if *done {
                        return Ok(true);
                    }
                    // Content read before, from the file this one was compressed from, is
                    // passed over; it costs budget like any read.
                    let take = if *skip > 0 {
                        want.min(usize::try_from(*skip).unwrap_or(usize::MAX))
                    } else {
                        want
                    };
                    let n = match decoder.read(&mut buf[..take]) {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    if n == 0 {
                        *done = true;
                        return Ok(true);
                    }
                    if *skip > 0 {
                        *skip -= n as u64;
                        *budget -= n as u64;
                        report.bytes += n as u64;
                        continue;
                    }
                    n
                }
            };
            if n == 0 {
                return Ok(true);
            }
            let data = &buf[..n];
            if self.head.len() < FINGERPRINT_BYTES
                && usize::try_from(self.offset).is_ok_and(|o| o == self.head.len())
            {
                let take = (FINGERPRINT_BYTES - self.head.len()).min(n);
                self.head.extend_from_slice(&data[..take]);
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
            } else if line_len(&self.partial, piece) > MAX_LINE_BYTES {
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
        // One byte more than the limit may be the `\r` of a line that is exactly as long as
        // the limit; it is decided once the line's end is there.
        if self.partial.len() > MAX_LINE_BYTES + 1 {
            self.partial.clear();
            self.skipping = true;
            report.overlong += 1;
        }
    }

    /// Hands over a last line that never got its newline: the file is done.
    pub(super) fn finish(&mut self, on_line: &mut dyn FnMut(&[u8]), report: &mut PollReport) {
        if !self.partial.is_empty() && !self.skipping {
            if line_len(&self.partial, &[]) > MAX_LINE_BYTES {
                report.overlong += 1;
            } else {
                deliver(&self.partial, on_line);
            }
        }
        self.partial.clear();
    }

    /// Bytes of the file known not to have been read (plain files; a compressed file's
    /// content length is unknown, so its compressed length is counted).
    pub(super) fn unread(&self) -> u64 {
        match &self.source {
            Source::Plain(_) => self.seen_len.saturating_sub(self.offset),
            Source::Gzip { done: true, .. } => 0,
            Source::Gzip { .. } => self.seen_len,
        }
    }
}

/// The length of the line made of `partial` and `piece`, without a final `\r`.
fn line_len(partial: &[u8], piece: &[u8]) -> usize {
    let ends_cr = piece.last().or_else(|| {
        if piece.is_empty() {
            partial.last()
        } else {
            None
        }
    }) == Some(&b'\r');
    partial.len() + piece.len() - usize::from(ends_cr)
}

fn deliver(line: &[u8], on_line: &mut dyn FnMut(&[u8])) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    on_line(line);
}
