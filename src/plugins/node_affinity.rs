//! NodeAffinity: `nodeSelector` and required node affinity terms (Filter);
//! preferred terms add their weights (Score).

use crate::framework::{
    default_normalize, retain_nodes, slots_from, CycleState, FilterPlugin, Normalization, Plugin,
    PreFilterPlugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::model::{Pod, SelectorOp};
use crate::snapshot::{NodeIdx, Snapshot};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_REASON_CONFLICT: &str = "pod affinity terms conflict";

pub struct NodeAffinity;

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &Pod, _: &Snapshot) -> Status {
        let Some(terms) = &pod.node_affinity.required else {
            return if pod.node_selector.is_empty() {
                Status::skip()
            } else {
                Status::success()
            };
        };
        // As upstream: if every term pins node names (matchFields metadata.name In),
        // the pod is narrowed to the union of those names (a PreFilterResult); if
        // no name survives, nothing can match.
        let mut any_unpinned = terms.is_empty();
        let mut union = Vec::new();
        for t in terms {
            let mut names: Option<Vec<_>> = None;
            for r in t.match_fields.iter().filter(|r| r.op == SelectorOp::In) {
                names = Some(match names {
                    None => r.values.clone(),
                    Some(prev) => prev.into_iter().filter(|n| r.values.contains(n)).collect(),
                });
            }
            match names {
                None => any_unpinned = true,
                Some(n) => union.extend(n),
            }
        }
        if any_unpinned {
            return Status::success();
        }
        if union.is_empty() {
            return Status::unresolvable(NAME, ERR_REASON_CONFLICT);
        }
        state.restrict_nodes(NAME, union);
        Status::success()
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> Status {
        if pod.matches_required_affinity(&snap.nodes().node[node as usize]) {
            Status::success()
        } else {
            Status::unresolvable(NAME, ERR_REASON_POD)
        }
    }

    /// Reads only the node and the pod.
    fn depends_on_placed_pods(&self, _: &CycleState, _: &Pod) -> bool {
        false
    }

    /// The node's labels and name, the pod's node selector and required affinity.
    fn keeps_verdicts(&self, _: &CycleState, kept: &Pod, pod: &Pod, _: &Snapshot) -> bool {
        kept.node_selector == pod.node_selector
            && kept.node_affinity.required == pod.node_affinity.required
    }

    fn filter_nodes(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        nodes: &mut Vec<NodeIdx>,
        rejected: &mut Vec<NodeIdx>,
    ) -> Result<(), Status> {
        let t = snap.nodes();
        retain_nodes(nodes, rejected, |n| {
            pod.matches_required_affinity(&t.node[n as usize])
        });
        Ok(())
    }

    fn filter_slots(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        first: usize,
        pass: &mut [bool],
    ) -> bool {
        for (p, node) in pass.iter_mut().zip(slots_from(&snap.nodes().node, first)) {
            // Only passing slots: matching labels costs more than the check.
            if *p {
                *p = pod.matches_required_affinity(node);
            }
        }
        true
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(&self, _: &mut CycleState, pod: &Pod, _: &Snapshot, _: &[NodeIdx]) -> Status {
        if pod.node_affinity.preferred.is_empty() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _: &CycleState, pod: &Pod, snap: &Snapshot, node: NodeIdx) -> i64 {
        let n = &snap.nodes().node[node as usize];
        pod.node_affinity
            .preferred
            .iter()
            .filter(|p| p.weight != 0 && p.term.matches(&n.labels, n.name))
            .map(|p| p.weight as i64)
            .sum()
    }

    fn normalize(&self, _: &CycleState, _: &Pod, scores: &mut [i64]) {
        default_normalize(MAX_NODE_SCORE, false, scores);
    }

    fn normalization(&self) -> Normalization {
        Normalization::ByMaximum
    }

    /// The sum reads the node's labels and name and the pod's preferred terms.
    fn keeps_node_scores(&self, _: &CycleState, kept: &Pod, pod: &Pod) -> bool {
        kept.node_affinity.preferred == pod.node_affinity.preferred
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::model::capacity::CapacityRules;
    use crate::model::{NodeSelectorTerm, PreferredTerm, Sym};
    use crate::plugins::test_support::{filter_all, score_all};
    use crate::testkit::*;

    fn snap() -> Snapshot {
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(
            node("a", 1000, GI)
                .label("disk", "ssd")
                .label("gen", "5")
                .build(),
        );
        s.upsert_node(
            node("b", 1000, GI)
                .label("disk", "hdd")
                .label("gen", "3")
                .build(),
        );
        s.upsert_node(node("c", 1000, GI).build());
        s
    }

    fn passing(p: &Pod, s: &Snapshot) -> Vec<String> {
        filter_all(Some(&NodeAffinity), &NodeAffinity, p, s)
            .into_iter()
            .filter(|(_, st)| st.is_success())
            .map(|(n, _)| n)
            .collect()
    }

    #[test]
    fn filter_table() {
        let s = snap();
        let cases: Vec<(Pod, Vec<&str>)> = vec![
            (pod("p", 1, 1).build(), vec!["a", "b", "c"]),
            (
                pod("p", 1, 1).node_selector("disk", "ssd").build(),
                vec!["a"],
            ),
            (pod("p", 1, 1).node_selector("disk", "nvme").build(), vec![]),
            (
                pod("p", 1, 1)
                    .required_terms(vec![term(vec![req(
                        "disk",
                        SelectorOp::In,
                        &["ssd", "hdd"],
                    )])])
                    .build(),
                vec!["a", "b"],
            ),
            (
                pod("p", 1, 1)
                    .required_terms(vec![term(vec![req("disk", SelectorOp::NotIn, &["ssd"])])])
                    .build(),
                vec!["b", "c"],
            ),
            (
                pod("p", 1, 1)
                    .required_terms(vec![term(vec![req("disk", SelectorOp::Exists, &[])])])
                    .build(),
                vec!["a", "b"],
            ),
            (
                pod("p", 1, 1)
                    .required_terms(vec![term(vec![req("disk", SelectorOp::DoesNotExist, &[])])])
                    .build(),
                vec!["c"],
            ),
            (
                pod("p", 1, 1)
                    .required_terms(vec![term(vec![req("gen", SelectorOp::Gt, &["4"])])])
                    .build(),
                vec!["a"],
            ),
            (
                pod("p", 1, 1)
                    .required_terms(vec![term(vec![req("gen", SelectorOp::Lt, &["4"])])])
                    .build(),
                vec!["b"],
            ),
            // Terms are ORed; expressions inside a term are ANDed.
            (
                pod("p", 1, 1)
                    .required_terms(vec![
                        term(vec![
                            req("disk", SelectorOp::In, &["ssd"]),
                            req("gen", SelectorOp::Lt, &["4"]),
                        ]),
                        term(vec![req("disk", SelectorOp::DoesNotExist, &[])]),
                    ])
                    .build(),
                vec!["c"],
            ),
            // An empty term matches nothing; an empty term list matches nothing.
            (
                pod("p", 1, 1).required_terms(vec![term(vec![])]).build(),
                vec![],
            ),
            (pod("p", 1, 1).required_terms(vec![]).build(), vec![]),
            // nodeSelector and affinity both apply.
            (
                pod("p", 1, 1)
                    .node_selector("disk", "hdd")
                    .required_terms(vec![term(vec![req("gen", SelectorOp::Gt, &["4"])])])
                    .build(),
                vec![],
            ),
        ];
        for (i, (p, want)) in cases.iter().enumerate() {
            assert_eq!(passing(p, &s), *want, "case {i}");
        }
    }

    #[test]
    fn match_fields_on_node_name() {
        let s = snap();
        let by_name = |op, v: &str| NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req("metadata.name", op, &[v])],
            valid: true,
        };
        let p = pod("p", 1, 1)
            .required_terms(vec![by_name(SelectorOp::In, "b")])
            .build();
        assert_eq!(passing(&p, &s), vec!["b"]);
        let p = pod("p", 1, 1)
            .required_terms(vec![by_name(SelectorOp::NotIn, "b")])
            .build();
        assert_eq!(passing(&p, &s), vec!["a", "c"]);
        // Two names ANDed in one term conflict: rejected in PreFilter for every node.
        let mut t = by_name(SelectorOp::In, "a");
        t.match_fields
            .push(req("metadata.name", SelectorOp::In, &["b"]));
        let p = pod("p", 1, 1).required_terms(vec![t]).build();
        let r = filter_all(Some(&NodeAffinity), &NodeAffinity, &p, &s);
        assert!(r
            .iter()
            .all(|(_, st)| st.code == Code::UnschedulableAndUnresolvable
                && st.reasons[0] == ERR_REASON_CONFLICT));
    }

    /// A pod pinned by name (as DaemonSet pods are): upstream filters only the
    /// named nodes (NodeAffinity's PreFilterResult) and reports every other node
    /// as "didn't satisfy plugin(s) [NodeAffinity]", whatever else is wrong there.
    #[test]
    fn pinned_pod_reports_other_nodes_as_upstream() {
        use crate::framework::{schedule, CycleOptions};
        let config = crate::config::Config::default();
        let profile = crate::plugins::build_named_profile(&config, "kube-default").unwrap();
        let mut s = Snapshot::new(CapacityRules::default());
        s.upsert_node(node("n1", 4000, 16 * GI).build());
        s.upsert_node(node("n2", 4000, 16 * GI).unschedulable().build());
        s.upsert_node(node("n3", 1000, 16 * GI).build());
        s.upsert_node(node("n4", 4000, 16 * GI).build());
        s.upsert_pod(pod("filler", 3500, GI).on("n1").arc())
            .unwrap();
        let pinned = NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![req("metadata.name", SelectorOp::In, &["n1"])],
            valid: true,
        };
        let p = pod("ds", 1000, GI).required_terms(vec![pinned]).build();
        let opts = CycleOptions {
            post_filter: true,
            ..CycleOptions::default()
        };
        let d = schedule(&profile, &p, &mut s, opts);
        assert_eq!(d.node, None);
        assert_eq!(
            d.message().unwrap(),
            "0/4 nodes are available: 1 Insufficient cpu, 3 node(s) didn't satisfy plugin(s) \
             [NodeAffinity]. preemption: 0/4 nodes are available: 1 No preemption victims found \
             for incoming pod, 3 Preemption is not helpful for scheduling."
        );
        // Not pinned: each node keeps its own filter's reason.
        let p = pod("free", 5000, GI).build();
        let d = schedule(&profile, &p, &mut s, CycleOptions::default());
        assert_eq!(
            d.message().unwrap(),
            "0/4 nodes are available: 1 node(s) were unschedulable, 3 Insufficient cpu."
        );
    }

    #[test]
    fn reason_and_code() {
        let s = snap();
        let r = filter_all(
            None,
            &NodeAffinity,
            &pod("p", 1, 1).node_selector("disk", "ssd").build(),
            &s,
        );
        assert_eq!(r[1].1.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(r[1].1.reasons[0], ERR_REASON_POD);
    }

    #[test]
    fn preferred_terms_score() {
        let s = snap();
        let p = pod("p", 1, 1)
            .affinity(crate::model::NodeAffinity {
                required: None,
                preferred: vec![
                    PreferredTerm {
                        weight: 2,
                        term: term(vec![req("disk", SelectorOp::In, &["ssd"])]),
                    },
                    PreferredTerm {
                        weight: 8,
                        term: term(vec![req("gen", SelectorOp::Exists, &[])]),
                    },
                ],
            })
            .build();
        let r = score_all(Some(&NodeAffinity), &NodeAffinity, &p, &s);
        // a: 10 → 100, b: 8 → 80, c: 0.
        assert_eq!(
            r,
            vec![("a".into(), 100), ("b".into(), 80), ("c".into(), 0)]
        );
        let _ = Sym::new("unused");
    }
}
