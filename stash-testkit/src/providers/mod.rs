//! Real servers for tests and manual runs: a private MariaDB, and in-process S3 and restic
//! REST servers.
//!
//! Each provider starts on a free port in its own temporary directory and removes everything
//! when dropped, so tests can run side by side.

pub mod mysql;
pub mod rest;
pub mod s3;

pub use mysql::{MysqlServer, MysqlServerError};
pub use rest::{RestServer, RestServerError};
pub use s3::{S3Server, S3ServerError};

use std::net::{Ipv4Addr, TcpListener};

/// Asks the kernel for a port that is free right now on 127.0.0.1.
///
/// The port is released before it is returned, so a caller must be ready to retry if another
/// process takes it first.
pub(crate) fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Hex string of `bytes` random bytes from the operating system, for passwords and keys.
pub(crate) fn random_hex(bytes: usize) -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}
