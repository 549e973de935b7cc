//! Conflict resolution for merged streams: several extractors feed one logical stream and
//! declared rules decide which value survives.
//!
//! - [`declaration`]: the `annotations.dsm.merged_streams` model, parsed from JSON/YAML values;
//! - [`schema`]: checks the sources' SCHEMA messages against a declaration, builds the merged SCHEMA;
//! - [`value`]: the total order on JSON values the rules use (numbers exactly, dates as instants);
//! - [`rules`]: resolving one field from its candidates;
//! - [`resolver`]: the per-record engine, emitting only records whose resolved value changed;
//! - [`stage`]: the [`crate::transform::Transform`] the pipeline runs for one source;
//! - [`run`]: the stages of one run as one transform, with the hooks for loader-confirmed STATE
//!   and the end of the run (counts for the run history).
//!
//! The rows (current candidates and winner per key, schemas, the conflict log, the sends of each
//! run and its counts) are kept by [`crate::store::merged`].
//!
//! # Arrival
//!
//! `first` and `last` are arrival-based. A record's *arrival time* is its Singer
//! `time_extracted` (normalised to UTC), or the run's start time when the record has none. A
//! source's candidate remembers when the source first supplied the key (`first_seen`) and when
//! its current value arrived (`last_seen`; re-sending an identical record is not a new arrival).
//! `first` picks the smallest `first_seen`, `last` the largest `last_seen`; equal times go to the
//! source listed first in `priority`. With `time_extracted` on every record this makes `first`
//! and `last` independent of the order in which the sources are synced too.

pub mod declaration;
pub mod resolver;
pub mod rules;
pub mod run;
pub mod schema;
pub mod stage;
pub mod value;

pub use crate::store::merged::{
    ConflictEntry, ConflictFilter, MergeRunStats, MergedDb, ResolverStats, RunConflictCount,
};
pub use declaration::{MergedStream, NullKeyRule, Rule, Source, TieBreak, merged_streams};
pub use resolver::{Resolver, RunContext};
pub use run::MergeRun;
pub use schema::MergedSchema;
pub use stage::MergeStage;

use crate::error::{Error, ErrorKind};

/// Why a merged stream could not be declared, validated or resolved.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The declaration or the sources' schemas are wrong: nothing was moved (exit 2).
    #[error("{message}")]
    Declaration {
        /// What is wrong, naming the merged stream and the field or source.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The data broke a rule (`fail` on disagreement, a null key under `null_key: fail`): exit 1.
    #[error("{message}")]
    Data {
        /// What happened, naming the merged stream, key, field and sources.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The system store failed (its error says how).
    #[error("{0}")]
    Store(#[from] Error),
}

impl MergeError {
    pub(crate) fn declaration(message: impl Into<String>) -> Self {
        MergeError::Declaration {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn data(message: impl Into<String>) -> Self {
        MergeError::Data {
            message: message.into(),
            hint: None,
        }
    }

    /// Adds (or replaces) the hint.
    #[must_use]
    pub(crate) fn with_hint(mut self, h: impl Into<String>) -> Self {
        match &mut self {
            MergeError::Declaration { hint, .. } | MergeError::Data { hint, .. } => {
                *hint = Some(h.into())
            }
            MergeError::Store(_) => {}
        }
        self
    }

    /// The hint, when there is one.
    pub fn hint(&self) -> Option<&str> {
        match self {
            MergeError::Declaration { hint, .. } | MergeError::Data { hint, .. } => hint.as_deref(),
            MergeError::Store(e) => e.hints().first().map(String::as_str),
        }
    }
}

impl From<MergeError> for Error {
    fn from(e: MergeError) -> Self {
        let e = match e {
            MergeError::Store(e) => return e,
            other => other,
        };
        let kind = match e {
            MergeError::Declaration { .. } => ErrorKind::Config,
            _ => ErrorKind::Failed,
        };
        let mut err = Error::new(kind, e.to_string());
        if let Some(h) = e.hint() {
            err = err.hint(h);
        }
        err
    }
}

impl From<MergeError> for crate::transform::TransformError {
    fn from(e: MergeError) -> Self {
        crate::transform::TransformError {
            message: e.to_string(),
            hint: e.hint().map(str::to_owned),
        }
    }
}
