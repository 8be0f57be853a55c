//! One in-process backup of a database into a local repository, in a process of its own, as a
//! backup Job runs it (`run_backup`: readiness probe, lock settling, the repository opened with
//! its key derivation, the dump streamed in), and prints the wall time, this process's CPU time
//! and peak RSS:
//! `MYSQL_PWD=… RESTIC_PASSWORD=… backup_mysql HOST PORT USER REPO_DIR [DUMP_ARGS…]`.
//! The repository is created when missing. With `STASH_TIMELINE=1` the phases go to stderr.
//! It runs under the `stash` binary's allocator and settings (jemalloc, one arena, immediate
//! purging: `.cargo/config.toml`); with glibc's malloc instead, four alternated rounds gave the
//! same wall times and peak RSS within the noise (first backups 3.26-3.58 s against 3.33-3.67 s).

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::BTreeMap;
use std::time::Duration;

use stash_operator::commands::backup_mysql::{run_backup, BackupOptions};
use stash_operator::datapath::backend::{engine_env, BackendConfig, Provider};
use stash_operator::datapath::mysql_client::DbTarget;
use stash_operator::datapath::restic_cli::{CacheMode, ResticCli};
use stash_operator::job_support::flags::EngineKind;
use stash_operator::job_support::select_engine;

fn status_field(name: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        .unwrap_or_default()
}

/// User and system CPU seconds of this process (all its threads, not its children).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th of them, in clock ticks (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let started = std::time::Instant::now();
    stash_repo::timeline::mark("process start");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let target = DbTarget {
        host: arg(0, "127.0.0.1"),
        port: arg(1, "3306").parse()?,
        user: arg(2, "root"),
        password: std::env::var("MYSQL_PWD").unwrap_or_default(),
        ssl_ca: None,
    };
    let repo_dir = arg(3, "repo");
    let dump_args: Vec<String> = if args.len() > 4 {
        args[4..].to_vec()
    } else {
        vec!["--all-databases".into()]
    };
    let scratch = tempfile::tempdir()?;
    let config = BackendConfig {
        provider: Provider::Local,
        bucket: repo_dir,
        endpoint: String::new(),
        region: String::new(),
        prefix: String::new(),
        insecure_tls: false,
        max_connections: 0,
    };
    let password = std::env::var("RESTIC_PASSWORD").unwrap_or_default();
    let secret = BTreeMap::from([("RESTIC_PASSWORD".to_owned(), password.into_bytes())]);
    let env = engine_env(&config, &secret, scratch.path())?;
    let engine = select_engine(
        EngineKind::InProcess,
        &env,
        ResticCli::new("restic", env.clone(), CacheMode::Disabled),
    )?;
    let options = BackupOptions {
        mysql_program: "mysql".into(),
        mysqldump_program: "mysqldump".into(),
        mysql_args: dump_args,
        multi_dump_args: Vec::new(),
        hostname: "host-0".into(),
        wait_timeout: Duration::from_secs(5),
        wait_interval: Duration::from_millis(200),
    };
    let report = run_backup(&*engine, &target, &options)?;
    println!(
        "{} bytes, {} added, in {:.2}s; CPU {:.2}s; peak RSS {}",
        report.summary.total_bytes_processed,
        report.summary.data_added,
        started.elapsed().as_secs_f64(),
        own_cpu(),
        status_field("VmHWM:")
    );
    Ok(())
}
