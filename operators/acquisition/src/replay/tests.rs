//! Replay behaviour: round trips, triggered cutting, looping, and errors that name the file.

use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;
use crate::{FaultKind, PressSimConfig, PressSimulator, write_wav_f32};

fn sim() -> PressSimulator {
    PressSimulator::new(PressSimConfig::default()).unwrap()
}

fn replay(paths: Vec<PathBuf>) -> ReplaySource {
    ReplaySource::new(ReplayConfig {
        paths,
        ..ReplayConfig::default()
    })
    .unwrap()
}

fn drain(source: &mut ReplaySource) -> Vec<Result<Stroke, AcquisitionError>> {
    std::iter::from_fn(|| source.next_stroke())
        .take(1_000)
        .collect()
}

fn write_int_wav(path: &Path, channels: u16, rate: u32, bits: u16, frames: usize) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for _ in 0..frames * usize::from(channels) {
        w.write_sample(0_i32).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn directory_of_wavs_replays_in_name_order_with_labels() {
    let dir = tempfile::tempdir().unwrap();
    let s = sim();
    let strokes = [
        ("b_press7.wav", s.stroke(1)),
        (
            "die_wear_000002.wav",
            s.stroke_as(2, StrokeLabel::Fault(FaultKind::DieWear)),
        ),
        ("a_press7.wav", s.stroke(0)),
    ];
    for (name, stroke) in &strokes {
        write_wav_f32(&dir.path().join(name), &stroke.samples, 10_000).unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not a recording").unwrap();
    let got: Vec<Stroke> = drain(&mut replay(vec![dir.path().to_path_buf()]))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let names: Vec<&str> = got
        .iter()
        .map(|s| s.source.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names,
        ["a_press7.wav", "b_press7.wav", "die_wear_000002.wav"]
    );
    assert_eq!(got.iter().map(|s| s.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(got[0].samples, strokes[2].1.samples);
    assert_eq!(got[2].samples, strokes[1].1.samples);
    assert_eq!(got[0].label, None);
    assert_eq!(got[2].label, Some(StrokeLabel::Fault(FaultKind::DieWear)));
    assert_eq!(got[1].sample_rate_hz, 10_000.0);
}

#[test]
fn csv_round_trips_in_every_layout() {
    let dir = tempfile::tempdir().unwrap();
    let samples = sim().stroke(4).samples;
    let mut plain = String::new();
    let mut with_header = String::from("acceleration_g\n");
    let mut timed = String::from("# press 7\ntime_s,value_g\n");
    for (i, v) in samples.iter().enumerate() {
        writeln!(plain, "{v}").unwrap();
        writeln!(with_header, "{v}").unwrap();
        writeln!(timed, "{:.6}, {v}", i as f64 / 10_000.0).unwrap();
    }
    for (name, text) in [
        ("plain.csv", plain),
        ("header.CSV", with_header),
        ("timed.csv", timed),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let stroke = replay(vec![path]).next_stroke().unwrap().unwrap();
        assert_eq!(stroke.samples, samples, "{name}");
    }
}

#[test]
fn each_replay_error_names_the_file_and_the_next_file_still_plays() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("01_garbage.wav"), b"RIFF....not a wav at all").unwrap();
    write_int_wav(&p("02_rate.wav"), 1, 8_000, 16, 2_000);
    write_int_wav(&p("03_stereo.wav"), 2, 10_000, 16, 2_000);
    write_wav_f32(&p("04_short.wav"), &[0.0; 1_500], 10_000).unwrap();
    std::fs::write(p("05_bad.csv"), "value\n0.5\n0.25\nabc\n").unwrap();
    std::fs::write(p("06_rate.csv"), "time,value\n0.0,1\n0.001,2\n").unwrap();
    write_int_wav(&p("07_24bit.wav"), 1, 10_000, 24, 2_000);
    std::fs::write(p("08_columns.csv"), "1,2,3\n").unwrap();
    write_wav_f32(&p("09_good.wav"), &sim().stroke(0).samples, 10_000).unwrap();
    let mut paths = vec![p("00_missing.wav")];
    paths.push(dir.path().to_path_buf());
    let items = drain(&mut replay(paths));
    assert_eq!(items.len(), 10);
    let expectations = [
        ("00_missing.wav", "cannot read"),
        ("01_garbage.wav", "malformed WAV"),
        ("02_rate.wav", "found 8000 Hz, expected 10000 Hz"),
        ("03_stereo.wav", "2 channels, expected mono"),
        ("04_short.wav", "found 1500 samples, expected 2000"),
        ("05_bad.csv:4", "`abc` is not a number"),
        ("06_rate.csv", "found 1000 Hz, expected 10000 Hz"),
        ("07_24bit.wav", "int 24-bit"),
        ("08_columns.csv:1", "3 columns"),
    ];
    for (item, (file, problem)) in items.iter().zip(expectations) {
        let err = item
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("{file} should fail"));
        let text = err.to_string();
        assert!(
            text.contains(file) && text.contains(problem),
            "expected `{file}` and `{problem}` in: {text}"
        );
        assert!(
            err.file()
                .unwrap()
                .to_string_lossy()
                .contains(&file[..file.find(['.']).unwrap()])
        );
    }
    let good = items[9].as_ref().unwrap();
    assert_eq!(good.seq, 0, "errors do not consume stroke numbers");
    assert!(good.source.ends_with("09_good.wav"));
}

#[test]
fn int16_recordings_are_scaled_to_g() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 10_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..2_000 {
        w.write_sample(if i == 0 { 3_277_i16 } else { 0 }).unwrap();
    }
    w.finalize().unwrap();
    let config = ReplayConfig {
        paths: vec![path],
        int16_full_scale_g: 10.0,
        ..ReplayConfig::default()
    };
    let stroke = ReplaySource::new(config)
        .unwrap()
        .next_stroke()
        .unwrap()
        .unwrap();
    assert!(
        (stroke.samples[0] - 1.0).abs() < 1e-3,
        "{}",
        stroke.samples[0]
    );
}

