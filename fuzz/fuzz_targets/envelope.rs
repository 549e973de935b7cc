//! The Singer envelope scanner on any line, checked against a full parse: a line the scanner
//! accepts as a message is one `Message::parse_scanned` reads with the same kind (or refuses
//! with an error), and nothing panics.
#![no_main]

use dsm::singer::{Message, scan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let Ok(envelope) = scan(line) else {
        return;
    };
    let kind = envelope.kind.clone();
    let _ = envelope.needs_sanitizing();
    if let Ok(message) = Message::parse_scanned(line, kind) {
        let mut out = Vec::new();
        message.write_line(&mut out);
        // What dsm writes, it reads back.
        assert!(scan(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
    }
    let _ = Message::parse(line);
});
