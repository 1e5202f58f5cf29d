//! RandomScore: one feasible node, drawn uniformly at PreScore, scores 100 and
//! the others 0; Reserve (`RandomCards`) draws a card that holds a share.

use crate::framework::{CycleState, Normalization, Plugin, PreScorePlugin, ScorePlugin, Status};
use crate::model::{Cards, Pod, PodGpu};
use crate::plugins::gpu_share::CardPicker;
use crate::snapshot::{best_fit_cards, NodeIdx, Snapshot};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;

pub const NAME: &str = "RandomScore";

/// The node this cycle drew.
struct Drawn(NodeIdx);

/// Draws from a seeded stream, so a run repeats for a seed.
pub struct RandomScore {
    rng: Mutex<ChaCha8Rng>,
}

impl RandomScore {
    pub fn seeded(seed: u64) -> RandomScore {
        RandomScore::from_rng(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn from_rng(rng: ChaCha8Rng) -> RandomScore {
        RandomScore {
            rng: Mutex::new(rng),
        }
    }
}

impl Plugin for RandomScore {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for RandomScore {
    fn pre_score(
        &self,
        state: &mut CycleState,
        _: &Pod,
        _: &Snapshot,
        feasible: &[NodeIdx],
    ) -> Status {
        if feasible.is_empty() {
            return Status::skip();
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        state.write(Drawn(feasible[rng.random_range(0..feasible.len())]));
        Status::success()
    }
}

impl ScorePlugin for RandomScore {
    fn score(&self, state: &CycleState, _: &Pod, _: &Snapshot, node: NodeIdx) -> i64 {
        match state.read::<Drawn>() {
            Some(d) if d.0 == node => crate::framework::MAX_NODE_SCORE,
            _ => 0,
        }
    }

    fn normalization(&self) -> Normalization {
        Normalization::None
    }
}

/// Reserve's card choice for RandomScore: a card drawn uniformly among those
/// that hold a share; whole GPUs take the first free cards.
pub struct RandomCards {
    rng: Mutex<ChaCha8Rng>,
}

impl RandomCards {
    pub fn seeded(seed: u64) -> RandomCards {
        RandomCards::from_rng(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn from_rng(rng: ChaCha8Rng) -> RandomCards {
        RandomCards {
            rng: Mutex::new(rng),
        }
    }
}

impl CardPicker for RandomCards {
    fn pick(&self, _: &Pod, gpu: &PodGpu, snap: &Snapshot, node: NodeIdx) -> Option<Cards> {
        let free = &snap.nodes().gpu_free[node as usize];
        if !gpu.is_share() {
            return best_fit_cards(free, gpu.count, gpu.milli);
        }
        let fitting: Vec<usize> = free
            .iter()
            .enumerate()
            .filter(|(_, &f)| i64::from(f) >= i64::from(gpu.milli))
            .map(|(i, _)| i)
            .collect();
        if fitting.is_empty() {
            return None;
        }
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Some(Cards::single(fitting[rng.random_range(0..fitting.len())]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::test_support::snapshot_of;
    use crate::testkit::*;

    #[test]
    fn one_drawn_node_scores_and_draws_are_uniform() {
        let s = snapshot_of(
            (0..4)
                .map(|i| node(&format!("n{i}"), 8000, 8 * GI).gpus(4, "T4").build())
                .collect(),
            vec![],
        );
        let r = RandomScore::seeded(7);
        let p = pod("p", 100, GI).gpu(1, 300, &[]).build();
        let feasible: Vec<NodeIdx> = s.nodes().live_indices().collect();
        let mut hits = [0u32; 4];
        let mut cards = [0u32; 4];
        let picker = RandomCards::seeded(7);
        for _ in 0..4000 {
            let mut state = CycleState::default();
            r.pre_score(&mut state, &p, &s, &feasible);
            let scores: Vec<i64> = feasible
                .iter()
                .map(|&n| r.score(&state, &p, &s, n))
                .collect();
            assert_eq!(scores.iter().filter(|&&v| v == 100).count(), 1);
            assert_eq!(scores.iter().filter(|&&v| v == 0).count(), 3);
            hits[scores.iter().position(|&v| v == 100).unwrap()] += 1;
            let c = picker.pick(&p, p.gpu.as_deref().unwrap(), &s, 0).unwrap();
            cards[c.iter().next().unwrap()] += 1;
        }
        for h in hits.iter().chain(&cards) {
            assert!((850..1150).contains(h), "{hits:?} {cards:?}");
        }
    }
}
