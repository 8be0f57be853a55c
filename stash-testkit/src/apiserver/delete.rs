//! Deletion: preconditions, propagation policies, finalizers and graceful pod deletion.

use serde_json::{json, Value};

use super::{strategy, Apiserver, ListOptions};
use crate::registry::ResourceInfo;
use crate::status::{ApiError, ApiResult};

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Leave dependents, strip their owner references.
    Orphan,
    /// Delete now; the garbage collector deletes dependents afterwards.
    Background,
    /// Delete dependents first, then the owner.
    Foreground,
}

impl Propagation {
    /// Parses the wire value.
    pub fn parse(s: &str) -> ApiResult<Self> {
        match s {
            "Orphan" => Ok(Self::Orphan),
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            other => Err(ApiError::bad_request(format!(
                "unsupported propagation policy {other:?}"
            ))),
        }
    }
}

/// `DeleteOptions`, from a JSON body or query parameters.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy`.
    pub propagation: Option<Propagation>,
    /// Legacy `orphanDependents`.
    pub orphan_dependents: Option<bool>,
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// Reads options from a `DeleteOptions` JSON body; absent fields stay unset.
    pub fn merge_body(&mut self, body: &Value) -> ApiResult<()> {
        if let Some(p) = body["propagationPolicy"].as_str() {
            self.propagation = Some(Propagation::parse(p)?);
        }
        if let Some(o) = body["orphanDependents"].as_bool() {
            self.orphan_dependents = Some(o);
        }
        if let Some(g) = body["gracePeriodSeconds"].as_i64() {
            self.grace_period_seconds = Some(g);
        }
        if let Some(u) = body["preconditions"]["uid"].as_str() {
            self.precondition_uid = Some(u.to_string());
        }
        if let Some(rv) = body["preconditions"]["resourceVersion"].as_str() {
            self.precondition_rv = Some(rv.to_string());
        }
        if body["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|d| d == "All"))
        {
            self.dry_run = true;
        }
        Ok(())
    }
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// The object is gone; its last state.
    Deleted(Value),
    /// The object remains (finalizers, graceful deletion, namespace termination).
    Pending(Value),
}

const JOB_ORPHAN_WARNING: &str = "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning";

