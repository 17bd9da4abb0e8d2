//! camera-acquisition node: simulated or replayed camera frames (being built).
