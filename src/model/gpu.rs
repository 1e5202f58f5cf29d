//! GPU sharing at card level, in the form Alibaba's GPU-sharing clusters use
//! (the openb trace, the FGD paper's simulator, open-gpu-share): a node has N
//! cards of one model, each of `MILLI_PER_GPU` milli; a pod asks for `count`
//! whole cards, or for a share (`milli` < 1000) of one card, optionally of some
//! models only. The binding records which cards the pod got.
//!
//! Pods ask through annotations, nodes advertise through allocatable and a
//! label (all read once, in `convert.rs` and the trace loaders):
//!
//! | object | key | meaning |
//! |---|---|---|
//! | pod annotation | `alibabacloud.com/gpu-milli` | milli of each card, 1..=1000 (default 1000 with a count) |
//! | pod annotation | `alibabacloud.com/gpu-count` | cards, ≥ 0 (default 1 with a milli); a share needs 1 |
//! | pod annotation | `alibabacloud.com/gpu-card-model` | acceptable models, `A\|B`; absent or empty: any |
//! | pod annotation | `alibabacloud.com/gpu-index` | the cards the binding gave, `0-1`; set at binding |
//! | node allocatable | `alibabacloud.com/gpu-count` | cards on the node (at most 64) |
//! | node label | `alibabacloud.com/gpu-card-model` | the cards' model |

use super::Sym;
use serde::Serialize;
use smallvec::SmallVec;
use std::fmt;

pub const ANNOTATION_GPU_MILLI: &str = "alibabacloud.com/gpu-milli";
pub const ANNOTATION_GPU_COUNT: &str = "alibabacloud.com/gpu-count";
pub const ANNOTATION_GPU_MODEL: &str = "alibabacloud.com/gpu-card-model";
pub const ANNOTATION_GPU_INDEX: &str = "alibabacloud.com/gpu-index";
/// Node allocatable: the number of cards.
pub const RESOURCE_GPU_COUNT: &str = "alibabacloud.com/gpu-count";
/// Node label: the cards' model.
pub const LABEL_GPU_MODEL: &str = "alibabacloud.com/gpu-card-model";
/// One whole card.
pub const MILLI_PER_GPU: u32 = 1000;
/// Cards a node may have: card sets are 64-bit masks.
pub const MAX_CARDS: usize = 64;

/// A set of card indices on one node (bit `i` = card `i`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Cards(pub u64);

impl Cards {
    pub fn single(index: usize) -> Cards {
        debug_assert!(index < MAX_CARDS);
        Cards(1u64 << (index % MAX_CARDS))
    }

    pub fn insert(&mut self, index: usize) {
        if index < MAX_CARDS {
            self.0 |= 1u64 << index;
        }
    }

    pub fn contains(self, index: usize) -> bool {
        index < MAX_CARDS && self.0 & (1u64 << index) != 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Indices in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }

    /// The `gpu-index` form, `0-1-3` (empty for no card).
    pub fn parse(s: &str) -> Result<Cards, String> {
        let mut cards = Cards::default();
        for part in s.split('-') {
            let i: usize = part
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a list of card indices like \"0-1\""))?;
            if i >= MAX_CARDS {
                return Err(format!(
                    "card index {i} is out of range (at most {MAX_CARDS} cards)"
                ));
            }
            if cards.contains(i) {
                return Err(format!("card index {i} is listed twice"));
            }
            cards.insert(i);
        }
        Ok(cards)
    }
}

impl fmt::Display for Cards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, i) in self.iter().enumerate() {
            if k > 0 {
                f.write_str("-")?;
            }
            write!(f, "{i}")?;
        }
        Ok(())
    }
}

/// The number of cards a node advertises (allocatable `gpu-count`).
pub fn node_cards(allocatable: &super::Resources) -> usize {
    let n = allocatable.scalar(Sym::new(RESOURCE_GPU_COUNT));
    usize::try_from(n).unwrap_or(0).min(MAX_CARDS)
}

/// Refuses a node advertising more cards than a card set holds.
pub fn check_node_cards(allocatable: &super::Resources) -> Result<(), String> {
    let n = allocatable.scalar(Sym::new(RESOURCE_GPU_COUNT));
    if n > MAX_CARDS as i64 {
        return Err(format!(
            "{n} GPUs: at most {MAX_CARDS} per node are supported"
        ));
    }
    Ok(())
}

/// What a pod asks of GPUs, and, once bound, which cards it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodGpu {
    /// Cards, ≥ 1.
    pub count: u8,
    /// Milli of each card, 1..=1000: below 1000 the pod shares one card.
    pub milli: u32,
    /// Acceptable card models, in the order given, without duplicates; empty: any.
    pub models: SmallVec<[Sym; 2]>,
    /// The cards the binding gave (the `gpu-index` annotation); `None` until bound.
    pub cards: Option<Cards>,
}

impl PodGpu {
    /// A share of one card (the FGD paper's "GPU-sharing task").
    pub fn is_share(&self) -> bool {
        self.milli < MILLI_PER_GPU
    }

    /// Milli of all its cards together.
    pub fn total_milli(&self) -> u64 {
        u64::from(self.count) * u64::from(self.milli)
    }

    /// Whether a node whose cards are `model` (None: unlabelled) is acceptable.
    pub fn accepts(&self, model: Option<Sym>) -> bool {
        self.models.is_empty() || model.is_some_and(|m| self.models.contains(&m))
    }

    /// `models` as the annotation writes them, `A|B`.
    pub fn models_joined(&self) -> String {
        let v: Vec<&str> = self.models.iter().map(|m| m.as_str()).collect();
        v.join("|")
    }
}

