//! The admission webhook in the live scheduler: every replica serves it (a
//! standby's watchers keep the same snapshot and ledger warm), deciding under
//! the scheduler's state lock so concurrent admissions of one application count
//! each other; the watch reconciles the ledger; and, without cert-manager, a
//! certificate signed by a CA kept in a Secret, with the CA written into the
//! MutatingWebhookConfiguration.

use super::{KubeError, Shared, State};
use crate::admission::review::{review, Context, Reviewed};
use crate::admission::server::{self, Reviewer, Webhook};
use crate::admission::tls::{certified_key, Ca, CertFiles, CertStore};
use crate::config::SelfSignedConfig;
use crate::model::{Pod, PodKey};
use crate::spark::policy;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::admission::AdmissionRequest;
use kube::Api;
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Common name of the self-signed CA.
const CA_NAME: &str = "spark-fleet-webhook-ca";
/// Serving certificates issued in self-signed mode are valid this long; the
/// process issues a new one at every start.
const SERVING_DAYS: i64 = 365;

/// Reviews against the live state. Holds the scheduler weakly: a stopped
/// scheduler's webhook answers "not ready".
struct LiveReviewer {
    shared: Weak<Shared>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Reviewer for LiveReviewer {
    fn review(&self, req: &AdmissionRequest<core::Pod>) -> Reviewed {
        let Some(shared) = self.shared.upgrade() else {
            return review_without_state(req);
        };
        let config = &shared.config;
        let ttl_ms = (config.admission.admitted_ttl_seconds * 1000.0) as i64;
        let now = now_ms();
        let mut st = shared.lock();
        let st = &mut *st;
        st.admissions.expire(now, ttl_ms);
        let is_ours = |p: &Pod| {
            p.scheduler_name == config.scheduler_name
                && shared.partition.admits(p.key.namespace.as_str(), &p.labels)
        };
        review(
            req,
            &mut Context {
                config,
                snap: &st.snap,
                ledger: &mut st.admissions,
                now_ms: now,
                is_ours: &is_ours,
            },
        )
    }

    fn ready(&self) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|s| s.is_synced() && !s.stopping())
    }
}

/// A scheduler that is gone admits everything unchanged.
fn review_without_state(req: &AdmissionRequest<core::Pod>) -> Reviewed {
    Reviewed {
        response: kube::core::admission::AdmissionResponse::from(req),
        decision: crate::admission::review::Decision::Skipped,
        why: "scheduler stopped".into(),
        patch: Vec::new(),
    }
}

/// Keeps the ledger in step with a pod the watch shows (converted).
pub(super) fn observe(shared: &Shared, st: &mut State, pod: &Pod) {
    if !pod.is_executor() || pod.scheduler_name != shared.config.scheduler_name {
        return;
    }
    let ty = policy::admitted_type(&shared.config, pod).ok().flatten();
    st.admissions.observe(pod, ty);
}

/// The pod was deleted.
pub(super) fn forget(st: &mut State, key: &PodKey) {
    st.admissions.forget_key(key);
}

/// Starts the webhook as configured: certificate files, or self-signed.
pub(super) fn start(shared: &Arc<Shared>) -> Webhook {
    let cfg = &shared.config.admission.webhook;
    let reviewer = Arc::new(LiveReviewer {
        shared: Arc::downgrade(shared),
    });
    server::describe_metrics();
    let certs = Arc::new(CertStore::default());
    if cfg.self_signed.enabled {
        tokio::spawn(self_signed(shared.clone(), certs.clone()));
        server::start(cfg, reviewer, certs, None)
    } else {
        let files = CertFiles::new(&cfg.cert_file, &cfg.key_file);
        server::start(cfg, reviewer, certs, Some(files))
    }
}

/// `POD_NAMESPACE`, else `spark-fleet` (as the lease).
fn own_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "spark-fleet".into())
}

