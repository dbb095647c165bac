//! The log's folder: the rotated files beside the log (`access.log.1`, `access.log-20261206`,
//! `access.log.2.gz`), and what the tailer knows of each file it followed or decided not to
//! read, by identity and first bytes.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;

use super::FINGERPRINT_BYTES;

/// Most files remembered; beyond this the earliest remembered is forgotten.
const MAX_KNOWN: usize = 1024;

/// Most folder entries looked at in one scan.
pub(super) const MAX_SCANNED: usize = 4096;

/// How a rotated file's content is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    /// Not compressed.
    None,
    /// gzip, which the tailer reads.
    Gzip,
    /// Another compressor (xz, bzip2, zstd, …), which it cannot read.
    Other,
}

/// A file beside the log whose name says it is one of its rotated files.
#[derive(Debug, Clone)]
pub(super) struct Sibling {
    pub(super) path: PathBuf,
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// When the file was created, where the file system says: with the inode, it tells a
    /// file from a later one that got the same inode.
    pub(super) born: Option<SystemTime>,
    pub(super) len: u64,
    pub(super) modified: SystemTime,
    pub(super) compression: Compression,
}

impl Sibling {
    /// Its first bytes ([`FINGERPRINT_BYTES`] at most) as content, decompressed for gzip;
    /// `None` for a file that cannot be read as content.
    pub(super) fn head(&self) -> Option<Vec<u8>> {
        let file = File::open(&self.path).ok()?;
        let mut head = vec![0; FINGERPRINT_BYTES];
        let n = match self.compression {
            Compression::None => read_full_at(&file, &mut head).ok()?,
            Compression::Gzip => read_full(&mut MultiGzDecoder::new(file), &mut head).ok()?,
            Compression::Other => return None,
        };
        head.truncate(n);
        Some(head)
    }

    /// The length of a gzip file's content as its trailer says (modulo 4 GiB, of the last
    /// member); `None` when it cannot be read.
    pub(super) fn gzip_size(&self) -> Option<u64> {
        if self.compression != Compression::Gzip || self.len < 18 {
            return None;
        }
        let file = File::open(&self.path).ok()?;
        let mut trailer = [0u8; 4];
        file.read_exact_at(&mut trailer, self.len - 4).ok()?;
        Some(u64::from(u32::from_le_bytes(trailer)))
    }
}

fn read_full_at(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The compression a rotated file's name says.
fn compression_of(name: &str) -> Compression {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "gz" => Compression::Gzip,
        "xz" | "bz2" | "zst" | "lz4" | "lzma" | "Z" | "zip" | "lzo" | "br" | "7z" => {
            Compression::Other
        }
        _ => Compression::None,
    }
}

/// The rotated files beside `log`: regular files whose names are the log's name followed by
/// `.`, `-` or `_` and more. At most [`MAX_SCANNED`] entries are looked at.
pub(super) fn siblings(log: &Path) -> Vec<Sibling> {
    let (Some(dir), Some(base)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.take(MAX_SCANNED).flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(base) else {
            continue;
        };
        if rest.len() < 2 || !rest.starts_with(['.', '-', '_']) {
            continue;
        }
        let path = entry.path();
        // Followed through a symbolic link, as the log itself is.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        out.push(Sibling {
            dev: meta.dev(),
            ino: meta.ino(),
            born: meta.created().ok(),
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            compression: compression_of(name),
            path,
        });
    }
    out
}

/// What the tailer accounted for of a file it no longer follows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    /// When it was created, where the file system says.
    born: Option<SystemTime>,
    /// A fingerprint of its first `head_len` bytes.
    head_hash: u64,
    head_len: usize,
    /// Bytes of its content read, or passed over on purpose; `u64::MAX` for a compressed file
    /// that is done with.
    pub(super) offset: u64,
    /// The file's length when it was remembered (a compressed file of another length is
    /// another file).
    pub(super) len: u64,
}

/// Files the tailer followed and let go, or found and left alone, by device and inode.
#[derive(Debug, Default)]
pub(super) struct Memory {
    files: HashMap<(u64, u64), Known>,
    order: VecDeque<(u64, u64)>,
}

impl Memory {
    /// Remembers a file found in the folder, with its first bytes and how much of it is
    /// accounted for.
    pub(super) fn remember(&mut self, s: &Sibling, head: &[u8], offset: u64) {
        self.remember_file(s.dev, s.ino, s.born, head, offset, s.len);
    }

