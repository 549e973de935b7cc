//! Fault-injection plugin for the test suite (being written).

fn main() {}