/// The model list of a `gpu-card-model` value (or an openb `gpu_spec`): `|`
/// separated, blanks dropped, duplicates dropped, order kept.
pub fn parse_models(s: &str) -> SmallVec<[Sym; 2]> {
    let mut models: SmallVec<[Sym; 2]> = SmallVec::new();
    for m in s.split('|').map(str::trim).filter(|m| !m.is_empty()) {
        let sym = Sym::new(m);
        if !models.contains(&sym) {
            models.push(sym);
        }
    }
    models
}

/// A pod's GPU demand from its annotations (`get` looks one up by key), or
/// `None` when it asks for no GPU. `Err((key, message))` names the annotation.
pub fn pod_gpu_from_annotations<'a>(
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<PodGpu>, (&'static str, String)> {
    let milli = match get(ANNOTATION_GPU_MILLI) {
        None => None,
        Some(v) => Some(match v.trim().parse::<u32>() {
            Ok(m) if (1..=MILLI_PER_GPU).contains(&m) => m,
            _ => {
                return Err((
                    ANNOTATION_GPU_MILLI,
                    format!("{v:?} must be an integer 1..=1000 (milli of one GPU)"),
                ))
            }
        }),
    };
    let count = match get(ANNOTATION_GPU_COUNT) {
        None => None,
        Some(v) => Some(match v.trim().parse::<u32>() {
            Ok(c) if c as usize <= MAX_CARDS => c as u8,
            _ => {
                return Err((
                    ANNOTATION_GPU_COUNT,
                    format!("{v:?} must be an integer 0..={MAX_CARDS} (number of GPUs)"),
                ))
            }
        }),
    };
    let (count, milli) = match (count, milli) {
        (None, None) | (Some(0), _) => return Ok(None),
        (Some(c), None) => (c, MILLI_PER_GPU),
        (None, Some(m)) => (1, m),
        (Some(c), Some(m)) => (c, m),
    };
    if count > 1 && milli < MILLI_PER_GPU {
        return Err((
            ANNOTATION_GPU_MILLI,
            format!(
                "a share of a GPU ({milli} milli) is for one GPU, but the GPU count is {count}"
            ),
        ));
    }
    let models = get(ANNOTATION_GPU_MODEL)
        .map(parse_models)
        .unwrap_or_default();
    let cards = match get(ANNOTATION_GPU_INDEX).map(str::trim) {
        None | Some("") => None,
        Some(v) => {
            let cards = Cards::parse(v).map_err(|m| (ANNOTATION_GPU_INDEX, m))?;
            if cards.len() != count as usize {
                return Err((
                    ANNOTATION_GPU_INDEX,
                    format!(
                        "{v:?} lists {} card(s) for a pod of {count} GPU(s)",
                        cards.len()
                    ),
                ));
            }
            Some(cards)
        }
    };
    Ok(Some(PodGpu {
        count,
        milli,
        models,
        cards,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse(pairs: &[(&str, &str)]) -> Result<Option<PodGpu>, (&'static str, String)> {
        let m: BTreeMap<&str, &str> = pairs.iter().copied().collect();
        pod_gpu_from_annotations(|k| m.get(k).copied())
    }

    #[test]
    fn annotations_table() {
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(parse(&[(ANNOTATION_GPU_COUNT, "0")]).unwrap(), None);
        let share = parse(&[(ANNOTATION_GPU_MILLI, "460")]).unwrap().unwrap();
        assert_eq!((share.count, share.milli, share.is_share()), (1, 460, true));
        let whole = parse(&[(ANNOTATION_GPU_COUNT, "2")]).unwrap().unwrap();
        assert_eq!(
            (whole.count, whole.milli, whole.is_share()),
            (2, 1000, false)
        );
        assert_eq!(whole.total_milli(), 2000);
        let with = parse(&[
            (ANNOTATION_GPU_COUNT, "1"),
            (ANNOTATION_GPU_MILLI, "500"),
            (ANNOTATION_GPU_MODEL, "T4| |G2|T4"),
            (ANNOTATION_GPU_INDEX, "3"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(with.models_joined(), "T4|G2");
        assert_eq!(with.cards, Some(Cards::single(3)));
        assert!(with.accepts(Some(Sym::new("G2"))));
        assert!(!with.accepts(Some(Sym::new("A10"))));
        assert!(!with.accepts(None));
        for bad in [
            &[(ANNOTATION_GPU_MILLI, "0")][..],
            &[(ANNOTATION_GPU_MILLI, "1001")],
            &[(ANNOTATION_GPU_MILLI, "half")],
            &[(ANNOTATION_GPU_COUNT, "-1")],
            &[(ANNOTATION_GPU_COUNT, "65")],
            &[(ANNOTATION_GPU_COUNT, "2"), (ANNOTATION_GPU_MILLI, "500")],
            &[(ANNOTATION_GPU_COUNT, "2"), (ANNOTATION_GPU_INDEX, "1")],
            &[(ANNOTATION_GPU_COUNT, "2"), (ANNOTATION_GPU_INDEX, "1-1")],
            &[(ANNOTATION_GPU_COUNT, "1"), (ANNOTATION_GPU_INDEX, "x")],
        ] {
            let (key, message) = parse(bad).unwrap_err();
            assert!(key.starts_with("alibabacloud.com/gpu-"), "{bad:?}");
            assert!(!message.is_empty());
        }
    }

    #[test]
    fn cards_round_trip() {
        let c = Cards::parse("0-3-63").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.iter().collect::<Vec<_>>(), [0, 3, 63]);
        assert_eq!(c.to_string(), "0-3-63");
        assert!(Cards::parse("64").is_err());
        assert_eq!(Cards::default().to_string(), "");
    }
}
