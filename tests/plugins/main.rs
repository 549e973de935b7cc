//! Integration tests of dsm's built-in Singer plugins, run as real processes over real files,
//! OS pipes and SQLite databases.

mod files;
mod meltano;
mod sdk_streams;
mod support;
mod taps;
mod target_sqlite;
