//! A MariaDB that runs as a pod behind a Service, the way KubeDB and most charts run it: the
//! pod's container initialises a data directory and runs `mariadbd` in the foreground, the
//! Service selects the pod, and the AppBinding names the Service in `clientConfig.service`.
//! On the testkit the pod is a local process on a free port of 127.0.0.1 (the pod IP there),
//! so backups reach it through the Service's Endpoints. The password only travels in a Secret.

use serde_json::{json, Value};

use crate::datapath::mysql_client::DbTarget;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The container's script: install, write the init file (user and seed) from the env, run.
/// `printf` is a shell builtin, so the password never becomes a process argument.
const SCRIPT: &str = r#"set -e
db="$HOME/mariadb"
mkdir -p "$db/data" "$db/tmp"
mariadb-install-db --no-defaults --datadir="$db/data" --tmpdir="$db/tmp" --innodb-log-file-size=8M \
  --auth-root-authentication-method=normal --skip-test-db --user=root >"$db/install.log" 2>&1 \
  || { cat "$db/install.log" >&2; exit 1; }
{
  printf "CREATE USER '%s'@'%%' IDENTIFIED BY '%s';\n" "$MARIADB_USER" "$MARIADB_PASSWORD"
  printf "GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%' WITH GRANT OPTION;\n" "$MARIADB_USER"
  printf '%s\n' "$MARIADB_INIT_SQL"
} >"$db/init.sql"
exec /usr/sbin/mariadbd --no-defaults --datadir="$db/data" --socket="/tmp/mariadb-$MARIADB_PORT.sock" --tmpdir="$db/tmp" \
  --port="$MARIADB_PORT" --bind-address=127.0.0.1 --user=root --skip-log-bin --skip-name-resolve \
  --innodb-log-file-size=8M --init-file="$db/init.sql"
"#;

/// The root client inside the database pod (for exec hooks, whose environment is the pod's).
/// The socket is short-named: a unix socket path may not exceed 107 bytes.
pub const ROOT_CLIENT: &str =
    r#"mariadb --no-defaults -uroot --socket="/tmp/mariadb-$MARIADB_PORT.sock""#;

/// A MariaDB pod, its Service, Secret and AppBinding.
#[derive(Clone)]
pub struct DatabasePod {
    /// Name of the Service, AppBinding, and prefix of the pod and Secret.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The container port (on 127.0.0.1 in the testkit).
    pub port: u16,
    /// User created at start.
    pub user: String,
    password: String,
}

impl std::fmt::Debug for DatabasePod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabasePod")
            .field("name", &self.name)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl DatabasePod {
    /// A database named `name` on a free local port with a random password.
    pub fn new(name: &str, namespace: &str) -> Result<DatabasePod, BoxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut bytes = [0u8; 12];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
        let password = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(DatabasePod {
            name: name.into(),
            namespace: namespace.into(),
            port,
            user: "stash".into(),
            password,
        })
    }

    /// Secret `<name>-auth`, Pod `<name>-0`, Service `<name>` (port 3306 → the container's
    /// `mysql` port) and AppBinding `<name>` naming the Service; `init_sql` runs at first start.
    pub fn objects(&self, init_sql: &str) -> Vec<Value> {
        let (name, ns) = (&self.name, &self.namespace);
        let secret = format!("{name}-auth");
        vec![
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret, "namespace": ns}, "type": "Opaque",
                   "stringData": {"username": self.user, "password": self.password}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{name}-0"), "namespace": ns, "labels": {"app.kubernetes.io/instance": name}},
            "spec": {"containers": [{
                "name": "mariadb", "image": "mariadb:11.3", "command": ["sh", "-c", SCRIPT],
                "ports": [{"name": "mysql", "containerPort": self.port}],
                "env": [
                    {"name": "MARIADB_PORT", "value": self.port.to_string()},
                    {"name": "MARIADB_USER", "valueFrom": {"secretKeyRef": {"name": secret, "key": "username"}}},
                    {"name": "MARIADB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}},
                    {"name": "MARIADB_INIT_SQL", "value": init_sql},
                ]}]}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                   "spec": {"selector": {"app.kubernetes.io/instance": name},
                            "ports": [{"name": "mysql", "port": 3306, "targetPort": "mysql"}]}}),
            json!({"apiVersion": "appcatalog.appscode.com/v1alpha1", "kind": "AppBinding",
                   "metadata": {"name": name, "namespace": ns},
                   "spec": {"type": "kubedb.com/mysql", "version": "10.11",
                            "clientConfig": {"service": {"name": name, "port": 3306, "scheme": "mysql"}},
                            "secret": {"name": secret}}}),
        ]
    }

    /// How to reach it from this process (the pod listens on 127.0.0.1 in the testkit).
    pub fn target(&self) -> DbTarget {
        DbTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            user: self.user.clone(),
            password: self.password.clone(),
            ssl_ca: None,
        }
    }

    /// Waits until the server answers (the seed has run by then: the init file runs first).
    pub fn wait_ready(&self, limit: std::time::Duration) -> Result<(), BoxError> {
        let started = std::time::Instant::now();
        loop {
            match crate::datapath::loader::connect(&self.target()) {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() > limit => {
                    return Err(format!("database pod {} not ready: {e}", self.name).into())
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(200)),
            }
        }
    }

    /// Rows of a query, each column as text (NULL as empty).
    pub fn query(&self, sql: &str) -> Result<Vec<Vec<String>>, BoxError> {
        use mysql::prelude::Queryable;
        let mut conn = crate::datapath::loader::connect(&self.target())?;
        let rows: Vec<mysql::Row> = conn.query(sql)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| match row.as_ref(i) {
                        None | Some(mysql::Value::NULL) => String::new(),
                        Some(mysql::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                        Some(other) => other.as_sql(true),
                    })
                    .collect()
            })
            .collect())
    }

    /// `CHECKSUM TABLE` of every user table, as `(schema.table, checksum)` sorted by name
    /// (the shape of `MysqlServer::checksums`).
    pub fn checksums(&self) -> Result<Vec<(String, String)>, BoxError> {
        let tables = self.query(
            "SELECT CONCAT('`', table_schema, '`.`', table_name, '`') FROM information_schema.tables \
             WHERE table_type = 'BASE TABLE' AND table_schema NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys') ORDER BY 1",
        )?;
        let names: Vec<String> = tables
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .collect();
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut sums: Vec<(String, String)> = self
            .query(&format!("CHECKSUM TABLE {}", names.join(", ")))?
            .into_iter()
            .filter_map(|r| Some((r.first()?.clone(), r.get(1)?.clone())))
            .collect();
        sums.sort();
        Ok(sums)
    }
}
