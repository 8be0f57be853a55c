//! How a container's process sees the filesystem. A real container has a root filesystem of
//! its own: what it writes outside its volumes disappears with it. Here each container runs in
//! a private mount namespace whose root is an overlay of the host's `/` with an upper layer on
//! a tmpfs that only that namespace holds, so its writes vanish when the process ends. The
//! host's other mounts (`/proc`, `/dev`, `/sys`, ...) are bound in, and the pod's volumes are
//! bound at their `mountPath` on top, so volume writes reach the host as they should.
//!
//! Where the host allows it, each container also gets the pod's hostname in a UTS namespace of
//! its own and a PID namespace with its own `/proc`, as on a node: a repository lock made in a
//! pod carries the pod's hostname and a PID that means nothing on another pod. A shell is the
//! namespace's first process and waits for the container's program, so that a program killed
//! by a signal ends the container with `128 + signal` as a runtime reports it.
//!
//! Everything is done with the `unshare`, `mount` and `chroot` commands (util-linux and
//! coreutils), so no `unsafe` is needed.

use std::path::Path;
use std::process::Stdio;

/// What isolation the host allows, probed once per kubelet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// No mount namespaces (not root, or no `unshare`): processes run directly on the host,
    /// volumes are prepared but not visible at their `mountPath`.
    None,
    /// A private mount namespace with volumes at their `mountPath`, but the host filesystem
    /// writable (overlayfs unavailable).
    MountNamespace,
    /// A private mount namespace with a copy-on-write root and volumes at their `mountPath`.
    CopyOnWriteRoot,
}

