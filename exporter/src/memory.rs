//! How the process's memory is held by glibc's allocator.
//!
//! With its defaults, glibc gives each thread that allocates an arena of its own and keeps what
//! is freed in it: with ten thousand probes the probes' thread, the HTTP workers and the
//! blocking pool each kept megabytes of free but resident memory, a third of the process
//! (`docs/benchmarks.md`). One arena lets every thread use what another freed, and buffers of a
//! megabyte or more (a scrape's text) are mapped for their use and returned to the kernel when
//! freed.

/// Tunes the allocator as the module docs say, unless the environment tunes it
/// (`MALLOC_ARENA_MAX`, `GLIBC_TUNABLES`). Called first in `main`, before any thread starts.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some()
            || std::env::var_os("GLIBC_TUNABLES").is_some()
        {
            return;
        }
        const MIB: libc::c_int = 1 << 20;
        // SAFETY: mallopt only sets parameters of the allocator, has no memory-safety
        // preconditions, and is called before any other thread of the process exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MIB);
            libc::mallopt(libc::M_TRIM_THRESHOLD, MIB);
        }
    }
}
