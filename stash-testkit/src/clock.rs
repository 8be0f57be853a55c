//! The virtual clock: every timestamp the fake server and its controllers write comes from here.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

/// A clock that only moves when a test advances it.
///
/// It starts at the real time (whole seconds) when created and then stays frozen, so that
/// "advance 60 s, expect exactly one Job" is deterministic. Clones share the same time.
#[derive(Clone, Debug)]
pub struct VirtualClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::starting_now()
    }
}

impl VirtualClock {
    /// A clock frozen at the current wall-clock time, truncated to whole seconds.
    pub fn starting_now() -> Self {
        Self::starting_at(Timestamp::now())
    }

    /// A clock frozen at `start`, truncated to whole seconds.
    pub fn starting_at(start: Timestamp) -> Self {
        let (tx, _) = watch::channel(truncate(start));
        Self { now: Arc::new(tx) }
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    /// The current virtual time in Kubernetes' format, `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn now_string(&self) -> String {
        format_time(self.now())
    }

    /// Moves the clock forward by `by` (rounded down to whole seconds).
    pub fn advance(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX / 4);
        self.now.send_modify(|t| {
            *t = Timestamp::from_second(t.as_second().saturating_add(secs)).unwrap_or(*t);
        });
    }

    /// Sets the clock to `to` (it may move backwards; callers decide whether that makes sense).
    pub fn set(&self, to: Timestamp) {
        self.now.send_replace(truncate(to));
    }

    /// A receiver that observes every change of the clock.
    pub fn subscribe(&self) -> watch::Receiver<Timestamp> {
        self.now.subscribe()
    }
}

fn truncate(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

/// Formats a timestamp the way the API server does: RFC 3339, whole seconds, `Z`.
pub fn format_time(t: Timestamp) -> String {
    truncate(t).to_string()
}

/// Parses an RFC 3339 timestamp as written in object metadata.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_by_whole_seconds_and_formats_without_fraction() {
        let clock = VirtualClock::starting_at("2026-01-02T03:04:05.678Z".parse().unwrap());
        assert_eq!(clock.now_string(), "2026-01-02T03:04:05Z");
        clock.advance(Duration::from_secs(61));
        assert_eq!(clock.now_string(), "2026-01-02T03:05:06Z");
        assert_eq!(parse_time("2026-01-02T03:05:06Z"), Some(clock.now()));
    }
}
