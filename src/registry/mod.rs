//! The registry of sources and destinations: status, connection tests, health.
