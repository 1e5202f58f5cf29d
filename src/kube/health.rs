//! `/metrics`, `/healthz` (the process is alive) and `/readyz` (every watcher has
//! synced once; a standby is ready too, its caches are warm).

use super::{KubeError, Shared};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) async fn serve(shared: Arc<Shared>, address: &str) -> Result<SocketAddr, KubeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| KubeError::MetricsBind {
            address: address.to_owned(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| KubeError::MetricsBind {
            address: address.to_owned(),
            source,
        })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(shared.clone());
    let mut stop = shared.stop.subscribe();
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics server stopped");
        }
    });
    Ok(addr)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match &shared.metrics {
        Some(h) => {
            // Computed per scrape: it walks every application.
            let deviation = {
                let st = shared.lock();
                super::metrics::capacity_mix_deviation(&shared.config, &st.snap)
            };
            ::metrics::gauge!(super::metrics::CAPACITY_MIX_DEVIATION).set(deviation);
            h.run_upkeep();
            (StatusCode::OK, h.render())
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics go to another recorder\n".into(),
        ),
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, &'static str) {
    if shared.is_synced() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "watchers not synced")
    }
}
