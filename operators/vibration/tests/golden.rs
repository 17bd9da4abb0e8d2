//! Golden features for recorded strokes: the WAV files in `tests/data/` are fixed recordings
//! (written once from the press simulator, seed 2024: a normal stroke and a cracked-tooling
//! stroke); their features must stay what `tests/data/golden_features.json` says. Refresh only on
//! purpose, after checking why they moved: `UPDATE_GOLDEN=1 cargo test -p forgeline-vibration --test golden`.

use forgeline_acquisition::{ReplayConfig, ReplaySource, VibrationSource};
use forgeline_vibration::{FeatureConfig, FeatureExtractor};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

#[test]
fn recorded_strokes_keep_their_golden_features() {
    let wavs = ["golden_normal.wav", "golden_cracked_tooling.wav"];
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        use forgeline_acquisition::{PressSimConfig, PressSimulator, StrokeLabel};
        let sim = PressSimulator::new(PressSimConfig {
            seed: 2024,
            ..PressSimConfig::default()
        })
        .unwrap();
        for (file, label) in wavs.iter().zip(["normal", "cracked_tooling"]) {
            let label: StrokeLabel = label.parse().unwrap();
            let stroke = sim.stroke_as(7, label);
            forgeline_acquisition::write_wav_f32(&data().join(file), &stroke.samples, 10_000)
                .unwrap();
        }
    }
    let mut source = ReplaySource::new(ReplayConfig {
        paths: wavs.iter().map(|w| data().join(w)).collect(),
        ..ReplayConfig::default()
    })
    .unwrap();
    let mut fx = FeatureExtractor::new(FeatureConfig::default()).unwrap();
    let names = fx.feature_names().to_vec();
    let mut got: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut values = Vec::new();
    for wav in wavs {
        let stroke = source.next_stroke().unwrap().unwrap();
        let q = fx.extract(&stroke.samples, stroke.sample_rate_hz, &mut values);
        assert!(q.is_ok(), "{wav}: {q}");
        got.insert(
            wav.to_owned(),
            names
                .iter()
                .cloned()
                .zip(values.iter().map(|v| f64::from(*v)))
                .collect(),
        );
    }
    let golden_path = data().join("golden_features.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(
            &golden_path,
            serde_json::to_string_pretty(&got).unwrap() + "\n",
        )
        .unwrap();
    }
    let golden: BTreeMap<String, BTreeMap<String, f64>> =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
    assert_eq!(
        golden.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    let mut moved = Vec::new();
    for (wav, features) in &golden {
        assert_eq!(
            features.keys().collect::<Vec<_>>(),
            got[wav].keys().collect::<Vec<_>>(),
            "{wav}: feature names changed"
        );
        for (name, want) in features {
            let have = got[wav][name];
            if (have - want).abs() > 1e-4 * want.abs().max(1.0) {
                moved.push(format!("{wav}: {name}: golden {want}, now {have}"));
            }
        }
    }
    assert!(
        moved.is_empty(),
        "features moved (UPDATE_GOLDEN=1 to accept):\n{}",
        moved.join("\n")
    );
    // The two strokes differ where the physics says: cracked tooling adds 550-750 Hz energy.
    let band = names
        .iter()
        .find(|n| n.contains("550_750"))
        .expect("a 550-750 Hz band feature");
    assert!(
        got[wavs[1]][band] > got[wavs[0]][band] + 0.5,
        "{band}: {} vs {}",
        got[wavs[1]][band],
        got[wavs[0]][band]
    );
}
