//! Keeps `deploy/` installable: every YAML document under it parses into its typed Kubernetes
//! object (or is a known non-core document), the kustomization lists what exists, RBAC stays
//! least-privilege, the Deployment stays hardened, and the Grafana dashboard queries the metric
//! names the scheduler exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

const NAMESPACE: &str = "spark-fleet";
const SERVICE_ACCOUNT: &str = "spark-fleet";
const SCHEDULER_NAME: &str = "spark-fleet";
const LEASE_NAME: &str = "spark-fleet";
const CONFIG_MAP: &str = "spark-fleet-config";
const CONFIG_KEY: &str = "spark-fleet.yaml";
const CONFIG_MOUNT: &str = "/etc/spark-fleet";
const METRICS_PORT: i32 = 8080;
const RUN_AS_USER: i64 = 65532;
const WEBHOOK_SERVICE: &str = "spark-fleet-webhook";
const WEBHOOK_CONFIGURATION: &str = "spark-fleet";
const WEBHOOK_PORT: i32 = 8443;
const WEBHOOK_TLS_SECRET: &str = "spark-fleet-webhook-tls";
const WEBHOOK_CA_SECRET: &str = "spark-fleet-webhook-ca";

/// Metric names the dashboard must chart, with the labels it must group by.
const DASHBOARD_METRICS: &[(&str, MetricKind, &[&str])] = &[
    (
        "spark_fleet_schedule_attempts_total",
        MetricKind::Counter,
        &["result"],
    ),
    (
        "spark_fleet_scheduling_algorithm_duration_seconds",
        MetricKind::Histogram,
        &[],
    ),
    (
        "spark_fleet_e2e_scheduling_duration_seconds",
        MetricKind::Histogram,
        &[],
    ),
    ("spark_fleet_pending_pods", MetricKind::Gauge, &["queue"]),
    (
        "spark_fleet_binds_total",
        MetricKind::Counter,
        &["role", "capacity_type"],
    ),
    (
        "spark_fleet_preemption_victims_total",
        MetricKind::Counter,
        &["role"],
    ),
    (
        "spark_fleet_capacity_fallbacks_total",
        MetricKind::Counter,
        &[],
    ),
    (
        "spark_fleet_app_capacity_mix_deviation",
        MetricKind::Gauge,
        &[],
    ),
    ("spark_fleet_leader", MetricKind::Gauge, &[]),
];

#[derive(Clone, Copy, PartialEq, Debug)]
enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Where a document came from, for error messages and for telling base from examples.
#[derive(Clone, Debug)]
struct Origin {
    /// Path relative to `deploy/`, with `/` separators.
    file: String,
    /// 1-based document number within the file.
    doc: usize,
}

impl Origin {
    fn is_example(&self) -> bool {
        self.file.starts_with("examples/")
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "deploy/{} (document {})", self.file, self.doc)
    }
}

#[derive(Default)]
struct Manifests {
    kustomization: Value,
    /// configMapGenerator sources: scheduler config, not Kubernetes objects.
    config_files: Vec<(String, Value)>,
    namespaces: Vec<(Origin, Namespace)>,
    service_accounts: Vec<(Origin, ServiceAccount)>,
    cluster_roles: Vec<(Origin, ClusterRole)>,
    cluster_role_bindings: Vec<(Origin, ClusterRoleBinding)>,
    roles: Vec<(Origin, Role)>,
    role_bindings: Vec<(Origin, RoleBinding)>,
    deployments: Vec<(Origin, Deployment)>,
    services: Vec<(Origin, Service)>,
    priority_classes: Vec<(Origin, PriorityClass)>,
    pod_disruption_budgets: Vec<(Origin, PodDisruptionBudget)>,
    config_maps: Vec<(Origin, ConfigMap)>,
    pods: Vec<(Origin, Pod)>,
    spark_applications: Vec<(Origin, Value)>,
    mutating_webhooks: Vec<(Origin, MutatingWebhookConfiguration)>,
    /// cert-manager objects (kind, document).
    cert_manager: Vec<(Origin, String, Value)>,
    /// Files (relative to deploy/) holding at least one Kubernetes object.
    object_files: BTreeSet<String>,
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    let rel = path.strip_prefix(deploy_dir()).unwrap();
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// All YAML documents of a file; `---` separates documents.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
}

/// The first path present in `original` but absent or different in `round_trip`. The typed
/// k8s-openapi deserializers ignore unknown fields, so a misspelt field would otherwise pass.
fn first_lost_field(original: &Value, round_trip: &Value, path: &str) -> Option<String> {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => a.iter().find_map(|(key, value)| {
            let child = format!("{path}.{key}");
            match b.get(key) {
                None => Some(child),
                Some(other) => first_lost_field(value, other, &child),
            }
        }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_lost_field(x, y, &format!("{path}[{i}]"))),
        (a, b) if a == b => None,
        _ => Some(path.to_string()),
    }
}

fn typed<K>(origin: &Origin, value: &Value) -> K
where
    K: k8s_openapi::Resource + DeserializeOwned + Serialize,
{
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    assert_eq!(
        api_version,
        K::API_VERSION,
        "{origin}: {} must use apiVersion {}",
        K::KIND,
        K::API_VERSION
    );
    let object: K = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{origin}: not a valid {} {}: {e}", K::API_VERSION, K::KIND));
    let round_trip = serde_json::to_value(&object).unwrap();
    if let Some(field) = first_lost_field(value, &round_trip, "") {
        panic!(
            "{origin}: field `{field}` is not part of {} {} (typo or wrong type?)",
            K::API_VERSION,
            K::KIND
        );
    }
    object
}

/// configMapGenerator sources in the kustomization, as `(config map name, key, file)`.
fn generator_files(kustomization: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for generator in kustomization["configMapGenerator"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let name = generator["name"]
            .as_str()
            .expect("configMapGenerator without name");
        for entry in generator["files"].as_array().into_iter().flatten() {
            let entry = entry
                .as_str()
                .expect("configMapGenerator file must be a string");
            // `key=path` sets the key; a bare path uses the file name.
            let (key, file) = match entry.split_once('=') {
                Some((key, file)) => (key.to_string(), file.to_string()),
                None => (
                    entry.rsplit('/').next().unwrap_or(entry).to_string(),
                    entry.to_string(),
                ),
            };
            out.push((name.to_string(), key, file));
        }
    }
    out
}

