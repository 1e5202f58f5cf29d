//! The edge: Kubernetes objects (k8s-openapi) to the internal model, once per object.
//! Errors name the object and the field so a user can fix the manifest.

use super::*;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use std::cell::RefCell;
use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{kind} {object}: {field}: {message}")]
pub struct ConvertError {
    pub kind: &'static str,
    pub object: String,
    pub field: String,
    pub message: String,
}

/// Resolves `priorityClassName` when `spec.priority` is unset (objects read from files
/// have not been through the API server's priority admission).
pub trait PriorityResolver {
    fn priority_of(&self, class_name: Option<&str>) -> Option<i32>;

    /// The class's `preemptionPolicy`, which the same admission copies into an
    /// unset `spec.preemptionPolicy`.
    fn preemption_policy_of(&self, _class_name: Option<&str>) -> Option<String> {
        None
    }
}

impl PriorityResolver for () {
    fn priority_of(&self, _: Option<&str>) -> Option<i32> {
        None
    }
}

pub(super) struct Ctx<'a> {
    pub(super) kind: &'static str,
    pub(super) object: &'a str,
    /// Per-object strings interned for the object being converted (`model::intern`).
    interned: RefCell<Interned>,
}

impl Ctx<'_> {
    pub(super) fn new<'a>(kind: &'static str, object: &'a str) -> Ctx<'a> {
        Ctx {
            kind,
            object,
            interned: RefCell::default(),
        }
    }

    /// Interns a per-object string (a label or selector value, a node name) for
    /// as long as the converted object lives. Keys and other bounded
    /// vocabularies use `Sym::new`.
    fn value(&self, s: &str) -> Sym {
        self.interned.borrow_mut().sym(s)
    }

    pub(super) fn err(&self, field: impl Into<String>, message: impl Into<String>) -> ConvertError {
        ConvertError {
            kind: self.kind,
            object: self.object.to_owned(),
            field: field.into(),
            message: message.into(),
        }
    }
}

pub(super) fn object_name(meta: &meta::ObjectMeta) -> String {
    match (&meta.namespace, &meta.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        _ => "<unnamed>".to_owned(),
    }
}

fn resources(
    ctx: &Ctx,
    field: &str,
    list: &BTreeMap<String, K8sQuantity>,
) -> Result<Resources, ConvertError> {
    let mut r = Resources::default();
    for (name, q) in list {
        let parsed =
            Quantity::parse(&q.0).map_err(|e| ctx.err(format!("{field}.{name}"), e.to_string()))?;
        if parsed.is_negative() {
            return Err(ctx.err(
                format!("{field}.{name}"),
                format!("negative quantity {:?}", q.0),
            ));
        }
        match name.as_str() {
            resources::CPU => r.milli_cpu = parsed.milli_value(),
            resources::MEMORY => r.memory = parsed.value(),
            resources::EPHEMERAL_STORAGE => r.ephemeral_storage = parsed.value(),
            resources::PODS => r.pods = parsed.value(),
            other => r.set_scalar(Sym::new(other), parsed.value()),
        }
    }
    Ok(r)
}

pub(super) fn labels_of(ctx: &Ctx, m: &Option<BTreeMap<String, String>>) -> Labels {
    Labels::from_syms(m.iter().flatten().map(|(k, v)| (Sym::new(k), ctx.value(v))))
}

