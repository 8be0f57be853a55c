//! Phase timestamps of a backup, for finding where its wall time goes: with `STASH_TIMELINE`
//! set in the environment, each [`mark`] writes one line to stderr, milliseconds since the
//! first mark of the process and the thread's name. Unset, a mark costs one atomic load.

use std::sync::OnceLock;
use std::time::Instant;

/// The environment variable that turns the marks on.
pub const ENV: &str = "STASH_TIMELINE";

fn start() -> Option<&'static Instant> {
    static START: OnceLock<Option<Instant>> = OnceLock::new();
    START
        .get_or_init(|| std::env::var_os(ENV).map(|_| Instant::now()))
        .as_ref()
}

/// Notes that `phase` was reached (nothing unless `STASH_TIMELINE` is set).
pub fn mark(phase: &str) {
    if let Some(start) = start() {
        let thread = std::thread::current();
        eprintln!(
            "[timeline] {:>8.1} ms  {:<12} {phase}",
            start.elapsed().as_secs_f64() * 1e3,
            thread.name().unwrap_or("-"),
        );
    }
}
