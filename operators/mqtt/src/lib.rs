//! forgeline-mqtt (in progress)
