//! Real servers for tests and manual runs: a private MariaDB, in-process S3 and restic REST
//! servers, and the Azure and GCS emulators as processes.
//!
//! Each provider starts on a free port in its own temporary directory and removes everything
//! when dropped, so tests can run side by side. With the `containers` feature, the same
//! servers also come as Docker containers ([`containers`]); [`MysqlProvider`] and
//! [`S3Provider`] are what a test needs of either.

#[cfg(feature = "containers")]
pub mod containers;
pub mod emulators;
pub mod mysql;
pub mod rest;
pub mod s3;

/// A MySQL-compatible server to connect to over TCP, however it runs.
pub trait MysqlProvider {
    /// Host name or address.
    fn host(&self) -> &str;
    /// TCP port.
    fn port(&self) -> u16;
    /// A user with all privileges.
    fn user(&self) -> &str;
    /// That user's password (may be empty).
    fn password(&self) -> &str;
}

/// An S3-compatible server with a bucket named `stash`, however it runs.
pub trait S3Provider {
    /// `http://HOST:PORT`, path-style addressing.
    fn endpoint(&self) -> String;
    /// Access key to sign requests with.
    fn access_key(&self) -> &str;
    /// Secret key to sign requests with.
    fn secret_key(&self) -> &str;
}

impl MysqlProvider for MysqlServer {
    fn host(&self) -> &str {
        MysqlServer::host(self)
    }
    fn port(&self) -> u16 {
        MysqlServer::port(self)
    }
    fn user(&self) -> &str {
        MysqlServer::user(self)
    }
    fn password(&self) -> &str {
        MysqlServer::password(self)
    }
}

impl S3Provider for S3Server {
    fn endpoint(&self) -> String {
        S3Server::endpoint(self)
    }
    fn access_key(&self) -> &str {
        S3Server::access_key(self)
    }
    fn secret_key(&self) -> &str {
        S3Server::secret_key(self)
    }
}

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
