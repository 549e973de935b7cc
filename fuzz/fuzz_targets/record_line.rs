//! The raw record path of stream maps (a record mapped from its line, only the named
//! properties parsed) against the parsed path: for any line both accept, the output bytes are
//! the same.
#![no_main]

use dsm::singer::{Message, MessageKind, scan};
use dsm::transform::{StreamMaps, Transform};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fn maps() -> StreamMaps {
    let mut m = StreamMaps::from_config(&json!({"stream_maps": {"users": {
        "__filter__": "status != 'gone'",
        "contact": "email",
        "email": null,
        "email_hash": "md5(email or '')",
        "n": "len(name or '')"}}}))
    .unwrap();
    let schema = br#"{"type":"SCHEMA","stream":"users","key_properties":["id"],"schema":{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":["string","null"]},"name":{"type":["string","null"]},"status":{"type":["string","null"]}}}}"#;
    let mut out = Vec::new();
    m.apply(Message::parse(schema).unwrap(), &mut out).unwrap();
    m
}

fuzz_target!(|line: &[u8]| {
    let Ok(env) = scan(line) else { return };
    if env.kind != MessageKind::Record
        || env.stream.as_deref() != Some("users")
        || env.needs_sanitizing()
    {
        return;
    }
    let mut fast = maps();
    let mut raw = Vec::new();
    let Ok(true) = fast.apply_record_line("users", line, &mut raw) else {
        return;
    };
    let mut slow = maps();
    let mut produced = Vec::new();
    let message =
        Message::parse_scanned(line, MessageKind::Record).expect("the line path mapped it");
    slow.apply(message, &mut produced)
        .expect("the line path mapped it");
    let mut parsed = Vec::new();
    for m in produced {
        m.write_line(&mut parsed);
        parsed.push(b'\n');
    }
    assert_eq!(
        String::from_utf8_lossy(&raw),
        String::from_utf8_lossy(&parsed),
        "the two paths differ"
    );
});
