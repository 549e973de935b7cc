//! Encrypted secrets, the master key, and the audit log.
