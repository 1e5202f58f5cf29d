//! The webhook over real HTTPS on loopback, with a local TLS client.

use super::*;
use crate::admission::ledger::Ledger;
use crate::admission::review::{review, Context};
use crate::admission::tls::Ca;
use crate::config::Config;
use crate::model::capacity::CapacityRules;
use crate::snapshot::Snapshot;
use crate::testkit::{node, pod, GI};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TestReviewer {
    config: Config,
    state: Mutex<(Snapshot, Ledger)>,
    ready: AtomicBool,
}

impl Reviewer for TestReviewer {
    fn review(&self, req: &AdmissionRequest<core::Pod>) -> Reviewed {
        let mut guard = self.state.lock().unwrap();
        let (snap, ledger) = &mut *guard;
        review(
            req,
            &mut Context {
                config: &self.config,
                snap,
                ledger,
                now_ms: 0,
                is_ours: &|p| p.scheduler_name == "spark-fleet",
            },
        )
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

fn reviewer() -> Arc<TestReviewer> {
    let mut sn = Snapshot::new(CapacityRules::default());
    sn.upsert_node(node("od-1", 64_000, 256 * GI).on_demand().build());
    let drv = pod("drv", 1000, GI)
        .namespace("spark")
        .driver("app")
        .on("od-1")
        .annotation(
            "spark-fleet.io/executor-capacity-mix",
            "spot=40,on-demand=60",
        )
        .build();
    sn.upsert_pod(Arc::new(drv)).unwrap();
    Arc::new(TestReviewer {
        config: Config::default(),
        state: Mutex::new((sn, Ledger::default())),
        ready: AtomicBool::new(true),
    })
}

fn write_cert(dir: &std::path::Path, ca: &Ca, name: &str) {
    let (cert, key) = ca
        .issue(&[name.to_owned(), "127.0.0.1".to_owned()], 1)
        .unwrap();
    // A Secret volume swaps both files at once; writing key then cert here, a
    // reload between the two sees a mismatched pair, which is kept out.
    std::fs::write(dir.join("tls.key"), key).unwrap();
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
}

fn client_config(ca: &Ca) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// One HTTP/1.1 request over a new TLS connection: (status, body, server leaf DER).
async fn request(
    addr: SocketAddr,
    ca: &Ca,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(client_config(ca));
    let name = ServerName::try_from("spark-fleet-webhook.spark-fleet.svc").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: webhook\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, dechunk(&body), leaf))
}

/// The body of a chunked response, or the body as is.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_owned();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

fn admission_review(name: &str) -> String {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{name}"),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "spark",
            "operation": "CREATE",
            "userInfo": {"username": "test"},
            "object": {
                "metadata": {"name": name, "labels": {
                    "spark-role": "executor", "spark-app-selector": "app"}},
                "spec": {"schedulerName": "spark-fleet", "containers": [{"name": "c"}]}
            }
        }
    })
    .to_string()
}

fn test_config() -> WebhookConfig {
    WebhookConfig {
        enabled: true,
        address: "127.0.0.1:0".into(),
        cert_reload_seconds: 0.1,
        ..Default::default()
    }
}

#[tokio::test]
async fn mutate_and_healthz_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test-ca").unwrap();
    write_cert(dir.path(), &ca, "spark-fleet-webhook.spark-fleet.svc");
    let rv = reviewer();
    let files = CertFiles::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let wh = start(
        &test_config(),
        rv.clone(),
        Arc::new(CertStore::default()),
        Some(files),
    );
    let addr = wh.wait_listening(Duration::from_secs(10)).await.unwrap();

    let (status, body, _) = request(addr, &ca, "GET", "/healthz", "").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    rv.ready.store(false, Ordering::SeqCst);
    let (status, _, _) = request(addr, &ca, "GET", "/healthz", "").await.unwrap();
    assert_eq!(status, 503);
    rv.ready.store(true, Ordering::SeqCst);

    let (status, body, _) = request(addr, &ca, "POST", "/mutate", &admission_review("e1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["response"]["uid"], "uid-e1");
    assert_eq!(v["response"]["allowed"], true);
    assert_eq!(v["response"]["patchType"], "JSONPatch");
    let patch = v["response"]["patch"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    use base64::Engine as _;
    let ops: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ops[0]["path"], "/metadata/annotations");
    assert_eq!(ops[0]["value"]["spark-fleet.io/capacity-type"], "on-demand");

    // Not an AdmissionReview: 400, nothing admitted.
    let (status, _, _) = request(addr, &ca, "POST", "/mutate", "{\"kind\": 3}")
        .await
        .unwrap();
    assert_eq!(status, 400);
}

/// The certificate files are replaced (cert-manager renewing the Secret): new
/// connections get the new certificate, with no restart; a CA the client does
/// not trust then fails the handshake, proving the new file is what is served.
#[tokio::test]
async fn rotated_certificate_is_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("test-ca").unwrap();
    write_cert(dir.path(), &ca, "spark-fleet-webhook.spark-fleet.svc");
    let files = CertFiles::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let wh = start(
        &test_config(),
        reviewer(),
        Arc::new(CertStore::default()),
        Some(files),
    );
    let addr = wh.wait_listening(Duration::from_secs(10)).await.unwrap();
    let (_, _, first) = request(addr, &ca, "GET", "/healthz", "").await.unwrap();

    write_cert(dir.path(), &ca, "spark-fleet-webhook.spark-fleet.svc");
    let mut second = first.clone();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        second = request(addr, &ca, "GET", "/healthz", "").await.unwrap().2;
        if second != first {
            break;
        }
    }
    assert_ne!(second, first, "the rotated certificate was never served");
    assert_eq!(wh.certs.leaf().unwrap(), second);

    let other = Ca::generate("other-ca").unwrap();
    write_cert(dir.path(), &other, "spark-fleet-webhook.spark-fleet.svc");
    let mut refused = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if request(addr, &ca, "GET", "/healthz", "").await.is_err() {
            refused = true;
            break;
        }
    }
    assert!(refused, "a certificate from another CA was never served");
    let (status, _, _) = request(addr, &other, "GET", "/healthz", "").await.unwrap();
    assert_eq!(status, 200);
}

/// Without certificate files the port stays closed; it opens when they appear.
#[tokio::test]
async fn listens_once_a_certificate_exists() {
    let dir = tempfile::tempdir().unwrap();
    let files = CertFiles::new(dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let wh = start(
        &test_config(),
        reviewer(),
        Arc::new(CertStore::default()),
        Some(files),
    );
    assert_eq!(wh.wait_listening(Duration::from_millis(400)).await, None);
    let ca = Ca::generate("test-ca").unwrap();
    write_cert(dir.path(), &ca, "spark-fleet-webhook.spark-fleet.svc");
    let addr = wh.wait_listening(Duration::from_secs(10)).await.unwrap();
    let (status, _, _) = request(addr, &ca, "GET", "/healthz", "").await.unwrap();
    assert_eq!(status, 200);
}

#[test]
fn ca_rebuilt_from_pem_signs_certificates_the_ca_verifies() {
    let ca = Ca::generate("spark-fleet-webhook-ca").unwrap();
    let again = Ca::from_pem("spark-fleet-webhook-ca", &ca.cert_pem, &ca.key_pem).unwrap();
    let (cert, _) = again.issue(&["svc.ns.svc".to_owned()], 1).unwrap();
    // Verify the chain with webpki through rustls' verifier.
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
    let leaf = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &ServerName::try_from("svc.ns.svc").unwrap(),
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .unwrap();
}
