//! The webhook over HTTPS: `POST /mutate` (AdmissionReview in, AdmissionReview
//! with the response out) and `GET /healthz` (200 once the caches are synced and
//! a certificate is loaded, else 503).
//!
//! The listener is opened once a certificate is loaded, so an instance without
//! one (a local `spark-fleet run`) holds no port; the API server then skips the
//! webhook (`failurePolicy: Ignore`) and the scheduler enforces the mix alone.

use super::review::{Decision, Reviewed};
use super::tls::{CertFiles, CertStore, Reload};
use crate::config::WebhookConfig;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1 as core;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube::core::DynamicObject;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const ADMISSIONS: &str = "spark_fleet_admissions_total";
pub const ADMISSION_DURATION: &str = "spark_fleet_admission_duration_seconds";

/// A TLS handshake that takes longer is dropped (a stuck client holds nothing).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("admission.webhook.address {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
}

/// Decides reviews for the server; the live scheduler's implementation holds
/// its state lock while it decides.
pub trait Reviewer: Send + Sync + 'static {
    fn review(&self, req: &AdmissionRequest<core::Pod>) -> Reviewed;
    /// The snapshot is complete (every watcher listed once).
    fn ready(&self) -> bool;
}

#[derive(Clone)]
struct AppState {
    reviewer: Arc<dyn Reviewer>,
    certs: Arc<CertStore>,
}

/// The router alone (tests call it without TLS).
pub fn router(reviewer: Arc<dyn Reviewer>, certs: Arc<CertStore>) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/healthz", get(healthz))
        .with_state(AppState { reviewer, certs })
}

async fn mutate(
    State(s): State<AppState>,
    body: Result<Json<AdmissionReview<core::Pod>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let started = Instant::now();
    let review = match body {
        Ok(Json(r)) => r,
        Err(e) => {
            ::metrics::counter!(ADMISSIONS, "decision" => "bad_request").increment(1);
            let resp: AdmissionReview<DynamicObject> =
                AdmissionResponse::invalid(e.body_text()).into_review();
            return (StatusCode::BAD_REQUEST, Json(resp)).into_response();
        }
    };
    let req: AdmissionRequest<core::Pod> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            ::metrics::counter!(ADMISSIONS, "decision" => "bad_request").increment(1);
            let resp = AdmissionResponse::invalid(e.to_string()).into_review();
            return (StatusCode::BAD_REQUEST, Json(resp)).into_response();
        }
    };
    // Deciding is microseconds under the scheduler's lock; off the async threads anyway.
    let reviewer = s.reviewer.clone();
    let reviewed = tokio::task::spawn_blocking(move || {
        let r = reviewer.review(&req);
        (r, req)
    })
    .await;
    let (reviewed, req) = match reviewed {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "admission review panicked");
            ::metrics::counter!(ADMISSIONS, "decision" => Decision::Error.as_str()).increment(1);
            let resp = AdmissionResponse::invalid("internal error").into_review();
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(resp)).into_response();
        }
    };
    let decision = reviewed.decision.as_str();
    ::metrics::counter!(ADMISSIONS, "decision" => decision).increment(1);
    ::metrics::histogram!(ADMISSION_DURATION).record(started.elapsed().as_secs_f64());
    let pod = req.object.as_ref().map(|p| {
        let m = &p.metadata;
        format!(
            "{}/{}",
            req.namespace.as_deref().unwrap_or(""),
            m.name
                .as_deref()
                .or(m.generate_name.as_deref())
                .unwrap_or("")
        )
    });
    match reviewed.decision {
        Decision::Invalid | Decision::Error => {
            tracing::warn!(pod = pod.unwrap_or_default(), decision, why = %reviewed.why, "admitted unchanged")
        }
        _ => {
            tracing::debug!(pod = pod.unwrap_or_default(), decision, why = %reviewed.why, "admitted")
        }
    }
    Json(review_json(reviewed.response)).into_response()
}

/// The response as an AdmissionReview, its patch base64-encoded as the API
/// documents it (`AdmissionResponse` serializes bytes as a number array).
fn review_json(response: AdmissionResponse) -> serde_json::Value {
    use base64::Engine as _;
    let patch = response
        .patch
        .as_ref()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let mut v = serde_json::to_value(response.into_review()).unwrap_or_default();
    if let (Some(p), Some(r)) = (patch, v.get_mut("response")) {
        r["patch"] = serde_json::Value::String(p);
    }
    v
}

