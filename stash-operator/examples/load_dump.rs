//! Loads a dump from stdin into a database with one of the restore's loaders and prints the
//! time and this process's peak RSS: `MYSQL_PWD=… load_dump HOST PORT USER LOADER < dump.sql`
//! (`LOADER`: protocol, parallel or client). A tool for profiling the loader on its own,
//! without a repository in front of it.

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
    let stdin = std::io::stdin();
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
