//! VolumeZone: a pod's bound volumes carry zone and region labels; a node
//! that has such labels must be in one of each volume's zones (upstream
//! `volumezone`). Unbound claims of `WaitForFirstConsumer` classes are left
//! to VolumeBinding; a node with no topology label at all passes (a
//! single-zone cluster whose nodes carry none).

use crate::framework::{CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::model::{BindingMode, Pod, PodVolume, Sym};
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "VolumeZone";
pub const ERR_REASON_CONFLICT: &str = "node(s) had no available volume zone";

const BETA_ZONE: &str = "failure-domain.beta.kubernetes.io/zone";
const BETA_REGION: &str = "failure-domain.beta.kubernetes.io/region";
const ZONE: &str = "topology.kubernetes.io/zone";
const REGION: &str = "topology.kubernetes.io/region";

/// The labels read, in upstream's order.
const TOPOLOGY_LABELS: [&str; 4] = [BETA_ZONE, BETA_REGION, ZONE, REGION];

pub struct VolumeZone;

/// One volume label the node must match: the key and the values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VolumeTopology {
    key: Sym,
    values: Vec<Sym>,
}

/// Upstream `LabelZonesToSet`: `a__b` is the zones `a` and `b`; an empty one
/// makes the label unreadable (ignored).
fn zones(value: &str) -> Option<Vec<Sym>> {
    let mut out = Vec::new();
    for z in value.split("__") {
        let z = z.trim();
        if z.is_empty() {
            return None;
        }
        out.push(Sym::new(z));
    }
    Some(out)
}

/// The GA label a beta one stands for.
fn ga_key(key: &str) -> &str {
    match key {
        BETA_ZONE => ZONE,
        BETA_REGION => REGION,
        other => other,
    }
}

/// Upstream `getPVbyPod`: the topology of the volumes bound to the pod's
/// named claims, or why the pod cannot be scheduled.
fn pod_topologies(pod: &Pod, snap: &Snapshot) -> Result<Vec<VolumeTopology>, Status> {
    let storage = snap.storage();
    let mut out = Vec::new();
    for claim in pod.volumes.iter().filter_map(PodVolume::named_claim) {
        let Some(c) = storage.api_claim(pod.key.namespace, claim) else {
            return Err(Status::unresolvable(
                NAME,
                format!("persistentvolumeclaim {claim:?} not found"),
            ));
        };
        if c.volume_name.is_empty() {
            let class = c.class.as_str();
            if class.is_empty() {
                return Err(Status::unresolvable(
                    NAME,
                    "PersistentVolumeClaim had no pv name and storageClass name",
                ));
            }
            let Some(sc) = storage.class(c.class) else {
                return Err(Status::unresolvable(
                    NAME,
                    format!("storageclass.storage.k8s.io {class:?} not found"),
                ));
            };
            match sc.binding_mode {
                None => {
                    return Err(Status::unresolvable(
                        NAME,
                        format!("VolumeBindingMode not set for StorageClass {class:?}"),
                    ))
                }
                Some(BindingMode::WaitForFirstConsumer) => continue,
                Some(BindingMode::Immediate) => {
                    return Err(Status::unresolvable(NAME, "PersistentVolume had no name"))
                }
            }
        }
        let Some(pv) = storage.api_volume(&c.volume_name) else {
            return Err(Status::unresolvable(
                NAME,
                format!("persistentvolume {:?} not found", c.volume_name),
            ));
        };
        for key in TOPOLOGY_LABELS {
            if let Some(values) = pv.labels.get_str(key).and_then(zones) {
                out.push(VolumeTopology {
                    key: Sym::new(key),
                    values,
                });
            }
        }
    }
    Ok(out)
}

impl Plugin for VolumeZone {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for VolumeZone {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status {
        if pod.volumes.is_empty() {
            return Status::skip();
        }
        match pod_topologies(pod, snap) {
            Ok(t) if t.is_empty() => Status::skip(),
            Ok(t) => {
                state.write(t);
                Status::success()
            }
            Err(st) => st,
        }
    }
}

impl FilterPlugin for VolumeZone {
    fn filter(&self, state: &CycleState, _: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let Some(topologies) = state.read::<Vec<VolumeTopology>>() else {
            return Status::error(NAME, "PreFilter state missing");
        };
        let labels = &snap.nodes().node[node as usize].labels;
        if !TOPOLOGY_LABELS.iter().any(|k| labels.get_str(k).is_some()) {
            return Status::success();
        }
        for t in topologies {
            let value = labels
                .get(t.key)
                .or_else(|| labels.get_str(ga_key(t.key.as_str())).map(Sym::new));
            if !value.is_some_and(|v| t.values.contains(&v)) {
                return Status::unresolvable(NAME, ERR_REASON_CONFLICT);
            }
        }
        Status::success()
    }

    /// Volumes' labels decide, not the pods placed on nodes.
    fn depends_on_placed_pods(&self, _: &CycleState, _: &Pod) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::model::{Claim, PersistentVolume};
    use crate::plugins::test_support::snapshot_of;
    use crate::testkit::*;

