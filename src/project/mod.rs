//! `meltano.yml`: the model, environments, inheritance, includes, validation.
