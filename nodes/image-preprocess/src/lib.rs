//! image-preprocess node: frames to model input tensors (being built).