    fn snap_with(
        nodes: Vec<crate::model::Node>,
        claims: Vec<Claim>,
        pvs: Vec<PersistentVolume>,
    ) -> Snapshot {
        let mut s = snapshot_of(nodes, vec![]);
        let st = s.storage_mut();
        st.upsert_class(storage_class("wait", "p", true));
        st.upsert_class(storage_class("immediate", "p", false));
        for c in claims {
            st.upsert_claim(c);
        }
        for v in pvs {
            st.upsert_volume(v);
        }
        s
    }

    /// (PreFilter code, message) then each node's Filter message in node order.
    fn run(pod: &Pod, snap: &Snapshot) -> (Code, String, Vec<String>) {
        let mut state = CycleState::default();
        let pre = VolumeZone.pre_filter(&mut state, pod, snap);
        if pre.code != Code::Success {
            return (pre.code, pre.message(), vec![]);
        }
        let v = snap
            .nodes()
            .live_indices()
            .map(|n| VolumeZone.filter(&state, pod, snap, n).message())
            .collect();
        (pre.code, String::new(), v)
    }

    #[test]
    fn single_zone_table() {
        // Upstream TestSingleZone: volumes labelled with beta or GA zone and
        // region labels against nodes with matching, different or no labels.
        let pvs = vec![
            volume("Vol_1", "").label(BETA_ZONE, "us-west1-a").build(),
            volume("Vol_2", "")
                .label(BETA_REGION, "us-west1-b")
                .label("uselessLabel", "none")
                .build(),
            volume("Vol_3", "").label(BETA_REGION, "us-west1-c").build(),
            volume("Vol_Stable_1", "").label(ZONE, "us-west1-a").build(),
            volume("Vol_Stable_2", "")
                .label(REGION, "us-west1-b")
                .label("uselessLabel", "none")
                .build(),
            volume("Vol_Stable_3", "")
                .label(REGION, "us-west1-c")
                .build(),
        ];
        let claims = vec![
            claim("PVC_1", "").bound("Vol_1").build(),
            claim("PVC_2", "").bound("Vol_2").build(),
            claim("PVC_3", "").bound("Vol_3").build(),
            claim("PVC_4", "").bound("Vol_not_exist").build(),
            claim("PVC_Stable_1", "").bound("Vol_Stable_1").build(),
            claim("PVC_Stable_2", "").bound("Vol_Stable_2").build(),
            claim("PVC_Stable_3", "").bound("Vol_Stable_3").build(),
        ];
        let ok = String::new;
        let conflict = || ERR_REASON_CONFLICT.to_string();
        let n = |labels: &[(&str, &str)]| {
            labels
                .iter()
                .fold(node("host1", 1000, GI), |b, (k, v)| b.label(k, v))
                .build()
        };
        #[allow(clippy::type_complexity)] // a table: name, pod, node, code, reason, ...
        let rows: Vec<(&str, Pod, crate::model::Node, Code, String, Vec<String>)> = vec![
            (
                "pod without volume",
                pod("p", 1, 1).build(),
                n(&[(BETA_ZONE, "us-west1-a")]),
                Code::Skip,
                ok(),
                vec![],
            ),
            (
                "node without labels",
                pod("p", 1, 1).claim("PVC_1").build(),
                n(&[]),
                Code::Success,
                ok(),
                vec![ok()],
            ),
            (
                "beta zone label matched",
                pod("p", 1, 1).claim("PVC_1").build(),
                n(&[(BETA_ZONE, "us-west1-a"), ("uselessLabel", "none")]),
                Code::Success,
                ok(),
                vec![ok()],
            ),
            (
                "beta region label matched",
                pod("p", 1, 1).claim("PVC_2").build(),
                n(&[(BETA_REGION, "us-west1-b"), ("uselessLabel", "none")]),
                Code::Success,
                ok(),
                vec![ok()],
            ),
            (
                "beta region label doesn't match",
                pod("p", 1, 1).claim("PVC_2").build(),
                n(&[(BETA_REGION, "no_us-west1-b"), ("uselessLabel", "none")]),
                Code::Success,
                ok(),
                vec![conflict()],
            ),
            (
                "beta zone label doesn't match",
                pod("p", 1, 1).claim("PVC_1").build(),
                n(&[(BETA_ZONE, "no_us-west1-a"), ("uselessLabel", "none")]),
                Code::Success,
                ok(),
                vec![conflict()],
            ),
            (
                "zone label matched",
                pod("p", 1, 1).claim("PVC_Stable_1").build(),
                n(&[(ZONE, "us-west1-a"), ("uselessLabel", "none")]),
                Code::Success,
                ok(),
                vec![ok()],
            ),
            (
                "region label matched",
                pod("p", 1, 1).claim("PVC_Stable_2").build(),
                n(&[(REGION, "us-west1-b"), ("uselessLabel", "none")]),
                Code::Success,
                ok(),
                vec![ok()],
            ),
            (
                "region label doesn't match",
                pod("p", 1, 1).claim("PVC_Stable_2").build(),
                n(&[(REGION, "no_us-west1-b"), ("uselessLabel", "none")]),
                Code::Success,
                ok(),
                vec![conflict()],
            ),
            (
                "zone label doesn't match",
                pod("p", 1, 1).claim("PVC_Stable_1").build(),
                n(&[(ZONE, "no_us-west1-a"), ("uselessLabel", "none")]),
                Code::Success,
                ok(),
                vec![conflict()],
            ),
            (
                "pv with zone and region, node with only zone",
                pod("p", 1, 1)
                    .claim("PVC_Stable_1")
                    .claim("PVC_Stable_2")
                    .build(),
                n(&[(ZONE, "us-west1-a")]),
                Code::Success,
                ok(),
                vec![conflict()],
            ),
            (
                "beta-zone volume, node with the GA zone label",
                pod("p", 1, 1).claim("PVC_1").build(),
                n(&[(ZONE, "us-west1-a")]),
                Code::Success,
                ok(),
                vec![ok()],
            ),
            (
                "GA-zone volume, node with only the beta zone label",
                pod("p", 1, 1).claim("PVC_Stable_1").build(),
                n(&[(BETA_ZONE, "us-west1-a")]),
                Code::Success,
                ok(),
                vec![conflict()],
            ),
            (
                "pvc bound to a missing pv",
                pod("p", 1, 1).claim("PVC_4").build(),
                n(&[(ZONE, "us-west1-a")]),
                Code::UnschedulableAndUnresolvable,
                r#"persistentvolume "Vol_not_exist" not found"#.into(),
                vec![],
            ),
            (
                "missing pvc",
                pod("p", 1, 1).claim("PVC_9").build(),
                n(&[(ZONE, "us-west1-a")]),
                Code::UnschedulableAndUnresolvable,
                r#"persistentvolumeclaim "PVC_9" not found"#.into(),
                vec![],
            ),
        ];
        for (name, p, node, code, msg, want) in rows {
            let snap = snap_with(vec![node], claims.clone(), pvs.clone());
            assert_eq!(run(&p, &snap), (code, msg, want), "{name}");
        }
    }

