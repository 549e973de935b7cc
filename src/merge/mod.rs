//! Conflict resolution for merged streams fed by several extractors.
