//! The system store (SQLite): migrations, state, run history, locks.
