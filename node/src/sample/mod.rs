//! Deterministic sample data for the quickstart, the tests and the benchmark.

pub mod github;
