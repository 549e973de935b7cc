//! The Singer protocol: message types, the envelope scanner, the line codec, the JSON Schema
//! checker for records.
//!
//! This module knows nothing else in the crate. The pipeline's hot path uses [`envelope::scan`],
//! which reads only a line's `type` and `stream` (validating the rest of the line without
//! building it), so records pass through untouched. Stages that need the content parse the
//! full [`message::Message`].

pub mod batch;
pub mod codec;
pub mod envelope;
pub mod message;
pub mod plugin_kit;
pub mod raw;
pub mod schema;

pub use envelope::{Envelope, MessageKind, ScanError, scan};
pub use message::{Message, MessageError};
