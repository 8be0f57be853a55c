//! Watch streams: newline-delimited JSON events, replay from a resourceVersion, bookmarks,
//! selector transitions, and in-stream `ERROR 410` for compacted revisions.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use crate::apiserver::{present, Apiserver, Shape};
use crate::faults::Faults;
use crate::registry::ResourceInfo;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeKind, Key};

/// Parameters of a watch request.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// Namespace filter (`None`: all).
    pub namespace: Option<String>,
    /// Label selector.
    pub labels: LabelSelector,
    /// Field selector.
    pub fields: FieldSelector,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Render objects as `PartialObjectMetadata`.
    pub metadata_only: bool,
    /// How often to send bookmarks.
    pub bookmark_interval: Duration,
    /// Render objects as one-row `Table`s (kubectl `get -w` on printer columns).
    pub table: bool,
}

struct Watcher {
    info: Arc<ResourceInfo>,
    prefix: String,
    params: WatchParams,
    tx: mpsc::Sender<Result<Bytes, Infallible>>,
    clock: crate::clock::VirtualClock,
}

impl Watcher {
    fn matches(&self, key: &Key, obj: &Value) -> bool {
        key.resource == self.prefix
            && self
                .params
                .namespace
                .as_deref()
                .is_none_or(|ns| key.namespace == ns)
            && self.params.labels.matches(obj)
            && self.params.fields.matches(obj)
    }

    /// Writes a stored object into an event, as this watch serves it.
    fn render(&self, out: &mut Vec<u8>, obj: &Value) {
        if self.params.table {
            let obj = Apiserver::present(&self.info, obj);
            let rv = obj["metadata"]["resourceVersion"].clone();
            let table = super::table::render(&self.info, &[obj], Some(&rv), self.clock.now());
            present::write_value(out, &table);
        } else if self.params.metadata_only {
            present::write_json(out, &self.info, obj, Shape::Metadata);
        } else {
            present::write_json(out, &self.info, obj, Shape::Object);
        }
    }

    /// Sends `{"type": kind, "object": ...}` and a newline; `false` when the client is gone.
    async fn send_with(&self, kind: &str, object: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut line = Vec::with_capacity(1024);
        line.extend_from_slice(br#"{"type":"#);
        let _ = serde_json::to_writer(&mut line, kind);
        line.extend_from_slice(br#","object":"#);
        object(&mut line);
        line.extend_from_slice(b"}\n");
        self.tx.send(Ok(Bytes::from(line))).await.is_ok()
    }

    async fn send(&self, kind: &str, object: Value) -> bool {
        self.send_with(kind, |out| present::write_value(out, &object))
            .await
    }

    async fn send_object(&self, kind: &str, obj: &Value) -> bool {
        self.send_with(kind, |out| self.render(out, obj)).await
    }

    async fn send_change(&self, change: &Change) -> bool {
        if change.key.resource != self.prefix {
            return true;
        }
        let was = change
            .previous
            .as_deref()
            .is_some_and(|p| self.matches(&change.key, p));
        let is = self.matches(&change.key, &change.object);
        let kind = match (change.kind, was, is) {
            (ChangeKind::Deleted, true, _) => "DELETED",
            (ChangeKind::Deleted, false, _) => return true,
            (_, false, true) => "ADDED",
            (_, true, false) => "DELETED",
            (_, true, true) => "MODIFIED",
            (_, false, false) => return true,
        };
        self.send_object(kind, &change.object).await
    }

    async fn bookmark(&self, rev: u64, initial_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.send("BOOKMARK", json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata}))
            .await
    }

    async fn gone(&self, message: String) {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": "Expired", "code": 410,
        });
        self.send("ERROR", status).await;
    }
}

/// Starts a watch; returns the streaming body.
pub fn start(
    api: &Apiserver,
    faults: &Faults,
    info: Arc<ResourceInfo>,
    params: WatchParams,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(256);
    let prefix = info.storage_prefix();
    let watcher = Watcher {
        info,
        prefix,
        params,
        tx,
        clock: api.clock.clone(),
    };
    let api = api.clone();
    let mut cuts = faults.cuts();
    cuts.mark_unchanged();
    tokio::spawn(async move {
        let mut expirations = api.store.expirations();
        expirations.mark_unchanged();
        enum Start {
            Gone(String),
            Replay {
                rev: u64,
                initial: Vec<(Key, Arc<Value>)>,
                changes: Vec<Arc<Change>>,
                rx: broadcast::Receiver<Arc<Change>>,
            },
        }
        let start = {
            let mut state = api.store.lock();
            let rev = state.rev();
            let rx = state.subscribe_resource(&watcher.prefix);
            let requested = watcher
                .params
                .resource_version
                .as_deref()
                .filter(|r| !r.is_empty() && *r != "0");
            match requested {
                Some(rv) if !watcher.params.send_initial_events => match rv.parse::<u64>() {
                    Ok(n) if n < state.floor() => {
                        Start::Gone(format!("too old resource version: {n} ({})", state.floor()))
                    }
                    Ok(n) => Start::Replay {
                        rev,
                        initial: Vec::new(),
                        changes: state.changes_after(n),
                        rx,
                    },
                    Err(_) => Start::Gone(format!("invalid resource version: {rv}")),
                },
                _ => {
                    let initial = state
                        .objects()
                        .range(Key::new(watcher.prefix.clone(), "", "")..)
                        .take_while(|(k, _)| k.resource == watcher.prefix)
                        .filter(|(k, v)| watcher.matches(k, v))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    Start::Replay {
                        rev,
                        initial,
                        changes: Vec::new(),
                        rx,
                    }
                }
            }
        };
        let (mut last, mut rx) = match start {
            Start::Gone(message) => {
                watcher.gone(message).await;
                return;
            }
            Start::Replay {
                rev,
                initial,
                changes,
                rx,
            } => {
                for (_, obj) in &initial {
                    if !watcher.send_object("ADDED", obj).await {
                        return;
                    }
                }
                if watcher.params.send_initial_events && !watcher.bookmark(rev, true).await {
                    return;
                }
                for change in &changes {
                    if !watcher.send_change(change).await {
                        return;
                    }
                }
                (rev, rx)
            }
        };
        let deadline = watcher
            .params
            .timeout
            .map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(watcher.params.bookmark_interval);
        ticker.tick().await;
        loop {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = rx.recv() => match received {
                    Ok(change) => {
                        if change.rev <= last {
                            continue;
                        }
                        last = change.rev;
                        if !watcher.send_change(&change).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        watcher.gone(format!("too old resource version: {last} (watcher fell behind)")).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick() => {
                    if watcher.params.bookmarks && !watcher.bookmark(last, false).await {
                        return;
                    }
                }
                _ = timeout => {
                    if watcher.params.bookmarks {
                        watcher.bookmark(last, false).await;
                    }
                    return;
                }
                _ = expirations.changed() => {
                    watcher.gone(format!("too old resource version: {last} ({})", api.store.lock().floor())).await;
                    return;
                }
                _ = cuts.changed() => return,
                _ = watcher.tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream)
}
