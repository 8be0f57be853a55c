//! Prometheus metrics, per invoker, in the text exposition format, with Stash's metric names.

use serde_json::Value;
use stash_core::api::{BackupSession, RestoreSession};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// What is known about one BackupConfiguration's sessions.
#[derive(Debug, Clone, Default)]
struct InvokerMetrics {
    last_success: Option<i64>,
    last_failure: Option<i64>,
    last_duration_seconds: Option<f64>,
    bytes_added: u64,
    snapshot_count: u64,
    expected_interval_seconds: Option<i64>,
    sessions_by_phase: BTreeMap<String, u64>,
}

/// Reads one gauge value of an invoker.
type Getter = fn(&InvokerMetrics) -> Option<f64>;

/// The operator's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {
    backup: Mutex<BTreeMap<(String, String), InvokerMetrics>>,
    restore: Mutex<BTreeMap<(String, String), BTreeMap<String, u64>>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

fn parse_size(text: &str) -> u64 {
    let mut parts = text.split_whitespace();
    let n: f64 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
    let mult = match parts.next() {
        Some("KiB") => 1u64 << 10,
        Some("MiB") => 1 << 20,
        Some("GiB") => 1 << 30,
        Some("TiB") => 1 << 40,
        _ => 1,
    };
    (n * mult as f64) as u64
}

fn parse_go_secs(text: &str) -> Option<f64> {
    stash_core::duration::parse_go_duration_millis(text)
        .ok()
        .map(|ms| ms as f64 / 1000.0)
}

impl Metrics {
    /// Records the schedule of a BackupConfiguration as its expected interval.
    pub fn set_schedule(&self, ns: &str, name: &str, schedule: &str) {
        let Ok(s) = stash_core::cron::Schedule::parse(schedule) else {
            return;
        };
        // The interval between two fires from a fixed point is a fair estimate for alerting.
        let base = 1_767_225_600;
        let interval = s
            .next_after(base)
            .and_then(|a| s.next_after(a).map(|b| b - a));
        if let Ok(mut m) = self.backup.lock() {
            m.entry((ns.into(), name.into()))
                .or_default()
                .expected_interval_seconds = interval;
        }
    }