fn load() -> Manifests {
    let dir = deploy_dir();
    let kustomization_path = dir.join("kustomization.yaml");
    let mut docs = yaml_documents(&kustomization_path);
    assert_eq!(
        docs.len(),
        1,
        "deploy/kustomization.yaml: expected one document"
    );
    let kustomization = docs.remove(0);
    let generator_sources: BTreeSet<String> = generator_files(&kustomization)
        .into_iter()
        .map(|(_, _, file)| file)
        .collect();

    let mut manifests = Manifests {
        kustomization,
        ..Manifests::default()
    };
    let mut files = Vec::new();
    yaml_files(&dir, &mut files);
    files.sort();
    assert!(files.len() > 1, "no manifests found under deploy/");

    for path in files {
        let rel = relative(&path);
        if rel == "kustomization.yaml" {
            continue;
        }
        let documents = yaml_documents(&path);
        if generator_sources.contains(&rel) {
            let [config] = <[Value; 1]>::try_from(documents)
                .unwrap_or_else(|_| panic!("deploy/{rel}: expected exactly one YAML document"));
            manifests.config_files.push((rel, config));
            continue;
        }
        assert!(!documents.is_empty(), "deploy/{rel}: no YAML documents");
        for (i, value) in documents.iter().enumerate() {
            let origin = Origin {
                file: rel.clone(),
                doc: i + 1,
            };
            classify(&mut manifests, origin, value);
        }
        manifests.object_files.insert(rel);
    }
    manifests
}

fn classify(m: &mut Manifests, origin: Origin, value: &Value) {
    let kind = value["kind"]
        .as_str()
        .unwrap_or_else(|| panic!("{origin}: no `kind`; not a Kubernetes object"));
    let api_version = value["apiVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("{origin}: no `apiVersion`"));
    match kind {
        "Namespace" => m.namespaces.push((origin.clone(), typed(&origin, value))),
        "ServiceAccount" => m
            .service_accounts
            .push((origin.clone(), typed(&origin, value))),
        "ClusterRole" => m
            .cluster_roles
            .push((origin.clone(), typed(&origin, value))),
        "ClusterRoleBinding" => m
            .cluster_role_bindings
            .push((origin.clone(), typed(&origin, value))),
        "Role" => m.roles.push((origin.clone(), typed(&origin, value))),
        "RoleBinding" => m
            .role_bindings
            .push((origin.clone(), typed(&origin, value))),
        "Deployment" => m.deployments.push((origin.clone(), typed(&origin, value))),
        "Service" => m.services.push((origin.clone(), typed(&origin, value))),
        "PriorityClass" => m
            .priority_classes
            .push((origin.clone(), typed(&origin, value))),
        "PodDisruptionBudget" => m
            .pod_disruption_budgets
            .push((origin.clone(), typed(&origin, value))),
        "ConfigMap" => m.config_maps.push((origin.clone(), typed(&origin, value))),
        "Pod" => m.pods.push((origin.clone(), typed(&origin, value))),
        "SparkApplication" => {
            assert_eq!(
                api_version, "sparkoperator.k8s.io/v1beta2",
                "{origin}: SparkApplication apiVersion"
            );
            m.spark_applications.push((origin, value.clone()));
        }
        "MutatingWebhookConfiguration" => m
            .mutating_webhooks
            .push((origin.clone(), typed(&origin, value))),
        "Certificate" | "Issuer" => {
            assert_eq!(
                api_version, "cert-manager.io/v1",
                "{origin}: cert-manager apiVersion"
            );
            m.cert_manager
                .push((origin, kind.to_owned(), value.clone()));
        }
        other => panic!("{origin}: unknown kind {api_version} {other}; teach this test about it"),
    }
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn the_deployment(m: &Manifests) -> &Deployment {
    let base: Vec<_> = m
        .deployments
        .iter()
        .filter(|(o, _)| !o.is_example())
        .collect();
    assert_eq!(base.len(), 1, "expected exactly one Deployment in deploy/");
    &base[0].1
}

#[test]
fn every_yaml_document_under_deploy_is_a_known_object() {
    // load() fails on the first document that is not valid YAML, has an unknown kind, or
    // carries a field its typed object does not have; here we also pin the inventory.
    let m = load();
    let inventory = [
        ("Namespace", m.namespaces.len()),
        ("ServiceAccount", m.service_accounts.len()),
        ("ClusterRole", m.cluster_roles.len()),
        ("ClusterRoleBinding", m.cluster_role_bindings.len()),
        ("Role", m.roles.len()),
        ("RoleBinding", m.role_bindings.len()),
        ("Deployment", m.deployments.len()),
        ("Service", m.services.len()),
        ("PodDisruptionBudget", m.pod_disruption_budgets.len()),
        ("PriorityClass", m.priority_classes.len()),
        ("Pod", m.pods.len()),
        ("SparkApplication", m.spark_applications.len()),
    ];
    for (kind, count) in inventory {
        assert!(count > 0, "no {kind} under deploy/");
    }
    assert!(m.object_files.contains("rbac.yaml"));
    assert!(m.object_files.contains("examples/priorityclasses.yaml"));
}

// ---------------------------------------------------------------------------------------------
// RBAC

/// (apiGroup, resource, verb, resourceName) grants of a rule list, wildcards kept literally.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String, Option<String>)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        let names: Vec<Option<String>> = match &rule.resource_names {
            Some(names) if !names.is_empty() => names.iter().cloned().map(Some).collect(),
            _ => vec![None],
        };
        for g in &groups {
            for r in &resources {
                for v in &rule.verbs {
                    for n in &names {
                        out.insert((g.clone(), r.clone(), v.clone(), n.clone()));
                    }
                }
            }
        }
    }
    out
}

fn grant_set(
    spec: &[(&str, &str, &[&str], Option<&str>)],
) -> BTreeSet<(String, String, String, Option<String>)> {
    spec.iter()
        .flat_map(|(g, r, verbs, name)| {
            verbs.iter().map(move |v| {
                (
                    g.to_string(),
                    r.to_string(),
                    v.to_string(),
                    name.map(str::to_string),
                )
            })
        })
        .collect()
}

fn expected_cluster_grants() -> BTreeSet<(String, String, String, Option<String>)> {
    grant_set(&[
        ("", "pods", &["get", "list", "watch", "delete"], None),
        ("", "pods/binding", &["create"], None),
        ("", "pods/status", &["patch", "update"], None),
        ("", "nodes", &["get", "list", "watch"], None),
        ("", "events", &["create", "patch", "update"], None),
        (
            "events.k8s.io",
            "events",
            &["create", "patch", "update"],
            None,
        ),
        (
            "policy",
            "poddisruptionbudgets",
            &["get", "list", "watch"],
            None,
        ),
        (
            "scheduling.k8s.io",
            "priorityclasses",
            &["get", "list", "watch"],
            None,
        ),
    ])
}

