//! A RECORD line split into its entries as raw bytes, for transforms that change a few
//! properties of a record and pass the others on as they came.
//!
//! [`RecordLine::split`] reads the line once, as strictly as serde_json would, and notes for
//! every top-level entry and every property of `record` where its key and value lie. A value
//! whose bytes are exactly what serde_json writes after reading it (no whitespace inside, no
//! `\u` or `\/` escape, no exponent, no repeated key in a nested object) is marked canonical
//! and can be copied; any other value is read into a [`Value`] here, so writing it later cannot
//! fail. Anything unusual (a repeated or escaped key at the top or in `record`, deep nesting,
//! a line serde_json would refuse) makes `split` return `false`: the caller then parses the
//! line in full, and gets the same result or error as it always did.

use std::ops::Range;

use serde_json::Value;

use super::envelope::string_special;

/// Containers nested deeper than this inside a property are left to the full parser (whose
/// recursion limit then decides).
const MAX_NESTING: usize = 64;

/// Objects with more keys than this inside a property are not checked for repeated keys
/// (pairwise): their value is read with serde_json instead of being copied.
const MAX_CHECKED_KEYS: usize = 32;

/// One `"key": value` entry of a line.
#[derive(Debug, Clone)]
pub struct Field {
    /// The key's bytes, quotes excluded (never holds a backslash).
    pub key: Range<usize>,
    /// The value's bytes.
    pub value: Range<usize>,
    /// The value read, when its bytes are not what serde_json would write (see the module
    /// documentation); `None` means the bytes can be copied as they are.
    pub parsed: Option<Value>,
    /// [`tag`] of the key: most keys that differ differ here, without a byte comparison.
    tag: u64,
}

/// A key's length and first eight bytes in one word (equal keys have equal tags).
#[inline]
fn tag(key: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = key.len().min(8);
    word[..n].copy_from_slice(&key[..n]);
    u64::from_le_bytes(word).rotate_left(8) ^ key.len() as u64
}

/// A RECORD line's entries, reusable from line to line (no allocation once warm).
#[derive(Debug, Default)]
pub struct RecordLine {
    /// Top-level entries other than `type`, `stream` and `record`, in line order.
    pub envelope: Vec<Field>,
    /// The properties of `record`, in line order.
    pub record: Vec<Field>,
    /// Key ranges of the objects being scanned, for the repeated-key check.
    keys: Vec<Range<usize>>,
}

impl RecordLine {
    /// Splits `line` (a RECORD message, without its newline). Returns `false`, leaving the
    /// entries in an unspecified state, when the line needs the full parser.
    pub fn split(&mut self, line: &[u8]) -> bool {
        self.envelope.clear();
        self.record.clear();
        self.keys.clear();
        if std::str::from_utf8(line).is_err() {
            return false;
        }
        let mut s = Cursor { b: line, i: 0 };
        self.top(&mut s).is_some()
    }

    /// The property of `record` named `name`.
    pub fn property(&self, line: &[u8], name: &str) -> Option<&Field> {
        self.position(line, name).map(|i| &self.record[i])
    }

    /// The index in `record` of the property named `name`.
    pub fn position(&self, line: &[u8], name: &str) -> Option<usize> {
        let name = name.as_bytes();
        let t = tag(name);
        self.record
            .iter()
            .position(|f| f.tag == t && &line[f.key.clone()] == name)
    }

