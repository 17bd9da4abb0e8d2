//! drift node: per-feature drift scores and drift alerts (being built).