fn expected_lease_grants() -> BTreeSet<(String, String, String, Option<String>)> {
    grant_set(&[
        ("coordination.k8s.io", "leases", &["create"], None),
        (
            "coordination.k8s.io",
            "leases",
            &["get", "update", "patch"],
            Some(LEASE_NAME),
        ),
    ])
}

fn check_rules(
    rules: &[PolicyRule],
    expected: &BTreeSet<(String, String, String, Option<String>)>,
) -> Result<(), String> {
    if rules.iter().any(|r| r.non_resource_urls.is_some()) {
        return Err("nonResourceURLs are not needed".into());
    }
    let actual = grants(rules);
    let extra: Vec<_> = actual.difference(expected).collect();
    let missing: Vec<_> = expected.difference(&actual).collect();
    if extra.is_empty() && missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "grants differ from least privilege: extra {extra:?}, missing {missing:?}"
        ))
    }
}

fn check_cluster_role(role: &ClusterRole) -> Result<(), String> {
    if role.aggregation_rule.is_some() {
        return Err("aggregationRule would pull in other roles' grants".into());
    }
    check_rules(
        role.rules.as_deref().unwrap_or_default(),
        &expected_cluster_grants(),
    )
}

#[test]
fn cluster_role_grants_exactly_what_the_scheduler_needs() {
    let m = load();
    let base: Vec<_> = m
        .cluster_roles
        .iter()
        .filter(|(o, _)| !o.is_example())
        .collect();
    assert_eq!(base.len(), 1, "expected one ClusterRole");
    let (origin, role) = base[0];
    assert_eq!(role.metadata.name.as_deref(), Some("spark-fleet"));
    check_cluster_role(role).unwrap_or_else(|e| panic!("{origin}: {e}"));
}

#[test]
fn cluster_role_check_rejects_wildcards_secrets_and_missing_verbs() {
    let m = load();
    let base = m
        .cluster_roles
        .iter()
        .find(|(o, _)| !o.is_example())
        .unwrap()
        .1
        .clone();

    let mut wildcard = base.clone();
    wildcard.rules.as_mut().unwrap()[0].verbs.push("*".into());
    assert!(check_cluster_role(&wildcard).is_err(), "`*` verb accepted");

    let mut secrets = base.clone();
    secrets.rules.as_mut().unwrap().push(PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["secrets".into()]),
        verbs: vec!["get".into()],
        ..PolicyRule::default()
    });
    assert!(check_cluster_role(&secrets).is_err(), "secrets accepted");

    let mut all_resources = base.clone();
    all_resources.rules.as_mut().unwrap()[0].resources = Some(vec!["*".into()]);
    assert!(
        check_cluster_role(&all_resources).is_err(),
        "`*` resource accepted"
    );

    let mut no_binding = base;
    no_binding
        .rules
        .as_mut()
        .unwrap()
        .retain(|r| r.resources.as_deref() != Some(&["pods/binding".to_string()][..]));
    assert!(
        check_cluster_role(&no_binding).is_err(),
        "missing pods/binding accepted"
    );
}

#[test]
fn leader_election_role_is_namespaced_and_limited_to_one_lease() {
    let m = load();
    let base: Vec<_> = m.roles.iter().filter(|(o, _)| !o.is_example()).collect();
    assert_eq!(base.len(), 1, "expected one Role");
    let (origin, role) = base[0];
    assert_eq!(
        role.metadata.namespace.as_deref(),
        Some(NAMESPACE),
        "{origin}"
    );
    check_rules(
        role.rules.as_deref().unwrap_or_default(),
        &expected_lease_grants(),
    )
    .unwrap_or_else(|e| panic!("{origin}: {e}"));

    // Names on `create` make the rule useless: RBAC never matches a name for create.
    let mut named_create = role.clone();
    named_create.rules.as_mut().unwrap()[0].resource_names = Some(vec![LEASE_NAME.into()]);
    assert!(check_rules(
        named_create.rules.as_deref().unwrap(),
        &expected_lease_grants()
    )
    .is_err());
    // And unnamed update would let us overwrite other components' leases.
    let mut any_lease = role.clone();
    any_lease.rules.as_mut().unwrap()[1].resource_names = None;
    assert!(check_rules(
        any_lease.rules.as_deref().unwrap(),
        &expected_lease_grants()
    )
    .is_err());
}

#[test]
fn bindings_give_the_roles_to_our_service_account_only() {
    let m = load();
    let sa: Vec<_> = m
        .service_accounts
        .iter()
        .map(|(_, sa)| (sa.metadata.name.clone(), sa.metadata.namespace.clone()))
        .collect();
    assert_eq!(
        sa,
        vec![(
            Some(SERVICE_ACCOUNT.to_string()),
            Some(NAMESPACE.to_string())
        )]
    );

    // Base and opt-in (examples/) bindings alike: each names a role of its own
    // group and only our service account.
    let our_subject =
        |origin: &Origin, subjects: Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
            let subjects = subjects.unwrap_or_default();
            assert_eq!(subjects.len(), 1, "{origin}: exactly one subject");
            assert_eq!(subjects[0].kind, "ServiceAccount", "{origin}");
            assert_eq!(subjects[0].name, SERVICE_ACCOUNT, "{origin}");
            assert_eq!(
                subjects[0].namespace.as_deref(),
                Some(NAMESPACE),
                "{origin}"
            );
        };
    for example in [false, true] {
        let roles: Vec<String> = m
            .cluster_roles
            .iter()
            .filter(|(o, _)| o.is_example() == example)
            .filter_map(|(_, r)| r.metadata.name.clone())
            .collect();
        let bindings: Vec<_> = m
            .cluster_role_bindings
            .iter()
            .filter(|(o, _)| o.is_example() == example)
            .collect();
        assert_eq!(
            bindings.len(),
            1,
            "one ClusterRoleBinding (examples: {example})"
        );
        for (origin, crb) in bindings {
            assert_eq!(crb.role_ref.kind, "ClusterRole", "{origin}");
            assert!(roles.contains(&crb.role_ref.name), "{origin}");
            our_subject(origin, crb.subjects.clone());
        }
        let roles: Vec<String> = m
            .roles
            .iter()
            .filter(|(o, _)| o.is_example() == example)
            .filter_map(|(_, r)| r.metadata.name.clone())
            .collect();
        let bindings: Vec<_> = m
            .role_bindings
            .iter()
            .filter(|(o, _)| o.is_example() == example)
            .collect();
        assert_eq!(bindings.len(), 1, "one RoleBinding (examples: {example})");
        for (origin, rb) in bindings {
            assert_eq!(
                rb.metadata.namespace.as_deref(),
                Some(NAMESPACE),
                "{origin}"
            );
            assert_eq!(rb.role_ref.kind, "Role", "{origin}");
            assert!(roles.contains(&rb.role_ref.name), "{origin}");
            our_subject(origin, rb.subjects.clone());
        }
    }
}