    /// Records a BackupSession whose planned status reaches a final phase.
    pub fn observe_backup_session(&self, s: &BackupSession, planned: Option<&Value>) {
        let Some(status) = planned else { return };
        let phase = status
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let was = s
            .status
            .as_ref()
            .and_then(|x| x.phase.clone())
            .unwrap_or_default();
        if phase == was || !matches!(phase, "Succeeded" | "Failed" | "Skipped") {
            return;
        }
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        let invoker = s
            .spec
            .invoker
            .as_ref()
            .map(|i| i.name.clone())
            .unwrap_or_default();
        let Ok(mut all) = self.backup.lock() else {
            return;
        };
        let m = all.entry((ns, invoker)).or_default();
        *m.sessions_by_phase.entry(phase.to_string()).or_default() += 1;
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        match phase {
            "Succeeded" => {
                m.last_success = Some(now);
                m.last_duration_seconds = status
                    .get("sessionDuration")
                    .and_then(Value::as_str)
                    .and_then(parse_go_secs);
                let snaps = status
                    .pointer("/targets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|t| {
                        t.get("stats")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default()
                    })
                    .flat_map(|h| {
                        h.get("snapshots")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default()
                    });
                for snap in snaps {
                    m.snapshot_count += 1;
                    m.bytes_added += snap
                        .get("uploaded")
                        .and_then(Value::as_str)
                        .map(parse_size)
                        .unwrap_or(0);
                }
            }
            "Failed" => m.last_failure = Some(now),
            _ => {}
        }
    }

    /// Drops the series of invokers that no longer exist, so the maps stay as large as the
    /// cluster's BackupConfigurations and RestoreSessions, not as large as their history.
    /// `backup_exists` and `restore_exists` take `(namespace, name)`.
    pub fn retain(
        &self,
        backup_exists: impl Fn(&str, &str) -> bool,
        restore_exists: impl Fn(&str, &str) -> bool,
    ) {
        if let Ok(mut all) = self.backup.lock() {
            all.retain(|(ns, name), _| backup_exists(ns, name));
        }
        if let Ok(mut all) = self.restore.lock() {
            all.retain(|(ns, name), _| restore_exists(ns, name));
        }
    }

    /// Records a RestoreSession reaching a final phase.
    pub fn observe_restore_session(&self, rs: &RestoreSession, planned: Option<&Value>) {
        let Some(phase) = planned.and_then(|s| s.get("phase")).and_then(Value::as_str) else {
            return;
        };
        let was = rs
            .status
            .as_ref()
            .and_then(|x| x.phase.clone())
            .unwrap_or_default();
        if phase == was || !matches!(phase, "Succeeded" | "Failed" | "Invalid" | "Unknown") {
            return;
        }
        if let Ok(mut all) = self.restore.lock() {
            let key = (
                rs.metadata.namespace.clone().unwrap_or_default(),
                rs.metadata.name.clone().unwrap_or_default(),
            );
            *all.entry(key)
                .or_default()
                .entry(phase.to_string())
                .or_default() += 1;
        }
    }

    /// Counts a failed reconcile by reason.
    pub fn reconcile_error(&self, reason: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(reason.to_string()).or_default() += 1;
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        };
        if let Ok(all) = self.backup.lock() {
            let labels = |ns: &str, name: &str| {
                format!("invoker_kind=\"BackupConfiguration\",invoker_name=\"{name}\",namespace=\"{ns}\",driver=\"Restic\"")
            };
            let families: [(&str, &str, Getter); 6] = [
                (
                    "stash_backup_last_success_time_seconds",
                    "Unix time of the last successful backup session.",
                    |m| m.last_success.map(|v| v as f64),
                ),
                (
                    "stash_backup_last_failure_time_seconds",
                    "Unix time of the last failed backup session.",
                    |m| m.last_failure.map(|v| v as f64),
                ),
                (
                    "stash_backup_session_duration_seconds",
                    "Duration of the last successful session.",
                    |m| m.last_duration_seconds,
                ),
                (
                    "stash_backup_host_data_uploaded_bytes_total",
                    "Bytes added to the repository by this operator's sessions.",
                    |m| Some(m.bytes_added as f64),
                ),
                (
                    "stash_backup_snapshots_total",
                    "Snapshots written by this operator's sessions.",
                    |m| Some(m.snapshot_count as f64),
                ),
                (
                    "stash_backup_expected_interval_seconds",
                    "Seconds between two scheduled backups.",
                    |m| m.expected_interval_seconds.map(|v| v as f64),
                ),
            ];
            for (name, help, get) in families {
                gauge(&mut out, name, help);
                for ((ns, inv), m) in all.iter() {
                    if let Some(v) = get(m) {
                        let _ = writeln!(out, "{name}{{{}}} {v}", labels(ns, inv));
                    }
                }
            }
            gauge(
                &mut out,
                "stash_backup_sessions_total",
                "Finished backup sessions by phase.",
            );
            for ((ns, inv), m) in all.iter() {
                for (phase, n) in &m.sessions_by_phase {
                    let _ = writeln!(
                        out,
                        "stash_backup_sessions_total{{{},phase=\"{phase}\"}} {n}",
                        labels(ns, inv)
                    );
                }
            }
        }
        if let Ok(all) = self.restore.lock() {
            gauge(
                &mut out,
                "stash_restore_sessions_total",
                "Finished restore sessions by phase.",
            );
            for ((ns, name), phases) in all.iter() {
                for (phase, n) in phases {
                    let _ = writeln!(out, "stash_restore_sessions_total{{invoker_kind=\"RestoreSession\",invoker_name=\"{name}\",namespace=\"{ns}\",phase=\"{phase}\"}} {n}");
                }
            }
        }
        if let Ok(errors) = self.errors.lock() {
            gauge(
                &mut out,
                "stash_operator_reconcile_errors_total",
                "Failed reconciles by reason.",
            );
            for (reason, n) in errors.iter() {
                let _ = writeln!(
                    out,
                    "stash_operator_reconcile_errors_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(ns: &str, invoker: &str) -> BackupSession {
        serde_json::from_value(json!({
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "BackupSession",
            "metadata": {"name": format!("{invoker}-1"), "namespace": ns},
            "spec": {"invoker": {"apiGroup": "stash.appscode.com", "kind": "BackupConfiguration", "name": invoker}},
        }))
        .unwrap()
    }

    fn restore(ns: &str, name: &str) -> RestoreSession {
        serde_json::from_value(json!({
            "apiVersion": "stash.appscode.com/v1beta1",
            "kind": "RestoreSession",
            "metadata": {"name": name, "namespace": ns},
            "spec": {},
        }))
        .unwrap()
    }

    #[test]
    fn series_of_deleted_invokers_are_pruned() {
        let m = Metrics::default();
        let failed = json!({"phase": "Failed"});
        m.observe_backup_session(&session("a", "keep"), Some(&failed));
        m.observe_backup_session(&session("a", "gone"), Some(&failed));
        m.observe_restore_session(&restore("a", "r-keep"), Some(&failed));
        m.observe_restore_session(&restore("a", "r-gone"), Some(&failed));
        let before = m.render();
        assert!(before.contains("invoker_name=\"gone\"") && before.contains("r-gone"));

        m.retain(|_, name| name == "keep", |_, name| name == "r-keep");
        let after = m.render();
        assert!(after.contains("invoker_name=\"keep\""), "{after}");
        assert!(after.contains("r-keep"), "{after}");
        assert!(!after.contains("invoker_name=\"gone\""), "{after}");
        assert!(!after.contains("r-gone"), "{after}");
    }
}
