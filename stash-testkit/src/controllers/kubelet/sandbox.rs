//! How a container's process sees the filesystem. A real container has a root filesystem of
//! its own: what it writes outside its volumes disappears with it. Here each container runs in
//! a private mount namespace whose root is an overlay of the host's `/` with an upper layer on
//! a tmpfs that only that namespace holds, so its writes vanish when the process ends. The
//! host's other mounts (`/proc`, `/dev`, `/sys`, ...) are bound in, and the pod's volumes are
//! bound at their `mountPath` on top, so volume writes reach the host as they should.
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

/// Sets up the namespace; arguments: SANDBOX WORKDIR COW(0|1) N SRC1 DST1 ... SRCN DSTN, then
/// the container's argv. The sandbox directory is an empty mount point on the host.
const SCRIPT: &str = r#"set -e
sandbox=$1 workdir=$2 cow=$3 n=$4
shift 4
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
  exec chroot "$root" /bin/sh -c 'mkdir -p "$0" && cd "$0" && exec "$@"' "$workdir" "$@"
fi
mkdir -p "$workdir"
cd "$workdir"
exec "$@"
"#;

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
                .args([
                    "--mount",
                    "--propagation",
                    "private",
                    "--",
                    "/bin/sh",
                    "-c",
                    SCRIPT,
                    "sh",
                ])
                .arg(dir.path())
                .args(["/", cow, "0", "/bin/true"])
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

    /// The command that runs `argv` in `workdir` with `mounts` (host path, mount path) in
    /// place; `sandbox` is an empty directory the namespace may mount over.
    pub fn command(
        self,
        argv: &[String],
        workdir: &Path,
        sandbox: &Path,
        mounts: &[(std::path::PathBuf, String)],
    ) -> tokio::process::Command {
        if self == Self::None {
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..]).current_dir(workdir);
            return cmd;
        }
        let mut cmd = tokio::process::Command::new("unshare");
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            SCRIPT,
            "sh",
        ])
        .arg(sandbox)
        .arg(workdir)
        .arg(if self == Self::CopyOnWriteRoot {
            "1"
        } else {
            "0"
        })
        .arg(mounts.len().to_string());
        for (src, dst) in mounts {
            cmd.arg(src).arg(dst);
        }
        // The working directory may exist only inside the container's root.
        cmd.args(argv).current_dir("/");
        cmd
    }
}