fn expected_self_signed_cluster_grants() -> BTreeSet<(String, String, String, Option<String>)> {
    grant_set(&[(
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        &["get", "patch"],
        Some(WEBHOOK_CONFIGURATION),
    )])
}

fn expected_self_signed_grants() -> BTreeSet<(String, String, String, Option<String>)> {
    grant_set(&[
        ("", "secrets", &["create"], None),
        ("", "secrets", &["get"], Some(WEBHOOK_CA_SECRET)),
    ])
}

/// Self-signed mode's opt-in grants (deploy/examples/webhook-self-signed-rbac.yaml):
/// the one MutatingWebhookConfiguration by name, the CA Secret by name (create
/// cannot be named), nothing else.
#[test]
fn self_signed_rbac_grants_exactly_the_ca_secret_and_the_webhook_configuration() {
    let m = load();
    let cluster: Vec<_> = m
        .cluster_roles
        .iter()
        .filter(|(o, _)| o.is_example())
        .collect();
    assert_eq!(cluster.len(), 1, "one opt-in ClusterRole");
    let (origin, role) = cluster[0];
    check_rules(
        role.rules.as_deref().unwrap_or_default(),
        &expected_self_signed_cluster_grants(),
    )
    .unwrap_or_else(|e| panic!("{origin}: {e}"));
    let mut any = role.clone();
    any.rules.as_mut().unwrap()[0].resource_names = None;
    assert!(check_rules(
        any.rules.as_deref().unwrap(),
        &expected_self_signed_cluster_grants()
    )
    .is_err());

    let roles: Vec<_> = m.roles.iter().filter(|(o, _)| o.is_example()).collect();
    assert_eq!(roles.len(), 1, "one opt-in Role");
    let (origin, role) = roles[0];
    assert_eq!(
        role.metadata.namespace.as_deref(),
        Some(NAMESPACE),
        "{origin}"
    );
    check_rules(
        role.rules.as_deref().unwrap_or_default(),
        &expected_self_signed_grants(),
    )
    .unwrap_or_else(|e| panic!("{origin}: {e}"));
    let mut every_secret = role.clone();
    every_secret.rules.as_mut().unwrap()[1].resource_names = None;
    assert!(check_rules(
        every_secret.rules.as_deref().unwrap(),
        &expected_self_signed_grants()
    )
    .is_err());
}

/// The webhook can never block a pod or touch pods it should not, its Service
/// and port reach the scheduler pods, and its certificate is wired from
/// cert-manager to the path the shipped config reads.
#[test]
fn webhook_is_safe_by_default_and_wired_to_its_certificate() {
    let m = load();
    let base: Vec<_> = m
        .mutating_webhooks
        .iter()
        .filter(|(o, _)| !o.is_example())
        .collect();
    assert_eq!(base.len(), 1, "one MutatingWebhookConfiguration");
    let (origin, mwc) = base[0];
    assert_eq!(mwc.metadata.name.as_deref(), Some(WEBHOOK_CONFIGURATION));
    let hooks = mwc.webhooks.clone().unwrap_or_default();
    assert_eq!(hooks.len(), 1, "{origin}");
    let w = &hooks[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Ignore"), "{origin}");
    assert!(
        w.timeout_seconds.is_some_and(|t| t <= 5),
        "{origin}: short timeoutSeconds"
    );
    assert_eq!(w.side_effects, "NoneOnDryRun", "{origin}");
    assert_eq!(
        w.reinvocation_policy.as_deref(),
        Some("IfNeeded"),
        "{origin}"
    );
    assert_eq!(
        w.admission_review_versions,
        vec!["v1".to_string()],
        "{origin}"
    );
    let selector = w.object_selector.clone().unwrap_or_default();
    let exprs = selector.match_expressions.unwrap_or_default();
    assert!(
        exprs.iter().any(|e| e.key == "spark-role"
            && e.operator == "In"
            && e.values.as_deref() == Some(&["driver".to_string(), "executor".to_string()][..])),
        "{origin}: objectSelector on spark-role"
    );
    let rules = w.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 1, "{origin}");
    assert_eq!(
        rules[0].operations.as_deref(),
        Some(&["CREATE".to_string()][..])
    );
    assert_eq!(
        rules[0].resources.as_deref(),
        Some(&["pods".to_string()][..])
    );
    let svc_ref = w
        .client_config
        .service
        .clone()
        .expect("service clientConfig");
    assert_eq!(
        (
            svc_ref.name.as_str(),
            svc_ref.namespace.as_str(),
            svc_ref.path.as_deref()
        ),
        (WEBHOOK_SERVICE, NAMESPACE, Some("/mutate")),
        "{origin}"
    );
    let annotations = mwc.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations
            .get("cert-manager.io/inject-ca-from")
            .map(String::as_str),
        Some("spark-fleet/spark-fleet-webhook"),
        "{origin}: cert-manager CA injection"
    );

    // Service → the scheduler pods' webhook port.
    let labels = pod_labels(the_deployment(&m));
    let (origin, svc) = m
        .services
        .iter()
        .find(|(_, s)| s.metadata.name.as_deref() == Some(WEBHOOK_SERVICE))
        .expect("webhook Service");
    let spec = svc.spec.as_ref().unwrap();
    assert!(
        selects(&spec.selector.clone().unwrap_or_default(), &labels),
        "{origin}"
    );
    let port = spec.ports.clone().unwrap_or_default();
    assert!(
        port.iter().any(|p| Some(p.port) == svc_ref.port
            && p.target_port == Some(IntOrString::String("webhook".into()))),
        "{origin}: port {:?} to the webhook container port",
        svc_ref.port
    );
    let d = the_deployment(&m);
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = &pod.containers[0];
    assert!(
        c.ports
            .iter()
            .flatten()
            .any(|p| p.container_port == WEBHOOK_PORT && p.name.as_deref() == Some("webhook")),
        "containerPort {WEBHOOK_PORT} named webhook"
    );

    // Certificate → Secret → volume (optional) → the config's certFile directory.
    let cert = m
        .cert_manager
        .iter()
        .find(|(_, k, _)| k == "Certificate")
        .expect("cert-manager Certificate");
    assert_eq!(cert.2["metadata"]["name"], "spark-fleet-webhook");
    assert_eq!(cert.2["spec"]["secretName"], WEBHOOK_TLS_SECRET);
    let dns: Vec<&str> = cert.2["spec"]["dnsNames"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        dns.contains(&"spark-fleet-webhook.spark-fleet.svc"),
        "{dns:?}"
    );
    let issuer = cert.2["spec"]["issuerRef"]["name"].as_str().unwrap();
    assert!(m
        .cert_manager
        .iter()
        .any(|(_, k, v)| k == "Issuer" && v["metadata"]["name"] == issuer));
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| {
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(WEBHOOK_TLS_SECRET)
        })
        .expect("webhook certificate volume");
    assert_eq!(volume.secret.as_ref().unwrap().optional, Some(true));
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|vm| vm.name == volume.name)
        .expect("webhook certificate mount");
    assert_eq!(mount.read_only, Some(true));
    let (_, config) = &m.config_files[0];
    let cert_file = config["admission"]["webhook"]["certFile"].as_str().unwrap();
    assert_eq!(
        Path::new(cert_file).parent(),
        Some(Path::new(&mount.mount_path)),
        "admission.webhook.certFile must be in the mounted Secret"
    );
    assert_eq!(config["admission"]["webhook"]["enabled"], true);
}

