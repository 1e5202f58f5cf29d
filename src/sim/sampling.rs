//! What node sampling (`percentageOfNodesToScore`) costs in placement quality.
//!
//! In a sampled run every decision is compared with a *shadow full scan*: the same pod against
//! the same snapshot, before the pod is assumed, with a twin of the profile that scores every
//! node. The shadow uses its own profile, so the sampled profile's rotating start is advanced
//! only by the real decision, and it runs without PostFilter, so it changes nothing.
//!
//! Regret is measured under full scoring: the full scan's best total minus the total the full
//! scan gave the node the sample chose (normalization depends on the node set, so the sampled
//! run's own totals are not comparable).

use super::report::{percentile, r6};
use crate::framework::{schedule, CycleOptions, Decision, Profile};
use crate::model::Pod;
use crate::snapshot::{NodeIdx, Snapshot};
use serde::Serialize;

/// Per-decision observations of one sampled run (engine → report).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingTally {
    pub percentage: u32,
    /// Decisions that evaluated nodes (PreFilter rejections and plugin errors excluded).
    pub decisions: u64,
    pub nodes_evaluated: u64,
    pub nodes_live: u64,
    /// Decisions on which the shadow full scan ran; the others evaluated every live node
    /// already, so the full scan would have decided the same.
    pub shadow_scans: u64,
    /// Placements by the sampled run, compared with the full scan's choice.
    pub placements_compared: u64,
    /// Of those, how often the full scan would have chosen another node.
    pub differs: u64,
    /// The sample found no node although the full scan places the pod.
    pub missed_placements: u64,
    /// Regret of each compared placement (0 where the choices agree in score).
    pub regrets: Vec<i64>,
    /// Sum of the full scan's best totals over compared placements (for scale).
    pub best_total_sum: i64,
}

/// Compares each decision of a sampled profile with a full scan.
pub(crate) struct SamplingProbe<'a> {
    /// The sampled profile's twin with `percentage_of_nodes_to_score = 0`.
    full: &'a Profile,
    pub tally: SamplingTally,
}

