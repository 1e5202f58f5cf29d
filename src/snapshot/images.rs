//! Which nodes hold which container images (`status.images`), for
//! ImageLocality: per image name, its size and the nodes reporting it, kept
//! through node adds, updates and removals.
//!
//! As upstream's scheduler cache, an image's size is the one the first node
//! reporting the name gave; it is forgotten when no node reports it any more.

use super::NodeIdx;
use crate::model::{NodeImages, Sym};
use foldhash::HashMap;

#[derive(Debug, Clone)]
pub struct ImageState {
    pub size: i64,
    /// Live node slots reporting the image, in no particular order.
    pub nodes: Vec<NodeIdx>,
}

#[derive(Debug, Default, Clone)]
pub struct ImageIndex {
    images: HashMap<Sym, ImageState>,
    /// Live nodes reporting at least one image.
    nodes_with_images: usize,
}

impl ImageIndex {
    pub fn get(&self, name: Sym) -> Option<&ImageState> {
        self.images.get(&name)
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Live nodes reporting at least one image.
    pub fn nodes_with_images(&self) -> usize {
        self.nodes_with_images
    }

    /// Node `node` now reports `new` instead of `old`.
    pub(super) fn replace(&mut self, node: NodeIdx, old: &NodeImages, new: &NodeImages) {
        if old == new {
            return;
        }
        for (name, _) in old.iter() {
            if new.contains(name) {
                continue;
            }
            if let Some(state) = self.images.get_mut(&name) {
                if let Some(p) = state.nodes.iter().position(|&n| n == node) {
                    state.nodes.swap_remove(p);
                }
                if state.nodes.is_empty() {
                    self.images.remove(&name);
                }
            }
        }
        for (name, size) in new.iter() {
            if old.contains(name) {
                continue;
            }
            self.images
                .entry(name)
                .or_insert_with(|| ImageState {
                    size,
                    nodes: Vec::new(),
                })
                .nodes
                .push(node);
        }
        self.nodes_with_images =
            self.nodes_with_images + usize::from(!new.is_empty()) - usize::from(!old.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imgs(pairs: &[(&str, i64)]) -> NodeImages {
        NodeImages::from_pairs(pairs.iter().map(|&(n, s)| (Sym::new(n), s)).collect())
    }

    #[test]
    fn counts_follow_node_changes_and_sizes_stay_first_seen() {
        let mut ix = ImageIndex::default();
        ix.replace(0, &NodeImages::default(), &imgs(&[("a", 10), ("b", 5)]));
        ix.replace(1, &NodeImages::default(), &imgs(&[("a", 99)]));
        let a = ix.get(Sym::new("a")).unwrap();
        assert_eq!((a.size, a.nodes.len()), (10, 2));
        assert_eq!(ix.nodes_with_images(), 2);
        ix.replace(0, &imgs(&[("a", 10), ("b", 5)]), &imgs(&[("a", 10)]));
        assert!(ix.get(Sym::new("b")).is_none());
        ix.replace(1, &imgs(&[("a", 99)]), &NodeImages::default());
        assert_eq!(ix.get(Sym::new("a")).unwrap().nodes, [0]);
        assert_eq!(ix.nodes_with_images(), 1);
    }
}
