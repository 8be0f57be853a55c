//! Cloud storage emulators as real processes: Azurite (Microsoft's Azure Storage emulator,
//! npm) and gcp-storage-emulator (PyPI). `scripts/setup.sh` installs both under
//! `$STASH_EMULATORS` (default `~/.cache/stash-rs/emulators`); where one is missing or does not
//! start, [`Emulator::azurite`] and [`Emulator::gcs`] say `SKIPPED: ...` on stderr and give
//! `None`, so a test can return early.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, in Azurite's documentation).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running emulator, killed when dropped. Storage is in memory.
#[derive(Debug)]
pub struct Emulator {
    child: Child,
    port: u16,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where `scripts/setup.sh` installs the emulators.
pub fn emulators_dir() -> PathBuf {
    match std::env::var_os("STASH_EMULATORS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/stash-rs/emulators"),
    }
}

impl Emulator {
    /// Azurite's blob service on a free port.
    pub fn azurite() -> Option<Emulator> {
        Self::start(
            "azurite",
            &emulators_dir().join("node/node_modules/.bin/azurite-blob"),
            &[
                "--silent",
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "{port}",
            ],
        )
    }

    /// gcp-storage-emulator on a free port.
    pub fn gcs() -> Option<Emulator> {
        Self::start(
            "gcp-storage-emulator",
            &emulators_dir().join("venv/bin/gcp-storage-emulator"),
            &[
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                "{port}",
                "--in-memory",
            ],
        )
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Azurite's blob service URL for the development account (path-style).
    pub fn azure_blob_endpoint(&self) -> String {
        format!("{}/{AZURITE_ACCOUNT}", self.endpoint())
    }

    fn start(name: &str, program: &Path, args: &[&str]) -> Option<Emulator> {
        if !program.exists() {
            eprintln!(
                "SKIPPED: {name} is not installed at {} (run scripts/setup.sh)",
                program.display()
            );
            return None;
        }
        let port = match super::free_port() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("SKIPPED: {name}: no free port: {e}");
                return None;
            }
        };
        let child = Command::new(program)
            .args(args.iter().map(|a| a.replace("{port}", &port.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let emulator = match child {
            Ok(child) => Emulator { child, port },
            Err(e) => {
                eprintln!("SKIPPED: {name} did not start: {e}");
                return None;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(emulator);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("SKIPPED: {name} did not listen on port {port} within 30 s");
        None
    }
}
