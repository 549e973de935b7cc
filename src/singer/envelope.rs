//! Envelope-only parsing of a Singer line: the message `type` and `stream`, nothing else.
//!
//! The scanner walks the whole line once, checking that it is one well-formed JSON object, but
//! builds nothing except the two strings it is after. It accepts the `NaN`, `Infinity` and
//! `-Infinity` tokens that singer-python writes for floats and reports where they are, so the
//! caller can turn them into `null` (they are not JSON and must never be passed on).

use std::borrow::Cow;
use std::ops::Range;

use wide::u8x16;

/// Containers nested deeper than this are rejected (a guard against hostile input).
pub const MAX_DEPTH: usize = 512;

/// The Singer message types, matched case-insensitively as the SDK does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// `SCHEMA`
    Schema,
    /// `RECORD`
    Record,
    /// `STATE`
    State,
    /// `ACTIVATE_VERSION`
    ActivateVersion,
    /// `BATCH`
    Batch,
    /// Any other type: passed through with a warning.
    Unknown(String),
}

impl MessageKind {
    /// Parses a `type` value, ignoring ASCII case.
    pub fn from_type(value: &str) -> Self {
        Self::known(value.as_bytes()).unwrap_or_else(|| MessageKind::Unknown(value.to_owned()))
    }

    /// One of the five Singer types, from the bytes of a `type` value; no allocation.
    fn known(value: &[u8]) -> Option<Self> {
        // Taps write the upper-case names: compare those exactly before ignoring case.
        match value {
            b"RECORD" => return Some(MessageKind::Record),
            b"STATE" => return Some(MessageKind::State),
            b"SCHEMA" => return Some(MessageKind::Schema),
            _ => {}
        }
        let kind = match value.len() {
            6 if value.eq_ignore_ascii_case(b"RECORD") => MessageKind::Record,
            6 if value.eq_ignore_ascii_case(b"SCHEMA") => MessageKind::Schema,
            5 if value.eq_ignore_ascii_case(b"STATE") => MessageKind::State,
            5 if value.eq_ignore_ascii_case(b"BATCH") => MessageKind::Batch,
            16 if value.eq_ignore_ascii_case(b"ACTIVATE_VERSION") => MessageKind::ActivateVersion,
            _ => return None,
        };
        Some(kind)
    }

    /// The canonical (upper-case) name of the type.
    pub fn as_str(&self) -> &str {
        match self {
            MessageKind::Schema => "SCHEMA",
            MessageKind::Record => "RECORD",
            MessageKind::State => "STATE",
            MessageKind::ActivateVersion => "ACTIVATE_VERSION",
            MessageKind::Batch => "BATCH",
            MessageKind::Unknown(other) => other,
        }
    }

    /// Whether messages of this kind must name a stream.
    pub fn needs_stream(&self) -> bool {
        matches!(
            self,
            MessageKind::Schema
                | MessageKind::Record
                | MessageKind::ActivateVersion
                | MessageKind::Batch
        )
    }
}

/// What the scanner learned about a line. The stream name is borrowed from the line unless it
/// had to be unescaped: scanning a plain line allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The message type.
    pub kind: MessageKind,
    /// The `stream` value, when the line has one.
    pub stream: Option<Cow<'a, str>>,
    /// Byte ranges of `NaN` / `Infinity` / `-Infinity` tokens, to be replaced by `null`.
    pub non_finite: Vec<Range<usize>>,
}

impl Envelope<'_> {
    /// Whether the line must be rewritten before it is passed on.
    pub fn needs_sanitizing(&self) -> bool {
        !self.non_finite.is_empty()
    }
}

/// Why a line is not a Singer message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The line is not well-formed JSON.
    #[error("not valid JSON at byte {offset}: {reason}")]
    Syntax {
        /// Byte offset of the problem.
        offset: usize,
        /// What was expected.
        reason: &'static str,
    },
    /// The line is JSON but not an object.
    #[error("a Singer message must be a JSON object")]
    NotAnObject,
    /// The object has no `type` key.
    #[error("the message has no `type`")]
    MissingType,
    /// `type` is not a string.
    #[error("the message `type` is not a string")]
    TypeNotString,
    /// A SCHEMA, RECORD, ACTIVATE_VERSION or BATCH message without `stream`.
    #[error("{kind} message has no `stream`")]
    MissingStream {
        /// The type of the message.
        kind: String,
    },
    /// `stream` is not a string.
    #[error("the message `stream` is not a string")]
    StreamNotString,
    /// A RECORD without an object in `record`, or a SCHEMA without an object in `schema`.
    #[error("{kind} message: `{field}` must be an object")]
    BodyNotObject {
        /// The type of the message.
        kind: &'static str,
        /// `record` or `schema`.
        field: &'static str,
    },
}

