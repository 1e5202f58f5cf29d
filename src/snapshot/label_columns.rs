//! Label values by node slot, for the label keys node selectors ask about.
//!
//! Matching a node selector node by node reads each node's object and
//! searches its label list: at 5,000 nodes a required affinity term took
//! longer than the rest of an executor's cycle (739 k against 434 k
//! instructions per decision with columns, `benches/README.md`). A column per key holds every slot's value as an
//! integer, so a requirement is one pass of integer compares. Columns are
//! built on the first ask for their key and kept current as nodes come,
//! change and go; keys are those selectors name (a few per cluster), at
//! most `MAX_KEYS`, so a cluster whose nodes carry many distinct label keys
//! never gets a column for each.

use crate::model::{Node, Sym};
use smallvec::SmallVec;
use std::sync::{PoisonError, RwLock};

/// How many keys get a column; asks for more keys are answered `None` (the
/// caller matches node by node). 64 columns of 15,000 slots are 3.8 MB.
pub const MAX_KEYS: usize = 64;

/// A label's value on a node slot: `Sym::id() + 1`, or `ABSENT` where the
/// node has no such label or the slot holds no node.
pub const ABSENT: u32 = 0;

/// The column value of `value`.
pub fn encode(value: Sym) -> u32 {
    value.id().saturating_add(1)
}

/// The kept columns, one per key asked about.
#[derive(Debug, Default)]
pub struct LabelColumns {
    kept: RwLock<Vec<(Sym, Vec<u32>)>>,
}

impl Clone for LabelColumns {
    fn clone(&self) -> Self {
        let kept = self.kept.read().unwrap_or_else(PoisonError::into_inner);
        LabelColumns {
            kept: RwLock::new(kept.clone()),
        }
    }
}

impl LabelColumns {
    /// `f` of the column of each of `keys` (in that order, one entry per slot
    /// of `nodes`), building the missing ones from `nodes` (`live[u]`: slot
    /// `u` holds a node). `None` when that would keep more than `MAX_KEYS`.
    pub fn with<R>(
        &self,
        keys: &[Sym],
        live: &[bool],
        nodes: &[Node],
        f: impl FnOnce(&[&[u32]]) -> R,
    ) -> Option<R> {
        let has = |kept: &[(Sym, Vec<u32>)], key: Sym| kept.iter().any(|(k, _)| *k == key);
        let missing = {
            let kept = self.kept.read().unwrap_or_else(PoisonError::into_inner);
            keys.iter().any(|&k| !has(&kept, k))
        };
        if missing {
            let mut kept = self.kept.write().unwrap_or_else(PoisonError::into_inner);
            for &key in keys {
                if has(&kept, key) {
                    continue;
                }
                if kept.len() >= MAX_KEYS {
                    return None;
                }
                let column = nodes
                    .iter()
                    .zip(live)
                    .map(|(n, &l)| if l { value_of(n, key) } else { ABSENT })
                    .collect();
                kept.push((key, column));
            }
        }
        let kept = self.kept.read().unwrap_or_else(PoisonError::into_inner);
        let columns: SmallVec<[&[u32]; 4]> = keys
            .iter()
            .map(|&key| {
                kept.iter()
                    .find(|(k, _)| *k == key)
                    .map_or(&[][..], |(_, c)| c.as_slice())
            })
            .collect();
        Some(f(&columns))
    }

    /// Slot `u` now holds `node` (`None`: no node): every kept column follows.
    pub fn set(&mut self, u: usize, node: Option<&Node>) {
        let kept = self.kept.get_mut().unwrap_or_else(PoisonError::into_inner);
        for (key, column) in kept.iter_mut() {
            if column.len() <= u {
                column.resize(u + 1, ABSENT);
            }
            column[u] = node.map_or(ABSENT, |n| value_of(n, *key));
        }
    }

    /// The keys that have a column, in the order they were first asked for.
    pub fn keys(&self) -> Vec<Sym> {
        let kept = self.kept.read().unwrap_or_else(PoisonError::into_inner);
        kept.iter().map(|(k, _)| *k).collect()
    }
}

fn value_of(node: &Node, key: Sym) -> u32 {
    node.labels.get(key).map_or(ABSENT, encode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;

    fn nodes() -> Vec<Node> {
        vec![
            node("a", 1000, GI).label("rack", "r1").build(),
            node("b", 1000, GI).build(),
            node("c", 1000, GI).label("rack", "").build(),
        ]
    }

    fn column(c: &LabelColumns, key: Sym, live: &[bool], nodes: &[Node]) -> Vec<u32> {
        c.with(&[key], live, nodes, |cols| cols[0].to_vec())
            .unwrap()
    }

    #[test]
    fn columns_hold_each_slot_value_and_follow_changes() {
        let rack = Sym::new("rack");
        let mut nodes = nodes();
        let mut live = vec![true, true, false];
        let mut c = LabelColumns::default();
        // A free slot and a node without the label read as absent; the
        // empty value is a value.
        let want = [encode(Sym::new("r1")), ABSENT, ABSENT];
        assert_eq!(column(&c, rack, &live, &nodes), want);
        live[2] = true;
        c.set(2, Some(&nodes[2]));
        assert_eq!(column(&c, rack, &live, &nodes)[2], encode(Sym::new("")));
        // Relabelled, removed, and a new slot.
        nodes[1] = node("b", 1000, GI).label("rack", "r2").build();
        c.set(1, Some(&nodes[1]));
        c.set(0, None);
        nodes.push(node("d", 1000, GI).label("rack", "r1").build());
        live.push(true);
        c.set(3, Some(&nodes[3]));
        let got = c.kept.read().unwrap()[0].1.clone();
        let want = [
            ABSENT,
            encode(Sym::new("r2")),
            encode(Sym::new("")),
            encode(Sym::new("r1")),
        ];
        assert_eq!(got, want);
        assert_eq!(c.keys(), vec![rack]);
        // A clone keeps the columns.
        assert_eq!(c.clone().keys(), vec![rack]);
    }

    #[test]
    fn at_most_max_keys_get_a_column() {
        let nodes = nodes();
        let live = vec![true; 3];
        let c = LabelColumns::default();
        for k in 0..MAX_KEYS {
            let key = Sym::new(&format!("key-{k}"));
            assert!(c.with(&[key], &live, &nodes, |_| ()).is_some());
        }
        let one_more = Sym::new("key-one-more");
        assert!(c.with(&[one_more], &live, &nodes, |_| ()).is_none());
        // Keys already kept are still answered.
        assert!(c
            .with(&[Sym::new("key-0")], &live, &nodes, |_| ())
            .is_some());
        assert_eq!(c.keys().len(), MAX_KEYS);
    }
}
