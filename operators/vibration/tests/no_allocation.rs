//! Proves that `FeatureExtractor::extract` does not touch the heap after its first call, with a
//! counting global allocator (its own test binary, so the allocator affects nothing else).

// Audited: the only unsafe code is forwarding to the system allocator.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use forgeline_vibration::{FeatureConfig, FeatureExtractor};

struct Counting;

thread_local! {
    /// Heap allocations made by this thread while counting is on (no destructor, no heap).
    static ALLOCATIONS: Cell<Option<u64>> = const { Cell::new(None) };
}

fn note_allocation() {
    // `try_with`: the thread-local may be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|count| {
        if let Some(n) = count.get() {
            count.set(Some(n + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap allocations made by this thread while running `f`.
fn allocations_during(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|c| c.set(Some(0)));
    f();
    ALLOCATIONS.with(|c| c.replace(None)).unwrap_or(0)
}

#[test]
fn extract_does_not_allocate_after_the_first_stroke() {
    let mut extractor = FeatureExtractor::new(FeatureConfig::default()).unwrap();
    let strokes: Vec<Vec<f32>> = (0..20_u32)
        .map(|s| {
            let len = [2000, 1500, 3000, 0][s as usize % 4];
            (0..len)
                .map(|i| {
                    let t = i as f32 / 10_000.0;
                    let ring = 3.0 * (-t / 0.02).exp() * (std::f32::consts::TAU * 300.0 * t).sin();
                    ring + 0.01 * ((i * 7919 + s as usize * 104_729) % 1000) as f32 / 1000.0
                })
                .collect()
        })
        .collect();
    let mut nan = strokes[0].clone();
    nan[5] = f32::NAN;
    let mut out = Vec::new();
    extractor.extract(&strokes[0], 10_000.0, &mut out);
    let count = allocations_during(|| {
        for stroke in strokes.iter().chain([&nan]) {
            let _ = extractor.extract(stroke, 10_000.0, &mut out);
        }
    });
    assert_eq!(
        count,
        0,
        "extract allocated {count} time(s) over {} strokes",
        strokes.len() + 1
    );
    // The counter works: a fresh extractor allocates.
    assert!(allocations_during(|| drop(FeatureExtractor::new(FeatureConfig::default()))) > 0);
}
