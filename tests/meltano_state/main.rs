//! Issue #22 against real Meltano (the venv named by `DSM_TEST_VENV`, with the `s3` extra):
//! Meltano's `file://` and `s3://` state backends shared with dsm, their locks, and Singer
//! BATCH messages under `meltano run` and `dsm run`. The S3 tests start moto's server
//! (`target/moto`, installed by `scripts/setup-test-env.sh`) on a free loopback port.
//! Missing prerequisites fail loudly with the setup command.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod backends;
mod batch;
mod support;
