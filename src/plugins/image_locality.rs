//! ImageLocality (upstream `imagelocality`): nodes that already hold the
//! pod's images score higher, so large images (Spark's take minutes to pull)
//! are not pulled again. Each image of an init container or container that a
//! node holds adds its size, scaled by the share of nodes holding it (an
//! image on one node of many adds little: that keeps pods from piling onto
//! the few nodes that have it); the sum maps linearly onto 0..=100 between
//! 23 MiB and 1000 MiB times the number of containers.

use crate::framework::{
    CycleState, Normalization, Plugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "ImageLocality";

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

pub struct ImageLocality;

/// PreScore's sums: per node slot, the scaled sizes of the pod's images it
/// holds (`None` when no node holds any: every node scores 0).
struct ImageSums {
    by_slot: Vec<i64>,
    containers: usize,
}

/// Upstream `calculatePriority`.
fn priority(sum: i64, containers: usize) -> i64 {
    let max = MAX_CONTAINER_THRESHOLD.saturating_mul(containers.max(1) as i64);
    let sum = sum.clamp(MIN_THRESHOLD, max);
    MAX_NODE_SCORE * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
}

/// The sums, or `None` when no node holds any of the pod's images.
fn image_sums(pod: &Pod, snap: &Snapshot) -> Option<ImageSums> {
    let index = snap.images();
    if index.is_empty() || pod.images.is_empty() {
        return None;
    }
    let total = snap.nodes().len().max(1) as f64;
    let mut by_slot: Vec<i64> = Vec::new();
    for &image in pod.images.iter() {
        let Some(state) = index.get(image) else {
            continue;
        };
        // Upstream `scaledImageScore`: the size times the share of nodes holding it.
        let scaled = (state.size as f64 * (state.nodes.len() as f64 / total)) as i64;
        if by_slot.is_empty() {
            by_slot = vec![0; snap.nodes().slots()];
        }
        for &n in &state.nodes {
            if let Some(s) = by_slot.get_mut(n as usize) {
                *s = s.saturating_add(scaled);
            }
        }
    }
    (!by_slot.is_empty()).then_some(ImageSums {
        by_slot,
        containers: pod.images.len(),
    })
}

impl Plugin for ImageLocality {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for ImageLocality {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &Snapshot,
        _: &[NodeIdx],
    ) -> Status {
        if let Some(sums) = image_sums(pod, snap) {
            state.write(sums);
        }
        Status::success()
    }
}

impl ScorePlugin for ImageLocality {
    fn score(&self, state: &CycleState, pod: &Pod, _: &Snapshot, node: NodeIdx) -> i64 {
        let sum = state
            .read::<ImageSums>()
            .and_then(|s| s.by_slot.get(node as usize).copied())
            .unwrap_or(0);
        priority(sum, pod.images.len())
    }

    fn score_nodes(
        &self,
        state: &CycleState,
        _: &Pod,
        _: &Snapshot,
        nodes: &[NodeIdx],
        out: &mut [i64],
    ) {
        let Some(s) = state.read::<ImageSums>() else {
            out.fill(0);
            return;
        };
        for (o, &n) in out.iter_mut().zip(nodes) {
            *o = priority(
                s.by_slot.get(n as usize).copied().unwrap_or(0),
                s.containers,
            );
        }
    }

    /// No node holds any of the pod's images: every node scores 0.
    fn uniform_score(&self, state: &CycleState, _: &Pod, _: &Snapshot) -> Option<i64> {
        state.read::<ImageSums>().is_none().then_some(0)
    }

    /// PreScore worked out every slot's sum: a node costs a lookup.
    fn scores_every_slot(&self, _: &CycleState, _: &Pod, _: &Snapshot, _: &[NodeIdx]) -> bool {
        true
    }

    fn score_slots(
        &self,
        state: &CycleState,
        pod: &Pod,
        _: &Snapshot,
        _: &[NodeIdx],
        first: usize,
        out: &mut [i64],
    ) -> bool {
        let containers = pod.images.len();
        match state.read::<ImageSums>() {
            Some(s) => {
                let sums = s.by_slot.get(first..).unwrap_or(&[]);
                for (k, o) in out.iter_mut().enumerate() {
                    *o = priority(sums.get(k).copied().unwrap_or(0), containers);
                }
            }
            None => out.fill(0),
        }
        true
    }

    fn normalization(&self) -> Normalization {
        Normalization::None
    }

    /// A node's score reads its images and how common each is; the snapshot
    /// gives every node holding an image a fresh stamp when that changes
    /// (`snapshot::images`), so an unchanged stamp means an unchanged score
    /// for pods with the same images.
    fn keeps_node_scores(&self, _: &CycleState, kept: &Pod, pod: &Pod) -> bool {
        kept.images == pod.images
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{score_all, snapshot_of};
    use crate::testkit::*;

    const MIB: i64 = MB;

    fn scores(pod: &Pod, snap: &Snapshot) -> Vec<i64> {
        score_all(Some(&ImageLocality), &ImageLocality, pod, snap)
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    #[test]
    fn upstream_image_locality_table() {
        // Upstream TestImageLocalityPriority: node01 holds gcr.io/40:latest
        // (40 MiB) and gcr.io/300:latest (300 MiB); node02 holds
        // gcr.io/250:latest (250 MiB) and gcr.io/10:latest (10 MiB); node03
        // holds gcr.io/300:latest, gcr.io/600:latest (600 MiB) and
        // gcr.io/2000:latest (2000 MiB).
        let node01 = || {
            node("node01", 1000, GI)
                .image("gcr.io/40:latest", 40 * MIB)
                .image("gcr.io/300:latest", 300 * MIB)
        };
        let node02 = || {
            node("node02", 1000, GI)
                .image("gcr.io/250:latest", 250 * MIB)
                .image("gcr.io/10:latest", 10 * MIB)
        };
        let node03 = || {
            node("node03", 1000, GI)
                .image("gcr.io/300:latest", 300 * MIB)
                .image("gcr.io/600:latest", 600 * MIB)
                .image("gcr.io/2000:latest", 2000 * MIB)
        };
        let with = |images: &[&str]| {
            images
                .iter()
                .fold(pod("p", 1, 1), |p, i| p.image(i))
                .build()
        };
        let rows: Vec<(&str, Pod, Vec<crate::model::Node>, Vec<i64>)> = vec![
            (
                // 40 MiB on 1 of 2 nodes: 20 MiB, below the minimum; 250 MiB on 1 of
                // 2: 125 MiB → 100·(125−23)/(2000−23) = 5.
                "two images spread on two nodes, prefer the larger image one",
                with(&["gcr.io/40", "gcr.io/250"]),
                vec![node01().build(), node02().build()],
                vec![0, 5],
            ),
            (
                // 40 MiB + 300 MiB, each on 1 of 2 nodes: 170 MiB → 7; node02 holds neither.
                "two images on one node, prefer this node",
                with(&["gcr.io/40", "gcr.io/300"]),
                vec![node01().build(), node02().build()],
                vec![7, 0],
            ),
            (
                // 10 MiB on 1 of 2 nodes: below the minimum; 2000 MiB on 1 of 2:
                // 1000 MiB → 100·(1000−23)/(2000−23) = 49.
                "if exceed limit, use limit",
                with(&["gcr.io/2000", "gcr.io/10"]),
                vec![node02().build(), node03().build()],
                vec![0, 49],
            ),
            (
                // gcr.io/300 on 2 of 3 nodes: 200 MiB → 8 on node01; node03 adds
                // 2000 MiB on 1 of 3: 866 MiB → 42.
                "image on most nodes",
                with(&["gcr.io/300", "gcr.io/2000"]),
                vec![node01().build(), node02().build(), node03().build()],
                vec![8, 0, 42],
            ),
            (
                "an untagged image is :latest",
                with(&["gcr.io/300"]),
                vec![node01().build(), node03().build()],
                vec![28, 28],
            ),
            (
                "no image held anywhere",
                with(&["gcr.io/nope"]),
                vec![node01().build()],
                vec![0],
            ),
        ];
        for (name, p, nodes, want) in rows {
            let snap = snapshot_of(nodes, vec![]);
            assert_eq!(scores(&p, &snap), want, "{name}");
        }
    }

    #[test]
    fn calculate_priority_bounds() {
        assert_eq!(priority(0, 1), 0);
        assert_eq!(priority(MIN_THRESHOLD, 1), 0);
        assert_eq!(priority(MAX_CONTAINER_THRESHOLD, 1), 100);
        assert_eq!(priority(10 * MAX_CONTAINER_THRESHOLD, 1), 100);
        // 100·(1000−23)/(2000−23)
        assert_eq!(priority(MAX_CONTAINER_THRESHOLD, 2), 49);
    }

    #[test]
    fn node_changes_restamp_the_nodes_holding_images() {
        let mut snap = snapshot_of(
            vec![
                node("a", 1000, GI).image("spark:3.5", 900 * MIB).build(),
                node("b", 1000, GI).build(),
            ],
            vec![],
        );
        let a = snap.nodes().by_name("a").unwrap() as usize;
        let b = snap.nodes().by_name("b").unwrap() as usize;
        let (stamp_a, stamp_b) = (snap.nodes().stamp[a], snap.nodes().stamp[b]);
        // A third node changes every image's share: `a` is restamped, `b`
        // (no images, score 0 whatever happens) is not.
        snap.upsert_node(node("c", 1000, GI).build());
        assert_ne!(snap.nodes().stamp[a], stamp_a);
        assert_eq!(snap.nodes().stamp[b], stamp_b);
        let p = pod("p", 1, 1).image("spark:3.5").build();
        // 900 MiB on 1 of 3 nodes: 300 MiB → 100·(300−23)/977 = 28.
        assert_eq!(scores(&p, &snap), vec![28, 0, 0]);
        // `c` pulls the image: two of three nodes hold it.
        snap.upsert_node(node("c", 1000, GI).image("spark:3.5", 900 * MIB).build());
        assert_eq!(scores(&p, &snap), vec![59, 0, 59]);
        snap.remove_node(crate::model::Sym::new("b"));
        assert_eq!(scores(&p, &snap), vec![89, 89]);
    }
}