// ---------------------------------------------------------------------------------------------
// Deployment

fn port_is_metrics(port: &IntOrString) -> bool {
    match port {
        IntOrString::Int(p) => *p == METRICS_PORT,
        IntOrString::String(name) => name == "metrics",
    }
}

/// Everything that is wrong with the scheduler Deployment; empty when it is fine.
fn deployment_problems(d: &Deployment) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fail = |msg: &str| problems.push(msg.to_string());
    let Some(spec) = d.spec.as_ref() else {
        return vec!["no spec".into()];
    };
    if spec.replicas != Some(2) {
        fail("replicas must be 2 (leader + standby)");
    }
    let labels = pod_labels(d);
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    if !selects(&selector, &labels) {
        fail("selector does not match the pod template labels");
    }
    let Some(pod) = spec.template.spec.as_ref() else {
        return vec!["no pod spec".into()];
    };
    if pod.service_account_name.as_deref() != Some(SERVICE_ACCOUNT) {
        fail("serviceAccountName must be spark-fleet");
    }
    if pod.automount_service_account_token == Some(false) {
        fail("the scheduler needs its service account token");
    }
    if pod.priority_class_name.as_deref() != Some("system-cluster-critical") {
        fail("priorityClassName must be system-cluster-critical");
    }
    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let spreads = anti.is_some_and(|terms| {
        terms.iter().any(|t| {
            t.pod_affinity_term.topology_key == "kubernetes.io/hostname"
                && t.pod_affinity_term
                    .label_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .is_some_and(|sel| selects(sel, &labels))
        })
    });
    if !spreads {
        fail("preferred podAntiAffinity across kubernetes.io/hostname for our own pods missing");
    }
    let pod_sc = pod.security_context.clone().unwrap_or_default();

    if pod.containers.len() != 1 {
        fail("expected exactly one container");
        return problems;
    }
    let c = &pod.containers[0];
    let expected_command = [
        "spark-fleet",
        "run",
        "--config",
        &format!("{CONFIG_MOUNT}/{CONFIG_KEY}"),
    ]
    .map(String::from)
    .to_vec();
    if c.command.as_ref() != Some(&expected_command) {
        fail("command must be spark-fleet run --config /etc/spark-fleet/spark-fleet.yaml");
    }
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let from_downward_api = c.env.iter().flatten().any(|e| {
            e.name == var
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .is_some_and(|f| f.field_path == field)
        });
        if !from_downward_api {
            problems.push(format!("env {var} must come from fieldRef {field}"));
        }
    }

    let sc = c.security_context.clone().unwrap_or_default();
    if sc.run_as_non_root.or(pod_sc.run_as_non_root) != Some(true) {
        problems.push("runAsNonRoot must be true".into());
    }
    if sc.run_as_user.or(pod_sc.run_as_user) != Some(RUN_AS_USER) {
        problems.push(format!("runAsUser must be {RUN_AS_USER}"));
    }
    if sc.read_only_root_filesystem != Some(true) {
        problems.push("readOnlyRootFilesystem must be true".into());
    }
    if sc.allow_privilege_escalation != Some(false) {
        problems.push("allowPrivilegeEscalation must be false".into());
    }
    if sc.privileged == Some(true) {
        problems.push("must not be privileged".into());
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    if !caps.drop.iter().flatten().any(|c| c == "ALL") {
        problems.push("capabilities must drop ALL".into());
    }
    if caps.add.is_some_and(|a| !a.is_empty()) {
        problems.push("no capabilities may be added".into());
    }
    let seccomp = sc
        .seccomp_profile
        .or(pod_sc.seccomp_profile)
        .map(|p| p.type_);
    if seccomp.as_deref() != Some("RuntimeDefault") {
        problems.push("seccompProfile must be RuntimeDefault".into());
    }

    let resources = c.resources.clone().unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    for key in ["cpu", "memory"] {
        if !requests.contains_key(key) {
            problems.push(format!("resources.requests.{key} missing"));
        }
    }
    if !limits.contains_key("memory") {
        problems.push("resources.limits.memory missing".into());
    }

    let metrics_port = c.ports.iter().flatten().any(|p| {
        p.container_port == METRICS_PORT
            && p.name.as_deref() == Some("metrics")
            && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
    });
    if !metrics_port {
        problems.push(format!(
            "containerPort {METRICS_PORT} named metrics missing"
        ));
    }
    for (name, probe, path) in [
        ("livenessProbe", &c.liveness_probe, "/healthz"),
        ("readinessProbe", &c.readiness_probe, "/readyz"),
    ] {
        let ok = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .is_some_and(|h| h.path.as_deref() == Some(path) && port_is_metrics(&h.port));
        if !ok {
            problems.push(format!("{name} must GET {path} on the metrics port"));
        }
    }

    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == CONFIG_MOUNT);
    match mount {
        None => problems.push(format!("no volume mounted at {CONFIG_MOUNT}")),
        Some(mount) => {
            if mount.read_only != Some(true) {
                problems.push("config mount must be readOnly".into());
            }
            let from_config_map = pod.volumes.iter().flatten().any(|v| {
                v.name == mount.name
                    && v.config_map
                        .as_ref()
                        .is_some_and(|cm| cm.name == CONFIG_MAP)
            });
            if !from_config_map {
                problems.push(format!("{CONFIG_MOUNT} must be the ConfigMap {CONFIG_MAP}"));
            }
        }
    }
    problems
}

