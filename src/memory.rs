//! How the process asks glibc's allocator for memory.
//!
//! glibc gives each thread that allocates while the others hold their arena
//! an arena of its own, up to eight per core, and an arena keeps what it
//! once held. A signed send allocates on three kinds of thread: the event
//! loop, the sender's builder threads (which build and sign each message;
//! they were tokio's blocking pool, whose threads come and go, when this
//! was measured) and, on SQLite, one thread per connection.
//! Over a million-subscriber send each new thread took a fresh arena and
//! the process grew with the list: 76 MB at 1,000,000 against 32 MB at
//! 2,000 (`benches/README.md`), all of it free memory held by arenas;
//! with two arenas it stayed flat. Two, not one, so the signing threads
//! do not queue for the event loop's arena.

/// Caps glibc's malloc arenas at two, unless the operator chose a number
/// with `MALLOC_ARENA_MAX` (glibc reads that itself). Call it first in
/// `main`, before any thread starts. Nothing on other C libraries.
pub fn limit_allocator_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator; called
        // before any other thread exists, nothing allocates concurrently.
        // Its result (0 when refused) changes nothing we could act on.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
