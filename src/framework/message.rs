//! The FailedScheduling message in upstream's exact form (`FitError.Error()`):
//! `0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: spark}.`
//! Reasons are counted per node and the "count reason" strings sorted as strings, like upstream.

use super::Status;
use std::collections::HashMap;

/// Upstream's ErrNoNodesAvailable, the whole message when the cluster has no node.
pub const NO_NODES_AVAILABLE: &str = "no nodes available to schedule pods";

pub fn unschedulable_message<'a>(
    num_nodes: usize,
    prefilter: Option<&Status>,
    node_statuses: impl Iterator<Item = &'a Status>,
    post_filter_msg: Option<&str>,
) -> String {
    let mut msg = format!("0/{num_nodes} nodes are available:");
    match prefilter {
        Some(st) => {
            msg.push_str(&format!(" {}.", st.message()));
        }
        None => {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for st in node_statuses {
                for r in &st.reasons {
                    *counts.entry(r.as_ref()).or_default() += 1;
                }
            }
            let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
            parts.sort();
            if !parts.is_empty() {
                msg.push_str(&format!(" {}.", parts.join(", ")));
            }
        }
    }
    // The PostFilter message is itself a sentence; real kube-scheduler events end with one period.
    if let Some(p) = post_filter_msg
        .map(|p| p.trim_end_matches('.'))
        .filter(|p| !p.is_empty())
    {
        msg.push_str(&format!(" {p}."));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_form() {
        let a = Status::unschedulable("NodeResourcesFit", "Insufficient cpu");
        let b = Status::unresolvable(
            "TaintToleration",
            "node(s) had untolerated taint {dedicated: spark}",
        );
        let statuses = [a.clone(), a, b.clone(), b.clone(), b];
        let m = unschedulable_message(5, None, statuses.iter(), None);
        assert_eq!(
            m,
            "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: spark}."
        );
    }

    #[test]
    fn sorted_as_strings_like_upstream() {
        // "10 x" sorts before "2 y" because upstream sorts the formatted strings.
        let x = Status::unschedulable("A", "x");
        let y = Status::unschedulable("B", "y");
        let mut v = vec![x; 10];
        v.extend(vec![y; 2]);
        let m = unschedulable_message(12, None, v.iter(), None);
        assert_eq!(m, "0/12 nodes are available: 10 x, 2 y.");
    }

    #[test]
    fn multiple_reasons_per_node_and_postfilter() {
        let mut s = Status::unschedulable("NodeResourcesFit", "Insufficient cpu");
        s.reasons.push("Insufficient memory".into());
        let m = unschedulable_message(
            1,
            None,
            std::iter::once(&s),
            Some("preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."),
        );
        assert_eq!(
            m,
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn prefilter_rejection_replaces_node_reasons() {
        let p = Status::unresolvable("CapacityMix", "invalid annotation");
        let m = unschedulable_message(3, Some(&p), std::iter::empty(), None);
        assert_eq!(m, "0/3 nodes are available: invalid annotation.");
    }
}
