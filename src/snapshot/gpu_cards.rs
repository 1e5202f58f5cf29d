//! GPU cards per node (`model::gpu`): each card's free milli, taken when a pod
//! holding cards is placed and given back, exactly, when it goes.
//!
//! A placed pod holds the cards its binding recorded (`PodGpu::cards`, set at
//! Reserve for pods we place) or, for a bound pod without a record, the cards
//! `best_fit` picks. The snapshot keeps each pod's cards in its entry, so its
//! removal frees what its placement took whatever the pod object says then.

use super::node_table::NodeTable;
use crate::model::gpu::{node_cards, LABEL_GPU_MODEL, MILLI_PER_GPU};
use crate::model::{Cards, PodGpu, Sym};
use crate::snapshot::NodeIdx;

/// `count` cards of `milli` each on a node whose cards have `free` milli:
/// the cards the FGD paper's simulator picks by default (its "best" GPU
/// selection). A share goes to the card with the least free milli that holds
/// it (the lowest index among equals); whole cards are the first free ones in
/// index order. `None` when they do not fit.
pub fn best_fit(free: &[i32], count: u8, milli: u32) -> Option<Cards> {
    let milli = i64::from(milli);
    if milli < i64::from(MILLI_PER_GPU) {
        let mut best: Option<usize> = None;
        for (i, &f) in free.iter().enumerate() {
            if i64::from(f) >= milli && best.is_none_or(|b| f < free[b]) {
                best = Some(i);
            }
        }
        return best.map(Cards::single);
    }
    let mut cards = Cards::default();
    for (i, &f) in free.iter().enumerate() {
        if cards.len() == count as usize {
            break;
        }
        if i64::from(f) >= milli {
            cards.insert(i);
        }
    }
    (cards.len() == count as usize).then_some(cards)
}

/// Whether `count` cards of `milli` each fit: for a share, one card with that
/// much free; for whole cards, that many free cards.
pub fn fits(free: &[i32], count: u8, milli: u32) -> bool {
    let milli = i64::from(milli);
    free.iter().filter(|&&f| i64::from(f) >= milli).count() >= usize::from(count)
}

impl NodeTable {
    /// Reads the node's cards from its object: allocatable `gpu-count` cards of
    /// the labelled model. Cards already there keep their usage; cards the node
    /// no longer has are dropped with it.
    pub(super) fn set_gpu_cards(&mut self, u: usize) {
        let node = &self.node[u];
        let n = node_cards(&node.allocatable);
        self.gpu_model[u] = node.labels.get(Sym::new(LABEL_GPU_MODEL));
        self.gpu_free[u].resize(n, MILLI_PER_GPU as i32);
    }

    /// Takes the cards `gpu` holds on node `idx` (its recorded cards when they
    /// exist on the node, else `best_fit`, else, for a bound pod that fits
    /// nowhere, the cards with the most free milli) and returns them.
    pub(super) fn take_cards(&mut self, idx: NodeIdx, gpu: &PodGpu) -> Cards {
        let u = idx as usize;
        let free = &self.gpu_free[u];
        let recorded = gpu
            .cards
            .filter(|c| c.len() == usize::from(gpu.count) && c.iter().all(|i| i < free.len()));
        let cards = recorded
            .or_else(|| best_fit(free, gpu.count, gpu.milli))
            .unwrap_or_else(|| most_free(free, gpu.count));
        let milli = gpu.milli as i32;
        for i in cards.iter() {
            self.gpu_free[u][i] -= milli;
        }
        self.restamp(u);
        cards
    }

    /// Gives back what `take_cards` took.
    pub(super) fn give_back_cards(&mut self, idx: NodeIdx, cards: Cards, milli: u32) {
        let u = idx as usize;
        let free = &mut self.gpu_free[u];
        for i in cards.iter() {
            if let Some(f) = free.get_mut(i) {
                *f += milli as i32;
            }
        }
        self.restamp(u);
    }
}