async fn healthz(State(s): State<AppState>) -> Response {
    if !s.certs.is_loaded() {
        (StatusCode::SERVICE_UNAVAILABLE, "no certificate loaded\n").into_response()
    } else if !s.reviewer.ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

/// Registers the admission metrics at zero (the histogram appears with its first
/// observation).
pub fn describe_metrics() {
    for d in Decision::ALL {
        ::metrics::counter!(ADMISSIONS, "decision" => d.as_str()).increment(0);
    }
}

/// A running webhook server.
pub struct Webhook {
    pub certs: Arc<CertStore>,
    addr: watch::Receiver<Option<SocketAddr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// The address listened on, once a certificate was loaded and the port opened.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.addr.borrow()
    }

    /// Waits until the port is open (or `timeout` passes).
    pub async fn wait_listening(&self, timeout: Duration) -> Option<SocketAddr> {
        let mut rx = self.addr.clone();
        let wait = async move { rx.wait_for(Option::is_some).await.ok().and_then(|a| *a) };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the server: with `files`, the certificate is (re)read from them every
/// `cert_reload_seconds`; without, `certs` must be filled by the caller
/// (self-signed mode). Listens once a certificate is loaded.
pub fn start(
    cfg: &WebhookConfig,
    reviewer: Arc<dyn Reviewer>,
    certs: Arc<CertStore>,
    files: Option<CertFiles>,
) -> Webhook {
    let (addr_tx, addr) = watch::channel(None);
    let task = tokio::spawn(run(
        cfg.address.clone(),
        Duration::from_secs_f64(cfg.cert_reload_seconds.max(0.1)),
        reviewer,
        certs.clone(),
        files,
        addr_tx,
    ));
    Webhook { certs, addr, task }
}

async fn run(
    address: String,
    reload_every: Duration,
    reviewer: Arc<dyn Reviewer>,
    certs: Arc<CertStore>,
    mut files: Option<CertFiles>,
    addr_tx: watch::Sender<Option<SocketAddr>>,
) {
    let mut warned = false;
    let mut reload = |files: &mut Option<CertFiles>| {
        let Some(f) = files.as_mut() else { return };
        match f.reload(&certs) {
            Ok(Reload::Loaded) => tracing::info!("admission webhook certificate loaded"),
            Ok(Reload::Unchanged) => {}
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(error = %e, "admission webhook certificate not loaded; pods are \
                    admitted without capacity-type constraints until it is (admission.webhook)");
            }
            Err(e) => tracing::debug!(error = %e, "admission webhook certificate not loaded"),
        }
    };
    // Wait for a certificate before opening the port.
    loop {
        reload(&mut files);
        if certs.is_loaded() {
            break;
        }
        tokio::time::sleep(reload_every).await;
    }
    let listener = loop {
        match TcpListener::bind(&address).await {
            Ok(l) => break l,
            Err(source) => {
                tracing::error!(error = %ServerError::Bind { address: address.clone(), source }, "retrying");
                tokio::time::sleep(reload_every).await;
            }
        }
    };
    let local = listener.local_addr().ok();
    tracing::info!(address = ?local, "admission webhook listening");
    let _ = addr_tx.send(local);
    let tls = match tls_config(certs.clone()) {
        Ok(c) => tokio_rustls::TlsAcceptor::from(c),
        Err(e) => {
            tracing::error!(error = %e, "admission webhook TLS configuration");
            return;
        }
    };
    let app = router(reviewer, certs.clone());
    let mut ticker = tokio::time::interval(reload_every);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (tls, app) = (tls.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await else {
                        return;
                    };
                    let service = TowerToHyperService::new(app);
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                    if let Err(e) = conn {
                        tracing::debug!(error = %e, "admission webhook connection");
                    }
                });
            }
            _ = ticker.tick() => reload(&mut files),
        }
    }
}

/// TLS 1.2+ with the certificate `certs` holds at each handshake; HTTP/1.1.
pub fn tls_config(certs: Arc<CertStore>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
