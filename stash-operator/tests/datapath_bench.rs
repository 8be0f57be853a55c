//! The data-path benchmark (`bench/datapath/run.sh`): ignored by `cargo test`, run explicitly
//! in release mode. It measures, it does not judge: the table goes to stdout.
//!
//! Environment: `BENCH_ROWS` rows per table (default 250000, 8 tables), `BENCH_ROUNDS` (default
//! 3), `BENCH_RESTORES=0` to measure the backups only. Rounds alternate the order of the measured steps so that warm caches do not favour one.

mod datapath_support;
use datapath_support::target;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stash_operator::commands::backup_mysql::{run_backup, BackupOptions};
use stash_operator::commands::restore_mysql::{run_restore, RestoreOptions};
use stash_operator::datapath::backend::{engine_env, BackendConfig, Provider};
use stash_operator::datapath::loader::LoaderKind;
use stash_operator::datapath::mysql_client::split_args;
use stash_operator::datapath::restic_cli::{CacheMode, ResticCli};
use stash_operator::datapath::RepositoryEngine;
use stash_operator::job_support::flags::EngineKind;
use stash_operator::job_support::select_engine;
use stash_testkit::providers::MysqlServer;

const TABLES: u32 = 8;
const DUMP_ARGS: &str = "--single-transaction --databases shop";
const SERVER_ARGS: &[&str] = &[
    "--innodb-buffer-pool-size=512M",
    "--max-allowed-packet=64M",
    // MariaDB's default, over the testkit's small test setting.
    "--innodb-log-file-size=96M",
];

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The reference database of `datapath.md`: 8 InnoDB tables of BIGINT, INT, VARCHAR, SMALLINT,
/// DECIMAL, DATETIME, TEXT and VARBINARY columns, every value a function of the row number.
fn build_reference(server: &MysqlServer, rows: u32) {
    let mut sql = String::from("CREATE DATABASE shop; USE shop;\n");
    for t in 0..TABLES {
        sql.push_str(&format!(
            "CREATE TABLE orders_{t} (id BIGINT PRIMARY KEY, customer INT NOT NULL, sku VARCHAR(64) NOT NULL,
                qty SMALLINT NOT NULL, price DECIMAL(12,2) NOT NULL, created DATETIME NOT NULL,
                note TEXT, digest VARBINARY(32)) ENGINE=InnoDB;
             INSERT INTO orders_{t} SELECT seq, (seq * 7919 + {t}) % 100000,
                CONCAT('SKU-', LPAD(HEX((seq * 2654435761 + {t}) % 4294967296), 8, '0')),
                seq % 500, ((seq * 31 + {t}) % 1000000) / 100,
                '2020-01-01' + INTERVAL ((seq * 97 + {t}) % 157680000) SECOND,
                SUBSTRING(REPEAT(CONCAT(MD5(seq + {t}), ' it''s \\\\ ; ok '), 4), 1, 40 + (seq % 120)),
                UNHEX(SHA2(CONCAT(seq, '-', {t}), 256))
             FROM seq_1_to_{rows};\n"
        ));
    }
    server.execute(&sql).expect("build reference database");
}

