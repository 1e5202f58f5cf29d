//! Which pods this instance schedules: ours by scheduler name, still pending, and in
//! our slice of the cluster (namespaces and a label selector). Other instances, each
//! with its own lease, own other slices; the API server settles any overlap (a second
//! binding is a 409).

use super::KubeError;
use crate::config::PartitionConfig;
use crate::model::{Interned, LabelSelector, Labels, Pod, Requirement, SelectorOp, Sym};
use std::collections::HashSet;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Partition {
    /// Empty: every namespace.
    pub namespaces: HashSet<String>,
    pub selector: LabelSelector,
}

impl Partition {
    pub fn from_config(p: &PartitionConfig) -> Result<Partition, KubeError> {
        let selector = match &p.pod_selector {
            Some(s) => parse_selector(s)?,
            None => LabelSelector::default(),
        };
        Ok(Partition {
            namespaces: p.namespaces.iter().cloned().collect(),
            selector,
        })
    }

    pub fn admits(&self, namespace: &str, labels: &Labels) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(namespace))
            && self.selector.matches(labels)
    }
}

/// Parses the equality-based selector syntax `k=v,k==v,k!=v,k,!k` (set-based
/// `in (...)` is not accepted: the config field documents the simple form).
pub fn parse_selector(s: &str) -> Result<LabelSelector, KubeError> {
    let bad = |term: &str, why: &str| KubeError::Selector {
        selector: s.to_owned(),
        term: term.to_owned(),
        message: why.to_owned(),
    };
    let mut sel = LabelSelector::default();
    for raw in s.split(',') {
        let term = raw.trim();
        if term.is_empty() {
            if s.trim().is_empty() {
                continue;
            }
            return Err(bad(raw, "empty term"));
        }
        let (key, op, value) = if let Some((k, v)) = term.split_once("!=") {
            (k, SelectorOp::NotIn, Some(v))
        } else if let Some((k, v)) = term.split_once("==") {
            (k, SelectorOp::In, Some(v))
        } else if let Some((k, v)) = term.split_once('=') {
            (k, SelectorOp::In, Some(v))
        } else if let Some(k) = term.strip_prefix('!') {
            (k, SelectorOp::DoesNotExist, None)
        } else {
            (term, SelectorOp::Exists, None)
        };
        let key = key.trim();
        if !valid_key(key) {
            return Err(bad(term, "invalid label key"));
        }
        let values = match value.map(str::trim) {
            Some(v) if !valid_value(v) => return Err(bad(term, "invalid label value")),
            Some(v) => vec![Sym::new(v)],
            None => Vec::new(),
        };
        sel.requirements.push(Requirement {
            key: Sym::new(key),
            op,
            values,
            number: 0,
        });
    }
    Ok(sel)
}

fn valid_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn valid_key(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix.len() <= 253
                && prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
                && valid_name_part(name)
        }
        None => valid_name_part(k),
    }
}

fn valid_value(v: &str) -> bool {
    v.is_empty() || valid_name_part(v)
}

/// Whether this instance should schedule the pod: our scheduler name, not bound, not
/// terminating or finished, not held by scheduling gates (upstream's SchedulingGates
/// keeps such a pod out of the active queue, with no scheduling attempt and no
/// FailedScheduling event, until its gates are removed), and in our partition.
pub fn is_ours(pod: &Pod, scheduler_name: &str, partition: &Partition) -> bool {
    pod.scheduler_name == scheduler_name
        && pod.node_name.is_none()
        && !pod.terminating
        && !pod.finished
        && !pod.scheduling_gated
        && partition.admits(pod.key.namespace.as_str(), &pod.labels)
}