    #[test]
    fn multi_zone_volume_labels() {
        // Upstream TestMultiZone: `a__b` lists zones.
        let pvs = vec![
            volume("Vol_1", "").label(BETA_ZONE, "us-west1-a").build(),
            volume("Vol_2", "")
                .label(BETA_ZONE, "us-west1-b__us-west1-c")
                .build(),
            volume("Vol_Stable_2", "")
                .label(ZONE, "us-west1-b__us-west1-c")
                .build(),
        ];
        let claims = vec![
            claim("PVC_1", "").bound("Vol_1").build(),
            claim("PVC_2", "").bound("Vol_2").build(),
            claim("PVC_Stable_2", "").bound("Vol_Stable_2").build(),
        ];
        let rows = [
            ("PVC_1", BETA_ZONE, "us-west1-a", true),
            ("PVC_2", BETA_ZONE, "us-west1-b", true),
            ("PVC_2", BETA_ZONE, "us-west1-c", true),
            ("PVC_2", BETA_ZONE, "us-west1-a", false),
            ("PVC_Stable_2", ZONE, "us-west1-c", true),
            ("PVC_Stable_2", ZONE, "us-west1-a", false),
        ];
        for (c, key, zone, fits) in rows {
            let snap = snap_with(
                vec![node("host1", 1000, GI).label(key, zone).build()],
                claims.clone(),
                pvs.clone(),
            );
            let (_, _, v) = run(&pod("p", 1, 1).claim(c).build(), &snap);
            assert_eq!(v[0].is_empty(), fits, "{c} on {zone}");
        }
    }

    #[test]
    fn unbound_claims_by_binding_mode() {
        // Upstream TestWithBinding.
        let claims = vec![
            claim("PVC_NoSC", "").build(),
            claim("PVC_EmptySC", "").build(),
            claim("PVC_WaitSC", "wait").build(),
            claim("PVC_ImmediateSC", "immediate").build(),
            claim("PVC_UnknownSC", "unknown").build(),
        ];
        let n = || vec![node("host1", 1000, GI).label(ZONE, "us-west1-a").build()];
        let rows: Vec<(&str, Code, String)> = vec![
            (
                "PVC_NoSC",
                Code::UnschedulableAndUnresolvable,
                "PersistentVolumeClaim had no pv name and storageClass name".into(),
            ),
            ("PVC_WaitSC", Code::Skip, String::new()),
            (
                "PVC_ImmediateSC",
                Code::UnschedulableAndUnresolvable,
                "PersistentVolume had no name".into(),
            ),
            (
                "PVC_UnknownSC",
                Code::UnschedulableAndUnresolvable,
                r#"storageclass.storage.k8s.io "unknown" not found"#.into(),
            ),
        ];
        for (c, code, msg) in rows {
            let snap = snap_with(n(), claims.clone(), vec![]);
            let (got_code, got_msg, _) = run(&pod("p", 1, 1).claim(c).build(), &snap);
            assert_eq!((got_code, got_msg), (code, msg), "{c}");
        }
    }
}