/// Labels kept interned for good, for objects without a per-object guard
/// (persistent volumes: their labels are topology, a bounded vocabulary).
pub(super) fn pinned_labels_of(m: &Option<BTreeMap<String, String>>) -> Labels {
    m.as_ref()
        .map(|m| Labels::from_pairs(m.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        .unwrap_or_default()
}

pub fn node_from_k8s(node: &core::Node) -> Result<Node, ConvertError> {
    let object = object_name(&node.metadata);
    let ctx = Ctx::new("Node", &object);
    let name = node
        .metadata
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ctx.err("metadata.name", "missing"))?;
    let spec = node.spec.clone().unwrap_or_default();
    let mut taints = Vec::new();
    for (i, t) in spec.taints.iter().flatten().enumerate() {
        let effect = TaintEffect::parse(&t.effect).ok_or_else(|| {
            ctx.err(
                format!("spec.taints[{i}].effect"),
                format!("unknown effect {:?}", t.effect),
            )
        })?;
        taints.push(Taint {
            key: Sym::new(&t.key),
            value: Sym::new(t.value.as_deref().unwrap_or("")),
            effect,
        });
    }
    let empty = BTreeMap::new();
    let status = node.status.as_ref();
    // Allocatable falls back to capacity as the kubelet reports it when unset.
    let alloc = status
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .unwrap_or(&empty);
    let allocatable = resources(&ctx, "status.allocatable", alloc)?;
    gpu::check_node_cards(&allocatable)
        .map_err(|m| ctx.err(format!("status.allocatable.{}", gpu::RESOURCE_GPU_COUNT), m))?;
    Ok(Node {
        name: ctx.value(name),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        labels: labels_of(&ctx, &node.metadata.labels),
        taints,
        unschedulable: spec.unschedulable.unwrap_or(false),
        allocatable,
        interned: ctx.interned.into_inner(),
        images: super::volume_convert::node_images(status),
    })
}

/// A container's requests, and the same as the resource scorers count them:
/// upstream's defaults standing in for a missing cpu or memory request
/// (`NonMissingContainerRequests`; a request set to 0 is not missing).
fn container_requests(
    ctx: &Ctx,
    field: &str,
    c: &core::Container,
    resize: &Resize,
) -> Result<(Resources, Resources), ConvertError> {
    // The API server defaults missing requests to limits; objects from files may not have been defaulted.
    let mut merged: BTreeMap<String, K8sQuantity> = BTreeMap::new();
    if let Some(res) = &c.resources {
        merged = res.limits.clone().unwrap_or_default();
        if let Some(req) = &res.requests {
            merged.extend(req.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    resize.apply(ctx, &c.name, &mut merged)?;
    let requests = resources(ctx, &format!("{field}.resources.requests"), &merged)?;
    let mut scored = requests.clone();
    if !merged.contains_key(resources::CPU) {
        scored.milli_cpu = resources::DEFAULT_MILLI_CPU_REQUEST;
    }
    if !merged.contains_key(resources::MEMORY) {
        scored.memory = resources::DEFAULT_MEMORY_REQUEST;
    }
    Ok((requests, scored))
}

/// What a pod's status says of its containers' resources, for pods resized in
/// place (InPlacePodVerticalScaling, on by default since Kubernetes 1.33).
/// Upstream `PodRequests` with `UseStatusResources` (`determineContainerReqs`):
/// a container whose status reports `resources` counts, resource by resource,
/// the largest of its spec requests, its status requests and its
/// `allocatedResources`; when the resize is infeasible (condition
/// `PodResizePending` with reason `Infeasible`) the spec is left out, since the
/// kubelet will not grant it. So a pod being resized holds the larger of the
/// old and the new size, and a node is never over-committed by a resize.
struct Resize<'a> {
    statuses: Vec<&'a core::ContainerStatus>,
    infeasible: bool,
}

impl<'a> Resize<'a> {
    fn of(status: Option<&'a core::PodStatus>) -> Resize<'a> {
        let Some(st) = status else {
            return Resize {
                statuses: Vec::new(),
                infeasible: false,
            };
        };
        let statuses = st
            .container_statuses
            .iter()
            .flatten()
            .chain(st.init_container_statuses.iter().flatten())
            .filter(|c| c.resources.is_some())
            .collect();
        let infeasible = st
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "PodResizePending")
            .is_some_and(|c| c.reason.as_deref() == Some("Infeasible"));
        Resize {
            statuses,
            infeasible,
        }
    }

    /// Replaces the container's spec requests with what it holds during a resize.
    fn apply(
        &self,
        ctx: &Ctx,
        container: &str,
        requests: &mut BTreeMap<String, K8sQuantity>,
    ) -> Result<(), ConvertError> {
        let Some(st) = self.statuses.iter().find(|s| s.name == container) else {
            return Ok(());
        };
        let field = format!("status.containerStatuses[{container}]");
        let reported = st
            .resources
            .as_ref()
            .and_then(|r| r.requests.clone())
            .unwrap_or_default();
        if self.infeasible {
            *requests = reported;
        } else {
            max_quantities(
                ctx,
                &format!("{field}.resources.requests"),
                requests,
                &reported,
            )?;
        }
        if let Some(allocated) = &st.allocated_resources {
            max_quantities(
                ctx,
                &format!("{field}.allocatedResources"),
                requests,
                allocated,
            )?;
        }
        Ok(())
    }
}

/// Sets each resource of `into` to the larger of itself and `from`'s.
fn max_quantities(
    ctx: &Ctx,
    field: &str,
    into: &mut BTreeMap<String, K8sQuantity>,
    from: &BTreeMap<String, K8sQuantity>,
) -> Result<(), ConvertError> {
    let parse = |name: &str, q: &K8sQuantity| {
        Quantity::parse(&q.0)
            .map(|v| v.milli_value())
            .map_err(|e| ctx.err(format!("{field}.{name}"), e.to_string()))
    };
    for (name, q) in from {
        let larger = match into.get(name) {
            Some(cur) => parse(name, q)? > parse(name, cur)?,
            None => true,
        };
        if larger {
            into.insert(name.clone(), q.clone());
        }
    }
    Ok(())
}

/// Upstream `resource.PodRequests` over containers' requests: sidecars
/// (restartable init containers) run beside the app containers; each ordinary
/// init container runs alone with the sidecars started before it; the pod
/// needs the max of the two (overhead is the caller's).
fn aggregate<'a>(
    containers: impl Iterator<Item = &'a Resources>,
    init_containers: impl Iterator<Item = (&'a Resources, bool)>,
) -> Resources {
    let mut reqs = Resources::default();
    for r in containers {
        reqs.add(r);
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for (r, sidecar) in init_containers {
        if sidecar {
            reqs.add(r);
            sidecars.add(r);
            init_max.max_with(&sidecars);
        } else {
            let mut during = r.clone();
            during.add(&sidecars);
            init_max.max_with(&during);
        }
    }
    reqs.max_with(&init_max);
    reqs
}

/// The pod's requests plus overhead, and its milli-CPU and memory as the
/// resource scorers count them (`Pod::non_zero_requests`).
fn pod_requests(
    ctx: &Ctx,
    spec: &core::PodSpec,
    status: Option<&core::PodStatus>,
) -> Result<(Resources, (i64, i64)), ConvertError> {
    let resize = Resize::of(status);
    // Ordinary init containers have finished by the time a pod is resized:
    // upstream reads statuses for app containers and sidecars only.
    let no_resize = Resize::of(None);
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| container_requests(ctx, &format!("spec.containers[{i}]"), c, &resize))
        .collect::<Result<Vec<_>, _>>()?;
    let init_containers = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let resize = if sidecar { &resize } else { &no_resize };
            container_requests(ctx, &format!("spec.initContainers[{i}]"), c, resize)
                .map(|(r, scored)| (r, scored, sidecar))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut reqs = aggregate(
        containers.iter().map(|(r, _)| r),
        init_containers.iter().map(|(r, _, s)| (r, *s)),
    );
    let mut scored = aggregate(
        containers.iter().map(|(_, n)| n),
        init_containers.iter().map(|(_, n, s)| (n, *s)),
    );
    apply_pod_level_requests(ctx, spec, &mut reqs, &mut scored)?;
    if let Some(overhead) = &spec.overhead {
        let overhead = resources(ctx, "spec.overhead", overhead)?;
        reqs.add(&overhead);
        scored.add(&overhead);
    }
    reqs.pods = 0;
    Ok((reqs, (scored.milli_cpu, scored.memory)))
}

/// Resources a pod-level request may set (upstream `IsSupportedPodLevelResource`).
fn pod_level_resource(name: &str) -> bool {
    name == resources::CPU || name == resources::MEMORY || name.starts_with("hugepages-")
}

/// Whether any container or init container asks for `name` (a request, or a
/// limit the request defaults to), as upstream's aggregate lists it.
fn containers_request(spec: &core::PodSpec, name: &str) -> bool {
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    all.filter_map(|c| c.resources.as_ref()).any(|r| {
        let has = |m: &Option<BTreeMap<String, K8sQuantity>>| {
            m.as_ref().is_some_and(|m| m.contains_key(name))
        };
        has(&r.requests) || has(&r.limits)
    })
}

/// Pod-level requests (`spec.resources`, the PodLevelResources feature, on by
/// default since Kubernetes 1.34): for cpu, memory and hugepages they replace
/// the containers' sum, both in what the pod needs and in what the scorers
/// count (upstream `PodRequests`; no 100m / 200 MiB stand-ins then). Pods read
/// from files may lack the API server's defaulting, done here first: in a pod
/// with pod-level limits, a missing pod-level cpu or memory request becomes the
/// containers' sum when a container asks for it, and a resource's limit
/// otherwise. Objects from the API server come defaulted, so this changes
/// nothing for them.
fn apply_pod_level_requests(
    ctx: &Ctx,
    spec: &core::PodSpec,
    reqs: &mut Resources,
    scored: &mut Resources,
) -> Result<(), ConvertError> {
    let Some(pod_level) = &spec.resources else {
        return Ok(());
    };
    let empty = BTreeMap::new();
    let requested = pod_level.requests.as_ref().unwrap_or(&empty);
    let limited = pod_level.limits.as_ref().unwrap_or(&empty);
    let requests = resources(ctx, "spec.resources.requests", requested)?;
    let limits = resources(ctx, "spec.resources.limits", limited)?;
    let value = |r: &Resources, name: &str| match name {
        resources::CPU => r.milli_cpu,
        resources::MEMORY => r.memory,
        other => r.scalar(Sym::new(other)),
    };
    let mut set: Vec<(&str, i64)> = Vec::new();
    for name in requested.keys().filter(|n| pod_level_resource(n)) {
        set.push((name, value(&requests, name)));
    }
    // The server defaults only pods with pod-level limits: first cpu and memory
    // to the containers' sum where a container asks for them (with or without a
    // pod-level limit of their own), then any other limited resource to its limit.
    if !limited.is_empty() {
        for name in [resources::CPU, resources::MEMORY] {
            if !requested.contains_key(name) && containers_request(spec, name) {
                set.push((name, value(reqs, name)));
            }
        }
        for name in limited.keys().filter(|n| pod_level_resource(n)) {
            if !set.iter().any(|&(n, _)| n == name.as_str()) {
                set.push((name, value(&limits, name)));
            }
        }
    }
    for (name, v) in set {
        for r in [&mut *reqs, &mut *scored] {
            match name {
                resources::CPU => r.milli_cpu = v,
                resources::MEMORY => r.memory = v,
                other => r.set_scalar(Sym::new(other), v),
            }
        }
    }
    Ok(())
}

fn requirement(
    ctx: &Ctx,
    field: &str,
    key: &str,
    op: &str,
    values: &[String],
    numeric_ops: bool,
) -> Result<Requirement, ConvertError> {
    let op_parsed = SelectorOp::parse(op)
        .filter(|o| numeric_ops || !matches!(o, SelectorOp::Gt | SelectorOp::Lt))
        .ok_or_else(|| {
            ctx.err(
                format!("{field}.operator"),
                format!("unknown operator {op:?}"),
            )
        })?;
    let mut number = 0;
    match op_parsed {
        SelectorOp::In | SelectorOp::NotIn if values.is_empty() => {
            return Err(ctx.err(
                format!("{field}.values"),
                format!("operator {op} needs values"),
            ));
        }
        SelectorOp::Exists | SelectorOp::DoesNotExist if !values.is_empty() => {
            return Err(ctx.err(
                format!("{field}.values"),
                format!("operator {op} takes no values"),
            ));
        }
        SelectorOp::Gt | SelectorOp::Lt => {
            if values.len() != 1 {
                return Err(ctx.err(
                    format!("{field}.values"),
                    format!("operator {op} needs one value"),
                ));
            }
            number = values[0].parse().map_err(|_| {
                ctx.err(
                    format!("{field}.values"),
                    format!("{:?} is not an integer", values[0]),
                )
            })?;
        }
        _ => {}
    }
    Ok(Requirement {
        key: Sym::new(key),
        op: op_parsed,
        values: values.iter().map(|v| ctx.value(v)).collect(),
        number,
    })
}

/// Converts a NodeSelectorTerm. An invalid term (bad operator, Gt with a non-integer)
/// is kept but marked invalid: upstream ignores such a term rather than rejecting the pod.
pub(super) fn node_selector_term(
    ctx: &Ctx,
    field: &str,
    t: &core::NodeSelectorTerm,
) -> NodeSelectorTerm {
    let mut term = NodeSelectorTerm {
        valid: true,
        ..Default::default()
    };
    for (i, e) in t.match_expressions.iter().flatten().enumerate() {
        match requirement(
            ctx,
            &format!("{field}.matchExpressions[{i}]"),
            &e.key,
            &e.operator,
            e.values.as_deref().unwrap_or(&[]),
            true,
        ) {
            Ok(r) => term.match_expressions.push(r),
            Err(_) => term.valid = false,
        }
    }
    for (i, e) in t.match_fields.iter().flatten().enumerate() {
        let values = e.values.as_deref().unwrap_or(&[]);
        let ok = e.key == "metadata.name"
            && matches!(e.operator.as_str(), "In" | "NotIn")
            && values.len() == 1;
        match requirement(
            ctx,
            &format!("{field}.matchFields[{i}]"),
            &e.key,
            &e.operator,
            values,
            false,
        ) {
            Ok(r) if ok => term.match_fields.push(r),
            _ => term.valid = false,
        }
    }
    term
}

pub(super) fn label_selector(
    ctx: &Ctx,
    field: &str,
    s: &meta::LabelSelector,
) -> Result<LabelSelector, ConvertError> {
    let mut sel = LabelSelector::default();
    for (k, v) in s.match_labels.iter().flatten() {
        sel.requirements.push(Requirement {
            key: Sym::new(k),
            op: SelectorOp::In,
            values: vec![ctx.value(v)],
            number: 0,
        });
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        sel.requirements.push(requirement(
            ctx,
            &format!("{field}.matchExpressions[{i}]"),
            &e.key,
            &e.operator,
            e.values.as_deref().unwrap_or(&[]),
            false,
        )?);
    }
    Ok(sel)
}

/// The PriorityClasses every cluster has (scheduling/v1 SystemPriorityClasses),
/// for objects read from files that name them without defining them.
fn builtin_priority(class: Option<&str>) -> Option<i32> {
    match class? {
        "system-cluster-critical" => Some(2_000_000_000),
        "system-node-critical" => Some(2_000_001_000),
        _ => None,
    }
}

/// Converts one PodAffinityTerm. `namespace` and `labels` are the pod's own:
/// null `namespaces` and `namespaceSelector` mean its namespace, and
/// `matchLabelKeys`/`mismatchLabelKeys` merge its values into the selector as
/// `key In [value]`/`key NotIn [value]` (keys it does not carry are skipped).
fn pod_affinity_term(
    ctx: &Ctx,
    field: &str,
    t: &core::PodAffinityTerm,
    namespace: &str,
    labels: &Labels,
) -> Result<PodAffinityTerm, ConvertError> {
    if t.topology_key.is_empty() {
        return Err(ctx.err(format!("{field}.topologyKey"), "must not be empty"));
    }
    let mut selector = match &t.label_selector {
        Some(s) => Some(label_selector(ctx, &format!("{field}.labelSelector"), s)?),
        None => None,
    };
    let match_keys = t.match_label_keys.as_deref().unwrap_or(&[]);
    let mismatch_keys = t.mismatch_label_keys.as_deref().unwrap_or(&[]);
    if let Some(k) = match_keys.iter().find(|k| mismatch_keys.contains(k)) {
        return Err(ctx.err(
            format!("{field}.mismatchLabelKeys"),
            format!("{k:?} is also in matchLabelKeys"),
        ));
    }
    for (list, name, op) in [
        (match_keys, "matchLabelKeys", SelectorOp::In),
        (mismatch_keys, "mismatchLabelKeys", SelectorOp::NotIn),
    ] {
        if list.is_empty() {
            continue;
        }
        let Some(sel) = selector.as_mut() else {
            return Err(ctx.err(format!("{field}.{name}"), "needs labelSelector to be set"));
        };
        for key in list {
            // The value is the pod's own label value, which its labels keep interned.
            let key = Sym::new(key);
            if let Some(v) = labels.get(key) {
                sel.requirements.push(Requirement {
                    key,
                    op,
                    values: vec![v],
                    number: 0,
                });
            }
        }
    }
    let namespace_selector = match &t.namespace_selector {
        Some(s) => Some(label_selector(
            ctx,
            &format!("{field}.namespaceSelector"),
            s,
        )?),
        None => None,
    };
    let mut namespaces: Vec<Sym> = t.namespaces.iter().flatten().map(|n| Sym::new(n)).collect();
    if namespaces.is_empty() && namespace_selector.is_none() {
        namespaces.push(Sym::new(namespace));
    }
    namespaces.sort();
    namespaces.dedup();
    Ok(PodAffinityTerm {
        selector,
        namespaces,
        namespace_selector,
        topology_key: Sym::new(&t.topology_key),
    })
}

fn weighted_pod_affinity_terms(
    ctx: &Ctx,
    field: &str,
    terms: &[core::WeightedPodAffinityTerm],
    namespace: &str,
    labels: &Labels,
) -> Result<Vec<WeightedPodAffinityTerm>, ConvertError> {
    let mut out = Vec::with_capacity(terms.len());
    for (i, w) in terms.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if !(1..=100).contains(&w.weight) {
            return Err(ctx.err(
                format!("{f}.weight"),
                format!("must be in 1..100, got {}", w.weight),
            ));
        }
        out.push(WeightedPodAffinityTerm {
            weight: w.weight,
            term: pod_affinity_term(
                ctx,
                &format!("{f}.podAffinityTerm"),
                &w.pod_affinity_term,
                namespace,
                labels,
            )?,
        });
    }
    Ok(out)
}

/// `spec.affinity.podAffinity` and `podAntiAffinity`; `None` without any term.
fn pod_affinity(
    ctx: &Ctx,
    affinity: Option<&core::Affinity>,
    namespace: &str,
    labels: &Labels,
) -> Result<Option<Box<PodAffinity>>, ConvertError> {
    let Some(a) = affinity else {
        return Ok(None);
    };
    let mut out = PodAffinity::default();
    let required = |base: &str, terms: Option<&Vec<core::PodAffinityTerm>>| {
        terms
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| {
                pod_affinity_term(
                    ctx,
                    &format!("{base}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"),
                    t,
                    namespace,
                    labels,
                )
            })
            .collect::<Result<Vec<_>, _>>()
    };
    // Both kinds have the same two lists: (required, preferred).
    let both = |base: &str,
                req: Option<&Vec<core::PodAffinityTerm>>,
                pref: Option<&Vec<core::WeightedPodAffinityTerm>>| {
        let preferred = weighted_pod_affinity_terms(
            ctx,
            &format!("{base}.preferredDuringSchedulingIgnoredDuringExecution"),
            pref.map_or(&[][..], Vec::as_slice),
            namespace,
            labels,
        );
        Ok::<_, ConvertError>((required(base, req)?, preferred?))
    };
    if let Some(pa) = &a.pod_affinity {
        (out.required_affinity, out.preferred_affinity) = both(
            "spec.affinity.podAffinity",
            pa.required_during_scheduling_ignored_during_execution
                .as_ref(),
            pa.preferred_during_scheduling_ignored_during_execution
                .as_ref(),
        )?;
    }
    if let Some(pa) = &a.pod_anti_affinity {
        (out.required_anti_affinity, out.preferred_anti_affinity) = both(
            "spec.affinity.podAntiAffinity",
            pa.required_during_scheduling_ignored_during_execution
                .as_ref(),
            pa.preferred_during_scheduling_ignored_during_execution
                .as_ref(),
        )?;
    }
    Ok((!out.is_empty()).then(|| Box::new(out)))
}

fn parse_time_ms(t: &meta::Time) -> i64 {
    t.0.as_millisecond()
}

pub fn pod_from_k8s(
    pod: &core::Pod,
    priorities: &dyn PriorityResolver,
) -> Result<Pod, ConvertError> {
    let object = object_name(&pod.metadata);
    let ctx = Ctx::new("Pod", &object);
    let name = pod
        .metadata
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ctx.err("metadata.name", "missing"))?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| ctx.err("spec", "missing"))?;
    if spec.containers.is_empty() {
        return Err(ctx.err("spec.containers", "a pod needs at least one container"));
    }
    let labels = labels_of(&ctx, &pod.metadata.labels);
    let (requests, non_zero_requests) = pod_requests(&ctx, spec, pod.status.as_ref())?;
    let volumes = super::volume_convert::pod_volumes(&ctx, name, spec)?;
    let images = super::volume_convert::pod_images(spec);

    let mut tolerations = Vec::new();
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let op = match t.operator.as_deref() {
            None | Some("") | Some("Equal") => TolerationOp::Equal,
            Some("Exists") => TolerationOp::Exists,
            Some(o) => {
                return Err(ctx.err(
                    format!("spec.tolerations[{i}].operator"),
                    format!("unknown operator {o:?}"),
                ))
            }
        };
        let effect = match t.effect.as_deref() {
            None | Some("") => None,
            Some(e) => Some(TaintEffect::parse(e).ok_or_else(|| {
                ctx.err(
                    format!("spec.tolerations[{i}].effect"),
                    format!("unknown effect {e:?}"),
                )
            })?),
        };
        let key = t.key.as_deref().filter(|k| !k.is_empty()).map(Sym::new);
        if key.is_none() && op != TolerationOp::Exists {
            return Err(ctx.err(
                format!("spec.tolerations[{i}].key"),
                "an empty key requires operator Exists",
            ));
        }
        tolerations.push(Toleration {
            key,
            op,
            value: Sym::new(t.value.as_deref().unwrap_or("")),
            effect,
        });
    }

    let mut node_selector: Vec<(Sym, Sym)> = spec
        .node_selector
        .iter()
        .flatten()
        .map(|(k, v)| (Sym::new(k), ctx.value(v)))
        .collect();
    node_selector.sort();

    let mut node_affinity = NodeAffinity::default();
    if let Some(na) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
    {
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            node_affinity.required = Some(
                req.node_selector_terms
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        node_selector_term(
                            &ctx,
                            &format!("spec.affinity.nodeAffinity.required.nodeSelectorTerms[{i}]"),
                            t,
                        )
                    })
                    .collect(),
            );
        }
        for (i, p) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            node_affinity.preferred.push(PreferredTerm {
                weight: p.weight,
                term: node_selector_term(
                    &ctx,
                    &format!("spec.affinity.nodeAffinity.preferred[{i}].preference"),
                    &p.preference,
                ),
            });
        }
    }

    let mut topology_spread = Vec::new();
    for (i, c) in spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
    {
        let field = format!("spec.topologySpreadConstraints[{i}]");
        if c.max_skew < 1 {
            return Err(ctx.err(
                format!("{field}.maxSkew"),
                format!("must be at least 1, got {}", c.max_skew),
            ));
        }
        let when_unsatisfiable = match c.when_unsatisfiable.as_str() {
            "DoNotSchedule" => WhenUnsatisfiable::DoNotSchedule,
            "ScheduleAnyway" => WhenUnsatisfiable::ScheduleAnyway,
            o => {
                return Err(ctx.err(
                    format!("{field}.whenUnsatisfiable"),
                    format!("unknown value {o:?}"),
                ))
            }
        };
        let policy = |v: Option<&str>, default, f: &str| match v {
            None => Ok(default),
            Some("Honor") => Ok(InclusionPolicy::Honor),
            Some("Ignore") => Ok(InclusionPolicy::Ignore),
            Some(o) => Err(ctx.err(format!("{field}.{f}"), format!("unknown policy {o:?}"))),
        };
        let mut selector = match &c.label_selector {
            Some(s) => Some(label_selector(&ctx, &format!("{field}.labelSelector"), s)?),
            None => None,
        };
        // matchLabelKeys: the pod's own values for these keys narrow the selector.
        if let Some(sel) = selector.as_mut() {
            for key in c.match_label_keys.iter().flatten() {
                let key = Sym::new(key);
                if let Some(v) = labels.get(key) {
                    sel.requirements.push(Requirement {
                        key,
                        op: SelectorOp::In,
                        values: vec![v],
                        number: 0,
                    });
                }
            }
        }
        if let Some(md) = c.min_domains {
            if md < 1 {
                return Err(ctx.err(
                    format!("{field}.minDomains"),
                    format!("must be at least 1, got {md}"),
                ));
            }
            if when_unsatisfiable != WhenUnsatisfiable::DoNotSchedule {
                return Err(ctx.err(
                    format!("{field}.minDomains"),
                    "only allowed with whenUnsatisfiable DoNotSchedule",
                ));
            }
        }
        topology_spread.push(TopologySpreadConstraint {
            max_skew: c.max_skew,
            topology_key: Sym::new(&c.topology_key),
            when_unsatisfiable,
            selector,
            min_domains: c.min_domains,
            node_affinity_policy: policy(
                c.node_affinity_policy.as_deref(),
                InclusionPolicy::Honor,
                "nodeAffinityPolicy",
            )?,
            node_taints_policy: policy(
                c.node_taints_policy.as_deref(),
                InclusionPolicy::Ignore,
                "nodeTaintsPolicy",
            )?,
        });
    }

    let pod_affinity = pod_affinity(&ctx, spec.affinity.as_ref(), namespace, &labels)?;

    let mut host_ports = Vec::new();
    // Sidecars (restartable init containers) run beside the app containers and hold
    // their host ports too (upstream NodePorts since v1.33, kubernetes#132040);
    // ordinary init containers do not.
    let port_holders = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c))
        .chain(
            spec.init_containers
                .iter()
                .flatten()
                .enumerate()
                .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
                .map(|(i, c)| (format!("spec.initContainers[{i}]"), c)),
        );
    // With hostNetwork the API server defaults every unset hostPort to the
    // containerPort (defaultHostNetworkPorts); objects from files may not have been defaulted.
    let host_network = spec.host_network == Some(true);
    for (cf, c) in port_holders {
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let defaulted = p
                .host_port
                .filter(|hp| *hp != 0)
                .or(host_network.then_some(p.container_port));
            let Some(hp) = defaulted.filter(|hp| *hp > 0) else {
                continue;
            };
            let port = u16::try_from(hp).map_err(|_| {
                ctx.err(
                    format!("{cf}.ports[{pi}].hostPort"),
                    format!("{hp} is out of range"),
                )
            })?;
            let protocol = match p.protocol.as_deref() {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                Some(o) => {
                    return Err(ctx.err(
                        format!("{cf}.ports[{pi}].protocol"),
                        format!("unknown protocol {o:?}"),
                    ))
                }
            };
            host_ports.push(HostPort {
                protocol,
                host_ip: Sym::new(p.host_ip.as_deref().unwrap_or("")),
                port,
            });
        }
    }

    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| OwnerRef {
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
            controller: true,
        });

    let class = spec.priority_class_name.as_deref();
    let priority = match spec.priority {
        Some(p) => p,
        None => priorities
            .priority_of(class)
            .or_else(|| builtin_priority(class))
            .unwrap_or(0),
    };
    // Not admitted yet (no spec.priority): the class gives the policy too.
    let class_policy = match (&spec.preemption_policy, spec.priority) {
        (None, None) => priorities.preemption_policy_of(class),
        _ => None,
    };
    let preemption_policy = match spec
        .preemption_policy
        .as_deref()
        .or(class_policy.as_deref())
    {
        None | Some("PreemptLowerPriority") => PreemptionPolicy::PreemptLowerPriority,
        Some("Never") => PreemptionPolicy::Never,
        Some(o) => return Err(ctx.err("spec.preemptionPolicy", format!("unknown policy {o:?}"))),
    };

    let gpu = gpu::pod_gpu_from_annotations(|k| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(k))
            .map(String::as_str)
    })
    .map_err(|(key, message)| ctx.err(format!("metadata.annotations[{key}]"), message))?
    .map(Box::new);
    let annotations = pod
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let uid = pod.metadata.uid.clone().unwrap_or_else(|| object.clone());
    let spark = spark::identify_with(&labels, &uid, owner.as_ref(), |app| ctx.value(app));
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());

    Ok(Pod {
        key: PodKey::new(namespace, name),
        uid,
        labels,
        annotations,
        scheduler_name: spec
            .scheduler_name
            .clone()
            .unwrap_or_else(|| "default-scheduler".into()),
        priority,
        preemption_policy,
        requests,
        non_zero_requests: Some(non_zero_requests),
        tolerations,
        node_selector,
        node_affinity,
        topology_spread,
        pod_affinity,
        host_ports,
        owner,
        gpu,
        volumes,
        images,
        node_name: spec
            .node_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .map(|n| ctx.value(n)),
        nominated_node_name: status
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty())
            .map(|n| ctx.value(n)),
        terminating: pod.metadata.deletion_timestamp.is_some(),
        disrupted_by_preemption: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
            .is_some_and(|c| {
                c.status == "True" && c.reason.as_deref() == Some("PreemptionByScheduler")
            }),
        scheduling_gated: spec
            .scheduling_gates
            .as_ref()
            .is_some_and(|g| !g.is_empty()),
        finished: matches!(phase, Some("Succeeded") | Some("Failed")),
        created_ms: pod
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, parse_time_ms),
        started_ms: status
            .and_then(|s| s.start_time.as_ref())
            .map(parse_time_ms),
        unschedulable_since_ms: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
            .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(parse_time_ms),
        spark,
        interned: ctx.interned.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_yaml(y: &str) -> core::Pod {
        serde_saphyr::from_str(y).unwrap()
    }

    /// `PodScheduled=False` with reason Unschedulable gives the time it became so;
    /// any other state of the condition gives none.
    #[test]
    fn unschedulable_since_is_the_conditions_transition_time() {
        let with = |status: &str, reason: &str| {
            let y = format!(
                r#"
metadata: {{name: p, namespace: ns}}
spec: {{containers: [{{name: c}}]}}
status:
  conditions:
  - {{type: PodScheduled, status: "{status}", reason: {reason}, lastTransitionTime: "2026-12-07T08:00:00Z"}}
"#
            );
            pod_from_k8s(&pod_yaml(&y), &())
                .unwrap()
                .unschedulable_since_ms
        };
        assert_eq!(with("False", "Unschedulable"), Some(1_796_630_400_000));
        assert_eq!(with("False", "SchedulerError"), None);
        assert_eq!(with("True", "Scheduled"), None);
        let none = pod_yaml("metadata: {name: p}\nspec: {containers: [{name: c}]}\n");
        assert_eq!(
            pod_from_k8s(&none, &()).unwrap().unschedulable_since_ms,
            None
        );
    }

    /// Everything a pod or node carries that is new for every pod, application
    /// or node is interned only while the converted object (or a clone) lives;
    /// keys stay.
    #[test]
    fn per_object_strings_are_freed_with_the_object() {
        let y = r#"
metadata:
  name: exec-1
  namespace: spark
  uid: conv-free-uid
  labels: {spark-role: executor, spark-app-selector: conv-free-app, conv-free-key: conv-free-label}
spec:
  nodeName: conv-free-node
  nodeSelector: {pool: conv-free-pool}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{matchExpressions: [{key: rack, operator: In, values: [conv-free-rack]}]}]
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector: {matchLabels: {app: conv-free-anti}}
        matchLabelKeys: [conv-free-key]
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {matchExpressions: [{key: app, operator: In, values: [conv-free-spread]}]}
    matchLabelKeys: [spark-app-selector]
  containers: [{name: c, image: i}]
