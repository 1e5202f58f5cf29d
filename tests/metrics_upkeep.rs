//! Histogram observations do not pile up in a scheduler nobody scrapes: the Prometheus
//! recorder keeps each observation until something folds it into the buckets, and
//! `kube::metrics` runs that upkeep every few seconds. Heap bytes are counted by dhat's
//! allocator (this binary's global allocator).

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

use std::time::{Duration, Instant};

#[test]
fn histogram_observations_are_folded_in_without_a_scrape() {
    let _profiler = dhat::Profiler::builder().testing().build();
    assert!(
        spark_fleet::kube::metrics::handle().is_some(),
        "this binary installs the recorder first"
    );
    let histogram = metrics::histogram!(spark_fleet::kube::metrics::ALGORITHM_DURATION);
    histogram.record(0.001);
    let before = dhat::HeapStats::get().curr_bytes;
    // What a scheduler records for 100,000 pods.
    for _ in 0..100_000 {
        histogram.record(0.001);
    }
    let held = dhat::HeapStats::get().curr_bytes.saturating_sub(before);
    assert!(held > 400_000, "observations are buffered: {held} bytes");
    // Scheduling goes on (a few observations a millisecond); within two upkeep
    // intervals everything recorded is folded in, and its memory freed once the
    // recorder's lock-free buffers reclaim it (which needs further recording).
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        for _ in 0..10 {
            histogram.record(0.001);
        }
        let now = dhat::HeapStats::get().curr_bytes.saturating_sub(before);
        if now < held / 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "observations still held after 12 s: {now} of {held} bytes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
