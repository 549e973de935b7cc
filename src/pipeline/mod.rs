//! The pipeline: stages joined by bounded channels, state tracking, run history updates.
