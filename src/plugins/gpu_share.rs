//! GpuShare: GPU sharing at card level (`model::gpu`), as Alibaba's
//! open-gpu-share filter and reserve do. A pod asking for a share of a GPU
//! fits a node with one card that has that much free; a pod asking for whole
//! GPUs fits a node with that many free cards; a pod naming card models fits
//! only nodes of those models. At Reserve the plugin picks the cards (by
//! default the FGD paper's "best fit": the fullest card that holds a share,
//! the first free cards for whole GPUs) and the binding records them.
//!
//! Pods without a GPU request skip the plugin at PreFilter: they pay one
//! check per cycle, nothing per node.

use crate::framework::{
    retain_nodes, CycleState, FilterPlugin, Plugin, PreFilterPlugin, ReservePlugin, ReservedCards,
    Status,
};
use crate::model::{Cards, Pod, PodGpu};
use crate::snapshot::{best_fit_cards, cards_fit, NodeIdx, Snapshot};
use std::sync::Arc;

pub const NAME: &str = "GpuShare";
/// The node has no GPU card at all.
pub const ERR_NO_GPU: &str = "node(s) had no GPU";
/// The node's cards are not of a model the pod accepts.
pub const ERR_MODEL: &str = "node(s) didn't have the requested GPU model";
/// A share of a GPU: no single card has that much free.
pub const ERR_SHARE: &str = "Insufficient GPU share on a single GPU";
/// Whole GPUs: fewer free cards than asked.
pub const ERR_WHOLE: &str = "Insufficient free GPUs";

/// How Reserve picks the cards on the chosen node: the FGD paper's simulator
/// lets the policy that scored the node choose (FGD the card it grows
/// fragmentation least on, Random a random card, the others best fit).
pub trait CardPicker: Send + Sync {
    /// Cards on `node` for `pod` (which asks for `gpu`), all with room for it;
    /// `None` when none fit.
    fn pick(&self, pod: &Pod, gpu: &PodGpu, snap: &Snapshot, node: NodeIdx) -> Option<Cards>;
}

/// The default choice (`snapshot::best_fit_cards`).
pub struct BestFit;

impl CardPicker for BestFit {
    fn pick(&self, _: &Pod, gpu: &PodGpu, snap: &Snapshot, node: NodeIdx) -> Option<Cards> {
        best_fit_cards(&snap.nodes().gpu_free[node as usize], gpu.count, gpu.milli)
    }
}

pub struct GpuShare {
    picker: Arc<dyn CardPicker>,
}

impl Default for GpuShare {
    fn default() -> Self {
        GpuShare {
            picker: Arc::new(BestFit),
        }
    }
}

impl GpuShare {
    /// Reserve picks cards with `picker` instead of best fit.
    pub fn with_picker(picker: Arc<dyn CardPicker>) -> GpuShare {
        GpuShare { picker }
    }
}

impl Plugin for GpuShare {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Why `gpu` does not fit a node with cards `free` of `model`, if it does not.
fn verdict(gpu: &PodGpu, free: &[i32], model: Option<crate::model::Sym>) -> Option<Status> {
    if free.is_empty() {
        return Some(Status::unresolvable(NAME, ERR_NO_GPU));
    }
    if !gpu.accepts(model) {
        return Some(Status::unresolvable(NAME, ERR_MODEL));
    }
    if !cards_fit(free, gpu.count, gpu.milli) {
        let reason = if gpu.is_share() { ERR_SHARE } else { ERR_WHOLE };
        return Some(Status::unschedulable(NAME, reason));
    }
    None
}

impl PreFilterPlugin for GpuShare {
    fn pre_filter(&self, _: &mut CycleState, pod: &Pod, _: &Snapshot) -> Status {
        if pod.gpu.is_none() {
            return Status::skip();
        }
        Status::success()
    }
}

impl FilterPlugin for GpuShare {
    fn filter(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        let Some(gpu) = pod.gpu.as_deref() else {
            return Status::success();
        };
        let t = snap.nodes();
        let u = node as usize;
        verdict(gpu, &t.gpu_free[u], t.gpu_model[u]).unwrap_or_else(Status::success)
    }

    /// Cards are taken by placed pods: for a pod with GPUs the answer changes
    /// with them (preemption then walks the snapshot).
    fn depends_on_placed_pods(&self, _: &CycleState, pod: &Pod) -> bool {
        pod.gpu.is_some()
    }

    /// The node's cards and the pod's request.
    fn keeps_verdicts(&self, _: &CycleState, kept: &Pod, pod: &Pod, _: &Snapshot) -> bool {
        kept.gpu == pod.gpu
    }

    fn filter_nodes(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        let Some(gpu) = pod.gpu.as_deref() else {
            return Ok(());
        };
        let t = snap.nodes();
        retain_nodes(nodes, rejected, |n| {
            let u = n as usize;
            verdict(gpu, &t.gpu_free[u], t.gpu_model[u]).is_none()
        });
        Ok(())
    }
}

impl ReservePlugin for GpuShare {
    fn reserve(
        &self,
        state: &mut CycleState,
        pod: &Pod,
        snap: &mut Snapshot,
        node: NodeIdx,
    ) -> Status {
        let Some(gpu) = pod.gpu.as_deref() else {
            return Status::success();
        };
        match self.picker.pick(pod, gpu, snap, node) {
            Some(cards) => {
                state.write(ReservedCards(cards));
                Status::success()
            }
            None => {
                let reason = if gpu.is_share() { ERR_SHARE } else { ERR_WHOLE };
                Status::unschedulable(NAME, reason)
            }
        }
    }