#[test]
fn deployment_is_hardened_probed_and_wired_to_its_config() {
    let m = load();
    let d = the_deployment(&m);
    assert_eq!(d.metadata.namespace.as_deref(), Some(NAMESPACE));
    let problems = deployment_problems(d);
    assert!(problems.is_empty(), "deploy/deployment.yaml: {problems:#?}");
}

#[test]
fn deployment_check_catches_root_writable_fs_and_missing_probes() {
    let m = load();
    let base = the_deployment(&m).clone();
    fn container(d: &mut Deployment) -> &mut k8s_openapi::api::core::v1::Container {
        &mut d
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
    }

    let mut writable = base.clone();
    container(&mut writable)
        .security_context
        .as_mut()
        .unwrap()
        .read_only_root_filesystem = Some(false);
    assert!(!deployment_problems(&writable).is_empty());

    let mut root = base.clone();
    container(&mut root)
        .security_context
        .as_mut()
        .unwrap()
        .run_as_user = Some(0);
    root.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .security_context = None;
    assert!(!deployment_problems(&root).is_empty());

    let mut no_liveness = base.clone();
    container(&mut no_liveness).liveness_probe = None;
    assert!(!deployment_problems(&no_liveness).is_empty());

    let mut no_readiness = base;
    container(&mut no_readiness).readiness_probe = None;
    assert!(!deployment_problems(&no_readiness).is_empty());
}

#[test]
fn service_and_pdb_select_the_scheduler_pods() {
    let m = load();
    let labels = pod_labels(the_deployment(&m));

    let metrics: Vec<_> = m
        .services
        .iter()
        .filter(|(_, s)| s.metadata.name.as_deref() != Some(WEBHOOK_SERVICE))
        .collect();
    assert_eq!(metrics.len(), 1, "expected one metrics Service");
    let (origin, svc) = metrics[0];
    assert_eq!(
        svc.metadata.name.as_deref(),
        Some("spark-fleet-metrics"),
        "{origin}"
    );
    let spec = svc.spec.as_ref().expect("Service spec");
    assert!(
        selects(&spec.selector.clone().unwrap_or_default(), &labels),
        "{origin}: selector does not match the scheduler pods"
    );
    let ports = spec.ports.clone().unwrap_or_default();
    assert!(
        ports.iter().any(|p| p.port == METRICS_PORT
            && p.name.as_deref() == Some("metrics")
            && p.target_port.as_ref().is_none_or(port_is_metrics)),
        "{origin}: port {METRICS_PORT} named metrics missing"
    );
    let annotations = svc.metadata.annotations.clone().unwrap_or_default();
    for (key, value) in [
        ("prometheus.io/scrape", "true"),
        ("prometheus.io/port", "8080"),
        ("prometheus.io/path", "/metrics"),
    ] {
        assert_eq!(
            annotations.get(key).map(String::as_str),
            Some(value),
            "{origin}: annotation {key}"
        );
    }

    assert_eq!(
        m.pod_disruption_budgets.len(),
        1,
        "expected one PodDisruptionBudget"
    );
    let (origin, pdb) = &m.pod_disruption_budgets[0];
    let spec = pdb.spec.as_ref().expect("PDB spec");
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)), "{origin}");
    let selector = spec
        .selector
        .as_ref()
        .and_then(|s| s.match_labels.clone())
        .unwrap_or_default();
    assert!(
        selects(&selector, &labels),
        "{origin}: selector does not match"
    );
}

#[test]
fn namespaced_objects_live_in_the_spark_fleet_namespace() {
    let m = load();
    let names: Vec<_> = m
        .namespaces
        .iter()
        .map(|(_, n)| n.metadata.name.clone())
        .collect();
    assert_eq!(names, vec![Some(NAMESPACE.to_string())]);
    let namespaced = m
        .service_accounts
        .iter()
        .map(|(o, x)| (o, &x.metadata))
        .chain(m.roles.iter().map(|(o, x)| (o, &x.metadata)))
        .chain(m.role_bindings.iter().map(|(o, x)| (o, &x.metadata)))
        .chain(m.deployments.iter().map(|(o, x)| (o, &x.metadata)))
        .chain(m.services.iter().map(|(o, x)| (o, &x.metadata)))
        .chain(
            m.pod_disruption_budgets
                .iter()
                .map(|(o, x)| (o, &x.metadata)),
        )
        .chain(m.config_maps.iter().map(|(o, x)| (o, &x.metadata)))
        .filter(|(o, _)| !o.is_example());
    let mut count = 0;
    for (origin, meta) in namespaced {
        count += 1;
        // Explicit, so `kubectl apply -f deploy/<file>` works without kustomize too.
        assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE), "{origin}");
    }
    assert!(
        count >= 6,
        "expected the namespaced base objects, found {count}"
    );
}

// ---------------------------------------------------------------------------------------------
// Kustomization

#[test]
fn kustomization_lists_every_base_manifest_and_generates_the_config() {
    let m = load();
    let k = &m.kustomization;
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k["kind"], "Kustomization");
    assert_eq!(k["namespace"], NAMESPACE);

    let resources: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("kustomization.yaml: resources list")
        .iter()
        .map(|r| r.as_str().expect("resource must be a path").to_string())
        .collect();
    for r in &resources {
        assert!(
            deploy_dir().join(r).is_file(),
            "kustomization lists missing file {r}"
        );
        assert!(
            !r.starts_with("examples/"),
            "{r}: examples are opt-in, not part of the default install"
        );
    }
    let base: BTreeSet<String> = m
        .object_files
        .iter()
        .filter(|f| !f.starts_with("examples/"))
        .cloned()
        .collect();
    let unlisted: Vec<_> = base.difference(&resources).collect();
    assert!(
        unlisted.is_empty(),
        "manifests not in kustomization.yaml: {unlisted:?}"
    );

    let generated = generator_files(k);
    assert_eq!(
        generated,
        vec![(
            CONFIG_MAP.to_string(),
            CONFIG_KEY.to_string(),
            "spark-fleet.yaml".to_string()
        )],
        "configMapGenerator must build {CONFIG_MAP} with key {CONFIG_KEY}"
    );
    for (_, _, file) in &generated {
        assert!(
            deploy_dir().join(file).is_file(),
            "generator source {file} missing"
        );
    }

    // kustomize rewrites the image by name; an unmatched entry silently does nothing.
    let image = the_deployment(&m)
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .expect("container image");
    for entry in k["images"].as_array().into_iter().flatten() {
        assert_eq!(
            entry["name"].as_str(),
            Some(image.as_str()),
            "images entry names no image"
        );
    }
}

