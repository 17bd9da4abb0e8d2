"""forgeline_ml: training, INT8 quantization and packaging of forgeline models.

Entry points:
  python -m forgeline_ml.train_press --features <csv> --out <model dir>
  python -m forgeline_ml.synth_features --out <csv>       (synthetic normal strokes)
  python -m forgeline_ml.make_test_models <dir>           (tiny models for the Rust tests)
"""

MODEL_FORMAT = 1
