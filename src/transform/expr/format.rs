//! Python's string formatting for the expression language: f-strings, `str.format` and the
//! format-spec mini-language (`[[fill]align][sign][#][0][width][,|_][.precision][type]`).
//!
//! f-strings are read by the tokeniser into a call of the internal `__format__` built-in per
//! replacement field (see [`fstring_pieces`]); `str.format` splits its template the same way
//! (see [`template_pieces`]). Both format each value with [`format_value`].

use super::EvalError;

/// A part of an f-string or a `str.format` template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Piece {
    /// Text, with `{{` and `}}` already unescaped.
    Text(String),
    /// A replacement field: what to format (an expression's source in an f-string, a field
    /// name in a template), the conversion (`r`, `s`, `a` or none) and the format spec.
    Field {
        what: String,
        conversion: Option<char>,
        spec: String,
    },
}

/// Splits the text of an f-string (escapes already decoded) into pieces.
pub(crate) fn fstring_pieces(text: &str) -> Result<Vec<Piece>, String> {
    pieces(text, true)
}

/// Splits a `str.format` template into pieces.
pub(crate) fn template_pieces(text: &str) -> Result<Vec<Piece>, String> {
    pieces(text, false)
}

fn pieces(text: &str, expressions: bool) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut lit = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                lit.push('}');
            }
            '}' => return Err("single '}' is not allowed".into()),
            '{' => {
                if !lit.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut lit)));
                }
                let end = field_end(text, i + 1, expressions)?;
                out.push(field(&text[i + 1..end], expressions)?);
                // Skip to the closing brace.
                while chars.next_if(|&(j, _)| j <= end).is_some() {}
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push(Piece::Text(lit));
    }
    Ok(out)
}

/// The index of the `}` closing the field that starts at `start`: brackets and (in an
/// f-string expression) quoted strings nest.
fn field_end(text: &str, start: usize, expressions: bool) -> Result<usize, String> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut in_spec = false;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if expressions && !in_spec && (c == b'\'' || c == b'"') => quote = Some(c),
            None if !in_spec && matches!(c, b'(' | b'[') => depth += 1,
            None if !in_spec && matches!(c, b')' | b']') => depth = depth.saturating_sub(1),
            None if c == b'{' && !in_spec && depth == 0 && expressions => depth += 1,
            None if c == b'{' && in_spec => {
                return Err("nested replacement fields in a format spec are not supported".into());
            }
            None if c == b'}' && depth > 0 => depth -= 1,
            None if c == b'}' => return Ok(i),
            None if c == b':' && depth == 0 => in_spec = true,
            None => {}
        }
        i += 1;
    }
    Err("expecting '}'".into())
}

/// One field's text (between the braces) as a piece.
fn field(inner: &str, expressions: bool) -> Result<Piece, String> {
    // The spec starts at the first `:` outside brackets and strings; the conversion is a
    // `!` before it that is not part of `!=`.
    let b = inner.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut colon = None;
    let mut bang = None;
    for (i, &c) in b.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if expressions && (c == b'\'' || c == b'"') => quote = Some(c),
            None if matches!(c, b'(' | b'[' | b'{') => depth += 1,
            None if matches!(c, b')' | b']' | b'}') => depth = depth.saturating_sub(1),
            None if c == b'!' && depth == 0 && b.get(i + 1) != Some(&b'=') => {
                bang.get_or_insert(i);
            }
            None if c == b':' && depth == 0 => {
                colon = Some(i);
                break;
            }
            None => {}
        }
    }
    let what_end = bang.or(colon).unwrap_or(inner.len());
    let what = inner[..what_end].trim();
    let conversion = match bang {
        Some(at) => {
            let conv = inner[at + 1..colon.unwrap_or(inner.len())].trim();
            match conv {
                "r" | "s" | "a" => conv.chars().next(),
                _ => return Err(format!("unknown conversion `!{conv}` (use !r, !s or !a)")),
            }
        }
        None => None,
    };
    if expressions && what.is_empty() {
        return Err("f-string: empty expression not allowed".into());
    }
    if expressions && what.ends_with('=') && !what.ends_with("==") {
        return Err("f-string `{x=}` debugging fields are not supported".into());
    }
    Ok(Piece::Field {
        what: what.to_owned(),
        conversion,
        spec: colon.map_or("", |c| &inner[c + 1..]).to_owned(),
    })
}

/// A parsed format spec.
#[derive(Debug, Default, Clone, Copy)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alternate: bool,
    zero: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    kind: Option<char>,
}

