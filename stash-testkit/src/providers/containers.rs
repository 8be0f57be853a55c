//! MySQL, MariaDB and MinIO in Docker containers (testcontainers), for machines with a Docker
//! engine. They implement [`MysqlProvider`] and [`S3Provider`] like the process providers, so
//! a test written against the traits runs on either.
//!
//! Images are testcontainers-modules' (`mysql:8.1`, `mariadb:11.3`, MinIO). The engine is
//! reached through `DOCKER_HOST` or `/var/run/docker.sock`, without TLS.

use super::{MysqlProvider, S3Provider};
use testcontainers_modules::mariadb::Mariadb;
use testcontainers_modules::minio::MinIO;
use testcontainers_modules::mysql::Mysql;
use testcontainers_modules::testcontainers::core::ExecCommand;
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{Container, ImageExt, TestcontainersError};

/// Errors from starting or using a container provider.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The Docker engine refused or failed a request (no engine, image pull, start).
    #[error("docker: {0}")]
    Docker(#[from] TestcontainersError),
    /// Random credentials could not be made.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A setup command in the container failed.
    #[error("{what} failed in the container (exit code {code:?}): {output}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// The command's exit code.
        code: Option<i64>,
        /// Its standard error.
        output: String,
    },
}

/// Whether a Docker engine answers at `DOCKER_HOST` (unix or tcp) or the default socket.
/// Tests call this to skip, saying so, where there is none.
pub fn docker_available() -> bool {
    use std::time::Duration;
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    if let Some(addr) = host.strip_prefix("tcp://") {
        use std::net::ToSocketAddrs;
        return addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| {
                std::net::TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok()
            });
    }
    let socket = host
        .strip_prefix("unix://")
        .unwrap_or("/var/run/docker.sock");
    std::os::unix::net::UnixStream::connect(socket).is_ok()
}

/// A MySQL-compatible server in a container (MySQL 8.1 or MariaDB 11.3), removed on drop.
pub struct MysqlContainer {
    container: ContainerKind,
    host: String,
    port: u16,
}

enum ContainerKind {
    Mysql(Container<Mysql>),
    Mariadb(Container<Mariadb>),
}

impl std::fmt::Debug for MysqlContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = match &self.container {
            ContainerKind::Mysql(c) => c.id(),
            ContainerKind::Mariadb(c) => c.id(),
        };
        f.debug_struct("MysqlContainer")
            .field("id", &id)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

impl MysqlContainer {
    /// Starts `mysql:8.1` (user `root`, empty password, database `test`) and waits until it
    /// accepts connections.
    pub fn start_mysql() -> Result<Self, ContainerError> {
        let c = Mysql::default().start()?;
        let (host, port) = (c.get_host()?.to_string(), c.get_host_port_ipv4(3306)?);
        Ok(MysqlContainer {
            container: ContainerKind::Mysql(c),
            host,
            port,
        })
    }

    /// Starts `mariadb:11.3` (user `root`, empty password, database `test`).
    pub fn start_mariadb() -> Result<Self, ContainerError> {
        let c = Mariadb::default().start()?;
        let (host, port) = (c.get_host()?.to_string(), c.get_host_port_ipv4(3306)?);
        Ok(MysqlContainer {
            container: ContainerKind::Mariadb(c),
            host,
            port,
        })
    }
}

impl MysqlProvider for MysqlContainer {
    fn host(&self) -> &str {
        &self.host
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn user(&self) -> &str {
        "root"
    }
    fn password(&self) -> &str {
        ""
    }
}

/// MinIO in a container with random credentials and one empty bucket, `stash` (as
/// [`super::S3Server`] has), removed on drop.
pub struct MinioContainer {
    container: Container<MinIO>,
    endpoint: String,
    access_key: String,
    secret_key: String,
}

impl std::fmt::Debug for MinioContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key stays out of debug output.
        f.debug_struct("MinioContainer")
            .field("id", &self.container.id())
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl MinioContainer {
    /// Starts MinIO and creates the bucket `stash` with the image's own `mc` client.
    pub fn start() -> Result<Self, ContainerError> {
        let access_key = super::random_hex(10)?;
        let secret_key = super::random_hex(20)?;
        let container = MinIO::default()
            .with_env_var("MINIO_ROOT_USER", &access_key)
            .with_env_var("MINIO_ROOT_PASSWORD", &secret_key)
            .start()?;
        let endpoint = format!(
            "http://{}:{}",
            container.get_host()?,
            container.get_host_port_ipv4(9000)?
        );
        // The credentials reach mc through the environment of the exec, not its arguments.
        let mut mb = container.exec(
            ExecCommand::new([
                "sh",
                "-c",
                "MC_HOST_local=\"http://$MINIO_ROOT_USER:$MINIO_ROOT_PASSWORD@127.0.0.1:9000\" \
                 mc mb --ignore-existing local/stash",
            ])
            .with_cmd_ready_condition(
                testcontainers_modules::testcontainers::core::CmdWaitFor::exit(),
            ),
        )?;
        let code = mb.exit_code()?;
        if code != Some(0) {
            let output = String::from_utf8_lossy(&mb.stderr_to_vec()?).into_owned();
            return Err(ContainerError::Setup {
                what: "creating the bucket",
                code,
                output,
            });
        }
        Ok(MinioContainer {
            container,
            endpoint,
            access_key,
            secret_key,
        })
    }
}

impl S3Provider for MinioContainer {
    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }
    fn access_key(&self) -> &str {
        &self.access_key
    }
    fn secret_key(&self) -> &str {
        &self.secret_key
    }
}
