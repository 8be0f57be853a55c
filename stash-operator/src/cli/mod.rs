//! User-facing commands: `render` and `crds` work offline, `trigger` against the cluster.

pub mod crds;
pub mod render;
pub mod trigger;

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout. A reader that went away (`stash crds | head -1`) is no error: the
/// rest of the output is simply not wanted.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
