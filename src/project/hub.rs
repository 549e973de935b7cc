//! The catalog of known plugins (definitions shipped as data in `taps/catalog/`), looked up by name
//! and variant when a project shadows a known plugin, listed and searched by
//! `dsm plugins list --available`.
//!
//! Each entry is `taps/catalog/<type>/<name>--<variant>.json` in the shape of a Meltano lock file;
//! `build.rs` compiles them in. `taps/catalog/index.json` says which variant of a name is the
//! default one in Meltano's plugin index and how much each is used there.
//! `scripts/refresh-catalog.py` fills the catalog; this module only reads it.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::{PluginDef, PluginType};
use serde::Deserialize;

mod compiled {
    include!(concat!(env!("OUT_DIR"), "/catalog.rs"));
}

/// The variant name of dsm's built-in plugins.
pub const BUILTIN_VARIANT: &str = "dsm";

static INDEX_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/taps/catalog/index.json"
));

/// One variant's line in `taps/catalog/index.json`.
#[derive(Debug, Clone, Deserialize)]
struct IndexRow {
    plugin_type: String,
    name: String,
    variant: String,
    default: bool,
    /// The name's place among its type in the index, most used first.
    rank: u32,
    /// Projects that used this variant over the index's last three months.
    projects: u64,
}

#[derive(Debug, Deserialize)]
struct IndexFile {
    plugins: Vec<IndexRow>,
}

/// (type key, name, variant) → its index row.
type Index = HashMap<(String, String, String), IndexRow>;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| match serde_json::from_str::<IndexFile>(INDEX_TEXT) {
        Ok(file) => file
            .plugins
            .into_iter()
            .map(|r| {
                (
                    (r.plugin_type.clone(), r.name.clone(), r.variant.clone()),
                    r,
                )
            })
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "taps/catalog/index.json is unreadable; no defaults or ranks");
            Index::new()
        }
    })
}

/// One catalog entry as shipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    /// Its plugin type.
    pub plugin_type: PluginType,
    /// The plugin's name.
    pub name: &'static str,
    /// The variant.
    pub variant: &'static str,
    /// The JSON text (the content of the lock file `dsm add` writes).
    pub text: &'static str,
    /// The fields lists and look-ups need, read once.
    pub summary: Summary,
}

/// The few fields of an entry that listing, searching and identifying plugins read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// Its label (`GitHub`).
    pub label: Option<String>,
    /// What it is.
    pub description: Option<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its executable.
    pub executable: Option<String>,
    /// What pip installs (none for the built-ins).
    pub pip_url: Option<String>,
    /// Keywords from Meltano's index (`api`, `database`, `file`, `meltano_sdk`).
    pub keywords: Vec<String>,
}

impl Known {
    fn row(&self) -> Option<&'static IndexRow> {
        index().get(&(
            self.plugin_type.key().to_string(),
            self.name.to_string(),
            self.variant.to_string(),
        ))
    }

    /// Whether this is dsm's built-in variant.
    pub fn is_builtin(&self) -> bool {
        self.variant == BUILTIN_VARIANT
    }

    /// Whether Meltano's plugin index names this variant the default one of its name.
    pub fn is_index_default(&self) -> bool {
        self.row().is_some_and(|r| r.default)
    }

    /// Projects that used this variant (index figures; 0 for the built-ins).
    pub fn projects(&self) -> u64 {
        self.row().map_or(0, |r| r.projects)
    }

    /// The definition, parsed.
    pub fn definition(&self) -> Option<PluginDef> {
        match serde_json::from_str::<PluginDef>(self.text) {
            Ok(def) => Some(def),
            Err(error) => {
                tracing::warn!(entry = %format!("{}--{}", self.name, self.variant), %error, "skipping unreadable catalog entry");
                None
            }
        }
    }

    /// The order the catalog lists entries in: by type as Meltano lists them, then most used name
    /// first (the built-ins, which the index does not rank, before all), then dsm's variant, the
    /// index's default, the others by name.
    fn sort_key(&self) -> (usize, u32, &'static str, u8, &'static str) {
        // (Built-ins the index does not know get rank 0: first.)
        let type_pos = PluginType::ALL
            .iter()
            .position(|t| *t == self.plugin_type)
            .unwrap_or(usize::MAX);
        let rank = index()
            .values()
            .filter(|r| r.plugin_type == self.plugin_type.key() && r.name == self.name)
            .map(|r| r.rank)
            .min()
            .unwrap_or(0);
        let variant_pos = if self.is_builtin() {
            0
        } else if self.is_index_default() {
            1
        } else {
            2
        };
        (type_pos, rank, self.name, variant_pos, self.variant)
    }
}