/// A continuous recording: quiet gaps of varied length between simulated strokes.
fn continuous(gaps: &[usize]) -> (Vec<f32>, Vec<usize>) {
    let s = sim();
    let mut recording = Vec::new();
    let mut starts = Vec::new();
    for (k, &gap) in gaps.iter().enumerate() {
        recording.extend((0..gap).map(|i| 0.02 * ((i as f32) * 0.7).sin()));
        starts.push(recording.len());
        recording.extend(s.stroke(k as u64).samples);
    }
    recording.extend((0..300).map(|i| 0.02 * ((i as f32) * 0.7).sin()));
    (recording, starts)
}

fn triggered(paths: Vec<PathBuf>) -> ReplaySource {
    ReplaySource::new(ReplayConfig {
        paths,
        segmentation: Segmentation::Trigger,
        ..ReplayConfig::default()
    })
    .unwrap()
}

#[test]
fn trigger_finds_every_stroke_of_a_continuous_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("line7.wav");
    let gaps = [3_000, 500, 7_000, 0, 1_200];
    let (recording, starts) = continuous(&gaps);
    write_wav_f32(&path, &recording, 10_000).unwrap();
    let strokes: Vec<Stroke> = drain(&mut triggered(vec![path]))
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(strokes.len(), gaps.len());
    for (k, (stroke, &start)) in strokes.iter().zip(&starts).enumerate() {
        let found: usize = stroke.source.rsplit('@').next().unwrap().parse().unwrap();
        // The simulator's impact is at 18-22 ms and the pre-trigger is 20 ms: the cut lines up
        // with the original stroke to within a few ms.
        assert!(
            found.abs_diff(start) < 40,
            "stroke {k}: cut at {found}, recorded at {start}"
        );
        assert_eq!(stroke.samples, recording[found..found + 2_000]);
        assert_eq!(stroke.seq, k as u64);
    }
}

