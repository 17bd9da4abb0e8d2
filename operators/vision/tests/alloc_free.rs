//! `Preprocessor::run` must not allocate per frame once warmed up (the optical line's hot path).
//! A counting global allocator counts the allocations made on this test's own thread, so other
//! tests running in parallel do not disturb the count.

// Audited unsafe: the allocator only forwards to `System` and bumps a thread-local counter.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;

use forgeline_vision::{
    DType, FrameRef, Layout, PreprocessConfig, Preprocessor, ResizeMode, SimulatedCamera,
    SimulatedCameraConfig,
};

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// const-initialised thread-local `Cell` (no allocation, no re-entrancy).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn alloc_zeroed(&self, layout: AllocLayout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn the_counter_sees_allocations() {
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 100]);
    assert!(
        allocations() > before,
        "the counting allocator is not in use"
    );
    drop(v);
}

#[test]
fn preprocess_is_allocation_free_after_warm_up() {
    let frames: Vec<_> = [1u32, 3]
        .into_iter()
        .flat_map(|channels| {
            let camera = SimulatedCamera::new(SimulatedCameraConfig {
                seed: 5,
                channels,
                width: 320,
                height: 240,
                ..SimulatedCameraConfig::default()
            })
            .unwrap();
            (0..4).map(move |seq| camera.frame(seq))
        })
        .collect();
    for resize in [
        ResizeMode::Stretch,
        ResizeMode::CenterCrop,
        ResizeMode::Letterbox,
    ] {
        for layout in [Layout::Nchw, Layout::Nhwc] {
            for (dtype, channels) in [(DType::F32, 3), (DType::U8, 1), (DType::F32, 1)] {
                let mut pre = Preprocessor::new(PreprocessConfig {
                    resize,
                    layout,
                    dtype,
                    channels,
                    ..PreprocessConfig::default()
                })
                .unwrap();
                let mut out = Vec::new();
                for frames in frames.chunks(4) {
                    // Warm-up: the first frame of a geometry sizes the buffers.
                    pre.run(&frames[0].as_frame_ref(), &mut out).unwrap();
                    let before = allocations();
                    for frame in frames {
                        let view = FrameRef {
                            width: frame.width,
                            height: frame.height,
                            channels: frame.channels,
                            data: &frame.data,
                            source: &frame.source,
                        };
                        let shape = pre.run(&view, &mut out).unwrap();
                        assert_eq!(out.len(), shape.byte_len());
                    }
                    let made = allocations() - before;
                    assert_eq!(
                        made, 0,
                        "{resize:?} {layout:?} {dtype:?} -> {channels} ch from {} ch: {made} allocation(s) in 4 frames",
                        frames[0].channels
                    );
                }
            }
        }
    }
}
