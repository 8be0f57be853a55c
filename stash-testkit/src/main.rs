//! `stash-testkit serve`: runs the fake API server on TCP and writes a kubeconfig for it.
//! `stash-testkit kubelet`: the testkit's kubelet as a node agent for any API server.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use std::collections::HashMap;
use std::time::Duration;

use clap::{Parser, Subcommand};
use stash_testkit::controllers::{Kubelet, LogSink, NodeClock};
use stash_testkit::{ControllerSet, FakeApiServer, KubeletConfig};

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
        /// With --controllers, leave pods to a node agent (`stash-testkit kubelet`).
        #[arg(long, requires = "controllers")]
        no_kubelet: bool,
        /// Map a container image to a local command: IMAGE=COMMAND (split on whitespace).
        #[arg(long = "exec", value_name = "IMAGE=COMMAND")]
        exec: Vec<String>,
    },
    /// Run the kubelet as a node agent against any API server, real or fake: register a Node,
    /// bind pods that have no nodeName to it, run them as local processes, report their status.
    Kubelet {
        /// Kubeconfig of the API server; also handed to the pods as KUBECONFIG.
        #[arg(long)]
        kubeconfig: PathBuf,
        /// Map a container image to a local command: IMAGE=COMMAND (split on whitespace).
        #[arg(long = "exec", value_name = "IMAGE=COMMAND")]
        exec: Vec<String>,
        /// Node name.
        #[arg(long, default_value = "testkit-node")]
        node_name: String,
        /// Directory for pod sandboxes, volumes and container logs (default: a temporary one).
        #[arg(long)]
        root: Option<PathBuf>,
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
    let (port, kubeconfig, controllers, no_kubelet, exec) = match cli.command {
        Command::Kubelet {
            kubeconfig,
            exec,
            node_name,
            root,
        } => return kubelet(kubeconfig, exec, node_name, root).await,
        Command::Serve {
            port,
            kubeconfig,
            controllers,
            no_kubelet,
            exec,
        } => (port, kubeconfig, controllers, no_kubelet, exec),
        Command::Mysql => return provider("mysql", stash_testkit::providers::mysql::run_cli).await,
        Command::S3 => return provider("s3", stash_testkit::providers::s3::run_cli).await,
        Command::Rest => return provider("rest", stash_testkit::providers::rest::run_cli).await,
    };
    let mut builder = FakeApiServer::builder()
        .tcp(port)
        .kubeconfig_path(&kubeconfig);
    if controllers {
        builder = builder.controllers(ControllerSet {
            kubelet: !no_kubelet,
            ..ControllerSet::all()
        });
    }
    let exec = match parse_exec(&exec) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("stash-testkit: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    for (image, argv) in exec {
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

/// Parses `--exec IMAGE=COMMAND` mappings.
fn parse_exec(mappings: &[String]) -> Result<HashMap<String, Vec<String>>, String> {
    let mut out = HashMap::new();
    for mapping in mappings {
        let Some((image, command)) = mapping.split_once('=') else {
            return Err(format!("--exec expects IMAGE=COMMAND, got {mapping:?}"));
        };
        let argv: Vec<String> = command.split_whitespace().map(String::from).collect();
        if argv.is_empty() {
            return Err(format!("--exec {image}= needs a command"));
        }
        out.insert(image.to_string(), argv);
    }
    Ok(out)
}

async fn kubelet(
    kubeconfig: PathBuf,
    exec: Vec<String>,
    node_name: String,
    root: Option<PathBuf>,
) -> std::process::ExitCode {
    let fail = |msg: String| {
        eprintln!("stash-testkit kubelet: {msg}");
        std::process::ExitCode::from(1)
    };
    let exec = match parse_exec(&exec) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("stash-testkit kubelet: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Pods run in their own working directories; hand them an absolute path.
    let kubeconfig = match std::path::absolute(&kubeconfig) {
        Ok(p) => p,
        Err(e) => return fail(format!("{}: {e}", kubeconfig.display())),
    };
    let client = match client_from(&kubeconfig).await {
        Ok(c) => c,
        Err(e) => return fail(format!("{}: {e}", kubeconfig.display())),
    };
    let root = match root {
        Some(r) => r,
        None => match tempfile::Builder::new()
            .prefix("stash-testkit-kubelet")
            .tempdir()
        {
            Ok(t) => t.keep(),
            Err(e) => return fail(format!("cannot create a root directory: {e}")),
        },
    };
    let logs = root.join("logs");
    if let Err(e) = std::fs::create_dir_all(&logs) {
        return fail(format!("{}: {e}", logs.display()));
    }
    let config = KubeletConfig {
        exec,
        kubeconfig: Some(kubeconfig),
        root: Some(root.clone()),
        node_name,
    };
    let kubelet = Kubelet::new(
        client,
        NodeClock::Wall,
        LogSink::Files(logs.clone()),
        config,
    );
    println!(
        "stash-testkit kubelet: node {} ({:?}), container logs in {}",
        kubelet.node_name(),
        kubelet.isolation(),
        logs.display()
    );
    tokio::select! {
        _ = kubelet.run(Duration::from_millis(500)) => {}
        _ = wait_for_signal() => {}
    }
    kubelet.kill_all();
    // Give killed containers a moment to be reaped and their pods reported.
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::process::ExitCode::SUCCESS
}

async fn client_from(kubeconfig: &std::path::Path) -> Result<kube::Client, String> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
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
