//! A real filesystem of fixed size for a test: a `tmpfs` mounted with `size=` and `nr_inodes=`
//! on a fresh temporary directory (as root), unmounted when the guard is dropped.
//!
//! ```text
//! let fs = Tmpfs::mount("8m", 200);
//! std::fs::write(fs.path().join("a"), b"…")?;
//! ```

use std::path::Path;
use std::process::Command;

use tempfile::TempDir;

/// A mounted tmpfs, unmounted (lazily, so an open file cannot keep it) when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`: `8m`, `512k`) with `inodes` inodes.
    ///
    /// # Panics
    /// When not running as root, or `mount` fails (the message says why).
    pub fn mount(size: &str, inodes: u32) -> Tmpfs {
        assert!(
            crate::is_root(),
            "mounting a tmpfs needs root: run the tests as root (scripts/test.sh does)"
        );
        let dir = tempfile::Builder::new()
            .prefix("stackmedic-tmpfs-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size},nr_inodes={inodes},mode=0755"))
            .arg("stackmedic-test")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "mount -t tmpfs on {} failed: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(self.dir.path())
            .output();
    }
}