/// Sets up the namespace; arguments: SANDBOX WORKDIR COW(0|1) HOSTNAME N SRC1 DST1 ... SRCN
/// DSTN, then the container's argv. The sandbox directory is an empty mount point on the host.
/// An empty HOSTNAME keeps the host's (no UTS and PID namespaces).
const SCRIPT: &str = r#"set -e
sandbox=$1 workdir=$2 cow=$3 host=$4 n=$5
shift 5
if [ -n "$host" ]; then printf %s "$host" > /proc/sys/kernel/hostname; fi
# In a PID namespace this shell is its first process: it starts the program, tells the
# kubelet the program's PID in the namespace (in SANDBOX.pid, beside the sandbox, on the host),
# and ends with the program's status instead of handing it the namespace (a first process
# killed by a signal would leave unshare to report that, and it reports 1).
run() {
  if [ -z "$host" ]; then exec "$@"; fi
  set +e
  "$@" &
  echo $! > "$sandbox.pid"
  wait $!
  exit $?
}
root=
if [ "$cow" = 1 ]; then
  mount -t tmpfs -o mode=755 testkit-pod "$sandbox"
  mkdir "$sandbox/upper" "$sandbox/work" "$sandbox/root"
  mount -t overlay testkit-root -o "lowerdir=/,upperdir=$sandbox/upper,workdir=$sandbox/work" "$sandbox/root"
  root=$sandbox/root
  # The overlay shows only the root filesystem; bind the host's other mounts into it.
  root_id=$(awk '$5 == "/" {print $1; exit}' /proc/self/mountinfo)
  for m in $(awk -v r="$root_id" '$2 == r && $5 != "/" {print $5}' /proc/self/mountinfo); do
    case "$m" in "$sandbox"|"$sandbox"/*) continue ;; esac
    if [ -d "$m" ]; then mount --rbind "$m" "$root$m"; fi
  done
fi
i=0
while [ "$i" -lt "$n" ]; do
  src=$1 dst=$2
  shift 2
  if [ -z "$root" ]; then
    if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")" && touch "$dst"; fi
  elif [ -d "$src" ]; then
    # Resolve the destination inside the container's root, as a container runtime does
    # (/var/run is a symlink to /run on the host, and must not lead out of the root).
    dst=$(chroot "$root" /bin/sh -c 'mkdir -p "$1" && cd "$1" && pwd -P' sh "$dst")
  else
    parent=$(chroot "$root" /bin/sh -c 'mkdir -p "$(dirname "$1")" && cd "$(dirname "$1")" && pwd -P' sh "$dst")
    dst=${parent%/}/$(basename "$dst")
    touch "$root$dst"
  fi
  mount --bind "$src" "$root$dst"
  i=$((i + 1))
done
if [ -n "$root" ]; then
  run chroot "$root" /bin/sh -c 'mkdir -p "$0" && cd "$0" && exec "$@"' "$workdir" "$@"
fi
mkdir -p "$workdir"
cd "$workdir"
run "$@"
"#;

/// `unshare` arguments for a private mount namespace; with `pod`, also the UTS and PID
/// namespaces (the forked first process gets its own `/proc`, and dies with `unshare`).
fn unshare_args(pod: bool) -> &'static [&'static str] {
    if pod {
        &[
            "--mount",
            "--uts",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SCRIPT,
            "sh",
        ]
    } else {
        &[
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SCRIPT,
            "sh",
        ]
    }
}

impl Isolation {
    /// Probes what this host allows: a mount namespace, then an overlay inside one.
    pub fn probe() -> Self {
        let Ok(dir) = tempfile::Builder::new()
            .prefix("stash-testkit-probe")
            .tempdir()
        else {
            return Self::None;
        };
        for (isolation, cow) in [(Self::CopyOnWriteRoot, "1"), (Self::MountNamespace, "0")] {
            let ok = std::process::Command::new("unshare")
                .args(unshare_args(false))
                .arg(dir.path())
                .args(["/", cow, "", "0", "/bin/true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return isolation;
            }
        }
        Self::None
    }

    /// Whether containers can also have a pod's hostname and PID namespace here (see
    /// [`Isolation::command`]); probed once per kubelet.
    pub fn probe_pod_namespaces(self) -> bool {
        if self == Self::None {
            return false;
        }
        let Ok(dir) = tempfile::Builder::new()
            .prefix("stash-testkit-probe")
            .tempdir()
        else {
            return false;
        };
        std::process::Command::new("unshare")
            .args(unshare_args(true))
            .arg(dir.path())
            .args(["/", "0", "testkit-probe", "0", "/bin/true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The command that runs `argv` in `workdir` with `mounts` (host path, mount path) in
    /// place; `sandbox` is an empty directory the namespace may mount over. With `hostname`
    /// (when [`Isolation::probe_pod_namespaces`] allows it), the process has that hostname and
    /// its own PID namespace; the container's program is then the grandchild of the command.
    pub fn command(
        self,
        argv: &[String],
        workdir: &Path,
        sandbox: &Path,
        mounts: &[(std::path::PathBuf, String)],
        hostname: Option<&str>,
    ) -> tokio::process::Command {
        if self == Self::None {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]).current_dir(workdir);
            return cmd;
        }
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args(unshare_args(hostname.is_some()))
            .arg(sandbox)
            .arg(workdir)
            .arg(if self == Self::CopyOnWriteRoot {
                "1"
            } else {
                "0"
            })
            .arg(hostname.unwrap_or_default())
            .arg(mounts.len().to_string());
        for (src, dst) in mounts {
            cmd.arg(src).arg(dst);
        }
        // The working directory may exist only inside the container's root.
        cmd.args(argv).current_dir("/");
        cmd
    }
}

/// The file in which the namespace's first shell writes the program's PID in the namespace.
pub fn pid_file(sandbox: &Path) -> std::path::PathBuf {
    let mut name = sandbox.as_os_str().to_owned();
    name.push(".pid");
    name.into()
}

/// The host PID of the process that has PID `inner` in its namespace, among `candidates`
/// (the `NSpid` line of `/proc/PID/status` lists its PIDs from the host's namespace inward).
pub fn host_pid_of(inner: u32, candidates: &[u32]) -> Option<u32> {
    candidates.iter().copied().find(|p| {
        std::fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|ids| ids.split_whitespace().last()?.parse::<u32>().ok())
                == Some(inner)
        })
    })
}

/// The child processes of `pid`, from `/proc` (each entry's parent is its 4th `stat` field).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|stat| {
                // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                    == Some(pid)
            })
        })
        .collect()
}
