//! Errors of the drift operator.

/// A drift reference (the `drift:` section of `model.yml`) that cannot be used, or a config
/// that does not fit it. Every problem found is listed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("drift reference/config: {}", problems.join("; "))]
pub struct DriftError {
    /// One line per problem: the field path, the value found and what is expected.
    pub problems: Vec<String>,
}

impl DriftError {
    /// One problem.
    #[must_use]
    pub fn one(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

/// A feature vector that does not fit the reference (a different feature set).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "stroke {seq}: feature vector has {found} values, the drift reference has {expected} features (feature set differs from the model's?)"
)]
pub struct ShapeMismatch {
    /// Stroke number.
    pub seq: u64,
    /// Values in the vector.
    pub found: usize,
    /// Features in the reference.
    pub expected: usize,
}
