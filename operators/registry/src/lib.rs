//! forgeline-registry (in progress)
