//! Built-in transformations: stream maps, field masking and hashing, record validation.