/// Scans one line (without its newline) and returns its envelope.
pub fn scan(line: &[u8]) -> Result<Envelope<'_>, ScanError> {
    // JSON text is UTF-8 (RFC 8259): a line that is not is the producer's fault, and is named
    // here with its line number rather than left to fail in the next plugin. Plain ASCII, the
    // common case, is told apart a word at a time.
    if !line.is_ascii()
        && let Err(e) = std::str::from_utf8(line)
    {
        return Err(ScanError::Syntax {
            offset: e.valid_up_to(),
            reason: "invalid UTF-8",
        });
    }
    let mut s = Scanner {
        b: line,
        i: 0,
        non_finite: Vec::new(),
        reason: "",
    };
    s.ws();
    if s.peek() != Some(b'{') {
        // Distinguish "valid JSON but not an object" from garbage.
        if s.value(0).is_err() {
            return Err(s.syntax_error());
        }
        s.ws();
        if s.i == s.b.len() {
            return Err(ScanError::NotAnObject);
        }
        let _ = s.err("unexpected text after the value");
        return Err(s.syntax_error());
    }
    let Ok((kind, stream, bodies)) = s.message() else {
        return Err(s.syntax_error());
    };
    let kind = match kind {
        None => return Err(ScanError::MissingType),
        Some(Found::NotText) => return Err(ScanError::TypeNotString),
        Some(Found::Text(r, false)) => MessageKind::known(&line[r.clone()]).map_or_else(
            || text(line, r, false).map(|t| MessageKind::Unknown(t.into_owned())),
            Ok,
        )?,
        Some(Found::Text(r, true)) => MessageKind::from_type(&text(line, r, true)?),
    };
    let stream = match stream {
        None => None,
        Some(Found::NotText) if kind.needs_stream() => return Err(ScanError::StreamNotString),
        Some(Found::NotText) => None,
        Some(Found::Text(r, escaped)) => Some(text(line, r, escaped)?),
    };
    if stream.is_none() && kind.needs_stream() {
        return Err(ScanError::MissingStream {
            kind: kind.as_str().to_owned(),
        });
    }
    // A message that passes through untouched still carries an object where a target needs one.
    let body = match kind {
        MessageKind::Record => Some(("RECORD", "record", bodies.record)),
        MessageKind::Schema => Some(("SCHEMA", "schema", bodies.schema)),
        _ => None,
    };
    if let Some((kind, field, is_object)) = body
        && is_object != Some(true)
    {
        return Err(ScanError::BodyNotObject { kind, field });
    }
    Ok(Envelope {
        kind,
        stream,
        non_finite: s.non_finite,
    })
}

/// The text of the string whose contents are `line[r]`: borrowed unless it has escapes.
fn text(line: &[u8], r: Range<usize>, escaped: bool) -> Result<Cow<'_, str>, ScanError> {
    if escaped {
        decode_string(&line[r.start - 1..r.end + 1])
            .map(Cow::Owned)
            .ok_or(ScanError::Syntax {
                offset: r.start,
                reason: "bad string escape",
            })
    } else {
        std::str::from_utf8(&line[r.clone()])
            .map(Cow::Borrowed)
            .map_err(|_| ScanError::Syntax {
                offset: r.start,
                reason: "invalid UTF-8",
            })
    }
}

/// A `type` or `stream` value as the scanner found it.
enum Found {
    /// A string: the range of its contents, and whether it has escapes.
    Text(Range<usize>, bool),
    /// Some other JSON value.
    NotText,
}

/// Whether the `record` and `schema` values of a message are objects (`None`: absent).
#[derive(Default)]
struct Bodies {
    record: Option<bool>,
    schema: Option<bool>,
}

