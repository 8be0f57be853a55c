//! `stash-testkit serve`: runs the fake API server on TCP and writes a kubeconfig for it.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use stash_testkit::FakeApiServer;

#[derive(Parser)]
#[command(
    name = "stash-testkit",
    about = "A fake Kubernetes API server with controllers and a kubelet"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the fake API server until interrupted.
    Serve {
        /// TCP port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// Where to write the kubeconfig for this server.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Also run the controller-manager and the kubelet.
        #[arg(long)]
        controllers: bool,
        /// Map a container image to a local command: IMAGE=COMMAND (split on whitespace).
        #[arg(long = "exec", value_name = "IMAGE=COMMAND")]
        exec: Vec<String>,
    },
    /// Start a private MariaDB; print its connection parameters as one JSON line; stop it at
    /// end of input or on a line `quit`.
    Mysql,
    /// Start the embedded S3 server; print endpoint and keys as JSON; stop as `mysql` does.
    S3,
    /// Start the restic REST server; print URL and credentials as JSON; stop as `mysql` does.
    Rest,
}

/// Runs a provider's command-line entry point off the async runtime (they block on stdin).
async fn provider<E: std::fmt::Display + Send + 'static>(
    name: &'static str,
    run: fn(std::io::StdinLock<'static>, std::io::Stdout) -> Result<(), E>,
) -> std::process::ExitCode {
    let result =
        tokio::task::spawn_blocking(move || run(std::io::stdin().lock(), std::io::stdout())).await;
    match result {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("stash-testkit {name}: {e}");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("stash-testkit {name}: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (port, kubeconfig, controllers, exec) = match cli.command {
        Command::Serve {
            port,
            kubeconfig,
            controllers,
            exec,
        } => (port, kubeconfig, controllers, exec),
        Command::Mysql => return provider("mysql", stash_testkit::providers::mysql::run_cli).await,
        Command::S3 => return provider("s3", stash_testkit::providers::s3::run_cli).await,
        Command::Rest => return provider("rest", stash_testkit::providers::rest::run_cli).await,
    };
    let mut builder = FakeApiServer::builder()
        .tcp(port)
        .kubeconfig_path(&kubeconfig);
    if controllers {
        builder = builder.with_controllers();
    }
    for mapping in exec {
        let Some((image, command)) = mapping.split_once('=') else {
            eprintln!("stash-testkit: --exec expects IMAGE=COMMAND, got {mapping:?}");
            return std::process::ExitCode::from(2);
        };
        let argv: Vec<String> = command.split_whitespace().map(String::from).collect();
        if argv.is_empty() {
            eprintln!("stash-testkit: --exec {image}= needs a command");
            return std::process::ExitCode::from(2);
        }
        builder = builder.exec(image, argv);
    }
    let server = match builder.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stash-testkit: cannot start: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    println!(
        "stash-testkit: serving on {} (kubeconfig {})",
        server.url().unwrap_or_default(),
        kubeconfig.display()
    );
    wait_for_signal().await;
    drop(server);
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