status:
  nominatedNodeName: conv-free-nominated
"#;
        let per_pod = [
            "conv-free-app",
            "conv-free-label",
            "conv-free-node",
            "conv-free-pool",
            "conv-free-rack",
            "conv-free-anti",
            "conv-free-spread",
            "conv-free-nominated",
        ];
        let pod = pod_from_k8s(&pod_yaml(y), &()).unwrap();
        for s in per_pod {
            assert!(Sym::lookup(s).is_some(), "{s}");
        }
        assert_eq!(pod.spark.as_ref().unwrap().app.to_string(), "conv-free-app");
        let clone = pod.clone();
        drop(pod);
        for s in per_pod {
            assert!(Sym::lookup(s).is_some(), "kept by the clone: {s}");
        }
        drop(clone);
        for s in per_pod {
            assert_eq!(Sym::lookup(s), None, "{s}");
        }
        assert!(Sym::lookup("conv-free-key").is_some(), "label keys stay");

        // An executor tied to its driver by ownerReference only: `uid:<driver uid>`.
        let y = r#"
metadata:
  name: exec-2
  namespace: spark
  labels: {spark-role: executor}
  ownerReferences: [{apiVersion: v1, kind: Pod, name: d, uid: conv-free-driver, controller: true}]
spec:
  containers: [{name: c, image: i}]