impl<'a> SamplingProbe<'a> {
    pub fn new(full: &'a Profile, percentage: u32) -> SamplingProbe<'a> {
        SamplingProbe {
            full,
            tally: SamplingTally {
                percentage,
                ..SamplingTally::default()
            },
        }
    }

    /// Records how `sampled` (just decided for `pod` on `snap`, not yet assumed) compares with
    /// a full scan. Leaves `snap` as it found it.
    pub fn observe(&mut self, pod: &Pod, snap: &mut Snapshot, sampled: &Decision) {
        if sampled.error.is_some() || sampled.statuses.all_nodes.is_some() {
            return;
        }
        let t = &mut self.tally;
        let evaluated = sampled.evaluated;
        let live = snap.nodes().len();
        t.decisions += 1;
        t.nodes_evaluated += evaluated as u64;
        t.nodes_live += live as u64;
        if evaluated >= live {
            if let (Some(_), Some(best)) = (sampled.node, sampled.scores.first()) {
                t.placements_compared += 1;
                t.regrets.push(0);
                t.best_total_sum += best.total;
            }
            return;
        }
        t.shadow_scans += 1;
        let opts = CycleOptions {
            detail: true,
            post_filter: false,
            parallel: false,
            fresh: false,
            exhaustive: false,
            no_reasons: false,
        };
        // The full scan reserves volumes too: the pod keeps the sampled cycle's.
        let reserved = snap.storage().reservation(&pod.key).cloned();
        let full = schedule(self.full, pod, snap, opts);
        match reserved {
            Some(r) => snap.storage_mut().reinstate(&pod.key, r),
            None => {
                snap.storage_mut().release(&pod.key);
            }
        }
        match (sampled.node, full.node, full.scores.first()) {
            (Some(chosen), Some(best_node), Some(best)) => {
                // Always found: the full scan filters the same snapshot with the same plugins.
                let Some(chosen_total) = total_of(&full, chosen) else {
                    return;
                };
                t.placements_compared += 1;
                if chosen != best_node {
                    t.differs += 1;
                }
                t.regrets.push(best.total - chosen_total);
                t.best_total_sum += best.total;
            }
            (None, Some(_), _) => t.missed_placements += 1,
            _ => {}
        }
    }
}

fn total_of(full: &Decision, node: NodeIdx) -> Option<i64> {
    full.scores.iter().find(|s| s.node == node).map(|s| s.total)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regret {
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// `report.json` → `policies.NAME.sampling_quality` (null when the policy scores every node).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingQuality {
    pub percentage_of_nodes_to_score: u32,
    /// Decisions that evaluated nodes.
    pub decisions: u64,
    /// Nodes the sampled run evaluated (filtered) per decision, against the live nodes.
    pub nodes_evaluated_mean: f64,
    pub nodes_live_mean: f64,
    /// Decisions on which the sample skipped nodes, so a shadow full scan ran.
    pub shadow_scans: u64,
    /// Sampled placements compared with the full scan's choice.
    pub placements_compared: u64,
    /// Placements where the full scan would have chosen another node (a different node with
    /// an equal total counts here too, at zero regret).
    pub differs: u64,
    pub differs_fraction: f64,
    /// Placements the full scan scores below its own choice (regret > 0), as a fraction of
    /// those compared: the differences that cost something.
    pub worse_fraction: f64,
    /// Full-scan best total minus the sampled node's total under full scoring, per placement.
    pub regret: Regret,
    /// The full scan's best total, on average: the scale regret is measured against.
    pub best_total_mean: f64,
    /// Decisions where the sample found no node but the full scan would place the pod.
    pub missed_placements: u64,
}

impl SamplingQuality {
    pub fn from_tally(t: &SamplingTally) -> SamplingQuality {
        let ratio = |a: f64, b: u64| if b == 0 { 0.0 } else { r6(a / b as f64) };
        let mut regrets: Vec<f64> = t.regrets.iter().map(|&r| r as f64).collect();
        regrets.sort_by(f64::total_cmp);
        SamplingQuality {
            percentage_of_nodes_to_score: t.percentage,
            decisions: t.decisions,
            nodes_evaluated_mean: ratio(t.nodes_evaluated as f64, t.decisions),
            nodes_live_mean: ratio(t.nodes_live as f64, t.decisions),
            shadow_scans: t.shadow_scans,
            placements_compared: t.placements_compared,
            differs: t.differs,
            differs_fraction: ratio(t.differs as f64, t.placements_compared),
            worse_fraction: ratio(
                t.regrets.iter().filter(|&&r| r > 0).count() as f64,
                t.placements_compared,
            ),
            regret: Regret {
                mean: ratio(regrets.iter().sum(), regrets.len() as u64),
                p50: r6(percentile(&regrets, 50.0)),
                p99: r6(percentile(&regrets, 99.0)),
                max: r6(regrets.last().copied().unwrap_or(0.0)),
            },
            best_total_mean: ratio(t.best_total_sum as f64, t.placements_compared),
            missed_placements: t.missed_placements,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, KUBE_DEFAULT};
    use crate::plugins::build_profile;
    use crate::testkit::{node, pod, GI};
    use std::sync::atomic::Ordering;

    /// kube-default (LeastAllocated) with sampling at `pct`, and its full-scan twin.
    fn profiles(pct: u32) -> (Profile, Profile) {
        let config = Config::default();
        let mut pc = config.profile(KUBE_DEFAULT).unwrap().clone();
        pc.percentage_of_nodes_to_score = pct;
        let sampled = build_profile(&config, &pc).unwrap();
        pc.percentage_of_nodes_to_score = 0;
        (sampled, build_profile(&config, &pc).unwrap())
    }

    /// 200 small nodes and, last, one large one: LeastAllocated prefers the large node, but a
    /// sample starting at slot 0 stops after 100 feasible small nodes.
    fn cluster() -> Snapshot {
        let mut snap = Snapshot::new(Default::default());
        for i in 0..200 {
            snap.upsert_node(node(&format!("small-{i:03}"), 4000, 16 * GI).build());
        }
        snap.upsert_node(node("large", 64000, 256 * GI).build());
        snap
    }

    fn decide(p: &Profile, snap: &mut Snapshot) -> Decision {
        schedule(
            p,
            &pod("job", 1000, GI).build(),
            snap,
            CycleOptions::default(),
        )
    }

    #[test]
    fn a_sample_that_misses_the_best_node_has_regret() {
        let (sampled, full) = profiles(10);
        let mut snap = cluster();
        let d = decide(&sampled, &mut snap);
        let chosen = d.node.unwrap();
        assert_ne!(snap.nodes().name_str[chosen as usize], "large");
        let start_after = sampled.next_start.load(Ordering::Relaxed);
        let req_cpu_before = snap.nodes().req_cpu.clone();

        let mut probe = SamplingProbe::new(&full, 10);
        probe.observe(&pod("job", 1000, GI).build(), &mut snap, &d);

        // The shadow neither moved the sample's rotation nor touched the snapshot.
        assert_eq!(sampled.next_start.load(Ordering::Relaxed), start_after);
        assert_eq!(snap.nodes().req_cpu, req_cpu_before);
        let q = SamplingQuality::from_tally(&probe.tally);
        assert_eq!(q.decisions, 1);
        assert_eq!(q.shadow_scans, 1);
        assert_eq!(q.placements_compared, 1);
        assert_eq!(q.differs, 1);
        assert_eq!((q.differs_fraction, q.worse_fraction), (1.0, 1.0));
        assert!(q.regret.max > 0.0 && q.regret.p50 == q.regret.max, "{q:?}");
        assert!(q.nodes_evaluated_mean < q.nodes_live_mean, "{q:?}");
        assert_eq!(q.nodes_live_mean, 201.0);

        // The regret is exactly the gap the full scan sees between its choice and the sample's.
        let f = decide(&full, &mut snap);
        assert_eq!(snap.nodes().name_str[f.node.unwrap() as usize], "large");
        let detail = schedule(
            &full,
            &pod("job", 1000, GI).build(),
            &mut snap,
            CycleOptions {
                detail: true,
                ..CycleOptions::default()
            },
        );
        let want = detail.scores[0].total - total_of(&detail, chosen).unwrap();
        assert_eq!(q.regret.max, want as f64);
        assert_eq!(q.best_total_mean, detail.scores[0].total as f64);
    }

    #[test]
    fn a_sample_that_evaluates_every_node_needs_no_shadow_and_has_no_regret() {
        // Fewer than 100 nodes: the framework scores them all whatever the percentage.
        let (sampled, full) = profiles(10);
        let mut snap = Snapshot::new(Default::default());
        for i in 0..20 {
            snap.upsert_node(node(&format!("n{i:02}"), 4000, 16 * GI).build());
        }
        snap.upsert_node(node("large", 64000, 256 * GI).build());
        let d = decide(&sampled, &mut snap);
        let mut probe = SamplingProbe::new(&full, 10);
        probe.observe(&pod("job", 1000, GI).build(), &mut snap, &d);
        let q = SamplingQuality::from_tally(&probe.tally);
        assert_eq!(
            (q.decisions, q.shadow_scans, q.placements_compared),
            (1, 0, 1)
        );
        assert_eq!((q.differs, q.worse_fraction, q.regret.max), (0, 0.0, 0.0));
        assert_eq!(q.nodes_evaluated_mean, 21.0);
    }

    #[test]
    fn unschedulable_pods_are_decisions_without_placements() {
        let (sampled, full) = profiles(10);
        let mut snap = cluster();
        let huge = pod("huge", 128000, GI).build();
        let d = schedule(&sampled, &huge, &mut snap, CycleOptions::default());
        assert!(d.node.is_none());
        let mut probe = SamplingProbe::new(&full, 10);
        probe.observe(&huge, &mut snap, &d);
        let q = SamplingQuality::from_tally(&probe.tally);
        assert_eq!(
            (q.decisions, q.placements_compared, q.missed_placements),
            (1, 0, 0)
        );
        // Nothing placed: rates are 0, not NaN.
        assert_eq!((q.differs_fraction, q.regret.mean), (0.0, 0.0));
    }
}
