//! Spawning taps, targets and mappers: environment, private config files, stderr capture,
//! shutdown.
