//! Where the operator's `now` comes from: the system clock, or a virtual one in tests.

use k8s_openapi::jiff::Timestamp;
use std::sync::Arc;

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The testkit's virtual clock, shared with the fake API server in process.
impl Clock for stash_testkit::VirtualClock {
    fn now(&self) -> Timestamp {
        stash_testkit::VirtualClock::now(self)
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;
