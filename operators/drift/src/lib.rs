//! Drift detection: sliding-window PSI/KS of run-time features against the training distributions (being built).
