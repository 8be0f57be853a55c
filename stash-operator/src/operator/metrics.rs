//! Prometheus metrics, per invoker, with Stash's metric names, kept and encoded (OpenMetrics
//! text) by `prometheus-client`.

use k8s_openapi::jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use stash_core::api::{BackupSession, RestoreSession};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The labels of a BackupConfiguration's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackupLabels {
    invoker_kind: &'static str,
    invoker_name: String,
    namespace: String,
    driver: &'static str,
}

impl BackupLabels {
    fn new(ns: &str, name: &str) -> Self {
        BackupLabels {
            invoker_kind: "BackupConfiguration",
            invoker_name: name.into(),
            namespace: ns.into(),
            driver: "Restic",
        }
    }
}

/// A BackupConfiguration's sessions of one final phase.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackupPhaseLabels {
    #[prometheus(flatten)]
    invoker: BackupLabels,
    phase: String,
}

/// A RestoreSession's series of one final phase.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestoreLabels {
    invoker_kind: &'static str,
    invoker_name: String,
    namespace: String,
    phase: String,
}

/// Reconciles of one kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Failed reconciles of one reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    reason: String,
}

/// `(namespace, name)` of an invoker.
type Key = (String, String);

/// The operator's metrics registry.
pub struct Metrics {
    registry: Registry,
    last_success: Family<BackupLabels, Gauge>,
    last_failure: Family<BackupLabels, Gauge>,
    last_duration: Family<BackupLabels, Gauge<f64, AtomicU64>>,
    bytes_added: Family<BackupLabels, Counter>,
    snapshots: Family<BackupLabels, Counter>,
    expected_interval: Family<BackupLabels, Gauge>,
    backup_sessions: Family<BackupPhaseLabels, Counter>,
    restore_sessions: Family<RestoreLabels, Counter>,
    reconcile_errors: Family<ErrorLabels, Counter>,
    reconciles: Family<KindLabels, Counter>,
    /// The phases seen per invoker: which series `retain` has to remove.
    backup_phases: Mutex<BTreeMap<Key, BTreeSet<String>>>,
    restore_phases: Mutex<BTreeMap<Key, BTreeSet<String>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            last_success: Family::default(),
            last_failure: Family::default(),
            last_duration: Family::default(),
            bytes_added: Family::default(),
            snapshots: Family::default(),
            expected_interval: Family::default(),
            backup_sessions: Family::default(),
            restore_sessions: Family::default(),
            reconcile_errors: Family::default(),
            reconciles: Family::default(),
            backup_phases: Mutex::default(),
            restore_phases: Mutex::default(),
        };
        let mut registry = Registry::default();
        // Counters are registered without `_total`; the encoder appends it.
        registry.register(
            "stash_backup_last_success_time_seconds",
            "Unix time of the last successful backup session",
            m.last_success.clone(),
        );
        registry.register(
            "stash_backup_last_failure_time_seconds",
            "Unix time of the last failed backup session",
            m.last_failure.clone(),
        );
        registry.register(
            "stash_backup_session_duration_seconds",
            "Duration of the last successful session",
            m.last_duration.clone(),
        );
        registry.register(
            "stash_backup_host_data_uploaded_bytes",
            "Bytes added to the repository by this operator's sessions",
            m.bytes_added.clone(),
        );
        registry.register(
            "stash_backup_snapshots",
            "Snapshots written by this operator's sessions",
            m.snapshots.clone(),
        );
        registry.register(
            "stash_backup_expected_interval_seconds",
            "Seconds between two scheduled backups",
            m.expected_interval.clone(),
        );
        registry.register(
            "stash_backup_sessions",
            "Finished backup sessions by phase",
            m.backup_sessions.clone(),
        );
        registry.register(
            "stash_restore_sessions",
            "Finished restore sessions by phase",
            m.restore_sessions.clone(),
        );
        registry.register(
            "stash_operator_reconcile_errors",
            "Failed reconciles by reason",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "stash_operator_reconciles",
            "Reconciles started, by kind",
            m.reconciles.clone(),
        );
        Metrics { registry, ..m }
    }
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
    /// Notes an invoker, so that its series exist (the totals at zero) and `retain` knows it.
    fn backup_invoker(&self, ns: &str, name: &str) -> BackupLabels {
        let labels = BackupLabels::new(ns, name);
        self.bytes_added.get_or_create(&labels).inc_by(0);
        self.snapshots.get_or_create(&labels).inc_by(0);
        if let Ok(mut known) = self.backup_phases.lock() {
            known.entry((ns.into(), name.into())).or_default();
        }
        labels
    }

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
        let labels = self.backup_invoker(ns, name);
        match interval {
            Some(v) => {
                self.expected_interval.get_or_create(&labels).set(v);
            }
            None => {
                self.expected_interval.remove(&labels);
            }
        }
    }

    /// Records a BackupSession whose planned status reaches a final phase at `now` (the
    /// operator's clock).
    pub fn observe_backup_session(
        &self,
        s: &BackupSession,
        planned: Option<&Value>,
        now: Timestamp,
    ) {
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
        let labels = self.backup_invoker(&ns, &invoker);
        if let Ok(mut known) = self.backup_phases.lock() {
            known
                .entry((ns, invoker))
                .or_default()
                .insert(phase.to_string());
        }
        self.backup_sessions
            .get_or_create(&BackupPhaseLabels {
                invoker: labels.clone(),
                phase: phase.to_string(),
            })
            .inc();
        let now = now.as_second();
        match phase {
            "Succeeded" => {
                self.last_success.get_or_create(&labels).set(now);
                match status
                    .get("sessionDuration")
                    .and_then(Value::as_str)
                    .and_then(parse_go_secs)
                {
                    Some(secs) => {
                        self.last_duration.get_or_create(&labels).set(secs);
                    }
                    None => {
                        self.last_duration.remove(&labels);
                    }
                }
                let snaps = status
                    .pointer("/targets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|t| {
                        t.get("stats")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                    })
                    .flat_map(|h| {
                        h.get("snapshots")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                    });
                for snap in snaps {
                    self.snapshots.get_or_create(&labels).inc();
                    self.bytes_added.get_or_create(&labels).inc_by(
                        snap.get("uploaded")
                            .and_then(Value::as_str)
                            .map(parse_size)
                            .unwrap_or(0),
                    );
                }
            }
            "Failed" => {
                self.last_failure.get_or_create(&labels).set(now);
            }
            _ => {}
        }
    }

    /// Drops the series of invokers that no longer exist, so the families stay as large as the
    /// cluster's BackupConfigurations and RestoreSessions, not as large as their history.
    /// `backup_exists` and `restore_exists` take `(namespace, name)`.
    pub fn retain(
        &self,
        backup_exists: impl Fn(&str, &str) -> bool,
        restore_exists: impl Fn(&str, &str) -> bool,
    ) {
        if let Ok(mut known) = self.backup_phases.lock() {
            known.retain(|(ns, name), phases| {
                if backup_exists(ns, name) {
                    return true;
                }
                let labels = BackupLabels::new(ns, name);
                for family in [
                    &self.last_success,
                    &self.last_failure,
                    &self.expected_interval,
                ] {
                    family.remove(&labels);
                }
                self.last_duration.remove(&labels);
                self.bytes_added.remove(&labels);
                self.snapshots.remove(&labels);
                for phase in phases.iter() {
                    self.backup_sessions.remove(&BackupPhaseLabels {
                        invoker: labels.clone(),
                        phase: phase.clone(),
                    });
                }
                false
            });
        }
        if let Ok(mut known) = self.restore_phases.lock() {
            known.retain(|(ns, name), phases| {
                if restore_exists(ns, name) {
                    return true;
                }
                for phase in phases.iter() {
                    self.restore_sessions
                        .remove(&restore_labels(ns, name, phase));
                }
                false
            });
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
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let name = rs.metadata.name.clone().unwrap_or_default();
        self.restore_sessions
            .get_or_create(&restore_labels(&ns, &name, phase))
            .inc();
        if let Ok(mut known) = self.restore_phases.lock() {
            known
                .entry((ns, name))
                .or_default()
                .insert(phase.to_string());
        }
    }

    /// Counts a reconcile of `kind`.
    pub fn reconcile(&self, kind: &'static str) {
        self.reconciles.get_or_create(&KindLabels { kind }).inc();
    }

    /// Reconciles of `kind` so far.
    pub fn reconciles(&self, kind: &'static str) -> u64 {
        self.reconciles.get_or_create(&KindLabels { kind }).get()
    }

    /// Counts a failed reconcile by reason.
    pub fn reconcile_error(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn restore_labels(ns: &str, name: &str, phase: &str) -> RestoreLabels {
    RestoreLabels {
        invoker_kind: "RestoreSession",
        invoker_name: name.into(),
        namespace: ns.into(),
        phase: phase.into(),
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
        let now = Timestamp::UNIX_EPOCH;
        m.observe_backup_session(&session("a", "keep"), Some(&failed), now);
        m.observe_backup_session(&session("a", "gone"), Some(&failed), now);
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

    #[test]
    fn times_come_from_the_operator_clock_and_names_stay_stash_names() {
        let m = Metrics::default();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let succeeded = json!({
            "phase": "Succeeded",
            "sessionDuration": "1m5s",
            "targets": [{"stats": [{"snapshots": [{"uploaded": "2 KiB"}, {"uploaded": "1 KiB"}]}]}],
        });
        m.observe_backup_session(&session("ns", "bc"), Some(&succeeded), now);
        m.set_schedule("ns", "bc", "*/5 * * * *");
        m.reconcile_error("ReadFailed");
        let text = m.render();
        let labels = r#"{invoker_kind="BackupConfiguration",invoker_name="bc",namespace="ns",driver="Restic"}"#;
        for line in [
            format!("stash_backup_last_success_time_seconds{labels} 1767225600"),
            format!("stash_backup_session_duration_seconds{labels} 65.0"),
            format!("stash_backup_snapshots_total{labels} 2"),
            format!("stash_backup_host_data_uploaded_bytes_total{labels} 3072"),
            format!("stash_backup_expected_interval_seconds{labels} 300"),
            r#"stash_backup_sessions_total{invoker_kind="BackupConfiguration",invoker_name="bc",namespace="ns",driver="Restic",phase="Succeeded"} 1"#.to_owned(),
            r#"stash_operator_reconcile_errors_total{reason="ReadFailed"} 1"#.to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(
            !text.contains("stash_backup_last_failure_time_seconds{"),
            "{text}"
        );
    }
}
