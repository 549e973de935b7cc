//! Native transforms against the shared conformance fixtures (`tests/fixtures/conformance/`).
#![expect(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

mod field_mask;
mod stream_maps;
mod validate;
