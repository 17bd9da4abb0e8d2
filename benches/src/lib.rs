//! Shared seeded inputs for the benchmarks (being built).