/// A syntax error was found; what and where is in the [`Scanner`] (a zero-sized error keeps
/// every `Result` of the scanner in a register).
struct Stop;

/// Returns the line with every non-finite token replaced by `null`.
pub fn sanitize(line: &[u8], non_finite: &[Range<usize>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut at = 0;
    for r in non_finite {
        out.extend_from_slice(&line[at..r.start]);
        out.extend_from_slice(b"null");
        at = r.end;
    }
    out.extend_from_slice(&line[at..]);
    out
}

fn decode_string(quoted: &[u8]) -> Option<String> {
    serde_json::from_slice::<String>(quoted).ok()
}

/// Flags the bytes of a 16-byte block that end or interrupt a string's plain run: `"`, `\\`
/// and control characters (below 0x20, which JSON forbids raw in a string). Bit `k` is byte `k`.
/// SSE2 on x86-64 through `wide`, plain arrays elsewhere.
#[inline(always)]
fn string_specials(block: &[u8]) -> u32 {
    let (quotes, others) = string_masks(block);
    quotes | others
}

/// The index of the first `"`, `\\` or control character in `b` at or after `from`: where a
/// string's plain run ends. Sixteen bytes at a time; near the end of the line the block is the
/// line's last sixteen bytes, with the ones before `from` masked off, and a line shorter than
/// a block is read byte by byte.
#[inline]
pub(crate) fn string_special(b: &[u8], from: usize) -> Option<usize> {
    let mut j = from;
    loop {
        let (base, hits) = if j + 16 <= b.len() {
            (j, string_specials(&b[j..j + 16]))
        } else if b.len() >= 16 && j < b.len() {
            let base = b.len() - 16;
            (base, string_specials(&b[base..]) & (u32::MAX << (j - base)))
        } else {
            return b
                .get(j..)?
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .map(|k| j + k);
        };
        if hits != 0 {
            return Some(base + hits.trailing_zeros() as usize);
        }
        j = base + 16;
        if j >= b.len() {
            return None;
        }
    }
}

/// [`string_specials`] in two masks: the quotes, and the backslashes and control characters.
#[inline(always)]
fn string_masks(block: &[u8]) -> (u32, u32) {
    let v = u8x16::from(<[u8; 16]>::try_from(block).expect("a 16-byte block"));
    let quote = v.simd_eq(u8x16::splat(b'"'));
    let backslash = v.simd_eq(u8x16::splat(b'\\'));
    let control = v.min(u8x16::splat(0x1f)).simd_eq(v);
    (quote.to_bitmask(), (backslash | control).to_bitmask())
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    non_finite: Vec<Range<usize>>,
    /// What was wrong at `i`, once a method has returned [`Stop`].
    reason: &'static str,
}

impl Scanner<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Records a syntax error at the current position.
    #[cold]
    fn err(&mut self, reason: &'static str) -> Stop {
        self.reason = reason;
        Stop
    }

    fn syntax_error(&self) -> ScanError {
        ScanError::Syntax {
            offset: self.i,
            reason: self.reason,
        }
    }

    /// The message object from its `{` on: checks all of it, and finds `type` and `stream`.
    fn message(&mut self) -> Result<(Option<Found>, Option<Found>, Bodies), Stop> {
        let mut kind = None;
        let mut stream = None;
        let mut bodies = Bodies::default();
        self.i += 1;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                let (key, key_escaped) = self.string_range()?;
                self.ws();
                self.expect(b':', "expected `:` after a key")?;
                self.ws();
                let key_bytes = &self.b[key.clone()];
                let is_object = Some(self.peek() == Some(b'{'));
                match key_bytes {
                    b"record" => bodies.record = is_object,
                    b"schema" => bodies.schema = is_object,
                    _ if key_escaped => {
                        match decode_string(&self.b[key.start - 1..key.end + 1]).as_deref() {
                            Some("record") => bodies.record = is_object,
                            Some("schema") => bodies.schema = is_object,
                            _ => {}
                        }
                    }
                    _ => {}
                }
                let wanted = match key_bytes {
                    b"type" => Some(&mut kind),
                    b"stream" => Some(&mut stream),
                    _ if key_escaped => {
                        match decode_string(&self.b[key.start - 1..key.end + 1]).as_deref() {
                            Some("type") => Some(&mut kind),
                            Some("stream") => Some(&mut stream),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                match wanted {
                    Some(slot) if self.peek() == Some(b'"') => {
                        let (r, escaped) = self.string_range()?;
                        *slot = Some(Found::Text(r, escaped));
                    }
                    Some(slot) => {
                        self.value(1)?;
                        *slot = Some(Found::NotText);
                    }
                    None => self.value(1)?,
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.err("expected `,` or `}` in an object")),
                }
            }
        }
        self.ws();
        if self.i != self.b.len() {
            return Err(self.err("unexpected text after the message"));
        }
        Ok((kind, stream, bodies))
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), Stop> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(reason))
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Stop> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.err("unknown literal"))
        }
    }

    /// Skips a string starting at `"`; returns the range of its contents (quotes excluded) and
    /// whether it has escapes. Escapes are checked (`\\u` needs four hex digits); control
    /// characters are refused.
    #[inline(always)]
    fn string_range(&mut self) -> Result<(Range<usize>, bool), Stop> {
        // Most keys and values are short: one block holds the whole string, and the check
        // stays inline in the caller. Anything else goes the long way.
        let b = self.b;
        let start = self.i + 1;
        if self.peek() == Some(b'"') && start + 16 <= b.len() {
            let (quotes, others) = string_masks(&b[start..start + 16]);
            // The closing quote is the first quote, with no backslash or control byte before it.
            let first_quote = quotes & quotes.wrapping_neg();
            if first_quote != 0 && others & (first_quote - 1) == 0 {
                let at = start + quotes.trailing_zeros() as usize;
                self.i = at + 1;
                return Ok((start..at, false));
            }
        }
        self.long_string()
    }

    /// [`Self::string_range`] for any string: long ones, escaped ones, ones near the end of the
    /// line, and errors.
    #[inline(never)]
    fn long_string(&mut self) -> Result<(Range<usize>, bool), Stop> {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string"));
        }
        let b = self.b;
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            let Some(at) = string_special(b, j) else {
                self.i = b.len();
                return Err(self.err("unterminated string"));
            };
            match b[at] {
                b'"' => {
                    self.i = at + 1;
                    return Ok((start..at, escaped));
                }
                b'\\' => {
                    escaped = true;
                    j = self.escape(at)?;
                }
                _ => {
                    self.i = at;
                    return Err(self.err("control character in a string"));
                }
            }
        }
    }

    /// Checks the escape sequence whose backslash is at `at`; returns the index after it.
    #[cold]
    fn escape(&mut self, at: usize) -> Result<usize, Stop> {
        let b = self.b;
        match b.get(at + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
            Some(b'u')
                if b.len() >= at + 6 && b[at + 2..at + 6].iter().all(u8::is_ascii_hexdigit) =>
            {
                Ok(at + 6)
            }
            None => {
                self.i = b.len();
                Err(self.err("unterminated string"))
            }
            Some(_) => {
                self.i = at;
                Err(self.err("bad string escape"))
            }
        }
    }

    fn number(&mut self) -> Result<(), Stop> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits_start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        if self.i == digits_start {
            return Err(self.err("expected a digit"));
        }
        // JSON numbers have no leading zeros (`02` is not a number, `0.2` is).
        if self.i - digits_start > 1 && self.b[digits_start] == b'0' {
            return Err(self.err("a number does not start with `0` unless it is 0"));
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let frac = self.i;
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
            if self.i == frac {
                return Err(self.err("expected a digit after `.`"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            let exp = self.i;
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
            if self.i == exp {
                return Err(self.err("expected a digit in the exponent"));
            }
        }
        debug_assert!(self.i > start);
        Ok(())
    }

    /// Skips one JSON value at `depth`, containers and all. Iterative: the containers open
    /// inside the value are a stack of bits (set: an object), so deep input costs no stack and
    /// the hot state stays in registers.
    fn value(&mut self, depth: usize) -> Result<(), Stop> {
        let mut objects = [0u64; MAX_DEPTH / 64 + 1];
        let mut level = 0usize;
        'value: loop {
            // A value starts here; the whitespace before it is skipped. Strings and numbers,
            // the common values, are told apart by plain comparisons first: a jump table over
            // the first byte mispredicts on records that mix value types.
            let first = self.peek();
            if first == Some(b'"') {
                self.string_range()?;
            } else if matches!(first, Some(b'0'..=b'9'))
                || (first == Some(b'-') && self.b.get(self.i + 1) != Some(&b'I'))
            {
                self.number()?;
            } else if let Some(open @ (b'{' | b'[')) = first {
                if depth + level >= MAX_DEPTH {
                    return Err(self.err("nested too deeply"));
                }
                self.i += 1;
                self.ws();
                let close = if open == b'{' { b'}' } else { b']' };
                if self.peek() == Some(close) {
                    self.i += 1;
                } else {
                    let bit = 1u64 << (level % 64);
                    if open == b'{' {
                        objects[level / 64] |= bit;
                        level += 1;
                        self.key()?;
                    } else {
                        objects[level / 64] &= !bit;
                        level += 1;
                    }
                    continue 'value;
                }
            } else {
                self.word(first)?;
            }
            // A value ended: go on in the container it is part of.
            loop {
                if level == 0 {
                    return Ok(());
                }
                self.ws();
                let in_object = objects[(level - 1) / 64] & (1u64 << ((level - 1) % 64)) != 0;
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.ws();
                        if in_object {
                            self.key()?;
                        }
                        continue 'value;
                    }
                    Some(b'}') if in_object => {
                        self.i += 1;
                        level -= 1;
                    }
                    Some(b']') if !in_object => {
                        self.i += 1;
                        level -= 1;
                    }
                    _ if in_object => return Err(self.err("expected `,` or `}` in an object")),
                    _ => return Err(self.err("expected `,` or `]` in an array")),
                }
            }
        }
    }

    /// A value spelled as a word: `true`, `false`, `null`, or singer-python's `NaN`,
    /// `Infinity` and `-Infinity` (recorded for sanitizing). `first` is the byte at `i`.
    fn word(&mut self, first: Option<u8>) -> Result<(), Stop> {
        let start = self.i;
        let (word, non_finite): (&[u8], bool) = match first {
            Some(b't') => (b"true", false),
            Some(b'f') => (b"false", false),
            Some(b'n') => (b"null", false),
            Some(b'N') => (b"NaN", true),
            Some(b'I') => (b"Infinity", true),
            Some(b'-') => (b"-Infinity", true),
            Some(_) => return Err(self.err("expected a JSON value")),
            None => return Err(self.err("unexpected end of line")),
        };
        self.literal(word)?;
        if non_finite {
            self.non_finite.push(start..self.i);
        }
        Ok(())
    }

    /// A member's key and its `:`, up to the value (whitespace skipped).
    #[inline(always)]
    fn key(&mut self) -> Result<(), Stop> {
        self.ws();
        self.string_range()?;
        self.ws();
        self.expect(b':', "expected `:` after a key")?;
        self.ws();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_type_and_stream_in_any_order_and_case() {
        let e = scan(br#"{"record": {"id": 1}, "stream": "users", "type": "record"}"#).unwrap();
        assert_eq!(e.kind, MessageKind::Record);
        assert_eq!(e.stream.as_deref(), Some("users"));
        let e = scan(br#"{"type":"STATE","value":{"bookmarks":{}}}"#).unwrap();
        assert_eq!(e.kind, MessageKind::State);
        assert_eq!(e.stream, None);
    }

    #[test]
    fn decodes_escaped_stream_names() {
        let e = scan(br#"{"type":"RECORD","stream":"a\"b\u00e9","record":{}}"#).unwrap();
        assert_eq!(e.stream.as_deref(), Some("a\"bé"));
    }

    #[test]
    fn string_ends_and_escapes_are_found_at_every_offset() {
        // Issue 3: strings are skipped eight bytes at a time; a quote, backslash or raw
        // newline must be seen wherever it falls in a word.
        for n in 0..48 {
            let pad = "x".repeat(n);
            let ok =
                format!(r#"{{"type":"RECORD","stream":"s{pad}\"q","record":{{"a":"{pad}\\"}}}}"#);
            let e = scan(ok.as_bytes()).unwrap();
            assert_eq!(e.stream.as_deref(), Some(format!("s{pad}\"q").as_str()));
            let raw_newline = format!(
                r#"{{"type":"RECORD","stream":"s","record":{{"a":"{pad}
"}}}}"#
            );
            assert_eq!(
                scan(raw_newline.as_bytes()),
                Err(ScanError::Syntax {
                    offset: 45 + n,
                    reason: "control character in a string"
                })
            );
            let open = format!(r#"{{"type":"RECORD","stream":"s","record":{{"a":"{pad}\"#);
            assert!(scan(open.as_bytes()).is_err(), "accepted {open}");
        }
    }

    #[test]
    fn escapes_and_control_characters_are_checked_everywhere_in_a_line() {
        // Strings are skipped sixteen bytes at a time, the last block of a line overlapping the
        // one before: a bad escape or a raw control character is found at any offset.
        for n in 0..40 {
            let pad = "x".repeat(n);
            let good =
                format!(r#"{{"type":"RECORD","stream":"s","record":{{"a":"{pad}\u00e9\n\t\/"}}}}"#);
            assert!(scan(good.as_bytes()).is_ok(), "refused {good}");
            for bad in [r"\q", r"\u12", r"\u12G4", "\t", "\u{1}"] {
                let line =
                    format!(r#"{{"type":"RECORD","stream":"s","record":{{"a":"{pad}{bad}"}}}}"#);
                assert!(scan(line.as_bytes()).is_err(), "accepted {line:?}");
                let short = format!(r#"{{"type":"{pad}{bad}"}}"#);
                assert!(scan(short.as_bytes()).is_err(), "accepted {short:?}");
            }
        }
    }

    #[test]
    fn unknown_types_are_kept() {
        let e = scan(br#"{"type":"CUSTOM","x":1}"#).unwrap();
        assert_eq!(e.kind, MessageKind::Unknown("CUSTOM".into()));
    }

    #[test]
    fn rejects_broken_lines() {
        for bad in [
            &br#"{"type":"RECORD","stream":"s","record":{"a":1}"#[..],
            br#"{"type":"RECORD","stream":"s","record":{"a":tru}}"#,
            br#"{"type":"RECORD","stream":"s","record":{"a":1,}}"#,
            br#"{"type":"RECORD","stream":"s","record":{"a":"x}}"#,
            br#"hello"#,
            br#"{"type":"RECORD","stream":"s"} trailing"#,
            b"",
        ] {
            assert!(
                scan(bad).is_err(),
                "accepted {}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(scan(b"[1,2]"), Err(ScanError::NotAnObject));
        assert_eq!(scan(br#"{"stream":"s"}"#), Err(ScanError::MissingType));
        assert_eq!(
            scan(br#"{"type":"RECORD","record":{}}"#),
            Err(ScanError::MissingStream {
                kind: "RECORD".into()
            })
        );
    }

    #[test]
    fn non_finite_floats_become_null() {
        let line = br#"{"type":"RECORD","stream":"s","record":{"a":NaN,"b":[Infinity,-Infinity],"c":"NaN"}}"#;
        let e = scan(line).unwrap();
        assert_eq!(e.non_finite.len(), 3);
        let clean = sanitize(line, &e.non_finite);
        assert_eq!(
            std::str::from_utf8(&clean).unwrap(),
            r#"{"type":"RECORD","stream":"s","record":{"a":null,"b":[null,null],"c":"NaN"}}"#
        );
        assert!(scan(&clean).unwrap().non_finite.is_empty());
    }

    // Found by the proptest below: `02` passed the scanner, which serde_json refuses.
    #[test]
    fn numbers_with_leading_zeros_are_refused() {
        for bad in ["02", "-01", "00.5", "01e3"] {
            let line = format!(r#"{{"type":"RECORD","stream":"s","record":{{"id":{bad}}}}}"#);
            assert!(scan(line.as_bytes()).is_err(), "{bad}");
        }
        for good in ["0", "-0", "0.5", "0e3", "10", "-10.25"] {
            let line = format!(r#"{{"type":"RECORD","stream":"s","record":{{"id":{good}}}}}"#);
            assert!(scan(line.as_bytes()).is_ok(), "{good}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut line = br#"{"type":"RECORD","stream":"s","record":"#.to_vec();
        line.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(scan(&line).is_err());
    }

    // Issue 30: a tap's invalid UTF-8 went through and failed in the loader instead.
    #[test]
    fn invalid_utf8_is_refused_with_its_offset() {
        let line = b"{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{\"n\":\"caf\xe9\"}}";
        let e = scan(line).unwrap_err();
        assert_eq!(e.to_string(), "not valid JSON at byte 48: invalid UTF-8");
        assert!(
            scan("{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{\"n\":\"café\"}}".as_bytes())
                .is_ok()
        );
    }

    proptest::proptest! {
        /// Whatever serde_json can serialise, the scanner accepts and reads the same envelope.
        #[test]
        fn agrees_with_serde_json(stream in "\\PC{0,12}", key in "\\PC{0,8}", n in proptest::num::f64::NORMAL, s in "\\PC{0,20}") {
            let v = serde_json::json!({"type": "RECORD", "stream": stream, "record": {key: [n, s, null, true, {"x": {}}]}});
            let line = serde_json::to_vec(&v).unwrap();
            let e = scan(&line).unwrap();
            proptest::prop_assert_eq!(e.kind, MessageKind::Record);
            proptest::prop_assert_eq!(e.stream.as_deref(), Some(stream.as_str()));
        }

        /// Any string, control characters and all, survives serde_json's escaping and the scan.
        #[test]
        fn any_escaped_string_is_read_back(stream in proptest::prelude::any::<String>(), value in proptest::prelude::any::<String>()) {
            let v = serde_json::json!({"type": "RECORD", "stream": stream, "record": {"v": value}});
            let line = serde_json::to_vec(&v).unwrap();
            let e = scan(&line).unwrap();
            proptest::prop_assert_eq!(e.stream.as_deref(), Some(stream.as_str()));
        }

        /// Changing one byte of a valid message: whatever serde_json refuses, the scanner
        /// refuses too (except bytes that could spell `NaN`/`Infinity`, which the scanner
        /// accepts on purpose). Bytes of 0x80 and up break UTF-8, which both refuse.
        #[test]
        fn refuses_what_serde_json_refuses(at in 0usize..200, byte in 0u8..=0xff) {
            let mut line = br#"{"type":"RECORD","stream":"users","record":{"id":12,"name":"a\"b\u00e9 c","n":-1.5e3,"ok":[true,false,null],"o":{}},"time_extracted":"2024-01-01T00:00:00Z"}"#.to_vec();
            let at = at % line.len();
            proptest::prop_assume!(!matches!(byte, b'N' | b'I'));
            line[at] = byte;
            if serde_json::from_slice::<serde_json::Value>(&line).is_err() {
                proptest::prop_assert!(scan(&line).is_err(), "accepted {}", String::from_utf8_lossy(&line));
            }
        }

        /// Truncating a valid message anywhere makes it invalid.
        #[test]
        fn truncation_is_always_detected(cut in 1usize..60) {
            let line = br#"{"type":"RECORD","stream":"users","record":{"id":12,"n":"x"}}"#;
            let cut = cut.min(line.len() - 1);
            proptest::prop_assert!(scan(&line[..cut]).is_err());
        }
    }

    // Issue #20 point 21: the scanner (untouched streams) and the full parser (transformed
    // streams) agree on which RECORD and SCHEMA bodies are bad lines.
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn scanner_and_parser_agree_on_record_and_schema_bodies(
            kind in proptest::sample::select(vec!["RECORD", "SCHEMA"]),
            body in proptest::sample::select(vec![
                "null", "[]", "[1,{}]", "{}", "1", "\"x\"", "true", "{\"a\":[1]}", "NaN",
            ]),
            escaped_key in proptest::bool::ANY,
        ) {
            let field = if kind.eq_ignore_ascii_case("RECORD") { "record" } else { "schema" };
            let key = if escaped_key {
                format!("\\u{:04x}{}", field.as_bytes()[0], &field[1..])
            } else {
                field.to_owned()
            };
            let line = format!(r#"{{"type":"{kind}","stream":"s","{key}":{body}}}"#);
            let scanned = scan(line.as_bytes()).is_ok();
            let parsed = crate::singer::message::Message::parse(line.as_bytes()).is_ok();
            proptest::prop_assert_eq!(scanned, parsed, "{}", line);
            proptest::prop_assert_eq!(scanned, body.starts_with('{'), "{}", line);
        }
    }
}
