//! Export bundles: any bytes as a bundle file are read and checked (format, version, base64,
//! checksum) into a bundle or an error, never a panic. The MAC check needs a key and runs in
//! `dsm import`; the property tests (`tests/properties`) mutate real bundles through it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.json");
    std::fs::write(&path, bytes).unwrap();
    let _ = dsm::secrets::bundle::read(&path);
});