fn value_error(message: impl Into<String>) -> EvalError {
    EvalError::Failed(message.into())
}

fn parse_spec(spec: &str, limit: usize) -> Result<Spec, EvalError> {
    let chars: Vec<char> = spec.chars().collect();
    let mut s = Spec::default();
    let mut i = 0;
    let is_align = |c: char| matches!(c, '<' | '>' | '^' | '=');
    if chars.len() >= 2 && is_align(chars[1]) {
        s.fill = Some(chars[0]);
        s.align = Some(chars[1]);
        i = 2;
    } else if chars.first().is_some_and(|&c| is_align(c)) {
        s.align = Some(chars[0]);
        i = 1;
    }
    if let Some(&c @ ('+' | '-' | ' ')) = chars.get(i) {
        s.sign = Some(c);
        i += 1;
    }
    if chars.get(i) == Some(&'z') {
        i += 1;
    }
    if chars.get(i) == Some(&'#') {
        s.alternate = true;
        i += 1;
    }
    if chars.get(i) == Some(&'0') {
        s.zero = true;
        i += 1;
    }
    let number = |i: &mut usize| -> Result<Option<usize>, EvalError> {
        let start = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        if *i == start {
            return Ok(None);
        }
        let n: usize = chars[start..*i]
            .iter()
            .collect::<String>()
            .parse()
            .unwrap_or(usize::MAX);
        if n > limit {
            return Err(EvalError::Limit(format!(
                "a format spec asks for {n} characters, more than the limit"
            )));
        }
        Ok(Some(n))
    };
    s.width = number(&mut i)?.unwrap_or(0);
    if let Some(&c @ (',' | '_')) = chars.get(i) {
        s.grouping = Some(c);
        i += 1;
    }
    if chars.get(i) == Some(&'.') {
        i += 1;
        s.precision =
            Some(number(&mut i)?.ok_or_else(|| value_error("Format specifier missing precision"))?);
    }
    if let Some(&c) = chars.get(i) {
        s.kind = Some(c);
        i += 1;
    }
    if i != chars.len() {
        return Err(value_error("Invalid format specifier"));
    }
    Ok(s)
}

/// What [`format_value`] formats: the kinds of values with a format of their own.
pub(crate) enum Formattable<'v> {
    Str(&'v str),
    Int(i64),
    Float(f64),
    /// A decimal number's text.
    Dec(&'v str),
    /// A value formatted as its `str()` (None, booleans with a string spec, lists, ...):
    /// only an empty or string spec applies. The name is the type's, for errors.
    Other(String, &'static str),
}

/// Formats a value by a format spec, as Python's `format(value, spec)` does. `limit` caps
/// the width and precision (the evaluator's allocation limit).
pub(crate) fn format_value(
    v: Formattable<'_>,
    spec: &str,
    limit: usize,
) -> Result<String, EvalError> {
    let s = parse_spec(spec, limit)?;
    match v {
        Formattable::Str(text) => format_str(text, &s),
        Formattable::Other(text, type_name) => {
            if spec.is_empty() {
                Ok(text)
            } else {
                Err(EvalError::Failed(format!(
                    "unsupported format string passed to {type_name}.__format__"
                )))
            }
        }
        Formattable::Int(n) => format_int(n, &s),
        Formattable::Float(f) => format_float(f, &s, None),
        Formattable::Dec(text) => match (s.kind, s.precision) {
            (None, None) => {
                finish_number(text.trim_start_matches('-'), text.starts_with('-'), "", &s)
            }
            (Some('f' | 'F' | '%'), _) => {
                match decimal_fixed(text, s.kind == Some('%'), s.precision.unwrap_or(6)) {
                    Some((digits, negative)) => {
                        let suffix = if s.kind == Some('%') { "%" } else { "" };
                        finish_number(&digits, negative, suffix, &s)
                    }
                    None => format_float(text.parse().unwrap_or(f64::NAN), &s, None),
                }
            }
            _ => format_float(text.parse().unwrap_or(f64::NAN), &s, None),
        },
    }
}

fn format_str(text: &str, s: &Spec) -> Result<String, EvalError> {
    if !matches!(s.kind, None | Some('s')) {
        return Err(value_error(format!(
            "Unknown format code '{}' for object of type 'str'",
            s.kind.unwrap_or('s')
        )));
    }
    if s.sign.is_some() {
        return Err(value_error("Sign not allowed in string format specifier"));
    }
    if s.align == Some('=') {
        return Err(value_error(
            "'=' alignment not allowed in string format specifier",
        ));
    }
    if s.grouping.is_some() {
        return Err(value_error("Cannot specify ',' with 's'."));
    }
    let body: String = match s.precision {
        Some(p) => text.chars().take(p).collect(),
        None => text.to_owned(),
    };
    let fill = s.fill.unwrap_or(if s.zero { '0' } else { ' ' });
    Ok(pad(&body, "", s.width, fill, s.align.unwrap_or('<')))
}

fn format_int(n: i64, s: &Spec) -> Result<String, EvalError> {
    let kind = s.kind.unwrap_or('d');
    if matches!(kind, 'e' | 'E' | 'f' | 'F' | 'g' | 'G' | '%') {
        return format_float(n as f64, s, Some(n));
    }
    if s.precision.is_some() {
        return Err(value_error(
            "Precision not allowed in integer format specifier",
        ));
    }
    let magnitude = n.unsigned_abs();
    let (digits, prefix) = match kind {
        'd' | 'n' => (magnitude.to_string(), ""),
        'b' => (format!("{magnitude:b}"), "0b"),
        'o' => (format!("{magnitude:o}"), "0o"),
        'x' => (format!("{magnitude:x}"), "0x"),
        'X' => (format!("{magnitude:X}"), "0X"),
        'c' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| EvalError::Failed("%c arg not in range(0x110000)".into()))?;
            return format_str(&c.to_string(), &Spec { kind: None, ..*s });
        }
        other => {
            return Err(value_error(format!(
                "Unknown format code '{other}' for object of type 'int'"
            )));
        }
    };
    if s.grouping == Some(',') && !matches!(kind, 'd' | 'n') {
        return Err(value_error(format!("Cannot specify ',' with '{kind}'.")));
    }
    let prefix = if s.alternate { prefix } else { "" };
    let group = if matches!(kind, 'd' | 'n') { 3 } else { 4 };
    finish_digits(&digits, "", n < 0, prefix, s, group)
}

