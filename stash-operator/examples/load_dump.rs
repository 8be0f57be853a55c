//! Loads a dump into a database with one of the restore's loaders and prints the time and this
//! process's peak RSS: `MYSQL_PWD=… load_dump HOST PORT USER LOADER < dump.sql` (`LOADER`:
//! protocol, parallel or client), or, with `RESTIC_PASSWORD=…` and a fifth argument, from
//! `/dumpfile.sql` of the latest snapshot in that local repository, as `restore-mysql` does. A
//! tool for profiling the loader with and without the repository in front of it.

use stash_operator::datapath::loader::{load_with_client, load_with_protocol, LoaderKind};
use stash_operator::datapath::mysql_client::DbTarget;
use stash_operator::datapath::parallel_loader::load_by_table;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let target = DbTarget {
        host: arg(0, "127.0.0.1"),
        port: arg(1, "3306").parse()?,
        user: arg(2, "root"),
        password: std::env::var("MYSQL_PWD").unwrap_or_default(),
        ssl_ca: None,
    };
    let loader: LoaderKind = arg(3, "protocol").parse()?;
    let stdin: Box<dyn std::io::Read + Send> = match args.get(4) {
        Some(dir) => {
            let password = std::env::var("RESTIC_PASSWORD").unwrap_or_default();
            let backend = std::sync::Arc::new(stash_repo::LocalBackend::new(dir));
            let repo = stash_repo::Repository::open(backend, password.as_bytes())?;
            Box::new(stash_repo::open_file(
                &repo,
                "latest",
                None,
                "/dumpfile.sql",
            )?)
        }
        None => Box::new(std::io::stdin()),
    };
    let started = std::time::Instant::now();
    let stats = match loader {
        LoaderKind::Protocol => load_with_protocol(stdin, &target)?,
        LoaderKind::Parallel => load_by_table(stdin, &target, 2)?,
        LoaderKind::Client => load_with_client(stdin, &target, "mysql", &[])?,
    };
    println!(
        "{stats:?} in {:.2}s; peak RSS {}",
        started.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmHWM"))
            .unwrap_or_default()
    );
    Ok(())
}
