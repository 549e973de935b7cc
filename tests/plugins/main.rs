//! Integration tests of dsm's built-in Singer plugins, run as real processes over real files,
//! OS pipes and SQLite databases.

// Test support code panics on setup failures by design.
#![allow(clippy::unwrap_used)]

mod catalog;
mod files;
mod install;
mod meltano;
mod project_cmds;
mod python_example;
mod rest;
mod sdk_streams;
mod support;
mod taps;
mod target_sqlite;
mod webhook;