/// Python's float formatting for the types `e f g %` and none. `int` is set when the value
/// is an integer formatted as a float (`{n:.2f}`).
fn format_float(f: f64, s: &Spec, int: Option<i64>) -> Result<String, EvalError> {
    let kind = s.kind;
    let negative = f.is_sign_negative() && !(f == 0.0 && int.is_some());
    let a = f.abs();
    let upper = matches!(kind, Some('E' | 'F' | 'G'));
    if !f.is_finite() {
        let text = match (f.is_nan(), upper) {
            (true, false) => "nan",
            (true, true) => "NAN",
            (false, false) => "inf",
            (false, true) => "INF",
        };
        let suffix = if kind == Some('%') { "%" } else { "" };
        let spec = Spec {
            zero: false,
            fill: s.fill.or(Some(' ')),
            ..*s
        };
        return finish_number(text, negative && !f.is_nan(), suffix, &spec);
    }
    let (body, suffix) = match kind {
        Some('f' | 'F') => (format!("{:.*}", s.precision.unwrap_or(6), a), ""),
        Some('%') => (format!("{:.*}", s.precision.unwrap_or(6), a * 100.0), "%"),
        Some('e' | 'E') => (sci(a, s.precision.unwrap_or(6), upper), ""),
        Some('g' | 'G' | 'n') => (
            general(a, s.precision.unwrap_or(6), s.alternate, upper, false),
            "",
        ),
        None if s.precision.is_none() => (
            match int {
                Some(i) => i.unsigned_abs().to_string(),
                None => super::eval::float_repr(a),
            },
            "",
        ),
        None => (
            general(a, s.precision.unwrap_or(6), s.alternate, false, true),
            "",
        ),
        Some(other) => {
            return Err(value_error(format!(
                "Unknown format code '{other}' for object of type '{}'",
                if int.is_some() { "int" } else { "float" }
            )));
        }
    };
    let body = if s.alternate && !body.contains(['.', 'e', 'E', 'n', 'N']) {
        format!("{body}.")
    } else {
        body
    };
    finish_number(&body, negative, suffix, s)
}

/// `a` (not negative) in scientific notation with `precision` digits after the point, the
/// exponent written as Python does (`e+05`).
fn sci(a: f64, precision: usize, upper: bool) -> String {
    let text = format!("{:.*e}", precision, a);
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let e = if upper { 'E' } else { 'e' };
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}{e}{sign}{:02}", exp.unsigned_abs())
}

