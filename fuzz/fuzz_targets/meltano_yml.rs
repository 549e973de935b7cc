//! `meltano.yml` loading: any text is a project or an error naming the file, never a panic,
//! a hang or memory blown up by aliases.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let dir = tempfile::tempdir().unwrap();
    if let Err(e) = dsm::project::Project::load_with_main(dir.path(), text) {
        let _ = e.to_string();
    }
});
