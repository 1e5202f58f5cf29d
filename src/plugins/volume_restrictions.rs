//! VolumeRestrictions (upstream `volumerestrictions`): an in-tree disk a pod
//! mounts inline must not conflict with one a pod on the node mounts (the
//! same GCE disk unless both read-only, the same EBS volume, the same iSCSI
//! IQN or RBD image unless both read-only); and a claim with the
//! `ReadWriteOncePod` access mode must not be in use by any placed pod.
//! Both are Unschedulable: preempting the pod that holds the disk or claim helps.

use crate::framework::{CycleState, FilterPlugin, Plugin, PreFilterPlugin, Status};
use crate::model::{AccessModes, InlineDisk, Pod, PodVolume};
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "VolumeRestrictions";
pub const ERR_REASON_DISK_CONFLICT: &str = "node(s) had no available disk";
pub const ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT: &str =
    "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode";

pub struct VolumeRestrictions;

/// PreFilter's findings (upstream `preFilterState`).
#[derive(Debug, Default)]
struct RestrictionState {
    /// The pod's named claims with the ReadWriteOncePod access mode.
    read_write_once_pod: Vec<String>,
    /// How many of them a placed pod uses.
    conflicts: usize,
}

fn restricted_disks(pod: &Pod) -> impl Iterator<Item = &InlineDisk> {
    pod.volumes.iter().filter_map(|v| match v {
        PodVolume::Disk(d) if d.restricted() => Some(d),
        _ => None,
    })
}

/// Upstream `satisfyVolumeConflicts` against one pod of the node.
fn conflicts_with(pod: &Pod, other: &Pod) -> bool {
    restricted_disks(pod).any(|d| {
        other.volumes.iter().any(|v| match v {
            PodVolume::Disk(o) => d.conflicts(o),
            PodVolume::Claim { .. } => false,
        })
    })
}

impl Plugin for VolumeRestrictions {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for VolumeRestrictions {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, snap: &Snapshot) -> Status {
        if pod.volumes.is_empty() {
            return Status::skip();
        }
        let storage = snap.storage();
        let mut s = RestrictionState::default();
        for claim in pod.volumes.iter().filter_map(PodVolume::named_claim) {
            let Some(c) = storage.api_claim(pod.key.namespace, claim) else {
                return Status::unresolvable(
                    NAME,
                    format!("persistentvolumeclaim {claim:?} not found"),
                );
            };
            if c.access_modes.contains(AccessModes::RWOP) && !s.read_write_once_pod.contains(claim)
            {
                s.read_write_once_pod.push(claim.clone());
                // At most one placed pod can use such a claim.
                s.conflicts += usize::from(storage.claim_in_use(pod.key.namespace, claim));
            }
        }
        if restricted_disks(pod).next().is_none() && s.conflicts == 0 {
            return Status::skip();
        }
        state.write(s);
        Status::success()
    }
}

impl FilterPlugin for VolumeRestrictions {
    fn filter(&self, state: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        // Pods nominated here with priority at least the pod's hold their
        // disks too (upstream adds them to the NodeInfo the filters see).
        if restricted_disks(pod).next().is_some()
            && (snap.pods_on(node).any(|e| conflicts_with(pod, &e.pod))
                || snap
                    .nominated_for(pod, node)
                    .any(|n| conflicts_with(pod, &n.pod)))
        {
            return Status::unschedulable(NAME, ERR_REASON_DISK_CONFLICT);
        }
        match state.read::<RestrictionState>() {
            Some(s) if s.conflicts > 0 => {
                Status::unschedulable(NAME, ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT)
            }
            Some(_) => Status::success(),
            None => Status::error(NAME, "PreFilter state missing"),
        }
    }