impl Apiserver {
    /// Deletes an object; returns the outcome and any `Warning` header texts.
    pub fn delete(
        &self,
        info: &ResourceInfo,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<(DeleteOutcome, Vec<String>)> {
        let mut warnings = Vec::new();
        let mut state = self.store.lock();
        let key = Self::key(info, namespace, name);
        let old = state
            .get(&key)
            .ok_or_else(|| ApiError::not_found(&info.group, &info.plural, name))?;
        let uid = old["metadata"]["uid"].as_str().unwrap_or_default();
        if let Some(u) = opts.precondition_uid.as_deref().filter(|u| *u != uid) {
            // The real server names the Kind (not the resource) in these details.
            return Err(ApiError::precondition_failed(
                &info.group,
                &info.plural,
                &info.kind,
                name,
                &format!("UID in precondition: {u}, UID in object meta: {uid}"),
            ));
        }
        let rv = old["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if let Some(want) = opts.precondition_rv.as_deref().filter(|r| *r != rv) {
            return Err(ApiError::precondition_failed(
                &info.group,
                &info.plural,
                &info.kind,
                name,
                &format!(
                    "ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
                ),
            ));
        }
        let policy = match (opts.propagation, opts.orphan_dependents) {
            (Some(p), _) => p,
            (None, Some(true)) => Propagation::Orphan,
            (None, Some(false)) => Propagation::Background,
            (None, None) if info.is("batch", "jobs") => {
                warnings.push(JOB_ORPHAN_WARNING.to_string());
                Propagation::Orphan
            }
            (None, None) => Propagation::Background,
        };
        let now = self.clock.now_string();
        let mut new = Self::present(info, &old);
        let is_pod = info.is("", "pods");
        let deleting = old["metadata"].get("deletionTimestamp").is_some();
        let has_finalizers = |v: &Value| {
            v["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
        };

        if deleting {
            if is_pod && opts.grace_period_seconds == Some(0) && !has_finalizers(&new) {
                if opts.dry_run {
                    return Ok((DeleteOutcome::Deleted(new), warnings));
                }
                let last = state
                    .remove(&key)
                    .map(|v| Self::present(info, &v))
                    .unwrap_or(new);
                return Ok((DeleteOutcome::Deleted(last), warnings));
            }
            if is_pod && opts.grace_period_seconds == Some(0) {
                new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if !opts.dry_run && new != Self::present(info, &old) {
                    let stored = state.put(key, new);
                    return Ok((
                        DeleteOutcome::Pending(Self::present(info, &stored)),
                        warnings,
                    ));
                }
            }
            return Ok((DeleteOutcome::Pending(new), warnings));
        }

        if !info.is("", "namespaces") {
            let finalizer = match policy {
                Propagation::Orphan => Some("orphan"),
                Propagation::Foreground => Some("foregroundDeletion"),
                Propagation::Background => None,
            };
            if let Some(f) = finalizer {
                if !new["metadata"]["finalizers"].is_array() {
                    new["metadata"]["finalizers"] = json!([]);
                }
                if let Some(list) = new["metadata"]["finalizers"].as_array_mut() {
                    if !list.iter().any(|x| x == f) {
                        list.push(json!(f));
                    }
                }
            }
        }

        if info.is("", "namespaces") {
            new["metadata"]["deletionTimestamp"] = json!(now);
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if !new["status"].is_object() {
                new["status"] = json!({});
            }
            new["status"]["phase"] = json!("Terminating");
            if !opts.dry_run {
                let stored = state.put(key, new);
                return Ok((
                    DeleteOutcome::Pending(Self::present(info, &stored)),
                    warnings,
                ));
            }
            return Ok((DeleteOutcome::Pending(new), warnings));
        }

        if is_pod {
            let phase = old["status"]["phase"].as_str().unwrap_or_default();
            let unscheduled = old["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
            let grace = opts
                .grace_period_seconds
                .or_else(|| old["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                .max(0);
            let immediate = unscheduled || phase == "Succeeded" || phase == "Failed" || grace == 0;
            if !immediate {
                let at = self.clock.now().as_second().saturating_add(grace);
                let at = jiff::Timestamp::from_second(at)
                    .map(crate::clock::format_time)
                    .unwrap_or_else(|_| now.clone());
                new["metadata"]["deletionTimestamp"] = json!(at);
                new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                if opts.dry_run {
                    return Ok((DeleteOutcome::Pending(new), warnings));
                }
                let stored = state.put(key, new);
                return Ok((
                    DeleteOutcome::Pending(Self::present(info, &stored)),
                    warnings,
                ));
            }
        }

        if has_finalizers(&new) {
            new["metadata"]["deletionTimestamp"] = json!(now);
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if opts.dry_run {
                return Ok((DeleteOutcome::Pending(new), warnings));
            }
            let stored = state.put(key, new);
            return Ok((
                DeleteOutcome::Pending(Self::present(info, &stored)),
                warnings,
            ));
        }

        if opts.dry_run {
            return Ok((DeleteOutcome::Deleted(new), warnings));
        }
        let last = state
            .remove(&key)
            .map(|v| Self::present(info, &v))
            .unwrap_or(new);
        strategy::after_commit(self, &mut state, info, Some(&old), None);
        Ok((DeleteOutcome::Deleted(last), warnings))
    }

    /// Deletes every object matching the list options; returns the list of affected objects.
    pub fn delete_collection(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        list: &ListOptions,
        opts: &DeleteOptions,
    ) -> ApiResult<Value> {
        let mut all = ListOptions {
            labels: list.labels.clone(),
            fields: list.fields.clone(),
            ..ListOptions::default()
        };
        all.limit = None;
        let listed = self.list(info, namespace, &all)?;
        let mut items = Vec::new();
        for item in listed["items"].as_array().into_iter().flatten() {
            let ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            match self.delete(info, ns, name, opts) {
                Ok((DeleteOutcome::Deleted(v) | DeleteOutcome::Pending(v), _)) => items.push(v),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(json!({
            "apiVersion": info.api_version(),
            "kind": info.list_kind,
            "metadata": {"resourceVersion": self.store.rev().to_string()},
            "items": items,
        }))
    }
}