/// Python's general format (`g`) of `a` (not negative) with `precision` significant digits;
/// `point` keeps at least one digit after the point (the no-type format with a precision).
fn general(a: f64, precision: usize, alternate: bool, upper: bool, point: bool) -> String {
    let p = precision.max(1);
    // The exponent after rounding to `p` significant digits.
    let rounded = format!("{:.*e}", p - 1, a);
    let exp: i64 = rounded
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let mut text = if -4 <= exp && exp < p as i64 {
        let decimals = usize::try_from(p as i64 - 1 - exp).unwrap_or(0);
        format!("{:.*}", decimals, a)
    } else {
        sci(a, p - 1, upper)
    };
    if !alternate {
        let (mantissa, rest) = match text.find(['e', 'E']) {
            Some(at) => text.split_at(at),
            None => (text.as_str(), ""),
        };
        let mut m = mantissa.to_owned();
        if m.contains('.') {
            while m.ends_with('0') {
                m.pop();
            }
            if m.ends_with('.') {
                m.pop();
            }
        }
        if point && !m.contains('.') && rest.is_empty() {
            m.push_str(".0");
        }
        text = m + rest;
    }
    text
}

/// A decimal number's text rounded to `precision` digits after the point, half to even, as
/// `Decimal.__format__` does for `f` (`percent`: times 100 first). Returns the unsigned digits
/// and whether the number is negative; `None` for text that is not a plain decimal number.
fn decimal_fixed(text: &str, percent: bool, precision: usize) -> Option<(String, bool)> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty() && frac_part.is_empty()
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // digits × 10^-(scale)
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|c| c - b'0')
        .collect();
    let mut scale = frac_part.len() as i64 - exp - if percent { 2 } else { 0 };
    if scale.unsigned_abs() > 10_000 {
        return None;
    }
    let want = precision as i64;
    while scale < want {
        digits.push(0);
        scale += 1;
    }
    if scale > want {
        let cut = usize::try_from(scale - want).ok()?;
        let keep = digits.len().saturating_sub(cut);
        let dropped: Vec<u8> = if cut > digits.len() {
            let mut d = vec![0; cut - digits.len()];
            d.extend_from_slice(&digits);
            d
        } else {
            digits[keep..].to_vec()
        };
        digits.truncate(keep);
        let first = dropped.first().copied().unwrap_or(0);
        let rest_nonzero = dropped.iter().skip(1).any(|&d| d != 0);
        let last_odd = digits.last().is_some_and(|d| d % 2 == 1);
        if first > 5 || first == 5 && (rest_nonzero || last_odd) {
            let mut i = digits.len();
            loop {
                if i == 0 {
                    digits.insert(0, 1);
                    break;
                }
                i -= 1;
                if digits[i] == 9 {
                    digits[i] = 0;
                } else {
                    digits[i] += 1;
                    break;
                }
            }
        }
    }
    let p = precision;
    if digits.len() <= p {
        let mut padded = vec![0; p + 1 - digits.len()];
        padded.extend_from_slice(&digits);
        digits = padded;
    }
    let split = digits.len() - p;
    let int_digits = &digits[..split];
    let leading_zeros = int_digits
        .iter()
        .take(int_digits.len() - 1)
        .take_while(|&&d| d == 0)
        .count();
    let int_digits = &int_digits[leading_zeros..];
    let mut out: String = int_digits.iter().map(|d| char::from(b'0' + d)).collect();
    if p > 0 {
        out.push('.');
        out.extend(digits[split..].iter().map(|d| char::from(b'0' + d)));
    }
    Some((out, negative))
}

/// Sign, grouping, padding and the suffix around a number's unsigned body.
fn finish_number(body: &str, negative: bool, suffix: &str, s: &Spec) -> Result<String, EvalError> {
    let (int_part, rest) = match body.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => body.split_at(at),
        None => (body, ""),
    };
    if int_part.is_empty() {
        // inf, nan
        let sign = sign_of(negative, s);
        let fill = s.fill.unwrap_or(' ');
        return Ok(pad(
            &format!("{body}{suffix}"),
            &sign,
            s.width,
            fill,
            s.align.unwrap_or('>'),
        ));
    }
    finish_digits(int_part, &format!("{rest}{suffix}"), negative, "", s, 3)
}

fn sign_of(negative: bool, s: &Spec) -> String {
    match (negative, s.sign) {
        (true, _) => "-".into(),
        (false, Some('+')) => "+".into(),
        (false, Some(' ')) => " ".into(),
        _ => String::new(),
    }
}