#[test]
fn mounted_config_names_our_scheduler() {
    let m = load();
    assert_eq!(
        m.config_files.len(),
        1,
        "expected the one generated config file"
    );
    let (file, config) = &m.config_files[0];
    assert!(config.is_object(), "deploy/{file}: must be a YAML mapping");
    assert_eq!(
        config["schedulerName"], SCHEDULER_NAME,
        "deploy/{file}: schedulerName"
    );
}

// ---------------------------------------------------------------------------------------------
// Examples

fn example_priority_classes(m: &Manifests) -> BTreeMap<String, &PriorityClass> {
    m.priority_classes
        .iter()
        .filter(|(o, _)| o.is_example())
        .map(|(_, pc)| (pc.metadata.name.clone().unwrap_or_default(), pc))
        .collect()
}

#[test]
fn example_priority_classes_rank_drivers_above_executors() {
    let m = load();
    let pcs = example_priority_classes(&m);
    let driver = pcs.get("spark-driver").expect("PriorityClass spark-driver");
    let executor = pcs
        .get("spark-executor")
        .expect("PriorityClass spark-executor");
    assert_eq!(driver.value, 100_000);
    assert_eq!(
        driver.preemption_policy.as_deref(),
        Some("PreemptLowerPriority")
    );
    assert_eq!(executor.value, 50_000);
    assert!(driver.value > executor.value);
    for pc in pcs.values() {
        assert_ne!(
            pc.global_default,
            Some(true),
            "examples must not change the cluster default"
        );
    }
}

/// Checks a `spark-fleet.io/*` annotation value with the scheduler's own parsers.
fn annotation_problem(key: &str, value: &str) -> Option<String> {
    use spark_fleet::spark::annotations as a;
    let known: Vec<String> = spark_fleet::model::capacity::CapacityRules::default().known_types();
    let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
    let result = match key {
        a::EXECUTOR_CAPACITY_MIX => a::parse_mix(value, &known).map(|_| ()),
        a::CAPACITY_MIX_MODE => a::parse_mode(value).map(|_| ()),
        a::DRIVER_CAPACITY => a::parse_driver_capacity(value, &known).map(|_| ()),
        a::MIN_EXECUTORS => a::parse_count(value).map(|_| ()),
        k if k
            == format!(
                "{}executor-resources",
                spark_fleet::model::ANNOTATION_PREFIX
            ) =>
        {
            Ok(())
        }
        other => return Some(format!("unknown annotation {other}")),
    };
    result.err().map(|e| format!("{key}: {e}"))
}

#[test]
fn annotation_check_rejects_bad_values() {
    let p = spark_fleet::model::ANNOTATION_PREFIX;
    let key = |s: &str| format!("{p}{s}");
    assert_eq!(
        annotation_problem(&key("executor-capacity-mix"), "spot=40,on-demand=60"),
        None
    );
    assert!(annotation_problem(&key("executor-capacity-mix"), "spot=0,on-demand=0").is_some());
    assert!(annotation_problem(&key("executor-capacity-mix"), "cheap=1").is_some());
    assert!(annotation_problem(&key("executor-capacity-mix"), "spot:40").is_some());
    assert!(annotation_problem(&key("capacity-mix-mode"), "strict").is_some());
    assert!(annotation_problem(&key("min-executors"), "four").is_some());
    assert!(annotation_problem(&key("executor-mix"), "spot=100").is_some());
}

#[test]
fn spark_application_example_uses_spark_fleet_for_driver_and_executors() {
    let m = load();
    assert!(
        !m.spark_applications.is_empty(),
        "SparkApplication example missing"
    );
    let pcs = example_priority_classes(&m);
    for (origin, app) in &m.spark_applications {
        let spec = &app["spec"];
        assert!(spec.is_object(), "{origin}: spec missing");
        for role in ["driver", "executor"] {
            assert_eq!(
                spec[role]["schedulerName"], SCHEDULER_NAME,
                "{origin}: spec.{role}.schedulerName"
            );
            if let Some(pc) = spec[role]["priorityClassName"].as_str() {
                assert!(pcs.contains_key(pc), "{origin}: unknown PriorityClass {pc}");
            }
        }
        // The operator validates batchScheduler against its own list and rejects other names.
        assert!(
            spec.get("batchScheduler").is_none(),
            "{origin}: spec.batchScheduler must not be set"
        );
        let annotations = spec["driver"]["annotations"]
            .as_object()
            .unwrap_or_else(|| panic!("{origin}: spec.driver.annotations missing"));
        assert!(
            annotations.contains_key("spark-fleet.io/executor-capacity-mix"),
            "{origin}: the example should show the capacity mix"
        );
        for (key, value) in annotations {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("{origin}: annotation {key} must be a string"));
            if let Some(problem) = annotation_problem(key, value) {
                panic!("{origin}: {problem}");
            }
        }
    }
}

#[test]
fn example_pod_templates_use_spark_fleet_and_example_priorities() {
    let m = load();
    let pcs = example_priority_classes(&m);
    let templates: Vec<_> = m.pods.iter().filter(|(o, _)| o.is_example()).collect();
    assert_eq!(
        templates.len(),
        2,
        "driver and executor pod templates expected"
    );
    for (origin, pod) in templates {
        let spec = pod
            .spec
            .as_ref()
            .unwrap_or_else(|| panic!("{origin}: spec"));
        assert_eq!(
            spec.scheduler_name.as_deref(),
            Some(SCHEDULER_NAME),
            "{origin}"
        );
        let pc = spec.priority_class_name.as_deref().unwrap_or_default();
        assert!(
            pcs.contains_key(pc),
            "{origin}: unknown PriorityClass `{pc}`"
        );
        for (key, value) in pod.metadata.annotations.iter().flatten() {
            if let Some(problem) = annotation_problem(key, value) {
                panic!("{origin}: {problem}");
            }
        }
    }
}