#[test]
fn a_recording_cut_mid_stroke_reports_the_truncated_stroke_and_a_quiet_one_reports_no_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let (mut recording, _) = continuous(&[1_000, 1_000]);
    recording.truncate(recording.len() - 1_300);
    let cut = dir.path().join("cut.csv");
    std::fs::write(
        &cut,
        recording
            .iter()
            .map(|v| format!("{v}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let quiet = dir.path().join("quiet.wav");
    write_wav_f32(&quiet, &[0.01; 5_000], 10_000).unwrap();
    let items = drain(&mut triggered(vec![cut, quiet]));
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok());
    let truncated = items[1].as_ref().unwrap_err().to_string();
    assert!(
        truncated.contains("cut.csv")
            && truncated.contains("cut short")
            && truncated.contains("expected 2000"),
        "{truncated}"
    );
    let none = items[2].as_ref().unwrap_err().to_string();
    assert!(
        none.contains("quiet.wav") && none.contains("no stroke found"),
        "{none}"
    );
}

#[test]
fn loop_restarts_and_keeps_counting_but_stops_when_nothing_plays() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("normal_1.wav");
    let b = dir.path().join("normal_2.wav");
    write_wav_f32(&a, &sim().stroke(1).samples, 10_000).unwrap();
    write_wav_f32(&b, &sim().stroke(2).samples, 10_000).unwrap();
    let config = ReplayConfig {
        paths: vec![a.clone(), b],
        looping: true,
        ..ReplayConfig::default()
    };
    let mut source = ReplaySource::new(config).unwrap();
    let strokes: Vec<Stroke> = (0..5)
        .map(|_| source.next_stroke().unwrap().unwrap())
        .collect();
    assert_eq!(
        strokes.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(strokes[4].samples, strokes[0].samples);
    assert!(
        source.describe().contains("pass 2"),
        "{}",
        source.describe()
    );

    let broken = ReplayConfig {
        paths: vec![dir.path().join("missing.wav")],
        looping: true,
        ..ReplayConfig::default()
    };
    let items = drain(&mut ReplaySource::new(broken).unwrap());
    assert_eq!(items.len(), 1, "a pass without a stroke ends the loop");
}

#[test]
fn validation_reports_every_problem_and_yaml_uses_the_documented_keys() {
    let config = ReplayConfig {
        sample_rate_hz: 0.0,
        int16_full_scale_g: f32::NAN,
        trigger_level_g: -1.0,
        pre_trigger_samples: 2_000,
        hold_off_samples: 0,
        ..ReplayConfig::default()
    };
    let err = ReplaySource::new(config).unwrap_err();
    assert_eq!(err.problems.len(), 6, "{err}");
    for field in [
        "paths",
        "sample_rate_hz",
        "int16_full_scale_g",
        "trigger_level_g",
        "pre_trigger_samples",
        "hold_off_samples",
    ] {
        assert!(err.to_string().contains(field), "{field} missing in {err}");
    }
    let yaml = "paths: [a.wav, rec/]\nsegmentation: trigger\ntrigger_level_g: 2\npre_trigger_samples: 100\nhold_off_samples: 1500\nloop: true\n";
    let config: ReplayConfig = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(config.segmentation, Segmentation::Trigger);
    assert_eq!(
        (
            config.trigger_level_g,
            config.pre_trigger_samples,
            config.hold_off_samples
        ),
        (2.0, 100, 1_500)
    );
    assert!(config.looping);
    assert_eq!(config.sample_rate_hz, 10_000.0);
    assert!(serde_yaml::from_str::<ReplayConfig>("paths: [a]\ntrigger_level: 2").is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_finite_csv_round_trips(values in prop::collection::vec(any::<f32>().prop_filter("finite", |v| v.is_finite()), 1..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.csv");
        std::fs::write(&path, values.iter().map(|v| format!("{v}\n")).collect::<String>()).unwrap();
        prop_assert_eq!(read_csv(&path, 10_000.0).unwrap(), values);
    }

    #[test]
    fn csv_parser_never_panics(text in "[0-9a-z,.\\-#\n ]{0,200}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.csv");
        std::fs::write(&path, &text).unwrap();
        if let Err(e) = read_csv(&path, 10_000.0) {
            prop_assert!(e.to_string().contains("x.csv"));
        }
    }
}
