//! Rough timings for the README (debug build unless run with `--release`):
//! `cargo test -p forgeline-vision --test timing -- --ignored --nocapture`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is the failure report.

use std::time::Instant;

use forgeline_vision::{
    DType, Layout, PreprocessConfig, Preprocessor, ResizeMode, SimulatedCamera,
    SimulatedCameraConfig,
};

#[test]
#[ignore = "timing, not a check: run explicitly"]
fn generation_and_preprocess_time() {
    let camera = SimulatedCamera::new(SimulatedCameraConfig::default()).unwrap();
    let start = Instant::now();
    for seq in 0..10 {
        std::hint::black_box(camera.frame(seq));
    }
    println!("simulated 300x300x1 frame: {:?}", start.elapsed() / 10);

    for (width, height, channels) in [(300, 300, 1), (1920, 1200, 3)] {
        let camera = SimulatedCamera::new(SimulatedCameraConfig {
            width,
            height,
            channels,
            ..SimulatedCameraConfig::default()
        })
        .unwrap();
        let frame = camera.frame(0);
        for (dtype, out_channels, layout) in [
            (DType::F32, 3, Layout::Nchw),
            (DType::F32, 1, Layout::Nchw),
            (DType::U8, 3, Layout::Nhwc),
        ] {
            let mut pre = Preprocessor::new(PreprocessConfig {
                resize: ResizeMode::Letterbox,
                dtype,
                channels: out_channels,
                layout,
                ..PreprocessConfig::default()
            })
            .unwrap();
            let mut out = Vec::new();
            pre.run_raw(&frame, &mut out).unwrap();
            let runs = 50;
            let start = Instant::now();
            for _ in 0..runs {
                pre.run_raw(&frame, &mut out).unwrap();
            }
            println!(
                "preprocess {width}x{height}x{channels} -> 224x224x{out_channels} {dtype:?} {layout:?}: {:?}",
                start.elapsed() / runs
            );
        }
    }
}
