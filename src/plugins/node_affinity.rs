//! NodeAffinity: `nodeSelector` and required node affinity terms (Filter);
//! preferred terms add their weights (Score).

use crate::framework::{
    default_normalize, retain_nodes, slots_from, CycleState, FilterPlugin, Normalization, Plugin,
    PreFilterPlugin, PreScorePlugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::model::{NodeSelectorTerm, Pod, Requirement, SelectorOp, Sym};
use crate::snapshot::label_columns::{self, ABSENT};
use crate::snapshot::{NodeIdx, NodeTable, Snapshot};
use smallvec::SmallVec;

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

    /// Over the table's label columns where the selector allows (`by_columns`);
    /// otherwise node by node.
    fn filter_slots(
        &self,
        _: &CycleState,
        pod: &Pod,
        snap: &Snapshot,
        first: usize,
        pass: &mut [bool],
    ) -> bool {
        if by_columns(pod, snap.nodes(), first, pass) {
            return true;
        }
        for (p, node) in pass.iter_mut().zip(slots_from(&snap.nodes().node, first)) {
            // Only passing slots: matching labels costs more than the check.
            if *p {
                *p = pod.matches_required_affinity(node);
            }
        }
        true
    }
}

/// `matches_required_affinity` over label columns: clears `pass[k]` for
/// every slot `first + k` whose node the pod's node selector and required
/// terms reject, one pass of integer compares per requirement. False,
/// touching nothing, when a term needs more than the columns hold (`Gt` /
/// `Lt`, which compare numbers; `matchFields`, on node names) or the table
/// keeps no column for a key.
fn by_columns(pod: &Pod, t: &NodeTable, first: usize, pass: &mut [bool]) -> bool {
    let terms: &[NodeSelectorTerm] = pod.node_affinity.required.as_deref().unwrap_or(&[]);
    let supported = |r: &Requirement| !matches!(r.op, SelectorOp::Gt | SelectorOp::Lt);
    if terms
        .iter()
        .any(|t| !t.match_fields.is_empty() || !t.match_expressions.iter().all(supported))
    {
        return false;
    }
    let mut keys: SmallVec<[Sym; 4]> = pod.node_selector.iter().map(|(k, _)| *k).collect();
    for r in terms.iter().flat_map(|t| &t.match_expressions) {
        if !keys.contains(&r.key) {
            keys.push(r.key);
        }
    }
    let span = first + pass.len();
    t.with_label_columns(&keys, |cols| {
        // Every column covers every slot (a free slot reads ABSENT).
        if cols.iter().any(|c| c.len() < span) {
            return false;
        }
        let column = |key: Sym| -> &[u32] {
            let at = keys.iter().position(|&k| k == key).unwrap_or(0);
            cols.get(at).map_or(&[][..], |c| &c[first..span])
        };
        for (key, value) in pod.node_selector.iter() {
            let want = label_columns::encode(*value);
            keep(pass, column(*key), |v| v == want);
        }
        let Some(terms) = &pod.node_affinity.required else {
            return true;
        };
        // Terms are ORed: a slot passes when one term matches.
        let mut any = vec![false; pass.len()];
        let mut term_ok = vec![false; pass.len()];
        for term in terms {
            if !term.valid || term.match_expressions.is_empty() {
                continue;
            }
            term_ok.fill(true);
            for r in &term.match_expressions {
                let values: SmallVec<[u32; 4]> =
                    r.values.iter().map(|&v| label_columns::encode(v)).collect();
                let (col, ok) = (column(r.key), &mut term_ok[..]);
                match (r.op, values.as_slice()) {
                    (SelectorOp::In, &[one]) => keep(ok, col, |v| v == one),
                    (SelectorOp::NotIn, &[one]) => keep(ok, col, |v| v != one),
                    (SelectorOp::In, _) => keep(ok, col, |v| values.contains(&v)),
                    (SelectorOp::NotIn, _) => keep(ok, col, |v| !values.contains(&v)),
                    (SelectorOp::Exists, _) => keep(ok, col, |v| v != ABSENT),
                    (SelectorOp::DoesNotExist, _) => keep(ok, col, |v| v == ABSENT),
                    (SelectorOp::Gt | SelectorOp::Lt, _) => ok.fill(false),
                }
            }
            for (a, &ok) in any.iter_mut().zip(&term_ok) {
                *a |= ok;
            }
        }
        for (p, &a) in pass.iter_mut().zip(&any) {
            *p &= a;
        }
        true
    })
    .unwrap_or(false)
}

/// Clears `ok[k]` where `test(column[k])` fails (a loop the compiler
/// vectorizes for the single-value tests).
#[inline(always)]
fn keep(ok: &mut [bool], column: &[u32], test: impl Fn(u32) -> bool) {
    for (o, &v) in ok.iter_mut().zip(column) {
        *o &= test(v);
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

    /// The nodes the dense form passes, and the label keys that have a column after.
    fn dense(p: &Pod, s: &Snapshot) -> (Vec<String>, Vec<&'static str>) {
        let t = s.nodes();
        let mut pass = t.live.clone();
        assert!(NodeAffinity.filter_slots(&CycleState::default(), p, s, 0, &mut pass));
        let names = t
            .live_indices()
            .filter(|&n| pass[n as usize])
            .map(|n| t.name_str[n as usize].to_string())
            .collect();
        (
            names,
            t.label_column_keys().iter().map(|k| k.as_str()).collect(),
        )
    }

    #[test]
    fn selectors_are_matched_over_label_columns_that_follow_relabels() {
        let mut s = snap();
        let p = pod("p", 1, 1).node_selector("disk", "ssd").build();
        assert_eq!(dense(&p, &s), (vec!["a".to_string()], vec!["disk"]));
        // b relabelled, then a removed: the column follows.
        s.upsert_node(
            node("b", 1000, GI)
                .label("disk", "ssd")
                .label("gen", "3")
                .build(),
        );
        assert_eq!(dense(&p, &s).0, ["a", "b"]);
        s.remove_node(Sym::new("a"));
        assert_eq!(dense(&p, &s).0, ["b"]);
        // A number comparison is matched node by node: no column for it.
        let gen = NodeSelectorTerm {
            match_expressions: vec![req("gen", SelectorOp::Gt, &["2"])],
            match_fields: vec![],
            valid: true,
        };
        let q = pod("q", 1, 1).required_terms(vec![gen]).build();
        assert_eq!(dense(&q, &s), (vec!["b".to_string()], vec!["disk"]));
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
