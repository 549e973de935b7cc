//! The catalog of known plugins (definitions shipped as data in `taps/catalog/`), looked up by name
//! and variant when a project shadows a known plugin.
//!
//! Each entry is `taps/catalog/<type>/<name>--<variant>.json` in the shape of a Meltano lock file;
//! `build.rs` compiles them in. Another module fills the catalog; this one only reads it.

use crate::project::{PluginDef, PluginType};

mod compiled {
    include!(concat!(env!("OUT_DIR"), "/catalog.rs"));
}

/// Every catalog entry of a type as (name, variant, definition).
pub fn entries(ty: PluginType) -> Vec<(String, String, PluginDef)> {
    compiled::ENTRIES
        .iter()
        .filter(|(t, _, _)| *t == ty.key())
        .filter_map(|(_, stem, text)| {
            let (name, variant) = stem.split_once("--")?;
            match serde_json::from_str::<PluginDef>(text) {
                Ok(def) => Some((name.to_string(), variant.to_string(), def)),
                Err(error) => {
                    tracing::warn!(entry = stem, %error, "skipping unreadable catalog entry");
                    None
                }
            }
        })
        .collect()
}

/// The definition of a known plugin: the given variant, or the first variant listed when none is
/// given (the catalog lists the default variant first when there are several).
pub fn find(ty: PluginType, name: &str, variant: Option<&str>) -> Option<PluginDef> {
    entries(ty)
        .into_iter()
        .find(|(n, v, _)| n == name && variant.is_none_or(|want| want == v))
        .map(|(_, _, def)| def)
}