    /// Remembers a file by identity, with its first bytes, how much of it is accounted for
    /// and its length.
    pub(super) fn remember_file(
        &mut self,
        dev: u64,
        ino: u64,
        born: Option<SystemTime>,
        head: &[u8],
        offset: u64,
        len: u64,
    ) {
        let key = (dev, ino);
        let known = Known {
            born,
            head_hash: fingerprint(head),
            head_len: head.len(),
            offset,
            len,
        };
        if self.files.insert(key, known).is_none() {
            self.order.push_back(key);
            while self.order.len() > MAX_KNOWN {
                if let Some(old) = self.order.pop_front() {
                    self.files.remove(&old);
                }
            }
        }
    }

    /// What is known of the file with this identity (check that it is still the same file).
    pub(super) fn get(&self, dev: u64, ino: u64) -> Option<Known> {
        self.files.get(&(dev, ino)).copied()
    }

    /// Forgets a file (it is followed again).
    pub(super) fn forget(&mut self, dev: u64, ino: u64) {
        if self.files.remove(&(dev, ino)).is_some() {
            self.order.retain(|k| *k != (dev, ino));
        }
    }

    /// A remembered plain file, not among `claimed`, whose content begins as `head` does: the
    /// file a compressed rotated file was made from. An empty beginning matches none.
    pub(super) fn same_content(
        &self,
        head: &[u8],
        claimed: &[(u64, u64)],
    ) -> Option<((u64, u64), Known)> {
        self.order
            .iter()
            .filter(|key| !claimed.contains(key))
            .filter_map(|key| Some((*key, *self.files.get(key)?)))
            .find(|(_, k)| k.offset != u64::MAX && k.matches(head))
    }

    /// Files remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.files.len()
    }
}

impl Known {
    /// Whether the file found as `s`, beginning with `head`, is this one: created at the same
    /// time (where known) and beginning as it did.
    pub(super) fn is(&self, s: &Sibling, head: &[u8]) -> bool {
        let same_birth = match (self.born, s.born) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        same_birth && (self.head_len == 0 || self.matches(head))
    }

    /// Whether a content beginning with `head` is this file's (or a copy of it).
    pub(super) fn matches(&self, head: &[u8]) -> bool {
        self.head_len > 0
            && head.len() >= self.head_len
            && fingerprint(&head[..self.head_len]) == self.head_hash
    }
}

/// Whether two beginnings are of one content: neither is empty and the shorter one begins the
/// longer one.
pub(super) fn same_beginning(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    n > 0 && a[..n] == b[..n]
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_and_compression() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        for name in [
            "access.log",
            "access.log.1",
            "access.log-20261206",
            "access.log.2.gz",
            "access.log.3.xz",
            "access.logger",
            "access.log.",
            "other.log.1",
        ] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("access.log.d")).unwrap();
        let mut found: Vec<(String, Compression)> = siblings(&log)
            .into_iter()
            .map(|s| {
                (
                    s.path.file_name().unwrap().to_string_lossy().into_owned(),
                    s.compression,
                )
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            found,
            [
                ("access.log-20261206".to_string(), Compression::None),
                ("access.log.1".to_string(), Compression::None),
                ("access.log.2.gz".to_string(), Compression::Gzip),
                ("access.log.3.xz".to_string(), Compression::Other),
            ]
        );
    }

    #[test]
    fn memory_matches_by_beginning_and_stays_bounded() {
        let mut m = Memory::default();
        m.remember_file(1, 1, None, b"2026-12-06 GET /a", 40, 40);
        assert!(m.same_content(b"2026-12-06 GET /a and more", &[]).is_some());
        assert!(m
            .same_content(b"2026-12-06 GET /a and more", &[(1, 1)])
            .is_none());
        assert!(m.same_content(b"2026-12-06 GET /b", &[]).is_none());
        assert!(
            m.same_content(b"2026", &[]).is_none(),
            "shorter than what is known"
        );
        m.remember_file(1, 2, None, b"", 0, 0);
        assert!(m.same_content(b"anything", &[]).is_none());
        for i in 0..2000 {
            m.remember_file(2, i, None, b"x", 1, 1);
        }
        assert_eq!(m.len(), MAX_KNOWN);
        assert!(m.get(1, 1).is_none(), "the earliest is forgotten first");
        assert!(same_beginning(b"abc", b"abcdef") && !same_beginning(b"", b"a"));
    }
}
