//! A profile: the plugins enabled at each extension point, in order, with score weights.

use super::cycle::{ClassBuffers, KeptTotals, KeptVerdicts, Scratch};
use super::*;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// The extension points one plugin instance implements, built by the plugin registry.
#[derive(Clone, Default)]
pub struct PluginSet {
    pub name: &'static str,
    pub pre_filter: Option<Arc<dyn PreFilterPlugin>>,
    pub filter: Option<Arc<dyn FilterPlugin>>,
    pub post_filter: Option<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Option<Arc<dyn PreScorePlugin>>,
    pub score: Option<Arc<dyn ScorePlugin>>,
    pub reserve: Option<Arc<dyn ReservePlugin>>,
    pub permit: Option<Arc<dyn PermitPlugin>>,
}

impl PluginSet {
    pub fn new(name: &'static str) -> PluginSet {
        PluginSet {
            name,
            ..Default::default()
        }
    }
}

pub struct Profile {
    pub name: String,
    pub pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub filter: Vec<Arc<dyn FilterPlugin>>,
    pub post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pub pre_score: Vec<Arc<dyn PreScorePlugin>>,
    pub score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    pub reserve: Vec<Arc<dyn ReservePlugin>>,
    pub permit: Vec<Arc<dyn PermitPlugin>>,
    /// Upstream's percentageOfNodesToScore: 0 scores every node (our default).
    pub percentage_of_nodes_to_score: u32,
    /// Where the next sampled search starts, rotating like upstream's nextStartNodeIndex.
    pub(crate) next_start: AtomicUsize,
    /// Filter verdicts kept from the last cycles (executors of one application).
    pub(crate) kept_verdicts: KeptVerdicts,
    /// Score totals and the best node per class kept from the last cycles.
    pub(crate) kept_totals: KeptTotals,
    /// Buffers for bounded selection (`cycle::bounded`).
    pub(crate) class_buffers: ClassBuffers,
    /// The cycle's score columns (`cycle::scratch`).
    pub(crate) score_columns: Scratch<i64>,
}

impl Profile {
    /// Assembles a profile from plugin sets in order (filters run in this order: put cheap ones first).
    pub fn new(name: impl Into<String>, sets: Vec<(PluginSet, i64)>) -> Profile {
        let mut p = Profile {
            name: name.into(),
            pre_filter: Vec::new(),
            filter: Vec::new(),
            post_filter: Vec::new(),
            pre_score: Vec::new(),
            score: Vec::new(),
            reserve: Vec::new(),
            permit: Vec::new(),
            percentage_of_nodes_to_score: 0,
            next_start: AtomicUsize::new(0),
            kept_verdicts: KeptVerdicts::default(),
            kept_totals: KeptTotals::default(),
            class_buffers: ClassBuffers::default(),
            score_columns: Scratch::default(),
        };
        for (set, weight) in sets {
            p.pre_filter.extend(set.pre_filter);
            p.filter.extend(set.filter);
            p.post_filter.extend(set.post_filter);
            p.pre_score.extend(set.pre_score);
            if let Some(s) = set.score {
                if weight > 0 {
                    p.score.push((s, weight));
                }
            }
            p.reserve.extend(set.reserve);
            p.permit.extend(set.permit);
        }
        p
    }

    pub fn plugin_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        let all = self
            .pre_filter
            .iter()
            .map(|p| p.name())
            .chain(self.filter.iter().map(|p| p.name()))
            .chain(self.post_filter.iter().map(|p| p.name()))
            .chain(self.pre_score.iter().map(|p| p.name()))
            .chain(self.score.iter().map(|(p, _)| p.name()))
            .chain(self.reserve.iter().map(|p| p.name()))
            .chain(self.permit.iter().map(|p| p.name()));
        for n in all {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }
}