"#;
        let pod = pod_from_k8s(&pod_yaml(y), &()).unwrap();
        assert!(Sym::lookup("uid:conv-free-driver").is_some());
        drop(pod);
        assert_eq!(Sym::lookup("uid:conv-free-driver"), None);

        let node: core::Node = serde_saphyr::from_str(
            "metadata: {name: conv-free-node-name, labels: {karpenter.sh/nodeclaim: conv-free-claim}}\n",
        )
        .unwrap();
        let node = node_from_k8s(&node).unwrap();
        assert!(Sym::lookup("conv-free-claim").is_some());
        drop(node);
        assert_eq!(Sym::lookup("conv-free-claim"), None);
        assert_eq!(Sym::lookup("conv-free-node-name"), None);
    }

    #[test]
    fn requests_follow_upstream_pod_requests() {
        let p = pod_yaml(
            r#"
metadata: {name: p, namespace: ns}
spec:
  overhead: {cpu: 10m}
  initContainers:
  - name: init
    image: x
    resources: {requests: {cpu: "2", memory: 1Gi}}
  - name: sidecar
    image: x
    restartPolicy: Always
    resources: {requests: {cpu: 100m}}
  containers:
  - name: a
    image: x
    resources: {requests: {cpu: 500m, memory: 2Gi, nvidia.com/gpu: "1"}}
  - name: b
    image: x
    resources: {limits: {cpu: 250m}}
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        // running: 500m + 250m (limit defaulted) + 100m sidecar = 850m; init alone: 2000m. Max + 10m.
        assert_eq!(m.requests.milli_cpu, 2010);
        assert_eq!(m.requests.memory, 2 << 30);
        assert_eq!(m.requests.scalar(Sym::new("nvidia.com/gpu")), 1);
        // As the resource scorers count it, "b" and the sidecar have no memory
        // request: 200 MiB each, init containers included, as upstream.
        assert_eq!(m.non_zero_cpu_mem(), (2010, (2 << 30) + (400 << 20)));
    }

    /// A container being resized in place (InPlacePodVerticalScaling): the
    /// spec asks for `spec`, the status reports `actual` and `allocated`.
    fn resized(spec: &str, actual: &str, allocated: Option<&str>, condition: &str) -> Pod {
        let allocated = allocated
            .map(|a| format!("allocatedResources: {{memory: {a}}}"))
            .unwrap_or_default();
        pod_from_k8s(
            &pod_yaml(&format!(
                r#"
metadata: {{name: exec-1, namespace: spark}}
spec:
  nodeName: n1
  containers:
  - name: executor
    image: spark
    resources: {{requests: {{cpu: "1", memory: {spec}}}}}
status:
  conditions: [{condition}]
  containerStatuses:
  - name: executor
    image: spark
    imageID: x
    ready: true
    restartCount: 0
    resources: {{requests: {{cpu: "1", memory: {actual}}}}}
    {allocated}
"#
            )),
            &(),
        )
        .unwrap()
    }

    #[test]
    fn resized_pods_count_the_larger_of_desired_and_allocated() {
        let gi = |n: i64| n << 30;
        // (spec, status requests, allocated, condition, memory counted)
        let cases = [
            // Growing 4Gi → 8Gi, in progress: the new size counts already.
            (
                "8Gi",
                "4Gi",
                Some("4Gi"),
                "{type: PodResizeInProgress, status: 'True'}",
                gi(8),
            ),
            // Shrinking 8Gi → 4Gi: the old size counts until the kubelet applies it.
            (
                "4Gi",
                "8Gi",
                Some("8Gi"),
                "{type: PodResizeInProgress, status: 'True'}",
                gi(8),
            ),
            // Allocated ahead of what the runtime reports.
            (
                "4Gi",
                "4Gi",
                Some("6Gi"),
                "{type: Ready, status: 'True'}",
                gi(6),
            ),
            // Infeasible: the kubelet will not grant the spec; status counts.
            (
                "16Gi",
                "4Gi",
                Some("4Gi"),
                "{type: PodResizePending, status: 'True', reason: Infeasible}",
                gi(4),
            ),
            // Deferred: it may still be granted, so the spec counts.
            (
                "16Gi",
                "4Gi",
                None,
                "{type: PodResizePending, status: 'True', reason: Deferred}",
                gi(16),
            ),
        ];
        for (spec, actual, allocated, condition, want) in cases {
            let p = resized(spec, actual, allocated, condition);
            assert_eq!(
                p.requests.memory, want,
                "{spec} {actual} {allocated:?} {condition}"
            );
            assert_eq!(p.non_zero_cpu_mem(), (1000, want));
        }
    }

    #[test]
    fn resize_status_of_a_bad_quantity_names_the_field() {
        let p = pod_yaml(
            r#"
metadata: {name: p}
spec:
  containers: [{name: a, image: x, resources: {requests: {memory: 1Gi}}}]
status:
  containerStatuses:
  - {name: a, image: x, imageID: x, ready: true, restartCount: 0, resources: {requests: {memory: lots}}}
"#,
        );
        let e = pod_from_k8s(&p, &()).unwrap_err();
        assert_eq!(
            e.field,
            "status.containerStatuses[a].resources.requests.memory"
        );
    }

    #[test]
    fn scored_requests_default_each_missing_container_request() {
        let p = pod_yaml(
            r#"
metadata: {name: q, namespace: ns}
spec:
  containers:
  - {name: nothing, image: x}
  - {name: also-nothing, image: x}
  - name: explicit-zero
    image: x
    resources: {requests: {cpu: "0", memory: 1Gi}}
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        assert_eq!((m.requests.milli_cpu, m.requests.memory), (0, 1 << 30));
        // 100m and 200 MiB for each container lacking them; an explicit 0 stays 0.
        assert_eq!(m.non_zero_cpu_mem(), (200, (1 << 30) + (400 << 20)));
    }

    #[test]
    fn pod_level_requests_replace_the_containers_sum() {
        let p = pod_yaml(
            r#"
metadata: {name: p, namespace: ns}
spec:
  overhead: {cpu: 10m}
  resources:
    requests: {cpu: "3", hugepages-2Mi: 4Mi}
    limits: {cpu: "4", memory: 8Gi}
  containers:
  - name: a
    image: x
    resources: {requests: {cpu: 500m, nvidia.com/gpu: "1"}}
  - {name: b, image: x}
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        // cpu: the pod-level request (+ overhead), not 500m; memory: no container
        // asks for it, so the pod-level limit stands in (API server defaulting);
        // hugepages from the pod level; extended resources stay the containers'.
        assert_eq!(m.requests.milli_cpu, 3010);
        assert_eq!(m.requests.memory, 8 << 30);
        assert_eq!(m.requests.scalar(Sym::new("hugepages-2Mi")), 4 << 20);
        assert_eq!(m.requests.scalar(Sym::new("nvidia.com/gpu")), 1);
        // The scorers count the pod-level figures too, without per-container stand-ins.
        assert_eq!(m.non_zero_cpu_mem(), (3010, 8 << 30));
    }

    #[test]
    fn pod_level_limit_defaults_to_the_containers_sum_when_they_ask() {
        let p = pod_yaml(
            r#"
metadata: {name: p, namespace: ns}
spec:
  resources:
    limits: {cpu: "4", memory: 8Gi}
  containers:
  - name: a
    image: x
    resources: {requests: {cpu: "1", memory: 1Gi}}
  - {name: b, image: x}
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        // Pod-level requests default to the containers' sum (1 cpu, 1 GiB), which
        // the scorers then count as it is: no 100m / 200 MiB for "b".
        assert_eq!((m.requests.milli_cpu, m.requests.memory), (1000, 1 << 30));
        assert_eq!(m.non_zero_cpu_mem(), (1000, 1 << 30));
    }

    #[test]
    fn pod_level_limits_default_requests_the_containers_ask_for() {
        let p = pod_yaml(
            r#"
metadata: {name: p, namespace: ns}
spec:
  resources:
    limits: {cpu: "4"}
  containers:
  - name: a
    image: x
    resources: {requests: {memory: 1Gi}}
  - {name: b, image: x}
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        // cpu: no container asks, so the pod-level limit. memory: no pod-level
        // limit, but a container asks, so the pod-level request is the sum (1 GiB),
        // which the scorers count as it is (not 1 GiB + 200 MiB for "b").
        assert_eq!((m.requests.milli_cpu, m.requests.memory), (4000, 1 << 30));
        assert_eq!(m.non_zero_cpu_mem(), (4000, 1 << 30));
    }

    #[test]
    fn bad_pod_level_quantity_names_the_field() {
        let p = pod_yaml(
            r#"
metadata: {name: p, namespace: ns}
spec:
  resources: {limits: {memory: much}}
  containers: [{name: a, image: x}]
"#,
        );
        let e = pod_from_k8s(&p, &()).unwrap_err();
        assert_eq!(e.field, "spec.resources.limits.memory");
    }

    #[test]
    fn bad_quantity_names_object_and_field() {
        let p = pod_yaml(
            r#"
metadata: {name: p, namespace: ns}
spec:
  containers:
  - name: a
    image: x
    resources: {requests: {cpu: lots}}
"#,
        );
        let e = pod_from_k8s(&p, &()).unwrap_err();
        assert_eq!(e.object, "ns/p");
        assert_eq!(e.field, "spec.containers[0].resources.requests.cpu");
        assert!(e.to_string().contains("lots"), "{e}");
    }

    #[test]
    fn no_containers_is_an_error() {
        let p = pod_yaml("metadata: {name: p}\nspec: {containers: []}\n");
        let e = pod_from_k8s(&p, &()).unwrap_err();
        assert_eq!(e.field, "spec.containers");
    }

    #[test]
    fn match_label_keys_merge_into_selector() {
        let p = pod_yaml(
            r#"
metadata: {name: p, labels: {app: web, pod-template-hash: abc}}
spec:
  containers: [{name: a, image: x}]
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {matchLabels: {app: web}}
    matchLabelKeys: [pod-template-hash]
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        let sel = m.topology_spread[0].selector.as_ref().unwrap();
        assert_eq!(sel.requirements.len(), 2);
        assert!(sel.matches(&Labels::from_pairs([
            ("app", "web"),
            ("pod-template-hash", "abc")
        ])));
        assert!(!sel.matches(&Labels::from_pairs([
            ("app", "web"),
            ("pod-template-hash", "zzz")
        ])));
    }

    #[test]
    fn gpu_annotations_convert_once_and_errors_name_the_key() {
        let p = pod_yaml(
            r#"
metadata:
  name: p
  annotations:
    alibabacloud.com/gpu-milli: "250"
    alibabacloud.com/gpu-card-model: "T4|P100"
    alibabacloud.com/gpu-index: "3"
spec: {containers: [{name: a, image: x}]}
"#,
        );
        let g = pod_from_k8s(&p, &()).unwrap().gpu.expect("a GPU request");
        assert_eq!((g.count, g.milli), (1, 250));
        assert_eq!(g.models.len(), 2);
        assert_eq!(g.cards, Some(crate::model::Cards::single(3)));
        let bad = pod_yaml(
            r#"
metadata: {name: p, annotations: {alibabacloud.com/gpu-milli: "250", alibabacloud.com/gpu-count: "2"}}
spec: {containers: [{name: a, image: x}]}
"#,
        );
        let e = pod_from_k8s(&bad, &()).unwrap_err().to_string();
        assert!(
            e.contains("metadata.annotations[alibabacloud.com/gpu-"),
            "{e}"
        );
        let none = pod_yaml("metadata: {name: p}\nspec: {containers: [{name: a, image: x}]}\n");
        assert!(pod_from_k8s(&none, &()).unwrap().gpu.is_none());

        let n: core::Node = serde_saphyr::from_str(
            r#"
metadata: {name: n1, labels: {alibabacloud.com/gpu-card-model: T4}}
status: {allocatable: {cpu: "4", alibabacloud.com/gpu-count: "65"}}
"#,
        )
        .unwrap();
        let e = node_from_k8s(&n).unwrap_err().to_string();
        assert!(
            e.contains("status.allocatable.alibabacloud.com/gpu-count"),
            "{e}"
        );
    }

    #[test]
    fn node_conversion() {
        let n: core::Node = serde_saphyr::from_str(
            r#"
metadata: {name: n1, labels: {karpenter.sh/capacity-type: spot}}
spec:
  unschedulable: true
  taints: [{key: dedicated, value: spark, effect: NoSchedule}]
status:
  allocatable: {cpu: "4", memory: 16Gi, pods: "110", nvidia.com/gpu: "2"}
"#,
        )
        .unwrap();
        let m = node_from_k8s(&n).unwrap();
        assert_eq!(m.allocatable.milli_cpu, 4000);
        assert_eq!(m.allocatable.pods, 110);
        assert!(m.unschedulable);
        assert_eq!(m.taints[0].effect, TaintEffect::NoSchedule);
        assert_eq!(m.labels.get_str("karpenter.sh/capacity-type"), Some("spot"));
    }

    #[test]
    fn sidecar_host_ports_count_and_init_container_ports_do_not() {
        let p = pod_yaml(
            r#"
metadata: {name: p}
spec:
  initContainers:
  - name: setup
    image: x
    ports: [{containerPort: 9000, hostPort: 9000}]
  - name: proxy
    image: x
    restartPolicy: Always
    ports: [{containerPort: 15001, hostPort: 15001, protocol: UDP}]
  containers:
  - name: a
    image: x
    ports: [{containerPort: 8080, hostPort: 8080}]
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        let mut ports: Vec<(u16, Protocol)> =
            m.host_ports.iter().map(|h| (h.port, h.protocol)).collect();
        ports.sort_by_key(|p| p.0);
        assert_eq!(ports, [(8080, Protocol::Tcp), (15001, Protocol::Udp)]);
    }

    #[test]
    fn system_priority_classes_are_known() {
        let yaml = |class: &str| {
            pod_yaml(&format!(
                "metadata: {{name: p}}\nspec: {{priorityClassName: {class}, containers: [{{name: a, image: x}}]}}\n"
            ))
        };
        let prio = |class: &str| pod_from_k8s(&yaml(class), &()).unwrap().priority;
        assert_eq!(prio("system-node-critical"), 2_000_001_000);
        assert_eq!(prio("system-cluster-critical"), 2_000_000_000);
        assert_eq!(prio("unknown-class"), 0);
    }

    #[test]
    fn host_network_ports_default_to_container_ports() {
        let p = pod_yaml(
            r#"
metadata: {name: p}
spec:
  hostNetwork: true
  containers:
  - name: a
    image: x
    ports: [{containerPort: 9100}, {containerPort: 80, hostPort: 8080}]
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        let mut ports: Vec<u16> = m.host_ports.iter().map(|h| h.port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [8080, 9100]);
    }

    #[test]
    fn preemption_disruption_condition_is_read() {
        let yaml = |reason: &str| {
            format!(
                r#"
metadata: {{name: p, deletionTimestamp: "2026-01-01T00:00:00Z"}}
spec: {{containers: [{{name: a, image: x}}]}}
status:
  conditions:
  - {{type: DisruptionTarget, status: "True", reason: {reason}}}
"#
            )
        };
        let p = pod_from_k8s(&pod_yaml(&yaml("PreemptionByScheduler")), &()).unwrap();
        assert!(p.terminating && p.disrupted_by_preemption);
        let p = pod_from_k8s(&pod_yaml(&yaml("EvictionByEvictionAPI")), &()).unwrap();
        assert!(p.terminating && !p.disrupted_by_preemption);
    }

    #[test]
    fn scheduling_gates_mark_the_pod_gated() {
        let gated = pod_yaml(
            r#"
metadata: {name: p}
spec:
  schedulingGates: [{name: example.com/quota}]
  containers: [{name: a, image: x}]
"#,
        );
        assert!(pod_from_k8s(&gated, &()).unwrap().scheduling_gated);
        let open = pod_yaml(
            "metadata: {name: p}\nspec: {schedulingGates: [], containers: [{name: a, image: x}]}\n",
        );
        assert!(!pod_from_k8s(&open, &()).unwrap().scheduling_gated);
    }

    #[test]
    fn invalid_affinity_term_matches_nothing() {
        let p = pod_yaml(
            r#"
metadata: {name: p}
spec:
  containers: [{name: a, image: x}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: gen, operator: Gt, values: [notanumber]}]
"#,
        );
        let m = pod_from_k8s(&p, &()).unwrap();
        let terms = m.node_affinity.required.as_ref().unwrap();
        assert!(!terms[0].valid);
        assert!(!terms[0].matches(&Labels::from_pairs([("gen", "5")]), Sym::new("n")));
    }
}
