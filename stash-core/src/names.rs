//! Names of generated objects: Stash's names when they fit, length-safe and unique when not.

/// The longest name a CronJob may have (its Jobs append `-<11 digits>`).
pub const CRONJOB_NAME_MAX: usize = 52;
/// The longest DNS-1123 label (Job, ServiceAccount and label values).
pub const NAME_MAX: usize = 63;

/// `stash-trigger-<bc>`, the CronJob that creates BackupSessions.
pub fn cronjob_name(bc_name: &str) -> String {
    bounded(
        &format!("stash-trigger-{}", bc_name.replace('.', "-")),
        CRONJOB_NAME_MAX,
    )
}

/// `stash-backup-<session>-<index>`, the backup Job of a session's target.
pub fn backup_job_name(session_name: &str, index: usize) -> String {
    bounded(
        &format!("stash-backup-{}-{index}", session_name.replace('.', "-")),
        NAME_MAX,
    )
}

/// `stash-restore-<rs>-0`, the restore Job.
pub fn restore_job_name(restore_session_name: &str) -> String {
    bounded(
        &format!("stash-restore-{}-0", restore_session_name.replace('.', "-")),
        NAME_MAX,
    )
}

/// `backupconfiguration-<bc>-0`, the ServiceAccount and RoleBinding of backup Jobs.
pub fn backup_job_rbac_name(bc_name: &str) -> String {
    bounded(
        &format!("backupconfiguration-{}-0", bc_name.replace('.', "-")),
        NAME_MAX,
    )
}

/// `restoresession-<rs>-0`, the ServiceAccount and RoleBinding of the restore Job.
pub fn restore_job_rbac_name(rs_name: &str) -> String {
    bounded(
        &format!("restoresession-{}-0", rs_name.replace('.', "-")),
        NAME_MAX,
    )
}

/// `<bc>-<unix seconds>`, a BackupSession created by the trigger (≤ 63 characters).
pub fn backup_session_name(bc_name: &str, unix_seconds: i64) -> String {
    let suffix = format!("-{unix_seconds}");
    let keep = NAME_MAX.saturating_sub(suffix.len());
    let base: String = bc_name.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches(['-', '.']))
}

/// `name` itself when it fits in `max`; otherwise a prefix of it plus `-` and eight hex digits of
/// a hash of the whole name, so that two long names that share a prefix stay distinct.
pub fn bounded(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let hash = format!("{:08x}", fnv1a32(name.as_bytes()));
    let keep = max - hash.len() - 1;
    let mut prefix: String = name.chars().take(keep).collect();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}-{hash}")
}

/// A label value of at most 63 characters (long names are bounded like object names).
pub fn label_value(value: &str) -> String {
    bounded(value, NAME_MAX)
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The hostname a pod's containers get on a node (the kubelet's rule): `spec.hostname` if set,
/// else the pod's name, cut to 63 characters without a trailing `-` or `.`.
pub fn pod_hostname(pod_name: &str, spec_hostname: Option<&str>) -> String {
    let name = spec_hostname.filter(|h| !h.is_empty()).unwrap_or(pod_name);
    let cut: String = name.chars().take(NAME_MAX).collect();
    cut.trim_end_matches(['-', '.']).to_string()
}

/// The longest object name the API server accepts (a DNS subdomain).
pub const SUBDOMAIN_MAX: usize = 253;

/// Checks an object name as the API server does for most kinds (RFC 1123 subdomain); the error
/// is the API server's wording.
pub fn check_subdomain(name: &str) -> Result<(), String> {
    if name.len() > SUBDOMAIN_MAX {
        return Err(format!(
            "must be no more than {SUBDOMAIN_MAX} characters (it has {})",
            name.len()
        ));
    }
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = name.split('.').all(|label| {
        label.starts_with(alnum)
            && label.ends_with(alnum)
            && label.chars().all(|c| alnum(c) || c == '-')
    });
    if valid {
        Ok(())
    } else {
        Err(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character"
                .to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_hostnames_are_the_kubelets() {
        assert_eq!(
            pod_hostname("stash-backup-x-0-abcde", None),
            "stash-backup-x-0-abcde"
        );
        assert_eq!(pod_hostname("p", Some("db-0")), "db-0");
        // 62 characters then a dash: cut to 63, the trailing dash dropped.
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(pod_hostname(&long, None), "a".repeat(62));
    }

    #[test]
    fn short_names_are_stashs() {
        assert_eq!(
            cronjob_name("sample-mysql-backup"),
            "stash-trigger-sample-mysql-backup"
        );
        assert_eq!(
            backup_job_name("sample-mysql-backup-1569561245", 0),
            "stash-backup-sample-mysql-backup-1569561245-0"
        );
        assert_eq!(restore_job_name("restore.v1"), "stash-restore-restore-v1-0");
        assert_eq!(backup_session_name("bc", 1569561245), "bc-1569561245");
    }

    #[test]
    fn long_names_are_bounded_and_distinct() {
        let a = "x".repeat(60) + "-a";
        let b = "x".repeat(60) + "-b";
        let (ca, cb) = (cronjob_name(&a), cronjob_name(&b));
        assert!(ca.len() <= CRONJOB_NAME_MAX && cb.len() <= CRONJOB_NAME_MAX);
        assert_ne!(ca, cb);
        assert!(ca.starts_with("stash-trigger-xxx"));
        let s = backup_session_name(&"y".repeat(80), 1_800_000_000);
        assert_eq!(s.len(), NAME_MAX);
        assert!(s.ends_with("-1800000000"));
    }
}
