//! Work split over the machine's cores, for cycles with `CycleOptions::parallel`.
//!
//! A cycle at 5,000 nodes lasts tens of microseconds; rayon's workers go to
//! sleep between cycles and take tens of microseconds to wake, and the calling
//! thread sleeps while they work (`benches/README.md`, "Parallel cycles").
//! micropool's calling thread takes a share itself and its workers spin a
//! while before they sleep, so cycles run back to back hand over in about a
//! microsecond; an idle scheduler's workers sleep.

use std::ops::Range;
use std::sync::OnceLock;

/// The pool: one worker per core beside the caller's, built on first use;
/// None on a single core.
fn pool() -> Option<&'static micropool::ThreadPool> {
    static POOL: OnceLock<Option<micropool::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores > 1).then(|| {
            micropool::ThreadPoolBuilder::default()
                .num_threads(cores.min(MAX_CHUNKS) - 1)
                .idle_spin_cycles(IDLE_SPINS)
                .build()
        })
    })
    .as_ref()
}

/// How long a worker spins for the next chunk before it sleeps, in spin-loop
/// hints: about 0.9 ms on the 2-core VM of `benches/README.md`, well past the
/// gaps between the cycles of a queue being drained. (micropool's default,
/// 3,000, is about 90 µs there; the two were not told apart through that
/// machine's noise.)
const IDLE_SPINS: usize = 30_000;

/// No cycle is split further than this.
const MAX_CHUNKS: usize = 8;

/// How many chunks a cycle's work is split into: the pool's threads and the
/// caller's.
pub(super) fn threads() -> usize {
    pool().map_or(1, |p| p.num_threads() + 1)
}

/// Contiguous ranges covering `0..len`, `chunks` of them (fewer when `len` is
/// smaller), in order.
pub(super) fn ranges(len: usize, chunks: usize) -> Vec<Range<usize>> {
    let size = len.div_ceil(chunks.max(1)).max(1);
    (0..len)
        .step_by(size)
        .map(|start| start..(start + size).min(len))
        .collect()
}

/// `work(k, item)` for every item, the items shared over the pool's threads
/// and the caller's; the results in the items' order.
pub(super) fn map<I, T, F>(items: Vec<I>, work: F) -> Vec<T>
where
    I: Send,
    T: Send,
    F: Fn(usize, I) -> T + Sync,
{
    let Some(pool) = pool().filter(|_| items.len() > 1) else {
        return items
            .into_iter()
            .enumerate()
            .map(|(k, i)| work(k, i))
            .collect();
    };
    let mut out = Vec::with_capacity(items.len());
    halves(pool, 0, items, &work, &mut out);
    out
}

/// `map` for the items numbered from `first`: the first half here, the
/// second on the pool, down to single items.
fn halves<I, T, F>(
    pool: &micropool::ThreadPool,
    first: usize,
    mut items: Vec<I>,
    work: &F,
    out: &mut Vec<T>,
) where
    I: Send,
    T: Send,
    F: Fn(usize, I) -> T + Sync,
{
    if items.len() <= 1 {
        out.extend(items.into_iter().map(|i| work(first, i)));
        return;
    }
    let mid = items.len() / 2;
    let second = items.split_off(mid);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    pool.join(
        || halves(pool, first, items, work, &mut a),
        || halves(pool, first + mid, second, work, &mut b),
    );
    out.append(&mut a);
    out.append(&mut b);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_in_order() {
        for len in 0..40 {
            for chunks in 1..6 {
                let r = ranges(len, chunks);
                assert!(r.len() <= chunks.max(1));
                let joined: Vec<usize> = r.iter().flat_map(|r| r.clone()).collect();
                assert_eq!(joined, (0..len).collect::<Vec<_>>());
                assert!(r.iter().all(|r| !r.is_empty()));
            }
        }
    }

    #[test]
    fn map_keeps_the_order_and_numbers_the_items() {
        for n in 0..9 {
            let items: Vec<usize> = (0..n).map(|k| k * 10).collect();
            let got = map(items, |k, i| (k, i + 1));
            let want: Vec<(usize, usize)> = (0..n).map(|k| (k, k * 10 + 1)).collect();
            assert_eq!(got, want);
        }
    }
}
