//! Compiles dsm's catalog of known plugins (`taps/catalog/<type>/<name>--<variant>.json`, each in
//! the shape of a Meltano lock file) into the binary, so shadowing a known plugin needs no network.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("taps/catalog");
    println!("cargo:rerun-if-changed=taps/catalog");
    let mut entries = Vec::new();
    if let Ok(types) = std::fs::read_dir(dir) {
        for ty in types.flatten() {
            println!("cargo:rerun-if-changed={}", ty.path().display());
            let Ok(files) = std::fs::read_dir(ty.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_some_and(|e| e == "json") {
                    entries.push(p);
                }
            }
        }
    }
    entries.sort();
    let mut code = String::from(
        "/// (plugin type, file stem, JSON text) of every catalog entry.\npub static ENTRIES: &[(&str, &str, &str)] = &[\n",
    );
    for p in entries {
        let ty = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        // Named from the crate's folder as the compiler sees it, not as an absolute path
        // written here: two checkouts sharing one target folder then never read each other's.
        let file = p.file_name().and_then(|s| s.to_str()).unwrap_or_default();
        writeln!(
            code,
            "    ({ty:?}, {stem:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?}))),",
            format!("/taps/catalog/{ty}/{file}")
        )
        .expect("writing to a String cannot fail");
    }
    code.push_str("];\n");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("catalog.rs"), code).expect("OUT_DIR is writable");
}