/// Self-signed mode: the certificate is made once (retried with backoff until
/// the CA is had), then the caBundle is kept equal to the CA (checked every
/// minute: a re-applied configuration loses it).
async fn self_signed(shared: Arc<Shared>, certs: Arc<CertStore>) {
    const MAX_DELAY: Duration = Duration::from_secs(60);
    let cfg = &shared.config.admission.webhook.self_signed;
    let mut delay = Duration::from_secs(1);
    let ca = loop {
        if shared.stopping() {
            return;
        }
        match issue_self_signed(&shared, &certs).await {
            Ok(ca) => break ca,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "admission webhook: self-signed certificate")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    };
    delay = Duration::from_secs(1);
    while !shared.stopping() {
        match write_ca_bundle(&shared, &cfg.webhook_configuration, &ca.cert_pem).await {
            Ok(()) => delay = MAX_DELAY,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "admission webhook: caBundle");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_DELAY);
    }
}

/// Issues this replica's serving certificate from the shared CA and serves it.
async fn issue_self_signed(shared: &Shared, certs: &CertStore) -> Result<Ca, KubeError> {
    let cfg = &shared.config.admission.webhook.self_signed;
    let ns = own_namespace();
    let ca = shared_ca(shared, cfg, &ns).await?;
    let svc = &cfg.service_name;
    let mut names = vec![
        svc.clone(),
        format!("{svc}.{ns}"),
        format!("{svc}.{ns}.svc"),
        format!("{svc}.{ns}.svc.cluster.local"),
    ];
    names.extend(cfg.hosts.iter().cloned());
    let (cert, key) = ca
        .issue(&names, SERVING_DAYS)
        .map_err(|e| KubeError::Config(e.to_string()))?;
    let ck = certified_key(cert.as_bytes(), key.as_bytes()).map_err(KubeError::Config)?;
    certs.set(ck);
    Ok(ca)
}

/// The CA every replica signs with: read from the Secret, or made and stored
/// there by the first replica (a replica losing the race reads the winner's).
async fn shared_ca(shared: &Shared, cfg: &SelfSignedConfig, ns: &str) -> Result<Ca, KubeError> {
    let secrets: Api<core::Secret> = Api::namespaced(shared.client.clone(), ns);
    let from_secret = |s: &core::Secret| -> Result<Ca, KubeError> {
        let data = s.data.clone().unwrap_or_default();
        let field = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .ok_or_else(|| {
                    KubeError::Config(format!(
                        "Secret {ns}/{} has no {k} (admission.webhook.selfSigned.caSecret)",
                        cfg.ca_secret
                    ))
                })
        };
        Ca::from_pem(CA_NAME, &field("ca.crt")?, &field("ca.key")?)
            .map_err(|e| KubeError::Config(e.to_string()))
    };
    shared.limiter.acquire().await;
    if let Some(s) = secrets.get_opt(&cfg.ca_secret).await? {
        return from_secret(&s);
    }
    let ca = Ca::generate(CA_NAME).map_err(|e| KubeError::Config(e.to_string()))?;
    let secret = core::Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(cfg.ca_secret.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "spark-fleet".to_owned(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            ("ca.crt".to_owned(), ByteString(ca.cert_pem.clone().into())),
            ("ca.key".to_owned(), ByteString(ca.key_pem.clone().into())),
        ])),
        ..Default::default()
    };
    shared.limiter.acquire().await;
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(ca),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            shared.limiter.acquire().await;
            from_secret(&secrets.get(&cfg.ca_secret).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sets every webhook's `clientConfig.caBundle` in the configuration to `ca_pem`
/// (a JSON Patch guarded by the resourceVersion read).
async fn write_ca_bundle(shared: &Shared, name: &str, ca_pem: &str) -> Result<(), KubeError> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(shared.client.clone());
    shared.limiter.acquire().await;
    let current = api.get(name).await?;
    let want = ByteString(ca_pem.as_bytes().to_vec());
    let webhooks = current.webhooks.clone().unwrap_or_default();
    if webhooks
        .iter()
        .all(|w| w.client_config.ca_bundle.as_ref() == Some(&want))
    {
        return Ok(());
    }
    let mut ops = vec![serde_json::json!({
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": current.metadata.resource_version,
    })];
    for i in 0..webhooks.len() {
        ops.push(serde_json::json!({
            "op": "add",
            "path": format!("/webhooks/{i}/clientConfig/caBundle"),
            "value": want,
        }));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::Value::Array(ops)).map_err(|e| {
            KubeError::Config(format!(
                "caBundle patch for MutatingWebhookConfiguration {name}: {e}"
            ))
        })?;
    shared.limiter.acquire().await;
    api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await?;
    tracing::info!(configuration = name, "admission webhook: caBundle written");
    Ok(())
}