/// Every catalog entry, in catalog order (see [`Known`]).
pub fn all() -> &'static [Known] {
    static ALL: OnceLock<Vec<Known>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut out: Vec<Known> = compiled::ENTRIES
            .iter()
            .filter_map(|(t, stem, text)| {
                let plugin_type = PluginType::parse(t)?;
                let (name, variant) = stem.split_once("--")?;
                let summary = serde_json::from_str(text).unwrap_or_default();
                Some(Known {
                    plugin_type,
                    name,
                    variant,
                    text,
                    summary,
                })
            })
            .collect();
        out.sort_by_cached_key(Known::sort_key);
        out
    })
}

fn of_type(ty: PluginType) -> impl Iterator<Item = &'static Known> {
    all().iter().filter(move |k| k.plugin_type == ty)
}

/// The entry for a name and variant; without a variant, dsm's built-in one (so a plugin added by
/// name runs offline), else the default variant of Meltano's index, else the first listed.
pub fn lookup(ty: PluginType, name: &str, variant: Option<&str>) -> Option<&'static Known> {
    let mut matching = of_type(ty).filter(|k| k.name == name);
    match variant {
        Some(want) => matching.find(|k| k.variant == want),
        // Catalog order puts the built-in first, then the index's default.
        None => matching.next(),
    }
}

/// The definition of a known plugin (the variant chosen as [`lookup`] does).
pub fn find(ty: PluginType, name: &str, variant: Option<&str>) -> Option<PluginDef> {
    lookup(ty, name, variant)?.definition()
}

/// A catalog entry's JSON text as shipped (the content of the lock file `dsm add` writes), with
/// the variant it is for (chosen as [`lookup`] does).
pub fn entry_text(
    ty: PluginType,
    name: &str,
    variant: Option<&str>,
) -> Option<(String, &'static str)> {
    lookup(ty, name, variant).map(|k| (k.variant.to_string(), k.text))
}

/// The variants the catalog knows for a plugin name, in the order [`lookup`] prefers them.
pub fn variants(ty: PluginType, name: &str) -> Vec<String> {
    of_type(ty)
        .filter(|k| k.name == name)
        .map(|k| k.variant.to_string())
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
    let mut out: Vec<&'static str> = of_type(ty).map(|k| k.name).collect();
    out.dedup();
    out
}

/// Whether an entry matches every word of a search: each word, ignoring case, is found in its
/// name, variant, label, description or keywords.
pub fn matches(known: &Known, search: &str) -> bool {
    let s = &known.summary;
    let mut haystack = format!("{} {}", known.name, known.variant);
    for text in [&s.label, &s.description].into_iter().flatten() {
        haystack.push(' ');
        haystack.push_str(text);
    }
    for word in &s.keywords {
        haystack.push(' ');
        haystack.push_str(word);
    }
    let haystack = haystack.to_lowercase();
    search
        .split_whitespace()
        .all(|w| haystack.contains(&w.to_lowercase()))
}

