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
#[cfg(feature = "embedded")]
impl Clock for stash_testkit::VirtualClock {
    fn now(&self) -> Timestamp {
        stash_testkit::VirtualClock::now(self)
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The virtual clock of an out-of-process `stash-testkit serve`, read from its
/// `GET /testkit/v1/clock` endpoint and refreshed in the background.
#[cfg(feature = "embedded")]
pub struct ApiServerClock {
    latest: std::sync::Mutex<Timestamp>,
}

#[cfg(feature = "embedded")]
impl ApiServerClock {
    /// Reads the server's clock once, then keeps it fresh every `every`.
    pub async fn start(
        client: kube::Client,
        every: std::time::Duration,
    ) -> Result<Arc<ApiServerClock>, kube::Error> {
        let first = Self::read(&client).await?;
        let clock = Arc::new(ApiServerClock {
            latest: std::sync::Mutex::new(first),
        });
        let weak = Arc::downgrade(&clock);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(clock) = weak.upgrade() else { return };
                match Self::read(&client).await {
                    Ok(t) => {
                        if let Ok(mut latest) = clock.latest.lock() {
                            *latest = t;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "reading the test server's clock failed"),
                }
            }
        });
        Ok(clock)
    }

    async fn read(client: &kube::Client) -> Result<Timestamp, kube::Error> {
        let request = http::Request::get("/testkit/v1/clock")
            .body(Vec::new())
            .map_err(kube::Error::HttpError)?;
        let body: serde_json::Value = client.request(request).await?;
        body.get("now")
            .and_then(|n| n.as_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                kube::Error::Service(
                    "the test server's clock endpoint answered without a time".into(),
                )
            })
    }
}

#[cfg(feature = "embedded")]
impl Clock for ApiServerClock {
    fn now(&self) -> Timestamp {
        self.latest
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|_| Timestamp::now())
    }
}
