//! Events that must exist once, such as a session's end: created under the name the planner
//! chose, so that a repeat (after a lost answer, a retry or an operator restart) finds the
//! first one (AlreadyExists) instead of adding a second.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::events::{EventType, Reporter};
use stash_core::plan::EventSpec;
use std::collections::HashSet;
use std::sync::Mutex;

/// Names this process remembers before it forgets them all (a repeat then costs one create
/// answered AlreadyExists, never a second Event).
const REMEMBERED: usize = 10_000;

/// The named events this process has made sure of.
pub struct OnceEvents {
    reporter: Reporter,
    sent: Mutex<HashSet<String>>,
}

impl OnceEvents {
    /// Events reported as `reporter`.
    pub fn new(reporter: Reporter) -> Self {
        OnceEvents {
            reporter,
            sent: Mutex::default(),
        }
    }

    fn sent(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A set of names: a panic elsewhere cannot leave it inconsistent.
        self.sent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates the event `e` named `name` about `regarding`, unless it exists already.
    pub async fn publish(
        &self,
        client: &kube::Client,
        name: &str,
        e: &EventSpec,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        if self.sent().contains(name) {
            return Ok(());
        }
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let planned = super::apply::kube_event(e);
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..Default::default()
            },
            action: Some(planned.action),
            reason: Some(planned.reason),
            note: planned.note,
            type_: Some(
                match planned.type_ {
                    EventType::Warning => "Warning",
                    EventType::Normal => "Normal",
                }
                .into(),
            ),
            regarding: Some(regarding.clone()),
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        };
        match Api::<Event>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &event)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(err) => return Err(err),
        }
        let mut sent = self.sent();
        if sent.len() >= REMEMBERED {
            sent.clear();
        }
        sent.insert(name.to_string());
        Ok(())
    }
}