/// A `pip_url` word reduced to what names the package: the distribution name without version,
/// extras or markers (lower case, `_` as `-`), or a URL without `git+`, `.git`, `@ref` and
/// `#fragment`.
fn package_key(word: &str) -> Option<String> {
    let w = word.trim().trim_start_matches("git+").to_lowercase();
    if w.is_empty() || w.starts_with('-') {
        return None;
    }
    if let Some((scheme, rest)) = w.split_once("://") {
        // A `#subdirectory=` names one package of a repository that holds several.
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let subdirectory = fragment
            .split('&')
            .find(|f| f.starts_with("subdirectory="))
            .map(|f| format!("#{f}"))
            .unwrap_or_default();
        // `@ref` after the last path segment (not a `user@host`).
        let rest = match rest.rsplit_once('@') {
            Some((path, reference)) if !reference.contains('/') => path,
            _ => rest,
        };
        let rest = rest.trim_end_matches('/').trim_end_matches(".git");
        return Some(format!("{scheme}://{rest}{subdirectory}"));
    }
    let end = w.find(|c: char| "[=<>!~;@ ".contains(c)).unwrap_or(w.len());
    let name = w[..end].replace('_', "-");
    (!name.is_empty()).then_some(name)
}

/// The catalog plugin a project plugin is, judged by what it runs rather than its name: its
/// `pip_url` installs a package of a catalog entry, or else its `namespace` or `executable` is
/// one of a catalog entry's. A package, namespace or executable that entries of several names
/// share (a wrapper that runs many connectors, a monorepo) says nothing, and is passed over.
pub fn identify(
    ty: PluginType,
    pip_url: Option<&str>,
    namespace: &str,
    executable: &str,
) -> Option<&'static Known> {
    let wanted: Vec<String> = pip_url
        .into_iter()
        .flat_map(str::split_whitespace)
        .filter_map(package_key)
        .collect();
    let by_package = |k: &Known| {
        k.summary.pip_url.as_deref().is_some_and(|p| {
            p.split_whitespace()
                .filter_map(package_key)
                .any(|key| wanted.contains(&key))
        })
    };
    if !wanted.is_empty()
        && let Some(k) = only_name(ty, by_package)
    {
        return Some(k);
    }
    if !namespace.is_empty()
        && let Some(k) = only_name(ty, |k| k.summary.namespace.as_deref() == Some(namespace))
    {
        return Some(k);
    }
    if executable.is_empty() {
        return None;
    }
    only_name(ty, |k| k.summary.executable.as_deref() == Some(executable))
}

/// The first entry of a type that matches, when every matching entry has the same name.
fn only_name(ty: PluginType, test: impl Fn(&Known) -> bool) -> Option<&'static Known> {
    let mut matching = of_type(ty).filter(|k| test(k));
    let first = matching.next()?;
    matching.all(|k| k.name == first.name).then_some(first)
}