/// Lays out a number: sign, prefix (`0x`), integer digits grouped, the rest (fraction,
/// exponent, `%`), padded to the width (zero padding goes between sign and digits and is
/// grouped too, as Python does).
fn finish_digits(
    int_digits: &str,
    rest: &str,
    negative: bool,
    prefix: &str,
    s: &Spec,
    group: usize,
) -> Result<String, EvalError> {
    let sign = sign_of(negative, s);
    let head = format!("{sign}{prefix}");
    let zero_pad = s.fill.is_none() && s.align.is_none() && s.zero
        || s.fill == Some('0') && s.align == Some('=');
    if zero_pad {
        // The fewest digits whose grouped text fills the width: computed, not found by adding
        // one zero at a time (that was quadratic in the width, minutes for a width of 2 million).
        let room = s
            .width
            .saturating_sub(head.chars().count() + rest.chars().count());
        let count = zero_padded_digits(int_digits.len(), room, s.grouping.map(|_| group));
        let mut digits = "0".repeat(count - int_digits.len());
        digits.push_str(int_digits);
        return Ok(format!(
            "{head}{}{rest}",
            grouped(&digits, s.grouping, group)
        ));
    }
    let body = format!("{}{rest}", grouped(int_digits, s.grouping, group));
    let fill = s.fill.unwrap_or(' ');
    Ok(pad(&body, &head, s.width, fill, s.align.unwrap_or('>')))
}

/// How many digits (at least `len`) fill `room` characters once grouped in threes (or fours)
/// with a separator each: the least `n` with `n + (n - 1) / group >= room`.
fn zero_padded_digits(len: usize, room: usize, group: Option<usize>) -> usize {
    let shown = |n: usize| match group {
        Some(g) if n > 0 => n + (n - 1) / g,
        _ => n,
    };
    let mut n = match group {
        Some(g) => room - room.saturating_sub(1) / (g + 1),
        None => room,
    };
    // The estimate is exact; the two loops only guard it and run at most once or twice.
    while n > 0 && shown(n - 1) >= room {
        n -= 1;
    }
    while shown(n) < room {
        n += 1;
    }
    n.max(len)
}

fn grouped(digits: &str, sep: Option<char>, group: usize) -> String {
    let Some(sep) = sep else {
        return digits.to_owned();
    };
    let n = digits.len();
    let mut out = String::with_capacity(n + n / group);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (n - i).is_multiple_of(group) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// `head` (a sign) and `body` padded with `fill` to `width` characters.
fn pad(body: &str, head: &str, width: usize, fill: char, align: char) -> String {
    let len = head.chars().count() + body.chars().count();
    let room = width.saturating_sub(len);
    let fills = |k: usize| std::iter::repeat_n(fill, k).collect::<String>();
    match align {
        '<' => format!("{head}{body}{}", fills(room)),
        '^' => format!("{}{head}{body}{}", fills(room / 2), fills(room - room / 2)),
        '=' => format!("{head}{}{body}", fills(room)),
        _ => format!("{}{head}{body}", fills(room)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstring_fields_split_at_their_own_colon_and_bang() {
        assert_eq!(
            fstring_pieces("a{x['k:v']!r:>5}b{{c}}{y != 2}").unwrap(),
            vec![
                Piece::Text("a".into()),
                Piece::Field {
                    what: "x['k:v']".into(),
                    conversion: Some('r'),
                    spec: ">5".into()
                },
                Piece::Text("b{c}".into()),
                Piece::Field {
                    what: "y != 2".into(),
                    conversion: None,
                    spec: String::new()
                },
            ]
        );
        assert!(fstring_pieces("{}").is_err());
        assert!(fstring_pieces("a}").is_err());
        assert!(fstring_pieces("{a").is_err());
        assert!(fstring_pieces("{a:{w}}").is_err());
        assert!(fstring_pieces("{a!x}").is_err());
    }

    #[test]
    fn zero_padding_digits_match_adding_one_zero_at_a_time() {
        // The slow way this replaced, as the reference.
        let slow = |len: usize, room: usize, group: Option<usize>| {
            let shown = |n: usize| match group {
                Some(g) if n > 0 => n + (n - 1) / g,
                _ => n,
            };
            let mut n = len;
            while shown(n) < room {
                n += 1;
            }
            n
        };
        for group in [None, Some(3), Some(4)] {
            for len in 1..6 {
                for room in 0..60 {
                    assert_eq!(
                        zero_padded_digits(len, room, group),
                        slow(len, room, group),
                        "len {len}, room {room}, group {group:?}"
                    );
                }
            }
        }
    }
}
