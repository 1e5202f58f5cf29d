//! Interned label sets and the selectors evaluated against them.

use super::Sym;
use serde::Serialize;

/// Labels as (key, value) symbol pairs sorted by key, so lookups are a binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Labels(Vec<(Sym, Sym)>);

impl Labels {
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Labels {
        Labels::from_syms(pairs.into_iter().map(|(k, v)| (Sym::new(k), Sym::new(v))))
    }

    /// Labels from interned pairs (the first of equal keys wins).
    pub fn from_syms(pairs: impl IntoIterator<Item = (Sym, Sym)>) -> Labels {
        let mut v: Vec<(Sym, Sym)> = pairs.into_iter().collect();
        v.sort_by_key(|(k, _)| *k);
        v.dedup_by_key(|(k, _)| *k);
        Labels(v)
    }

    pub fn get(&self, key: Sym) -> Option<Sym> {
        self.0
            .binary_search_by_key(&key, |(k, _)| *k)
            .ok()
            .map(|i| self.0[i].1)
    }

    /// The value's text. It pins the value (`Sym::as_str`): for per-pod values
    /// compare symbols (`get`) instead.
    pub fn get_str(&self, key: &str) -> Option<&'static str> {
        Sym::lookup(key).and_then(|k| self.get(k)).map(Sym::as_str)
    }

    pub fn contains_key(&self, key: Sym) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Sym, Sym)> + '_ {
        self.0.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn insert(&mut self, key: Sym, value: Sym) {
        match self.0.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SelectorOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// Node selectors only: the label parsed as an integer is greater / less.
    Gt,
    Lt,
}

impl SelectorOp {
    pub fn parse(s: &str) -> Option<SelectorOp> {
        Some(match s {
            "In" => SelectorOp::In,
            "NotIn" => SelectorOp::NotIn,
            "Exists" => SelectorOp::Exists,
            "DoesNotExist" => SelectorOp::DoesNotExist,
            "Gt" => SelectorOp::Gt,
            "Lt" => SelectorOp::Lt,
            _ => return None,
        })
    }
}

/// One `key op values` requirement. Gt/Lt carry their integer operand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub key: Sym,
    pub op: SelectorOp,
    pub values: Vec<Sym>,
    pub number: i64,
}

impl Requirement {
    /// Upstream `labels.Requirement.Matches`.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self.op {
            SelectorOp::In => labels
                .get(self.key)
                .is_some_and(|v| self.values.contains(&v)),
            SelectorOp::NotIn => labels
                .get(self.key)
                .is_none_or(|v| !self.values.contains(&v)),
            SelectorOp::Exists => labels.contains_key(self.key),
            SelectorOp::DoesNotExist => !labels.contains_key(self.key),
            SelectorOp::Gt | SelectorOp::Lt => {
                let Some(v) = labels.get(self.key) else {
                    return false;
                };
                let Ok(n) = v.as_str().parse::<i64>() else {
                    return false;
                };
                if self.op == SelectorOp::Gt {
                    n > self.number
                } else {
                    n < self.number
                }
            }
        }
    }
}

/// A metav1.LabelSelector: all requirements must match; an empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// A requirement `key In [value]` with a single value, if any: lets indexes
    /// start from the pods carrying that label instead of scanning all pods.
    pub fn equality_hint(&self) -> Option<(Sym, Sym)> {
        self.requirements.iter().find_map(|r| {
            (r.op == SelectorOp::In && r.values.len() == 1).then(|| (r.key, r.values[0]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: SelectorOp, values: &[&str]) -> Requirement {
        Requirement {
            key: Sym::new(key),
            op,
            values: values.iter().map(|v| Sym::new(v)).collect(),
            number: values.first().and_then(|v| v.parse().ok()).unwrap_or(0),
        }
    }

    #[test]
    fn requirement_table() {
        let l = Labels::from_pairs([("a", "1"), ("gen", "5")]);
        let cases = [
            (req("a", SelectorOp::In, &["1", "2"]), true),
            (req("a", SelectorOp::In, &["2"]), false),
            (req("b", SelectorOp::In, &["1"]), false),
            (req("a", SelectorOp::NotIn, &["2"]), true),
            (req("a", SelectorOp::NotIn, &["1"]), false),
            (req("b", SelectorOp::NotIn, &["1"]), true),
            (req("a", SelectorOp::Exists, &[]), true),
            (req("b", SelectorOp::Exists, &[]), false),
            (req("b", SelectorOp::DoesNotExist, &[]), true),
            (req("gen", SelectorOp::Gt, &["4"]), true),
            (req("gen", SelectorOp::Gt, &["5"]), false),
            (req("gen", SelectorOp::Lt, &["6"]), true),
            (req("a", SelectorOp::Lt, &["0"]), false),
            (req("zzz", SelectorOp::Gt, &["0"]), false),
        ];
        for (r, want) in cases {
            assert_eq!(r.matches(&l), want, "{r:?}");
        }
    }

    #[test]
    fn empty_selector_matches_all() {
        assert!(LabelSelector::default().matches(&Labels::default()));
    }

    #[test]
    fn labels_sorted_lookup() {
        let mut l = Labels::from_pairs([("z", "1"), ("a", "2")]);
        assert_eq!(l.get_str("a"), Some("2"));
        l.insert(Sym::new("m"), Sym::new("3"));
        assert_eq!(l.get_str("m"), Some("3"));
        assert_eq!(l.len(), 3);
    }
}
