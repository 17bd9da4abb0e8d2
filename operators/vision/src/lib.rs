//! forgeline-vision (in progress)
