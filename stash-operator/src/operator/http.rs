//! `/metrics`, `/healthz` and `/readyz`.

use super::Context;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Readiness: true once this instance leads and its controllers run.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks ready or not.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
}

/// The router of the operator's HTTP endpoints.
pub fn router(ctx: Arc<Context>, ready: Arc<Readiness>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State((ctx, _)): State<(Arc<Context>, Arc<Readiness>)>| async move {
                    (
                        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
                        ctx.metrics.render(),
                    )
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(
                |State((_, ready)): State<(Arc<Context>, Arc<Readiness>)>| async move {
                    if ready.0.load(Ordering::SeqCst) {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not leading")
                    }
                },
            ),
        )
        .with_state((ctx, ready))
}

/// Serves the router on `addr` until shutdown.
pub async fn serve(
    addr: std::net::SocketAddr,
    router: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}