    /// Disks and ReadWriteOncePod claims are held by placed pods.
    fn depends_on_placed_pods(&self, _: &CycleState, pod: &Pod) -> bool {
        !pod.volumes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::model::Sym;
    use crate::plugins::test_support::snapshot_of;
    use crate::testkit::*;

    fn run(pod: &Pod, snap: &Snapshot) -> (Code, Vec<String>) {
        let mut state = CycleState::default();
        let pre = VolumeRestrictions.pre_filter(&mut state, pod, snap);
        if pre.code != Code::Success {
            return (pre.code, vec![pre.message()]);
        }
        let v = snap
            .nodes()
            .live_indices()
            .map(|n| VolumeRestrictions.filter(&state, pod, snap, n).message())
            .collect();
        (pre.code, v)
    }

    fn ebs(id: &str) -> InlineDisk {
        InlineDisk::AwsEbs {
            volume_id: id.into(),
            read_only: false,
        }
    }

    fn rbd(mons: &[&str], image: &str, read_only: bool) -> InlineDisk {
        InlineDisk::Rbd {
            monitors: mons.iter().map(|m| m.to_string()).collect(),
            pool: "rbd".into(),
            image: image.into(),
            read_only,
        }
    }

    fn iscsi(iqn: &str, read_only: bool) -> InlineDisk {
        InlineDisk::Iscsi {
            iqn: iqn.into(),
            read_only,
        }
    }

    #[test]
    fn disk_conflicts_table() {
        // Upstream TestGCEDiskConflicts, TestAWSDiskConflicts,
        // TestRBDDiskConflicts, TestISCSIDiskConflicts: (pod's disk, disk of a
        // pod on the node, conflict).
        let rows: Vec<(&str, Option<InlineDisk>, Option<InlineDisk>, bool)> = vec![
            ("gce: nothing", Some(gce_disk("foo", false)), None, false),
            (
                "gce: one state",
                Some(gce_disk("foo", false)),
                Some(gce_disk("bar", false)),
                false,
            ),
            (
                "gce: same state",
                Some(gce_disk("foo", false)),
                Some(gce_disk("foo", false)),
                true,
            ),
            (
                "gce: both read-only",
                Some(gce_disk("foo", true)),
                Some(gce_disk("foo", true)),
                false,
            ),
            (
                "gce: one read-only",
                Some(gce_disk("foo", true)),
                Some(gce_disk("foo", false)),
                true,
            ),
            ("aws: different", Some(ebs("foo")), Some(ebs("bar")), false),
            ("aws: same", Some(ebs("foo")), Some(ebs("foo")), true),
            (
                "rbd: different image",
                Some(rbd(&["a", "b"], "foo", false)),
                Some(rbd(&["a", "b"], "bar", false)),
                false,
            ),
            (
                "rbd: shared monitor, same image",
                Some(rbd(&["a", "b"], "foo", false)),
                Some(rbd(&["c", "a"], "foo", false)),
                true,
            ),
            (
                "rbd: no shared monitor",
                Some(rbd(&["a"], "foo", false)),
                Some(rbd(&["c"], "foo", false)),
                false,
            ),
            (
                "rbd: both read-only",
                Some(rbd(&["a"], "foo", true)),
                Some(rbd(&["a"], "foo", true)),
                false,
            ),
            (
                "iscsi: different",
                Some(iscsi("iqn.2016-12.server:storage.target01", false)),
                Some(iscsi("iqn.2017-12.server:storage.target01", false)),
                false,
            ),
            (
                "iscsi: same",
                Some(iscsi("iqn.2016-12.server:storage.target01", false)),
                Some(iscsi("iqn.2016-12.server:storage.target01", false)),
                true,
            ),
            (
                "iscsi: both read-only",
                Some(iscsi("iqn.2016-12.server:storage.target01", true)),
                Some(iscsi("iqn.2016-12.server:storage.target01", true)),
                false,
            ),
            (
                "pod without restricted disks",
                None,
                Some(ebs("foo")),
                false,
            ),
        ];
        for (name, mine, theirs, conflict) in rows {
            let mut other = pod("other", 1, 1).on("n1");
            if let Some(d) = theirs {
                other = other.disk(d);
            }
            let snap = snapshot_of(vec![node("n1", 1000, GI).build()], vec![other.build()]);
            let mut p = pod("p", 1, 1);
            if let Some(d) = mine {
                p = p.disk(d);
            }
            let (code, v) = run(&p.build(), &snap);
            let want = if conflict {
                (Code::Success, vec![ERR_REASON_DISK_CONFLICT.to_string()])
            } else if code == Code::Skip {
                (Code::Skip, vec![String::new()])
            } else {
                (Code::Success, vec![String::new()])
            };
            assert_eq!((code, v), want, "{name}");
        }
    }

    #[test]
    fn read_write_once_pod_table() {
        // Upstream TestAccessModeConflicts.
        let rwop = AccessModes::RWOP;
        let rwx = AccessModes::RWX;
        let claims = vec![
            claim("claim-with-rwop-1", "").modes(rwop).build(),
            claim("claim-with-rwop-2", "").modes(rwop).build(),
            claim("claim-with-rwx", "").modes(rwx).build(),
        ];
        let on_node = |name: &str, claims: &[&str]| {
            claims
                .iter()
                .fold(pod(name, 1, 1).on("node-1"), |p, c| p.claim(c))
                .build()
        };
        #[allow(clippy::type_complexity)] // a table: name, pod, pods on the node, code, reasons
        let rows: Vec<(&str, Pod, Vec<Pod>, Code, Vec<String>)> = vec![
            (
                "nothing",
                pod("p", 1, 1).build(),
                vec![],
                Code::Skip,
                vec![String::new()],
            ),
            (
                "failed to get PVC",
                pod("p", 1, 1).claim("claim-not-exist").build(),
                vec![],
                Code::UnschedulableAndUnresolvable,
                vec![r#"persistentvolumeclaim "claim-not-exist" not found"#.into()],
            ),
            (
                "no access mode conflict",
                pod("p", 1, 1).claim("claim-with-rwop-1").build(),
                vec![on_node("o", &["claim-with-rwop-2"])],
                Code::Skip,
                vec![String::new()],
            ),
            (
                "access mode conflict",
                pod("p", 1, 1)
                    .claim("claim-with-rwop-1")
                    .claim("claim-with-rwx")
                    .build(),
                vec![on_node("o", &["claim-with-rwop-1", "claim-with-rwx"])],
                Code::Success,
                vec![ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT.into()],
            ),
            (
                "two conflicts",
                pod("p", 1, 1)
                    .claim("claim-with-rwop-1")
                    .claim("claim-with-rwop-2")
                    .build(),
                vec![
                    on_node("o1", &["claim-with-rwop-1"]),
                    on_node("o2", &["claim-with-rwop-2"]),
                ],
                Code::Success,
                vec![ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT.into()],
            ),
            (
                "read-write-many is no conflict",
                pod("p", 1, 1).claim("claim-with-rwx").build(),
                vec![on_node("o", &["claim-with-rwx"])],
                Code::Skip,
                vec![String::new()],
            ),
        ];
        for (name, p, placed, code, want) in rows {
            let mut snap = snapshot_of(vec![node("node-1", 1000, GI).build()], placed);
            for c in &claims {
                snap.storage_mut().upsert_claim(c.clone());
            }
            let got = run(&p, &snap);
            let want = if code == Code::Skip {
                (Code::Skip, vec![String::new()])
            } else {
                (code, want)
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn read_write_once_pod_conflict_is_global_and_leaves_with_the_user() {
        // The claim in use on another node still conflicts on every node; once
        // the user is gone (preemption removes it), nothing does.
        let mut snap = snapshot_of(
            vec![node("a", 1000, GI).build(), node("b", 1000, GI).build()],
            vec![pod("user", 1, 1).on("b").claim("only-one").build()],
        );
        snap.storage_mut()
            .upsert_claim(claim("only-one", "").modes(AccessModes::RWOP).build());
        let p = pod("p", 1, 1).claim("only-one").build();
        let (_, v) = run(&p, &snap);
        assert_eq!(
            v,
            vec![ERR_REASON_READ_WRITE_ONCE_POD_CONFLICT.to_string(); 2]
        );
        snap.remove_pod(&crate::model::PodKey::new("default", "user"));
        assert!(!snap.storage().claim_in_use(Sym::new("default"), "only-one"));
        assert_eq!(run(&p, &snap).0, Code::Skip);
    }
}