    fn top(&mut self, s: &mut Cursor<'_>) -> Option<()> {
        s.ws();
        s.eat(b'{')?;
        s.ws();
        let mut seen_record = false;
        let mut seen_type = false;
        let mut seen_stream = false;
        if !s.try_eat(b'}') {
            loop {
                s.ws();
                let key = s.plain_key()?;
                s.ws();
                s.eat(b':')?;
                s.ws();
                match &s.b[key.clone()] {
                    b"record" => {
                        if std::mem::replace(&mut seen_record, true) {
                            return None;
                        }
                        self.record_object(s)?;
                    }
                    name @ (b"type" | b"stream") => {
                        let seen = if name == b"type" {
                            &mut seen_type
                        } else {
                            &mut seen_stream
                        };
                        if std::mem::replace(seen, true) || s.peek() != Some(b'"') {
                            return None;
                        }
                        let mut canonical = true;
                        s.string(&mut canonical)?;
                    }
                    k => {
                        if self.envelope.iter().any(|f| &s.b[f.key.clone()] == k) {
                            return None;
                        }
                        let field = self.field(s, key)?;
                        self.envelope.push(field);
                    }
                }
                s.ws();
                if s.try_eat(b'}') {
                    break;
                }
                s.eat(b',')?;
            }
        }
        s.ws();
        (seen_record && seen_type && seen_stream && s.i == s.b.len()).then_some(())
    }

    fn record_object(&mut self, s: &mut Cursor<'_>) -> Option<()> {
        s.eat(b'{')?;
        s.ws();
        if s.try_eat(b'}') {
            return Some(());
        }
        loop {
            s.ws();
            let key = s.plain_key()?;
            let name = &s.b[key.clone()];
            let t = tag(name);
            // Pairwise while the record is narrow; a wide one is checked once, sorted, below.
            if self.record.len() < MAX_CHECKED_KEYS
                && self
                    .record
                    .iter()
                    .any(|f| f.tag == t && &s.b[f.key.clone()] == name)
            {
                return None;
            }
            s.ws();
            s.eat(b':')?;
            s.ws();
            let field = self.field(s, key)?;
            self.record.push(field);
            s.ws();
            if s.try_eat(b'}') {
                break;
            }
            s.eat(b',')?;
        }
        if self.record.len() > MAX_CHECKED_KEYS {
            let b = s.b;
            self.keys.clear();
            self.keys.extend(self.record.iter().map(|f| f.key.clone()));
            self.keys
                .sort_unstable_by(|x, y| b[x.clone()].cmp(&b[y.clone()]));
            if self
                .keys
                .windows(2)
                .any(|w| b[w[0].clone()] == b[w[1].clone()])
            {
                return None;
            }
            self.keys.clear();
        }
        Some(())
    }

    /// Reads one value into a [`Field`], parsing it when it cannot be copied.
    fn field(&mut self, s: &mut Cursor<'_>, key: Range<usize>) -> Option<Field> {
        let start = s.i;
        let mut canonical = true;
        self.value(s, 0, &mut canonical)?;
        let value = start..s.i;
        let parsed = if canonical {
            None
        } else {
            Some(serde_json::from_slice::<Value>(&s.b[value.clone()]).ok()?)
        };
        let tag = tag(&s.b[key.clone()]);
        Some(Field {
            key,
            value,
            parsed,
            tag,
        })
    }