/// The `count` cards with the most free milli (lowest index among equals).
fn most_free(free: &[i32], count: u8) -> Cards {
    let mut order: Vec<usize> = (0..free.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(free[i]));
    let mut cards = Cards::default();
    for i in order.into_iter().take(usize::from(count)) {
        cards.insert(i);
    }
    cards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_fit_table() {
        // (free per card, count, milli) -> cards
        let cases: &[(&[i32], u8, u32, Option<&str>)] = &[
            (&[1000, 1000], 1, 500, Some("0")),
            (&[1000, 300, 600], 1, 500, Some("2")),
            (&[600, 1000, 600], 1, 500, Some("0")),
            (&[400, 300], 1, 500, None),
            (&[1000, 500, 1000, 1000], 2, 1000, Some("0-2")),
            (&[1000, 500, 1000], 3, 1000, None),
            (&[1000], 1, 1000, Some("0")),
            (&[], 1, 100, None),
        ];
        for &(free, count, milli, want) in cases {
            let got = best_fit(free, count, milli).map(|c| c.to_string());
            assert_eq!(got.as_deref(), want, "{free:?} {count}x{milli}");
            assert_eq!(fits(free, count, milli), want.is_some(), "{free:?}");
        }
        assert_eq!(most_free(&[100, 900, 400], 2).to_string(), "1-2");
    }

    use crate::framework::{CycleState, FilterPlugin, ReservePlugin, ReservedCards};
    use crate::model::capacity::CapacityRules;
    use crate::plugins::gpu_share::GpuShare;
    use crate::snapshot::Snapshot;
    use crate::testkit::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// Each card's free milli equals 1000 minus the milli of the pods holding
    /// it, never below 0; each pod holds as many cards as it asks for.
    fn check(s: &Snapshot) {
        let t = s.nodes();
        for n in t.live_indices() {
            let u = n as usize;
            let mut used = vec![0i32; t.gpu_free[u].len()];
            for e in s.pods_on(n) {
                if let Some(g) = e.pod.gpu.as_deref() {
                    assert_eq!(e.cards.len(), usize::from(g.count), "{}", e.pod.key);
                    for i in e.cards.iter() {
                        used[i] += g.milli as i32;
                    }
                } else {
                    assert!(e.cards.is_empty());
                }
            }
            for (i, f) in t.gpu_free[u].iter().enumerate() {
                assert!((0..=1000).contains(f), "card {i} of node {n}: {f}");
                assert_eq!(*f, 1000 - used[i], "card {i} of node {n}");
            }
        }
    }

    proptest! {
        /// Pods placed through GpuShare's filter and Reserve, and removed, in any order.
        #[test]
        fn cards_are_never_over_allocated_and_freeing_restores_them(
            nodes in proptest::collection::vec(1usize..=8, 1..5),
            ops in proptest::collection::vec((0u8..3, 1u32..=1000, 1u8..=4, 0usize..64), 1..80),
        ) {
            let mut s = Snapshot::new(CapacityRules::default());
            for (k, cards) in nodes.iter().enumerate() {
                s.upsert_node(node(&format!("n{k}"), 1_000_000, 1 << 50).gpus(*cards as i64, "T4").build());
            }
            let live: Vec<u32> = s.nodes().live_indices().collect();
            let plugin = GpuShare::default();
            let mut placed: Vec<crate::model::PodKey> = Vec::new();
            for (k, (op, milli, count, pick)) in ops.into_iter().enumerate() {
                if op == 0 && !placed.is_empty() {
                    let key = placed.remove(pick % placed.len());
                    prop_assert!(s.remove_pod(&key));
                } else {
                    // A share (milli < 1000, one card) or whole cards.
                    let (count, milli) = if milli < 1000 { (1, milli) } else { (count, 1000) };
                    let p = pod(&format!("p{k}"), 1, 1).gpu(count, milli, &[]).build();
                    let n = live[pick % live.len()];
                    let state = CycleState::default();
                    if plugin.filter(&state, &p, &s, n).is_success() {
                        let mut state = CycleState::default();
                        prop_assert!(plugin.reserve(&mut state, &p, &mut s, n).is_success());
                        let cards = state.read::<ReservedCards>().unwrap().0;
                        let mut bound = p.clone();
                        bound.gpu.as_mut().unwrap().cards = Some(cards);
                        bound.node_name = Some(s.nodes().name[n as usize]);
                        s.assume(Arc::new(bound), n).unwrap();
                        placed.push(p.key.clone());
                    }
                }
                check(&s);
            }
            for key in placed {
                prop_assert!(s.remove_pod(&key));
            }
            for n in s.nodes().live_indices() {
                prop_assert!(s.nodes().gpu_free[n as usize].iter().all(|&f| f == 1000));
            }
        }

        /// Bound pods whose binding recorded no cards are given cards that fit
        /// when some do; removal frees exactly what they took.
        #[test]
        fn bound_pods_without_a_record_get_best_fit_cards(
            shares in proptest::collection::vec(1u32..1000, 1..12),
        ) {
            let mut s = Snapshot::new(CapacityRules::default());
            s.upsert_node(node("n", 1_000_000, 1 << 50).gpus(4, "T4").build());
            let mut keys = Vec::new();
            for (k, m) in shares.iter().enumerate() {
                let free = s.nodes().gpu_free[0].to_vec();
                // Past the first pod that fits no card, the bound pods over-commit.
                let Some(want) = best_fit(&free, 1, *m) else { break };
                let p = pod(&format!("p{k}"), 1, 1).gpu(1, *m, &[]).on("n").arc();
                s.upsert_pod(p).unwrap();
                let e = s.pod_by_key(&crate::model::PodKey::new("default", &format!("p{k}"))).unwrap();
                prop_assert_eq!(e.cards, want);
                check(&s);
                keys.push(e.pod.key.clone());
            }
            for key in keys {
                prop_assert!(s.remove_pod(&key));
                check(&s);
            }
            prop_assert!(s.nodes().gpu_free[0].iter().all(|&f| f == 1000));
        }
    }
}
