//! Criterion benchmarks of the optical line's preprocessing, per frame, on seeded simulated parts
//! (the same generator the tests use):
//!
//! - `preprocess/300x300x1->192x192x1_f32_nchw`: the shipped model's input (`models/optical-defects`);
//! - `preprocess/300x300x1->224x224x3_f32_nchw_letterbox`: an ImageNet-style RGB input;
//! - `preprocess/1920x1200x3->224x224x3_u8_nhwc_letterbox`: a 2.3 MP RGB camera to a u8 model;
//! - `frame/to_batch_300x300x1`: the frame message as the camera node builds it (the pixel copy
//!   into Arrow), the baseline cost that preprocessing adds to; `frame/in_place_300x300x1`, the
//!   in-place form sent under dora (header + one pixel copy into the sample);
//!   `frame/simulate_300x300x1`, rendering one simulated part (inside the measured latency: the
//!   camera stamps the acquisition time before it renders).
//!
//! Run: `cargo bench -p forgeline-benches --bench vision` (under a minute).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // A bench: a panic is the report.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use forgeline_schemas::Frame;
use forgeline_vision::{
    DType, Layout, PreprocessConfig, Preprocessor, RawFrame, ResizeMode, SimulatedCamera,
    SimulatedCameraConfig,
};

fn part(width: u32, height: u32, channels: u32) -> RawFrame {
    SimulatedCamera::new(SimulatedCameraConfig {
        seed: 42,
        width,
        height,
        channels,
        ..SimulatedCameraConfig::default()
    })
    .unwrap()
    .frame(3)
}

fn preprocess(c: &mut Criterion) {
    let cases = [
        (
            "300x300x1->192x192x1_f32_nchw",
            part(300, 300, 1),
            PreprocessConfig {
                width: 192,
                height: 192,
                ..PreprocessConfig::default()
            },
        ),
        (
            "300x300x1->224x224x3_f32_nchw_letterbox",
            part(300, 300, 1),
            PreprocessConfig {
                channels: 3,
                resize: ResizeMode::Letterbox,
                mean: vec![0.485, 0.456, 0.406],
                std: vec![0.229, 0.224, 0.225],
                ..PreprocessConfig::default()
            },
        ),
        (
            "1920x1200x3->224x224x3_u8_nhwc_letterbox",
            part(1920, 1200, 3),
            PreprocessConfig {
                channels: 3,
                resize: ResizeMode::Letterbox,
                layout: Layout::Nhwc,
                dtype: DType::U8,
                ..PreprocessConfig::default()
            },
        ),
    ];
    let mut g = c.benchmark_group("preprocess");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    for (name, frame, config) in cases {
        let mut pre = Preprocessor::new(config).unwrap();
        let mut out = Vec::new();
        g.bench_function(name, |b| {
            b.iter(|| black_box(pre.run_raw(black_box(&frame), &mut out).unwrap()));
        });
    }
    g.finish();
}

fn frame_message(c: &mut Criterion) {
    let frame = part(300, 300, 1).into_frame("camera-01", 1);
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("to_batch_300x300x1", |b| {
        b.iter(|| black_box(Frame::to_batch(std::slice::from_ref(black_box(&frame)))));
    });
    // The in-place form the camera sends under dora (`Outbox::send_frame`): header + one copy.
    let header = forgeline_schemas::frame::wire::FrameHeader::of(&frame);
    let mut sample = vec![0u8; header.header_len() + frame.data.len()];
    g.bench_function("in_place_300x300x1", |b| {
        b.iter(|| {
            let at = header.write(&mut sample).unwrap();
            sample[at..].copy_from_slice(black_box(&frame.data));
            black_box(&sample);
        });
    });
    // What the simulated camera costs per part (it runs after the acquisition timestamp).
    let camera = SimulatedCamera::new(SimulatedCameraConfig {
        seed: 42,
        width: 300,
        height: 300,
        channels: 1,
        ..SimulatedCameraConfig::default()
    })
    .unwrap();
    let mut seq = 0;
    g.bench_function("simulate_300x300x1", |b| {
        b.iter(|| {
            seq += 1;
            black_box(camera.frame(seq))
        });
    });
    g.finish();
}

criterion_group!(benches, preprocess, frame_message);
criterion_main!(benches);
