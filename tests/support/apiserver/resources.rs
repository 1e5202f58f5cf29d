//! The resource types the test API server serves, and request path parsing.

/// One served resource: where it lives in the URL space and how it behaves.
#[derive(Debug)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Resources with a `status` subresource: writes to the main object keep the old
    /// status, writes to `/status` change only the status (as the real registry does).
    pub has_status: bool,
    /// Field selector labels the real API server accepts for this resource, besides
    /// `metadata.name` and `metadata.namespace`.
    pub field_labels: &'static [&'static str],
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn supports_field(&self, label: &str) -> bool {
        label == "metadata.name"
            || (self.namespaced && label == "metadata.namespace")
            || self.field_labels.contains(&label)
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.schedulerName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "type",
];
const EVENTS_V1_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "reason",
    "reportingController",
    "type",
];

pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        has_status: true,
        field_labels: POD_FIELDS,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "nodes",
        kind: "Node",
        namespaced: false,
        has_status: true,
        field_labels: &["spec.unschedulable"],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        has_status: false,
        field_labels: CORE_EVENT_FIELDS,
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        has_status: true,
        field_labels: &["status.phase"],
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        has_status: false,
        field_labels: EVENTS_V1_FIELDS,
    },
    ResourceType {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        kind: "PodDisruptionBudget",
        namespaced: true,
        has_status: true,
        field_labels: &[],
    },
    ResourceType {
        group: "scheduling.k8s.io",
        version: "v1",
        plural: "priorityclasses",
        kind: "PriorityClass",
        namespaced: false,
        has_status: false,
        field_labels: &[],
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        has_status: false,
        field_labels: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "persistentvolumeclaims",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        has_status: true,
        field_labels: &[],
    },
    ResourceType {
        group: "",
        version: "v1",
        plural: "persistentvolumes",
        kind: "PersistentVolume",
        namespaced: false,
        has_status: true,
        field_labels: &[],
    },
    ResourceType {
        group: "storage.k8s.io",
        version: "v1",
        plural: "storageclasses",
        kind: "StorageClass",
        namespaced: false,
        has_status: false,
        field_labels: &[],
    },
    ResourceType {
        group: "storage.k8s.io",
        version: "v1",
        plural: "csinodes",
        kind: "CSINode",
        namespaced: false,
        has_status: false,
        field_labels: &[],
    },
    ResourceType {
        group: "storage.k8s.io",
        version: "v1",
        plural: "csidrivers",
        kind: "CSIDriver",
        namespaced: false,
        has_status: false,
        field_labels: &[],
    },
    ResourceType {
        group: "storage.k8s.io",
        version: "v1",
        plural: "csistoragecapacities",
        kind: "CSIStorageCapacity",
        namespaced: true,
        has_status: false,
        field_labels: &[],
    },
];

/// Index into [`RESOURCES`].
pub type ResourceId = usize;

pub fn resource(id: ResourceId) -> &'static ResourceType {
    &RESOURCES[id]
}

pub fn lookup(group: &str, version: &str, plural: &str) -> Option<ResourceId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource id for a typed k8s-openapi object.
pub fn for_type<K: kube::Resource<DynamicType = ()>>() -> Option<ResourceId> {
    lookup(&K::group(&()), &K::version(&()), &K::plural(&()))
}

/// What a request URL addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Version,
    Healthz,
    /// `POST /api/v1/namespaces/{ns}/bindings` (the pre-subresource binding API).
    Bindings {
        namespace: String,
    },
    Resource(ResourcePath),
    Unknown,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ResourcePath {
    pub resource: ResourceId,
    /// `None` for cluster-scoped resources and for cluster-wide collection requests.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub fn parse_path(path: &str) -> Target {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Target::Version,
        ["healthz"] | ["livez"] | ["readyz"] => return Target::Healthz,
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Target::Unknown,
    };
    let (namespace, plural, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] => (Some((*ns).to_string()), *plural, tail),
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Target::Unknown,
    };
    if group.is_empty() && plural == "bindings" && tail.is_empty() {
        if let Some(namespace) = namespace {
            return Target::Bindings { namespace };
        }
    }
    let Some(id) = lookup(group, version, plural) else {
        return Target::Unknown;
    };
    let rt = resource(id);
    if namespace.is_some() && !rt.namespaced {
        return Target::Unknown;
    }
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some((*name).to_string()), None),
        [name, sub] => (Some((*name).to_string()), Some((*sub).to_string())),
        _ => return Target::Unknown,
    };
    // A single namespaced object needs its namespace in the path.
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Target::Unknown;
    }
    Target::Resource(ResourcePath {
        resource: id,
        namespace,
        name,
        subresource,
    })
}
