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

/// A catalog entry's JSON text as shipped (the content of the lock file `dsm add` writes), with
/// the variant it is for. Without a variant, dsm's built-in one (`dsm`) is preferred, so a
/// plugin added by name runs offline; otherwise the first variant listed.
pub fn entry_text(
    ty: PluginType,
    name: &str,
    variant: Option<&str>,
) -> Option<(String, &'static str)> {
    let matching: Vec<(&str, &'static str)> = compiled::ENTRIES
        .iter()
        .filter(|(t, _, _)| *t == ty.key())
        .filter_map(|(_, stem, text)| {
            let (n, v) = stem.split_once("--")?;
            (n == name).then_some((v, *text))
        })
        .collect();
    let pick = match variant {
        Some(want) => matching.iter().find(|(v, _)| *v == want),
        None => matching
            .iter()
            .find(|(v, _)| *v == "dsm")
            .or_else(|| matching.first()),
    };
    pick.map(|(v, text)| ((*v).to_string(), *text))
}

/// The variants the catalog knows for a plugin name, default first.
pub fn variants(ty: PluginType, name: &str) -> Vec<String> {
    compiled::ENTRIES
        .iter()
        .filter(|(t, _, _)| *t == ty.key())
        .filter_map(|(_, stem, _)| stem.split_once("--"))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .collect()
}

/// The plugin types the catalog knows `name` under.
pub fn types_of(name: &str) -> Vec<PluginType> {
    PluginType::ALL
        .into_iter()
        .filter(|ty| !variants(*ty, name).is_empty())
        .collect()
}

/// Every distinct plugin name of a type in the catalog.
pub fn names(ty: PluginType) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = compiled::ENTRIES
        .iter()
        .filter(|(t, _, _)| *t == ty.key())
        .filter_map(|(_, stem, _)| stem.split_once("--").map(|(n, _)| n))
        .collect();
    out.dedup();
    out
}