    fn value(&mut self, s: &mut Cursor<'_>, depth: usize, canonical: &mut bool) -> Option<()> {
        match s.peek()? {
            b'"' => s.string(canonical).map(|_| ()),
            b'{' => {
                if depth >= MAX_NESTING {
                    return None;
                }
                s.i += 1;
                *canonical &= s.peek().is_some_and(|c| !is_ws(c));
                s.ws();
                let base = self.keys.len();
                if !s.try_eat(b'}') {
                    loop {
                        let key = s.string(canonical)?;
                        *canonical &= s.peek() == Some(b':');
                        s.ws();
                        s.eat(b':')?;
                        *canonical &= s.peek().is_some_and(|c| !is_ws(c));
                        s.ws();
                        self.value(s, depth + 1, canonical)?;
                        if *canonical {
                            let name = &s.b[key.clone()];
                            if self.keys.len() - base >= MAX_CHECKED_KEYS
                                || self.keys[base..].iter().any(|k| &s.b[k.clone()] == name)
                            {
                                *canonical = false;
                            }
                            self.keys.push(key);
                        }
                        *canonical &= s.peek().is_some_and(|c| !is_ws(c));
                        s.ws();
                        if s.try_eat(b'}') {
                            break;
                        }
                        s.eat(b',')?;
                        *canonical &= s.peek().is_some_and(|c| !is_ws(c));
                        s.ws();
                    }
                }
                self.keys.truncate(base);
                Some(())
            }
            b'[' => {
                if depth >= MAX_NESTING {
                    return None;
                }
                s.i += 1;
                *canonical &= s.peek().is_some_and(|c| !is_ws(c));
                s.ws();
                if s.try_eat(b']') {
                    return Some(());
                }
                loop {
                    self.value(s, depth + 1, canonical)?;
                    *canonical &= s.peek().is_some_and(|c| !is_ws(c));
                    s.ws();
                    if s.try_eat(b']') {
                        return Some(());
                    }
                    s.eat(b',')?;
                    *canonical &= s.peek().is_some_and(|c| !is_ws(c));
                    s.ws();
                }
            }
            b't' => s.literal(b"true"),
            b'f' => s.literal(b"false"),
            b'n' => s.literal(b"null"),
            b'-' | b'0'..=b'9' => s.number(canonical),
            _ => None,
        }
    }
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
    }

    #[inline]
    fn try_eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        self.try_eat(c).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A key without escapes (the caller's name matching reads its bytes as they are).
    fn plain_key(&mut self) -> Option<Range<usize>> {
        let mut canonical = true;
        let r = self.string(&mut canonical)?;
        (!self.b[r.clone()].contains(&b'\\')).then_some(r)
    }

    /// A string starting at `"`; returns the range of its contents. Refuses what serde_json
    /// refuses (control characters, unknown escapes; the caller checked UTF-8) and clears
    /// `canonical` for escapes serde_json writes differently (`\/`, `\u…`).
    fn string(&mut self, canonical: &mut bool) -> Option<Range<usize>> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.i + 1;
        let mut j = start;
        loop {
            // Bytes that end the plain run: the quote, a backslash, or a control character.
            let at = string_special(self.b, j)?;
            match self.b[at] {
                b'"' => {
                    self.i = at + 1;
                    return Some(start..at);
                }
                b'\\' => match self.b.get(at + 1)? {
                    b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => j = at + 2,
                    b'/' => {
                        *canonical = false;
                        j = at + 2;
                    }
                    b'u' => {
                        // Surrogates are left to serde_json, which reads every non-canonical
                        // value before it is used.
                        let hex = self.b.get(at + 2..at + 6)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        *canonical = false;
                        j = at + 6;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// A number by JSON's grammar. serde_json keeps a number's text except in the exponent
    /// (`E` becomes `e`, a `+` is added): a number with one is not canonical.
    fn number(&mut self, canonical: &mut bool) -> Option<()> {
        self.try_eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.try_eat(b'.') {
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            *canonical = false;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        // A digit straight after a leading zero (`01`) is not JSON.
        match self.peek() {
            Some(b'0'..=b'9') => None,
            _ => Some(()),
        }
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Option<RecordLine> {
        let mut r = RecordLine::default();
        r.split(line.as_bytes()).then_some(r)
    }

    #[test]
    fn splits_envelope_and_properties_in_order() {
        let line = r#"{"type":"RECORD","stream":"s","record":{"b":1,"a":[1,{"x":"y"}],"c":"q\"z"},"version":3,"time_extracted":"t"}"#;
        let r = split(line).unwrap();
        let b = line.as_bytes();
        let names: Vec<&[u8]> = r.record.iter().map(|f| &b[f.key.clone()]).collect();
        assert_eq!(names, [&b"b"[..], b"a", b"c"]);
        assert_eq!(&b[r.record[1].value.clone()], br#"[1,{"x":"y"}]"#);
        assert!(r.record.iter().all(|f| f.parsed.is_none()));
        let env: Vec<&[u8]> = r.envelope.iter().map(|f| &b[f.key.clone()]).collect();
        assert_eq!(env, [&b"version"[..], b"time_extracted"]);
    }

    #[test]
    fn values_serde_json_writes_differently_are_read() {
        for (value, written) in [
            (r#"[1, 2]"#, "[1,2]"),
            (r#"{"a" :1}"#, r#"{"a":1}"#),
            (r#""\u00e9\/""#, "\"é/\""),
            (r#"1E5"#, "1e+5"),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
        ] {
            let r = split(&format!(
                r#"{{"type":"RECORD","stream":"s","record":{{"v":{value}}}}}"#
            ))
            .unwrap();
            let parsed = r.record[0].parsed.as_ref().expect(value);
            assert_eq!(serde_json::to_string(parsed).unwrap(), written);
        }
    }

    #[test]
    fn string_ends_are_found_at_every_offset() {
        // A quote, backslash or control character must be seen wherever it falls in a block
        // and from wherever the search starts, and nothing else (UTF-8 included) may stop it.
        for n in 0..40 {
            let pad = "é".repeat(n / 2) + &"x".repeat(n % 2);
            for c in ['"', '\\', '\t', '\u{1f}', '\u{0}'] {
                let text = format!("{pad}{c}{pad}\"");
                for from in 0..=pad.len() {
                    assert_eq!(
                        string_special(text.as_bytes(), from),
                        Some(pad.len()),
                        "{n} {c:?} from {from}"
                    );
                }
            }
            assert_eq!(string_special(pad.as_bytes(), 0), None, "{n}");
        }
    }

    #[test]
    fn a_repeated_key_is_found_in_a_wide_record() {
        let props: Vec<String> = (0..100).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let line = |extra: &str| {
            format!(
                r#"{{"type":"RECORD","stream":"s","record":{{{}{extra}}}}}"#,
                props.join(",")
            )
        };
        assert_eq!(split(&line("")).unwrap().record.len(), 100);
        assert!(split(&line(r#","k7":1"#)).is_none());
        assert!(split(&line(r#","k70":1"#)).is_none());
    }

    #[test]
    fn unusual_lines_are_left_to_the_full_parser() {
        for line in [
            r#"{"type":"RECORD","stream":"s","record":{"a":1,"a":2}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"\u0061":1}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":01}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":"\x"}}"#,
            "{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{\"a\":\"\t\"}}",
            r#"{"type":"RECORD","stream":"s","record":{"a":"\ud800"}}"#,
            r#"{"type":"RECORD","stream":"s","record":[1]}"#,
            r#"{"type":"RECORD","stream":"s"}"#,
            r#"{"type":"RECORD","stream":"s","record":{},"record":{}}"#,
            r#"{"type":"RECORD","stream":"s","record":{}} x"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":1.}}"#,
            r#"{"type":"RECORD","stream":"s","record":{"a":tru}}"#,
        ] {
            assert!(split(line).is_none(), "{line}");
        }
        let deep = format!(
            r#"{{"type":"RECORD","stream":"s","record":{{"a":{}{}}}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(split(&deep).is_none());
        let mut r = RecordLine::default();
        assert!(!r.split(b"{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{\"a\":\"\xff\"}}"));
    }
}

/// A record's properties in their order, borrowed from the line: no tree, no hashing. The
/// built-in targets read a record's values through it and write each as its own JSON text.
#[derive(Debug)]
pub struct Fields<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'a> Fields<'a> {
    /// The value of `key`, looking first where the `hint`-th property usually is (records of a
    /// stream mostly list their properties in the same order).
    pub fn get(&self, key: &str, hint: usize) -> Option<&'a serde_json::value::RawValue> {
        match self.0.get(hint) {
            Some((k, v)) if k == key => Some(*v),
            _ => self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v),
        }
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visit<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Fields<'a>, M::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(16));
                while let Some((k, val)) =
                    m.next_entry::<std::borrow::Cow<'de, str>, &'de serde_json::value::RawValue>()?
                {
                    v.push((k, val));
                }
                Ok(Fields(v))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}