    fn unreserve(&self, state: &mut CycleState, _: &Pod, _: &mut Snapshot, _: NodeIdx) {
        state.write(ReservedCards(Cards::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::{filter_all, snapshot_of};
    use crate::testkit::*;
    use std::sync::Arc;

    fn gpu_pod(name: &str, count: u8, milli: u32, models: &[&str]) -> Pod {
        pod(name, 1000, GI).gpu(count, milli, models).build()
    }

    /// A pod bound to `node` holding `cards`.
    fn holder(name: &str, node: &str, count: u8, milli: u32, cards: &str) -> Pod {
        pod(name, 1000, GI)
            .gpu(count, milli, &[])
            .cards(cards)
            .on(node)
            .build()
    }

    fn snapshot() -> Snapshot {
        snapshot_of(
            vec![
                node("cpu-only", 64_000, 256 * GI).build(),
                node("t4", 64_000, 256 * GI).gpus(2, "T4").build(),
                node("v100", 64_000, 256 * GI).gpus(4, "V100M32").build(),
            ],
            vec![
                // t4: card 0 at 600 used, card 1 at 300 used.
                holder("a", "t4", 1, 600, "0"),
                holder("b", "t4", 1, 300, "1"),
                // v100: cards 1 and 2 taken whole.
                holder("c", "v100", 2, 1000, "1-2"),
            ],
        )
    }

    #[test]
    fn filter_table() {
        let s = snapshot();
        // (pod, expected reason per node: cpu-only, t4, v100; "" = fits)
        let cases: Vec<(Pod, [&str; 3])> = vec![
            (gpu_pod("share-400", 1, 400, &[]), [ERR_NO_GPU, "", ""]),
            (
                gpu_pod("share-800", 1, 800, &[]),
                [ERR_NO_GPU, ERR_SHARE, ""],
            ),
            (
                gpu_pod("one-whole", 1, 1000, &[]),
                [ERR_NO_GPU, ERR_WHOLE, ""],
            ),
            (
                gpu_pod("two-whole", 2, 1000, &[]),
                [ERR_NO_GPU, ERR_WHOLE, ""],
            ),
            (
                gpu_pod("three-whole", 3, 1000, &[]),
                [ERR_NO_GPU, ERR_WHOLE, ERR_WHOLE],
            ),
            (
                gpu_pod("t4-only", 1, 100, &["T4"]),
                [ERR_NO_GPU, "", ERR_MODEL],
            ),
        ];
        for (p, want) in cases {
            let got = filter_all(Some(&GpuShare::default()), &GpuShare::default(), &p, &s);
            let reasons: Vec<String> = got
                .iter()
                .map(|(_, st)| {
                    st.reasons
                        .first()
                        .map(|r| r.to_string())
                        .unwrap_or_default()
                })
                .collect();
            assert_eq!(reasons, want, "{}", p.key);
            // The batch form rejects exactly the nodes `filter` rejects.
            let mut nodes: Vec<NodeIdx> = s.nodes().live_indices().collect();
            let mut rejected = Vec::new();
            GpuShare::default()
                .filter_nodes(&CycleState::default(), &p, &s, &mut nodes, &mut rejected)
                .unwrap();
            assert_eq!(nodes.len(), want.iter().filter(|r| r.is_empty()).count());
        }
        // No GPU request: PreFilter skips, and the filter passes everywhere.
        let plain = pod("plain", 1000, GI).build();
        assert_eq!(
            GpuShare::default()
                .pre_filter(&mut CycleState::default(), &plain, &s)
                .code,
            crate::framework::Code::Skip
        );
    }

    #[test]
    fn reserve_picks_best_fit_cards() {
        let mut s = snapshot();
        let t4 = s.nodes().by_name("t4").unwrap();
        let v100 = s.nodes().by_name("v100").unwrap();
        // (pod, node, expected cards)
        let cases = [
            (gpu_pod("p", 1, 300, &[]), t4, "0"), // 400 free on card 0, 700 on card 1: the fuller
            (gpu_pod("p", 1, 500, &[]), t4, "1"), // only card 1 holds it
            (gpu_pod("p", 1, 1000, &[]), v100, "0"),
            (gpu_pod("p", 2, 1000, &[]), v100, "0-3"),
        ];
        for (p, n, want) in cases {
            let mut state = CycleState::default();
            let st = GpuShare::default().reserve(&mut state, &p, &mut s, n);
            assert!(st.is_success(), "{st:?}");
            let got = state.read::<ReservedCards>().unwrap().0;
            assert_eq!(got.to_string(), want);
        }
        let mut state = CycleState::default();
        let st = GpuShare::default().reserve(&mut state, &gpu_pod("p", 1, 900, &[]), &mut s, t4);
        assert_eq!(st.reasons[0], ERR_SHARE);
    }

    #[test]
    fn unschedulable_message_names_gpu_reasons() {
        let s = snapshot();
        let profile = crate::framework::Profile::new(
            "gpu",
            vec![(
                {
                    let p = Arc::new(GpuShare::default());
                    let mut set = crate::framework::PluginSet::new(NAME);
                    set.pre_filter = Some(p.clone());
                    set.filter = Some(p.clone());
                    set.reserve = Some(p);
                    set
                },
                1,
            )],
        );
        let mut s = s;
        let d = crate::framework::schedule(
            &profile,
            &gpu_pod("big", 1, 950, &["T4"]),
            &mut s,
            Default::default(),
        );
        assert_eq!(
            d.message().unwrap(),
            "0/3 nodes are available: 1 Insufficient GPU share on a single GPU, \
             1 node(s) didn't have the requested GPU model, 1 node(s) had no GPU."
        );
    }
}
