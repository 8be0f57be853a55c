//! The kubelet's side of `pods/exec`: the running containers it can start a command in, and
//! the command that runs there with the container's environment, working directory and
//! mounts (by entering the mount namespace of the container's process with `nsenter`, as a
//! container runtime joins the container's namespaces).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A running container, as the kubelet started it.
#[derive(Debug, Clone)]
pub struct ContainerHandle {
    /// The container's main process.
    pub pid: Option<u32>,
    /// The environment the kubelet built for the container (env, envFrom, field refs).
    pub env: Vec<(String, String)>,
    /// The container's working directory.
    pub workdir: PathBuf,
    /// Whether the container runs in a private mount namespace (its volumes at their
    /// `mountPath`s) that an exec must enter.
    pub mount_ns: bool,
    /// Whether it also has the pod's hostname and its own PID namespace, which an exec joins.
    pub pod_ns: bool,
    /// The `mountPath`s the container's mount namespace holds once it is set up.
    pub mount_paths: Vec<String>,
}

/// `(namespace, pod, container)` → the running container.
pub(crate) type Containers = Arc<Mutex<HashMap<(String, String, String), ContainerHandle>>>;

/// Why a command could not start in a container.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The executable does not exist in the container.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The process could not be spawned.
    #[error("exec: {0}")]
    Spawn(String),
}

impl ContainerHandle {
    /// The root the container sees: the mount namespace of its process.
    fn root(&self) -> PathBuf {
        match self.pid {
            Some(pid) if self.mount_ns => PathBuf::from(format!("/proc/{pid}/root")),
            _ => PathBuf::from("/"),
        }
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `program` resolves to an executable inside the container, as the runtime's
    /// `execve` lookup does (through the container's `PATH` for a bare name).
    fn resolves(&self, program: &str) -> bool {
        let root = self.root();
        let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p)).is_file();
        if program.contains('/') {
            let p = Path::new(program);
            return if p.is_absolute() {
                inside(p)
            } else {
                inside(&self.workdir.join(p))
            };
        }
        self.env_var("PATH")
            .unwrap_or("/usr/local/bin:/usr/bin:/bin")
            .split(':')
            .filter(|d| !d.is_empty())
            .any(|d| inside(&Path::new(d).join(program)))
    }

    /// Whether the container's mounts are all in place (its process sets them up right
    /// after it starts).
    pub fn mounts_ready(&self) -> bool {
        let Some(pid) = self.pid.filter(|_| self.mount_ns) else {
            return true;
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            return false;
        };
        let points: Vec<&str> = info.lines().filter_map(|l| l.split(' ').nth(4)).collect();
        self.mount_paths
            .iter()
            .all(|m| points.contains(&m.trim_end_matches('/')))
    }

    /// Whether the container's process still runs. Commands started in a container die with
    /// it, as they share its PID namespace on a real node.
    pub fn alive(&self) -> bool {
        self.pid
            .is_none_or(|pid| Path::new(&format!("/proc/{pid}")).exists())
    }

    /// The command that runs `argv` in the container: its environment, working directory and
    /// mount namespace.
    pub fn command(&self, argv: &[String]) -> Result<tokio::process::Command, ExecError> {
        let Some(program) = argv.first() else {
            return Err(ExecError::Spawn("no command given".into()));
        };
        if !self.resolves(program) {
            return Err(ExecError::NotFound(program.clone()));
        }
        let mut cmd = match self.pid {
            Some(pid) if self.mount_ns => {
                let mut cmd = tokio::process::Command::new("nsenter");
                cmd.arg(format!("--target={pid}")).arg("--mount");
                if self.pod_ns {
                    cmd.args(["--uts", "--pid"]);
                }
                cmd.args(["--root", "--wd", "--"]).args(argv);
                cmd
            }
            _ => {
                let mut cmd = tokio::process::Command::new(program);
                cmd.args(&argv[1..]).current_dir(&self.workdir);
                cmd
            }
        };
        cmd.env_clear().envs(self.env.iter().cloned());
        Ok(cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_resolve_through_the_container_path() {
        let handle = ContainerHandle {
            pid: None,
            env: vec![("PATH".into(), "/nonexistent:/bin".into())],
            workdir: PathBuf::from("/"),
            mount_ns: false,
            pod_ns: false,
            mount_paths: Vec::new(),
        };
        assert!(handle.resolves("sh"));
        assert!(handle.resolves("/bin/sh"));
        assert!(!handle.resolves("no-such-program-here"));
        assert!(matches!(
            handle.command(&["no-such-program-here".into()]),
            Err(ExecError::NotFound(_))
        ));
    }
}