/// restic wrapped in GNU time, appending each run's peak RSS (KiB) to `rss_file`.
fn restic_wrapper(dir: &Path, rss_file: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("restic-rss");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec /usr/bin/time -f '%M' -a -o '{}' restic \"$@\"\n",
            rss_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn max_rss_kib(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

fn reset_own_peak() {
    // "5" resets VmHWM to the current RSS (Linux >= 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn own_peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn dir_size(path: &Path) -> u64 {
    let out = Command::new("du")
        .arg("-sb")
        .arg(path)
        .output()
        .expect("du");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

struct Repo {
    env: BTreeMap<String, String>,
    engine: Box<dyn RepositoryEngine>,
    path: PathBuf,
}

fn repo(dir: &Path, name: &str, restic_program: &Path, kind: EngineKind) -> Repo {
    let path = dir.join(name);
    let _ = std::fs::remove_dir_all(&path);
    open_repo(dir, path, restic_program, kind)
}

/// A new engine on the repository at `path`, as a backup Job makes one: an in-process engine
/// derives the key from the password again when it opens the repository.
fn open_repo(dir: &Path, path: PathBuf, restic_program: &Path, kind: EngineKind) -> Repo {
    let config = BackendConfig {
        provider: Provider::Local,
        bucket: path.display().to_string(),
        endpoint: String::new(),
        region: String::new(),
        prefix: String::new(),
        insecure_tls: false,
        max_connections: 0,
    };
    let secret = BTreeMap::from([("RESTIC_PASSWORD".to_owned(), b"bench".to_vec())]);
    let env = engine_env(&config, &secret, dir).expect("env");
    Repo {
        engine: select_engine(
            kind,
            &env,
            ResticCli::new(restic_program, env.clone(), CacheMode::Disabled),
        )
        .expect("engine"),
        env: env.env,
        path,
    }
}

fn has_program(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A client option file for mydumper/myloader, so the password stays off the command line.
fn myloader_defaults(dir: &Path, server: &MysqlServer) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("my-{}.cnf", server.port()));
    std::fs::write(
        &path,
        format!(
            "[client]\nuser={}\npassword={}\nhost={}\nport={}\n",
            server.user(),
            server.password(),
            server.host(),
            server.port()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn sh(script: &str, env: &BTreeMap<String, String>, password: &str) {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {script}"))
        .envs(env)
        .env("MYSQL_PWD", password)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Default)]
struct Samples(BTreeMap<&'static str, Vec<Duration>>);

impl Samples {
    fn add(&mut self, name: &'static str, d: Duration) {
        eprintln!("  {name}: {:.2}s", d.as_secs_f64());
        self.0.entry(name).or_default().push(d);
    }
    fn min_median(&self, name: &str) -> (f64, f64) {
        let mut v: Vec<f64> = self.0[name].iter().map(Duration::as_secs_f64).collect();
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2])
    }
}

#[test]
#[ignore = "benchmark: run bench/datapath/run.sh"]
fn datapath_benchmark() {
    let rows = env_u32("BENCH_ROWS", 250_000);
    let rounds = env_u32("BENCH_ROUNDS", 3).max(1);
    let restores = env_u32("BENCH_RESTORES", 1) != 0;
    let work = tempfile::Builder::new()
        .prefix("stash-bench-")
        .tempdir()
        .unwrap();
    let rss_stash = work.path().join("rss-stash");
    let rss_ours = work.path().join("rss-ours");
    let restic_stash = restic_wrapper(work.path(), &rss_stash);
    let restic_ours = {
        let dir = work.path().join("ours-bin");
        std::fs::create_dir(&dir).unwrap();
        restic_wrapper(&dir, &rss_ours)
    };

    let source = MysqlServer::start_with_args(SERVER_ARGS).expect("source server");
    let built = timed(|| build_reference(&source, rows));
    let want = source.checksums().unwrap();
    let db = target(&source);
    let conn = db.connection_args().join(" ");
    let dump_file = work.path().join("dump.sql");
    sh(
        &format!("mysqldump {conn} {DUMP_ARGS} > {}", dump_file.display()),
        &BTreeMap::new(),
        source.password(),
    );
    let dump_bytes = std::fs::metadata(&dump_file).unwrap().len();
    println!(
        "reference: {TABLES} tables x {rows} rows, dump {:.1} MB, built in {:.1}s, {rounds} rounds",
        dump_bytes as f64 / 1e6,
        built.as_secs_f64()
    );

    // The peer restore: mydumper's own dump (one file per table), loaded by myloader with two
    // threads, when both are installed (Debian package `mydumper`; optional).
    let mydumper_dir = work.path().join("mydumper-dump");
    let myloader = has_program("mydumper") && has_program("myloader");
    if myloader {
        let defaults = myloader_defaults(work.path(), &source);
        let d = timed(|| {
            let status = Command::new("mydumper")
                .arg(format!("--defaults-file={}", defaults.display()))
                .args(["-B", "shop", "-t", "2", "-o"])
                .arg(&mydumper_dir)
                .status()
                .expect("mydumper");
            assert!(status.success(), "mydumper failed");
        });
        println!("peer: mydumper -t 2 dumped in {:.2}s", d.as_secs_f64());
    } else {
        println!("peer: mydumper/myloader not installed, myloader step left out");
    }

    let backup_opts = BackupOptions {
        mysql_program: "mysql".into(),
        mysqldump_program: "mysqldump".into(),
        mysql_args: split_args(DUMP_ARGS),
        multi_dump_args: Vec::new(),
        hostname: "host-0".into(),
        wait_timeout: Duration::from_secs(5),
        wait_interval: Duration::from_millis(200),
    };
    let restore_opts = RestoreOptions {
        mysql_program: "mysql".into(),
        mysql_args: Vec::new(),
        snapshot: "latest".into(),
        host: Some("host-0".into()),
        loader: LoaderKind::Parallel,
        wait_timeout: Duration::from_secs(5),
        wait_interval: Duration::from_millis(200),
    };

    let mut s = Samples::default();
    let mut own_backup_peak = 0u64;
    let mut own_restore_peak = 0u64;
    let mut stash_repo_size = 0u64;
    let mut ours_repo_size = 0u64;
    let mut ours_added = (0u64, 0u64);
    let mut inproc_added = (0u64, 0u64);
    let mut inproc_backup_peak = 0u64;
    let mut inproc_restore_peak = 0u64;
    let mut inproc_repo_size = 0u64;
    for round in 0..rounds {
        eprintln!("round {}", round + 1);
        let stash = repo(work.path(), "repo-stash", &restic_stash, EngineKind::Restic);
        let ours = repo(work.path(), "repo-ours", &restic_ours, EngineKind::Restic);
        let inproc = repo(
            work.path(),
            "repo-inproc",
            &restic_ours,
            EngineKind::InProcess,
        );
        sh(
            "restic init --repository-version 2 --no-cache",
            &stash.env,
            "",
        );
        let mut backup_steps: Vec<&'static str> = vec![
            "dump alone",
            "dump alone, stdbuf",
            "stash pipeline",
            "ours first+second",
            "in-process first+second",
        ];
        if round % 2 == 1 {
            backup_steps.reverse();
        }
        // `mysqldump > /dev/null`, run through `wrapper` (a program and its arguments) if any.
        let dump_to_null = |wrapper: &[&str]| {
            let mut command = match wrapper.split_first() {
                Some((program, args)) => {
                    let mut c = Command::new(program);
                    c.args(args).arg("mysqldump");
                    c
                }
                None => Command::new("mysqldump"),
            };
            let status = command
                .args(db.connection_args())
                .args(split_args(DUMP_ARGS))
                .env("MYSQL_PWD", source.password())
                .stdout(File::create("/dev/null").unwrap())
                .status()
                .unwrap();
            assert!(status.success());
        };
        for step in backup_steps {
            match step {
                "dump alone" => {
                    s.add("backup: dump alone", timed(|| dump_to_null(&[])));
                }
                "dump alone, stdbuf" => {
                    // The dump with the 1 MiB stdout buffer our engines give it (coreutils'
                    // stdbuf), to show what that buffer alone changes; not the baseline.
                    s.add(
                        "backup: dump alone, 1 MiB stdout buffer",
                        timed(|| dump_to_null(&["stdbuf", "-o1M"])),
                    );
                }
                "stash pipeline" => {
                    let d = timed(|| {
                        sh(
                            &format!(
                                "mysqldump {conn} {DUMP_ARGS} | {} backup --stdin --quiet --json \
                                 --stdin-filename dumpfile.sql --host host-0 --no-cache",
                                restic_stash.display()
                            ),
                            &stash.env,
                            source.password(),
                        )
                    });
                    s.add("backup: stash (mysqldump | restic)", d);
                }
                "in-process first+second" => {
                    inproc.engine.init_if_missing().unwrap();
                    // Each backup with an engine of its own, as each Job has: both pay the
                    // key derivation (scrypt, ~80 ms) that restic in Stash's pipeline pays too.
                    let job = || {
                        open_repo(
                            work.path(),
                            inproc.path.clone(),
                            &restic_ours,
                            EngineKind::InProcess,
                        )
                    };
                    let first_job = job();
                    reset_own_peak();
                    let mut first = None;
                    let d1 = timed(|| {
                        first = Some(run_backup(&*first_job.engine, &db, &backup_opts).unwrap())
                    });
                    s.add("backup: in-process, first", d1);
                    // As for ours: the first round only, before any restore ran here.
                    if round == 0 {
                        inproc_backup_peak = own_peak_kib();
                    }
                    let second_job = job();
                    let mut second = None;
                    let d2 = timed(|| {
                        second = Some(run_backup(&*second_job.engine, &db, &backup_opts).unwrap())
                    });
                    s.add("backup: in-process, second", d2);
                    inproc_added = (
                        first.map_or(0, |r| r.summary.data_added),
                        second.map_or(0, |r| r.summary.data_added),
                    );
                }
                _ => {
                    // Both repositories are initialised untimed (restic's key derivation
                    // calibration costs ~2.5 s here, once per repository).
                    ours.engine.init_if_missing().unwrap();
                    reset_own_peak();
                    let mut first = None;
                    let d1 = timed(|| {
                        first = Some(run_backup(&*ours.engine, &db, &backup_opts).unwrap())
                    });
                    s.add("backup: ours, first", d1);
                    let mut second = None;
                    let d2 = timed(|| {
                        second = Some(run_backup(&*ours.engine, &db, &backup_opts).unwrap())
                    });
                    s.add("backup: ours, second", d2);
                    // Only before the first restore: freed restore buffers stay in this
                    // process's RSS and would be counted against later backups.
                    if round == 0 {
                        own_backup_peak = own_peak_kib();
                    }
                    ours_added = (
                        first.map_or(0, |r| r.summary.data_added),
                        second.map_or(0, |r| r.summary.data_added),
                    );
                }
            }
        }
        stash_repo_size = dir_size(&stash.path);
        ours_repo_size = dir_size(&ours.path);
        inproc_repo_size = dir_size(&inproc.path);

        if !restores {
            continue;
        }
        let mut restore_steps: Vec<&'static str> = vec![
            "plain",
            "stash",
            "ours",
            "ours-single",
            "in-process",
            "in-process-parallel",
        ];
        if myloader {
            restore_steps.push("myloader");
        }
        if round % 2 == 1 {
            restore_steps.reverse();
        }
        for step in restore_steps {
            let fresh = MysqlServer::start_with_args(SERVER_ARGS).expect("fresh server");
            let fresh_db = target(&fresh);
            let fresh_conn = fresh_db.connection_args().join(" ");
            match step {
                "plain" => {
                    let d = timed(|| {
                        sh(
                            &format!("mysql {fresh_conn} < {}", dump_file.display()),
                            &BTreeMap::new(),
                            fresh.password(),
                        )
                    });
                    s.add("restore: plain mysql < file", d);
                }
                "stash" => {
                    let d = timed(|| {
                        sh(
                            &format!(
                                "{} dump --quiet --no-cache latest dumpfile.sql --host host-0 | mysql {fresh_conn}",
                                restic_stash.display()
                            ),
                            &stash.env,
                            fresh.password(),
                        )
                    });
                    s.add("restore: stash (restic dump | mysql)", d);
                }
                "in-process" | "in-process-parallel" => {
                    let (loader, label) = if step == "in-process" {
                        (LoaderKind::Protocol, "restore: in-process, one connection")
                    } else {
                        (LoaderKind::Parallel, "restore: in-process, parallel")
                    };
                    let options = RestoreOptions {
                        loader,
                        ..restore_opts.clone()
                    };
                    // An engine of its own, as a restore Job has (it derives the key again).
                    let job = open_repo(
                        work.path(),
                        inproc.path.clone(),
                        &restic_ours,
                        EngineKind::InProcess,
                    );
                    reset_own_peak();
                    let d = timed(|| {
                        run_restore(&*job.engine, &fresh_db, &options).unwrap();
                    });
                    inproc_restore_peak = inproc_restore_peak.max(own_peak_kib());
                    s.add(label, d);
                }
                "myloader" => {
                    let defaults = myloader_defaults(work.path(), &fresh);
                    let d = timed(|| {
                        let status = Command::new("myloader")
                            .arg(format!("--defaults-file={}", defaults.display()))
                            .args(["-t", "2", "-d"])
                            .arg(&mydumper_dir)
                            .status()
                            .expect("myloader");
                        assert!(status.success(), "myloader failed");
                    });
                    s.add("restore: myloader -t 2 (mydumper's files)", d);
                }
                "ours-single" => {
                    let single = RestoreOptions {
                        loader: LoaderKind::Protocol,
                        ..restore_opts.clone()
                    };
                    let d = timed(|| {
                        run_restore(&*ours.engine, &fresh_db, &single).unwrap();
                    });
                    s.add("restore: ours, one connection", d);
                }
                _ => {
                    reset_own_peak();
                    let d = timed(|| {
                        run_restore(&*ours.engine, &fresh_db, &restore_opts).unwrap();
                    });
                    own_restore_peak = own_restore_peak.max(own_peak_kib());
                    s.add("restore: ours, parallel by table", d);
                }
            }
            assert_eq!(fresh.checksums().unwrap(), want, "{step} restore differs");
        }
    }

    let (dump_min, dump_med) = s.min_median("backup: dump alone");
    let (plain_min, plain_med) = if restores {
        s.min_median("restore: plain mysql < file")
    } else {
        (f64::NAN, f64::NAN)
    };
    println!("\n| step | min s | median s | min ratio | median ratio |");
    println!("|---|---|---|---|---|");
    for name in [
        "backup: dump alone",
        "backup: dump alone, 1 MiB stdout buffer",
        "backup: stash (mysqldump | restic)",
        "backup: ours, first",
        "backup: ours, second",
        "backup: in-process, first",
        "backup: in-process, second",
        "restore: plain mysql < file",
        "restore: stash (restic dump | mysql)",
        "restore: ours, one connection",
        "restore: ours, parallel by table",
        "restore: in-process, one connection",
        "restore: in-process, parallel",
        "restore: myloader -t 2 (mydumper's files)",
    ] {
        if !s.0.contains_key(name) {
            continue;
        }
        let (min, med) = s.min_median(name);
        let (bmin, bmed) = if name.starts_with("backup") {
            (dump_min, dump_med)
        } else {
            (plain_min, plain_med)
        };
        println!(
            "| {name} | {min:.2} | {med:.2} | {:.2}x | {:.2}x |",
            min / bmin,
            med / bmed
        );
    }
    println!("\npeak RSS (MiB): restic in stash pipeline {:.0}; restic under ours {:.0}; our process during a backup (first round) {:.0}, during restore {:.0}",
        max_rss_kib(&rss_stash) as f64 / 1024.0,
        max_rss_kib(&rss_ours) as f64 / 1024.0,
        own_backup_peak as f64 / 1024.0,
        own_restore_peak as f64 / 1024.0);
    println!(
        "repository on disk: stash pipeline {:.1} MB after one backup; ours {:.1} MB after two \
         (data added, uncompressed: {:.1} MB first, {:.3} MB second)",
        stash_repo_size as f64 / 1e6,
        ours_repo_size as f64 / 1e6,
        ours_added.0 as f64 / 1e6,
        ours_added.1 as f64 / 1e6
    );
    println!(
        "in-process engine: peak RSS of this process during a backup (first round) {:.0} MiB, during a restore \
         {:.0} MiB; repository {:.1} MB after two backups (packs written: {:.1} MB first, {:.3} MB second)",
        inproc_backup_peak as f64 / 1024.0,
        inproc_restore_peak as f64 / 1024.0,
        inproc_repo_size as f64 / 1e6,
        inproc_added.0 as f64 / 1e6,
        inproc_added.1 as f64 / 1e6
    );
}