#[test]
fn readme_refers_only_to_files_that_exist() {
    let readme = std::fs::read_to_string(deploy_dir().join("README.md")).expect("deploy/README.md");
    let mut referenced = 0;
    for token in readme.split(|c: char| c.is_whitespace() || "`()[]'\",".contains(c)) {
        let Some(rel) = token.strip_prefix("deploy/") else {
            continue;
        };
        let rel = rel.trim_end_matches(['.', ':']);
        if rel.is_empty() {
            continue;
        }
        referenced += 1;
        assert!(
            deploy_dir().join(rel).exists(),
            "README mentions missing deploy/{rel}"
        );
    }
    assert!(
        referenced > 0,
        "README should point at the files it explains"
    );
}

// ---------------------------------------------------------------------------------------------
// Grafana

/// Prometheus identifiers (metric and label names, functions) of a PromQL expression.
fn promql_identifiers(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|t| {
            t.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

/// The `by (...)` labels of an expression, all groupings merged.
fn grouping_labels(expr: &str) -> BTreeSet<String> {
    let mut labels = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("by (") {
        let after = &rest[at + 4..];
        let end = after.find(')').unwrap_or(after.len());
        labels.extend(after[..end].split(',').map(|l| l.trim().to_string()));
        rest = &after[end..];
    }
    labels
}

fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            for t in panel["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push(e.to_string());
                }
            }
            walk(&panel["panels"], out); // collapsed rows nest their panels
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Which required metrics the dashboard fails to chart properly, and which unknown ones it uses.
fn dashboard_problems(dashboard: &Value) -> Vec<String> {
    let exprs = dashboard_exprs(dashboard);
    let mut problems = Vec::new();
    for (metric, kind, by) in DASHBOARD_METRICS {
        let series = match kind {
            MetricKind::Histogram => format!("{metric}_bucket"),
            _ => metric.to_string(),
        };
        let using: Vec<&String> = exprs
            .iter()
            .filter(|e| promql_identifiers(e).contains(&series))
            .collect();
        if using.is_empty() {
            problems.push(format!("no panel queries {series}"));
            continue;
        }
        let shaped = using.iter().any(|e| {
            let ids = promql_identifiers(e);
            let groups = grouping_labels(e);
            let func_ok = match kind {
                MetricKind::Counter => ids.contains("rate") || ids.contains("increase"),
                MetricKind::Histogram => ids.contains("histogram_quantile"),
                MetricKind::Gauge => true,
            };
            func_ok && by.iter().all(|l| groups.contains(*l))
        });
        if !shaped {
            problems.push(format!(
                "{metric}: expected a {kind:?} query grouped by {by:?}"
            ));
        }
    }
    let known: BTreeSet<String> = DASHBOARD_METRICS
        .iter()
        .flat_map(|(m, _, _)| {
            ["", "_bucket", "_sum", "_count"].map(|suffix| format!("{m}{suffix}"))
        })
        .collect();
    for e in &exprs {
        for id in promql_identifiers(e) {
            if id.starts_with("spark_fleet_") && !known.contains(&id) {
                problems.push(format!("unknown metric {id} in `{e}`"));
            }
        }
    }
    problems
}

fn load_dashboard() -> Value {
    let path = deploy_dir().join("grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("deploy/grafana-dashboard.json");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

#[test]
fn grafana_dashboard_charts_every_scheduler_metric() {
    let dashboard = load_dashboard();
    let problems = dashboard_problems(&dashboard);
    assert!(problems.is_empty(), "grafana-dashboard.json: {problems:#?}");
}

#[test]
fn grafana_dashboard_check_catches_missing_and_misspelt_metrics() {
    let dashboard = load_dashboard();
    let text = serde_json::to_string(&dashboard).unwrap();

    let without_leader: Value =
        serde_json::from_str(&text.replace("spark_fleet_leader", "up")).unwrap();
    assert!(!dashboard_problems(&without_leader).is_empty());

    let misspelt: Value =
        serde_json::from_str(&text.replace("spark_fleet_binds_total", "spark_fleet_bind_total"))
            .unwrap();
    assert!(!dashboard_problems(&misspelt).is_empty());

    let quantile_of_sum: Value = serde_json::from_str(&text.replace(
        "spark_fleet_e2e_scheduling_duration_seconds_bucket",
        "spark_fleet_e2e_scheduling_duration_seconds_sum",
    ))
    .unwrap();
    assert!(!dashboard_problems(&quantile_of_sum).is_empty());
}

#[test]
fn grafana_dashboard_is_importable() {
    let d = load_dashboard();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    assert!(d["uid"].as_str().is_some_and(|u| !u.is_empty()), "uid");

    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds_var = vars
        .iter()
        .find(|v| v["type"] == "datasource" && v["query"] == "prometheus")
        .expect("a Prometheus datasource template variable");
    let var_name = ds_var["name"].as_str().expect("variable name");
    let var_refs = [format!("${{{var_name}}}"), format!("${var_name}")];

    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("<untitled>");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: id"));
        assert!(ids.insert(id), "duplicate panel id {id}");
        for key in ["h", "w", "x", "y"] {
            assert!(panel["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        let uses_var = |ds: &Value| {
            ds["uid"]
                .as_str()
                .is_some_and(|uid| var_refs.iter().any(|r| r == uid))
        };
        let targets = panel["targets"].as_array();
        if targets.is_some_and(|t| !t.is_empty()) {
            assert!(
                uses_var(&panel["datasource"]),
                "{title}: datasource must be ${var_name}"
            );
        }
        for t in targets.into_iter().flatten() {
            assert!(t["refId"].is_string(), "{title}: target refId");
            assert!(uses_var(&t["datasource"]), "{title}: target datasource");
        }
    }
}

#[test]
fn deployed_config_is_the_shipped_config() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let deployed = std::fs::read_to_string(root.join("deploy/spark-fleet.yaml")).unwrap();
    let shipped = std::fs::read_to_string(root.join("config/spark-fleet.yaml")).unwrap();
    assert_eq!(
        deployed, shipped,
        "deploy/spark-fleet.yaml must be a copy of config/spark-fleet.yaml"
    );
    spark_fleet::config::Config::parse(&deployed, "deploy/spark-fleet.yaml").unwrap();
}