/// A known plugin as `dsm plugins list --available --format json` and `GET /api/plugins` show
/// it: what it is, whether `dsm add NAME` picks it, and its declared settings (a sensitive
/// setting's default is never shown; `required` when the plugin's first settings group names
/// it).
pub fn document(known: &Known) -> serde_json::Value {
    let picked =
        lookup(known.plugin_type, known.name, None).is_some_and(|d| d.variant == known.variant);
    let definition = known.definition();
    let required: Vec<String> = definition
        .as_ref()
        .and_then(|d| d.settings_group_validation.as_ref())
        .and_then(|groups| groups.first().cloned())
        .unwrap_or_default();
    let settings: Vec<serde_json::Value> = definition
        .and_then(|d| d.settings)
        .unwrap_or_default()
        .into_iter()
        .map(|s| {
            let sensitive = crate::settings::is_sensitive(&s);
            serde_json::json!({
                "name": s.name,
                "kind": s.kind.as_deref().unwrap_or("string"),
                "label": s.label,
                "description": s.description,
                "sensitive": sensitive,
                "value": if sensitive { None } else { s.value },
                "options": s.options,
                "required": required.contains(&s.name),
            })
        })
        .collect();
    serde_json::json!({
        "name": known.name,
        "type": known.plugin_type.singular(),
        "variant": known.variant,
        "default": picked,
        "index_default": known.is_index_default(),
        "builtin": known.is_builtin(),
        "label": known.summary.label,
        "description": known.summary.description,
        "pip_url": known.summary.pip_url,
        "keywords": known.summary.keywords,
        "projects": known.projects(),
        "settings": settings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_every_entry_parses_as_a_plugin_definition() {
        assert!(all().len() > 200, "{} entries", all().len());
        for k in all() {
            let def = k
                .definition()
                .unwrap_or_else(|| panic!("{}--{} does not parse", k.name, k.variant));
            assert_eq!(def.name, k.name);
            assert_eq!(def.variant.as_deref(), Some(k.variant));
        }
    }

    #[test]
    fn hub_prefers_the_builtin_then_the_index_default() {
        // tap-csv has dsm's variant and the index's default (meltanolabs) among others.
        let v = variants(PluginType::Extractors, "tap-csv");
        assert_eq!(&v[..2], ["dsm", "meltanolabs"], "{v:?}");
        assert_eq!(
            lookup(PluginType::Extractors, "tap-csv", None)
                .unwrap()
                .variant,
            "dsm"
        );
        // No built-in: the index's default, not the first by name (`potloc` < `singer-io`).
        let ex = PluginType::Extractors;
        assert_eq!(variants(ex, "tap-hubspot")[0], "singer-io");
        assert!(variants(ex, "tap-hubspot").contains(&"potloc".into()));
        assert_eq!(
            lookup(ex, "tap-hubspot", None).unwrap().variant,
            "singer-io"
        );
        assert!(lookup(ex, "tap-hubspot", Some("nope")).is_none());
    }

    #[test]
    fn hub_lists_the_most_used_names_first() {
        let names = names(PluginType::Extractors);
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        // Built-ins the index does not know come first; then by the index's usage.
        assert!(pos("tap-jsonl") < pos("tap-github"));
        assert!(pos("tap-github") < pos("tap-postgres"));
        assert!(pos("tap-postgres") < pos("tap-stripe"));
    }

    #[test]
    fn hub_search_matches_every_word_in_name_label_description_or_keywords() {
        let github = lookup(PluginType::Extractors, "tap-github", None).unwrap();
        assert!(matches(github, "GITHUB"));
        assert!(matches(github, "code hosting"));
        assert!(matches(github, "meltano_sdk"));
        assert!(!matches(github, "github postgres"));
    }

    #[test]
    fn hub_package_keys_ignore_versions_extras_and_git_decorations() {
        assert_eq!(
            package_key("MeltanoLabs_Tap_Postgres[ssh]==0.1.0").as_deref(),
            Some("meltanolabs-tap-postgres")
        );
        assert_eq!(
            package_key("git+https://github.com/MeltanoLabs/tap-csv.git@v1.2#egg=tap-csv")
                .as_deref(),
            Some("https://github.com/meltanolabs/tap-csv")
        );
        assert_eq!(
            package_key("git+https://github.com/org/mono.git#subdirectory=taps/a&egg=a").as_deref(),
            Some("https://github.com/org/mono#subdirectory=taps/a")
        );
        assert_eq!(package_key("-e"), None);
    }

    #[test]
    fn hub_identifies_a_plugin_by_package_namespace_or_executable() {
        let ex = PluginType::Extractors;
        let by_pip = identify(ex, Some("meltanolabs-tap-postgres==0.2.0"), "x", "y").unwrap();
        assert_eq!(by_pip.name, "tap-postgres");
        assert_eq!(
            identify(ex, None, "tap_mysql", "mine").unwrap().name,
            "tap-mysql"
        );
        assert_eq!(
            identify(ex, None, "mine", "tap-csv").unwrap().name,
            "tap-csv"
        );
        assert!(identify(ex, Some("my-own-tap"), "my_own", "my-own").is_none());
        // The wrapper that runs many Airbyte connectors names none of them.
        let wrapper = "git+https://github.com/MeltanoLabs/tap-airbyte-wrapper.git";
        let shared = of_type(ex)
            .filter(|k| k.summary.pip_url.as_deref() == Some(wrapper))
            .count();
        assert!(shared > 1, "{shared}");
        assert!(identify(ex, Some(wrapper), "", "").is_none());
    }
}
