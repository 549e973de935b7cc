//! Select patterns (`stream.property`, `!`, globs, brackets): compile any list into metadata
//! rules and apply them to a catalog; matching a name against a pattern ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|input: &str| {
    let patterns: Vec<&str> = input.split('\n').take(16).collect();
    for p in &patterns {
        let _ = dsm::catalog::fnmatch("users", p);
        let _ = dsm::catalog::fnmatch("a.b[c]*?", p);
    }
    let rules = dsm::catalog::select_metadata_rules(&patterns);
    let mut catalog = json!({"streams": [{
        "tap_stream_id": "users", "stream": "users",
        "schema": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"},
            "address": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        "metadata": [{"breadcrumb": [], "metadata": {"inclusion": "available"}}]}]});
    let _ = dsm::catalog::apply_metadata_rules(&mut catalog, &rules);
    let _ = dsm::catalog::list_selection(&catalog);
});