/// The same test on the raw object, for pods that failed conversion (so we can still
/// report them if they are ours).
pub fn raw_is_ours(
    pod: &k8s_openapi::api::core::v1::Pod,
    scheduler_name: &str,
    partition: &Partition,
) -> bool {
    let spec = pod.spec.as_ref();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    // Counted, not pinned: the values are interned for this check only (`model::intern`).
    let mut interned = Interned::default();
    let labels = Labels::from_syms(
        pod.metadata
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (Sym::new(k), interned.sym(v))),
    );
    spec.and_then(|s| s.scheduler_name.as_deref()) == Some(scheduler_name)
        && spec
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(str::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(phase, Some("Succeeded" | "Failed"))
        && spec
            .and_then(|s| s.scheduling_gates.as_ref())
            .is_none_or(|g| g.is_empty())
        && partition.admits(
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            &labels,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Resources;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn selector_parsing() {
        let sel =
            parse_selector("team=data, tier!=batch,spark-fleet.io/shard,!legacy,a==b").unwrap();
        let ops: Vec<SelectorOp> = sel.requirements.iter().map(|r| r.op).collect();
        assert_eq!(
            ops,
            vec![
                SelectorOp::In,
                SelectorOp::NotIn,
                SelectorOp::Exists,
                SelectorOp::DoesNotExist,
                SelectorOp::In
            ]
        );
        assert_eq!(sel.requirements[0].key.as_str(), "team");
        assert_eq!(sel.requirements[0].values[0].as_str(), "data");
        assert_eq!(sel.requirements[2].key.as_str(), "spark-fleet.io/shard");
        assert!(sel.requirements[2].values.is_empty());

        let ok = labels(&[("team", "data"), ("spark-fleet.io/shard", "1"), ("a", "b")]);
        assert!(sel.matches(&ok));
        let wrong_tier = labels(&[
            ("team", "data"),
            ("tier", "batch"),
            ("spark-fleet.io/shard", "1"),
            ("a", "b"),
        ]);
        assert!(!sel.matches(&wrong_tier));
        let legacy = labels(&[
            ("team", "data"),
            ("spark-fleet.io/shard", "1"),
            ("legacy", ""),
            ("a", "b"),
        ]);
        assert!(!sel.matches(&legacy));

        assert_eq!(parse_selector("").unwrap(), LabelSelector::default());
        assert_eq!(
            parse_selector("k=").unwrap().requirements[0].values[0].as_str(),
            ""
        );
    }

    #[test]
    fn selector_errors_name_the_term() {
        for bad in [
            "a=b,,c",
            "=v",
            "bad key=v",
            "k=v v",
            "k=-x",
            "UPPER.example.com/x=y",
        ] {
            let err = parse_selector(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn pod_is_ours_predicate() {
        let part = Partition {
            namespaces: ["spark".to_owned()].into_iter().collect(),
            selector: parse_selector("shard=1").unwrap(),
        };
        let base = || {
            let mut p = Pod::new("spark", "p", Resources::default());
            p.labels = labels(&[("shard", "1")]);
            p
        };
        assert!(is_ours(&base(), "spark-fleet", &part));
        assert!(!is_ours(&base(), "other", &part));
        let mut bound = base();
        bound.node_name = Some(Sym::new("n1"));
        assert!(!is_ours(&bound, "spark-fleet", &part));
        let mut terminating = base();
        terminating.terminating = true;
        assert!(!is_ours(&terminating, "spark-fleet", &part));
        let mut finished = base();
        finished.finished = true;
        assert!(!is_ours(&finished, "spark-fleet", &part));
        let mut gated = base();
        gated.scheduling_gated = true;
        assert!(!is_ours(&gated, "spark-fleet", &part));
        let mut other_ns = base();
        other_ns.key = crate::model::PodKey::new("default", "p");
        assert!(!is_ours(&other_ns, "spark-fleet", &part));
        let mut other_shard = base();
        other_shard.labels = labels(&[("shard", "2")]);
        assert!(!is_ours(&other_shard, "spark-fleet", &part));
        assert!(is_ours(&other_shard, "spark-fleet", &Partition::default()));
    }

    #[test]
    fn raw_predicate_agrees() {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "spark", "labels": {"shard": "1"}},
            "spec": {"schedulerName": "spark-fleet", "containers": [{"name": "c"}]}
        }))
        .unwrap();
        let part = Partition::from_config(&PartitionConfig {
            namespaces: vec!["spark".into()],
            pod_selector: Some("shard=1".into()),
        })
        .unwrap();
        assert!(raw_is_ours(&pod, "spark-fleet", &part));
        assert!(!raw_is_ours(&pod, "default-scheduler", &part));
        let mut bound = pod.clone();
        bound.spec.as_mut().unwrap().node_name = Some("n1".into());
        assert!(!raw_is_ours(&bound, "spark-fleet", &part));
        let mut gated = pod.clone();
        gated.spec.as_mut().unwrap().scheduling_gates =
            Some(vec![k8s_openapi::api::core::v1::PodSchedulingGate {
                name: "example.com/quota".into(),
            }]);
        assert!(!raw_is_ours(&gated, "spark-fleet", &part));
    }
}
