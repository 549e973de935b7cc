//! Edits of `meltano.yml` (placeholder, filled below).
