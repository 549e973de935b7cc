//! Methods of values: strings (`str.format` templates included), lists, dicts, dates and
//! the `fake` object.

use std::borrow::Cow;

use chrono::Datelike;

use super::*;

impl<'c, 'a> Interp<'c, 'a> {
    /// `template.format(*args, **kw)`: fields by automatic or explicit position, or by
    /// keyword.
    pub(super) fn format_template(
        &mut self,
        template: &str,
        args: &[Py<'a>],
        kw: &[(&str, Py<'a>)],
    ) -> Result<Py<'a>, EvalError> {
        use crate::transform::expr::format::{Piece, template_pieces};
        let pieces = template_pieces(template).map_err(EvalError::Failed)?;
        let mut out = String::new();
        let mut auto = 0;
        for piece in pieces {
            let (what, conversion, spec) = match piece {
                Piece::Text(t) => {
                    out.push_str(&t);
                    continue;
                }
                Piece::Field {
                    what,
                    conversion,
                    spec,
                } => (what, conversion, spec),
            };
            let value = if what.is_empty() {
                auto += 1;
                args.get(auto - 1).ok_or_else(|| {
                    EvalError::Failed(format!(
                        "Replacement index {} out of range for positional args tuple",
                        auto - 1
                    ))
                })?
            } else if let Ok(k) = what.parse::<usize>() {
                args.get(k).ok_or_else(|| {
                    EvalError::Failed(format!(
                        "Replacement index {k} out of range for positional args tuple"
                    ))
                })?
            } else if what.contains(['.', '[']) {
                return fail(format!(
                    "format field `{what}`: attributes and indexes in format fields are not supported"
                ));
            } else {
                kw.iter()
                    .find(|(n, _)| *n == what)
                    .map(|(_, v)| v)
                    .ok_or_else(|| EvalError::Failed(format!("KeyError: '{what}'")))?
            };
            let converted;
            let value = match conversion {
                Some('r' | 'a') => {
                    converted = Py::Str(Cow::Owned(py_repr(value)));
                    &converted
                }
                Some(_) => {
                    converted = Py::Str(Cow::Owned(py_str(value)));
                    &converted
                }
                None => value,
            };
            out.push_str(&format_py(value, &spec)?);
            if out.len() > MAX_ALLOC {
                return Err(EvalError::Limit(format!(
                    "the expression allocated more than {} MiB",
                    MAX_ALLOC / (1024 * 1024)
                )));
            }
        }
        self.string(out)
    }

    pub(super) fn method(
        &mut self,
        obj: Py<'a>,
        name: &str,
        args: Vec<Py<'a>>,
        kw: Vec<(&str, Py<'a>)>,
    ) -> Result<Py<'a>, EvalError> {
        if let Py::Global(Global::Fake) = obj {
            let fake = self
                .ctx
                .fake
                .ok_or_else(|| EvalError::NameNotDefined("fake".into()))?;
            let mut faker = fake.borrow_mut();
            if name == "seed_instance" {
                let seed = args.first().map(py_str).unwrap_or_default();
                faker.seed_from_text(&seed);
                return Ok(Py::None);
            }
            let ints: Vec<i64> = args
                .iter()
                .filter_map(|a| match a {
                    Py::Int(i) => Some(*i),
                    _ => None,
                })
                .collect();
            return match faker.call(name, &ints) {
                Some(s) => self.string(s),
                None => fail(format!("fake.{name}() is not supported")),
            };
        }
        if name == "format"
            && let Py::Str(template) = &obj
        {
            return self.format_template(template, &args, &kw);
        }
        if let Py::Delta(d) = obj {
            if name != "total_seconds" {
                return no_attr(&obj, name);
            }
            if !args.is_empty() || !kw.is_empty() {
                return fail("total_seconds() takes no arguments");
            }
            return Ok(Py::Float(d as f64 / 1e6));
        }
        if !kw.is_empty() && !matches!(name, "split" | "rsplit" | "isoformat" | "get") {
            return fail(format!("{name}() takes no keyword arguments"));
        }
        let argc = args.len();
        let want = |lo: usize, hi: usize| -> Result<(), EvalError> {
            if argc < lo || argc > hi {
                fail(format!(
                    "{name}() takes {lo} to {hi} arguments ({argc} given)"
                ))
            } else {
                Ok(())
            }
        };
        match &obj {
            Py::Str(s) => {
                let s: &str = s;
                let str_arg = |i: usize| -> Result<Option<&Py<'a>>, EvalError> { Ok(args.get(i)) };
                let as_str = |v: Option<&Py<'a>>| -> Result<Option<String>, EvalError> {
                    match v {
                        None | Some(Py::None) => Ok(None),
                        Some(Py::Str(x)) => Ok(Some(x.to_string())),
                        Some(other) => {
                            fail(format!("must be str or None, not {}", other.type_name()))
                        }
                    }
                };
                let out = match name {
                    "lower" | "casefold" => {
                        want(0, 0)?;
                        s.to_lowercase()
                    }
                    "upper" => {
                        want(0, 0)?;
                        s.to_uppercase()
                    }
                    "strip" | "lstrip" | "rstrip" => {
                        want(0, 1)?;
                        let chars = as_str(str_arg(0)?)?;
                        let pred = |c: char| match &chars {
                            Some(cs) => cs.contains(c),
                            None => c.is_whitespace(),
                        };
                        match name {
                            "strip" => s.trim_matches(pred).to_string(),
                            "lstrip" => s.trim_start_matches(pred).to_string(),
                            _ => s.trim_end_matches(pred).to_string(),
                        }
                    }
                    "split" | "rsplit" => {
                        want(0, 2)?;
                        let mut sep = as_str(args.first())?;
                        let mut max = match args.get(1) {
                            Some(v) => to_i64(v)?,
                            None => -1,
                        };
                        for (k, v) in &kw {
                            match *k {
                                "sep" => sep = as_str(Some(v))?,
                                "maxsplit" => max = to_i64(v)?,
                                other => {
                                    return fail(format!(
                                        "split() got an unexpected keyword argument '{other}'"
                                    ));
                                }
                            }
                        }
                        // What the parts will take is charged before they are made.
                        let count = match sep.as_deref() {
                            Some("") | None => s.split_whitespace().count(),
                            Some(sep) => s.matches(sep).count() + 1,
                        };
                        let count = match usize::try_from(max) {
                            Ok(max) => count.min(max.saturating_add(1)),
                            Err(_) => count,
                        };
                        self.charge(
                            s.len()
                                + count.saturating_mul(
                                    std::mem::size_of::<Py<'_>>() + std::mem::size_of::<String>(),
                                ),
                        )?;
                        let parts = split(s, sep.as_deref(), max, name == "rsplit")?;
                        return Ok(Py::List(
                            parts.into_iter().map(|p| Py::Str(Cow::Owned(p))).collect(),
                        ));
                    }
                    "splitlines" => {
                        want(0, 0)?;
                        self.charge(
                            s.len()
                                + s.lines()
                                    .count()
                                    .saturating_mul(std::mem::size_of::<Py<'_>>()),
                        )?;
                        return Ok(Py::List(
                            s.lines()
                                .map(|p| Py::Str(Cow::Owned(p.to_string())))
                                .collect(),
                        ));
                    }
                    "replace" => {
                        want(2, 3)?;
                        let (Some(Some(old)), Some(Some(new))) =
                            (as_str(args.first()).ok(), as_str(args.get(1)).ok())
                        else {
                            return fail("replace() arguments must be str");
                        };
                        let count = match args.get(2) {
                            Some(v) => to_i64(v)?,
                            None => -1,
                        };
                        let n = if old.is_empty() {
                            s.chars().count() + 1
                        } else {
                            s.matches(old.as_str()).count()
                        };
                        self.charge(s.len().saturating_add(n.saturating_mul(new.len())))?;
                        if count < 0 {
                            s.replace(&old, &new)
                        } else {
                            s.replacen(&old, &new, count as usize)
                        }
                    }
                    "startswith" | "endswith" => {
                        want(1, 1)?;
                        let candidates = match &args[0] {
                            Py::Str(p) => vec![p.to_string()],
                            Py::Tuple(t) => t
                                .iter()
                                .map(|p| match p {
                                    Py::Str(x) => Ok(x.to_string()),
                                    o => fail(format!(
                                        "tuple for {name} must only contain str, not {}",
                                        o.type_name()
                                    )),
                                })
                                .collect::<Result<_, _>>()?,
                            o => {
                                return fail(format!(
                                    "{name} first arg must be str or a tuple of str, not {}",
                                    o.type_name()
                                ));
                            }
                        };
                        let hit = candidates.iter().any(|p| {
                            if name == "startswith" {
                                s.starts_with(p.as_str())
                            } else {
                                s.ends_with(p.as_str())
                            }
                        });
                        return Ok(Py::Bool(hit));
                    }
                    "find" | "rfind" | "index" | "count" => {
                        want(1, 1)?;
                        let Some(sub) = as_str(args.first())? else {
                            return fail(format!("{name}() argument must be str"));
                        };
                        if name == "count" {
                            return Ok(Py::Int(if sub.is_empty() {
                                s.chars().count() + 1
                            } else {
                                s.matches(sub.as_str()).count()
                            } as i64));
                        }
                        let pos = if name == "rfind" {
                            s.rfind(sub.as_str())
                        } else {
                            s.find(sub.as_str())
                        };
                        return match pos {
                            Some(b) => Ok(Py::Int(s[..b].chars().count() as i64)),
                            None if name == "index" => fail("substring not found"),
                            None => Ok(Py::Int(-1)),
                        };
                    }
                    "join" => {
                        want(1, 1)?;
                        let items = self.iterate(args.into_iter().next().expect("one argument"))?;
                        let mut out = String::new();
                        for (i, it) in items.iter().enumerate() {
                            let Py::Str(x) = it else {
                                return fail(format!(
                                    "sequence item {i}: expected str instance, {} found",
                                    it.type_name()
                                ));
                            };
                            if i > 0 {
                                out.push_str(s);
                            }
                            out.push_str(x);
                            if out.len() > MAX_ALLOC {
                                return Err(EvalError::Limit("joined string is too large".into()));
                            }
                        }
                        out
                    }
                    "title" => {
                        want(0, 0)?;
                        title(s)
                    }
                    "capitalize" => {
                        want(0, 0)?;
                        let mut c = s.chars();
                        match c.next() {
                            Some(f) => f
                                .to_uppercase()
                                .chain(c.as_str().to_lowercase().chars())
                                .collect(),
                            None => String::new(),
                        }
                    }
                    "isdigit" | "isdecimal" | "isnumeric" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(!s.is_empty() && s.chars().all(|c| c.is_numeric())));
                    }
                    "isalpha" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            !s.is_empty() && s.chars().all(char::is_alphabetic),
                        ));
                    }
                    "isalnum" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            !s.is_empty() && s.chars().all(char::is_alphanumeric),
                        ));
                    }
                    "isspace" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            !s.is_empty() && s.chars().all(char::is_whitespace),
                        ));
                    }
                    "islower" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase),
                        ));
                    }
                    "isupper" => {
                        want(0, 0)?;
                        return Ok(Py::Bool(
                            s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase),
                        ));
                    }
                    "zfill" | "ljust" | "rjust" => {
                        want(1, 1)?;
                        let width = to_i64(&args[0])?.max(0) as usize;
                        self.charge(width)?;
                        let len = s.chars().count();
                        if len >= width {
                            s.to_string()
                        } else {
                            let pad = width - len;
                            match name {
                                "ljust" => format!("{s}{}", " ".repeat(pad)),
                                "rjust" => format!("{}{s}", " ".repeat(pad)),
                                _ => match s.strip_prefix(['-', '+']) {
                                    Some(rest) => format!("{}{}{rest}", &s[..1], "0".repeat(pad)),
                                    None => format!("{}{s}", "0".repeat(pad)),
                                },
                            }
                        }
                    }
                    "removeprefix" | "removesuffix" => {
                        want(1, 1)?;
                        let Some(a) = as_str(args.first())? else {
                            return fail(format!("{name}() argument must be str"));
                        };
                        let r = if name == "removeprefix" {
                            s.strip_prefix(a.as_str())
                        } else {
                            s.strip_suffix(a.as_str())
                        };
                        r.unwrap_or(s).to_string()
                    }
                    _ => return no_attr(&obj, name),
                };
                self.string(out)
            }
            Py::JObj(_) | Py::Dict(_) => match name {
                "get" => {
                    want(1, 2)?;
                    let mut it = args.into_iter();
                    let k = it.next().expect("one argument");
                    let default = it
                        .next()
                        .or_else(|| {
                            kw.into_iter()
                                .find(|(n, _)| *n == "default")
                                .map(|(_, v)| v)
                        })
                        .unwrap_or(Py::None);
                    Ok(match &obj {
                        Py::JObj(o) => match &k {
                            Py::Str(s) => o.get(s.as_ref()).map(from_json),
                            _ => None,
                        },
                        Py::Dict(d) => d.get(&key_of(&k)?).cloned(),
                        _ => unreachable!("matched a dict"),
                    }
                    .unwrap_or(default))
                }
                "keys" | "values" | "items" => {
                    want(0, 0)?;
                    let d = dict_of(&obj).expect("a dict");
                    self.charge(d.len() * 48)?;
                    Ok(Py::List(match name {
                        "keys" => d.keys().map(Key::to_py).collect(),
                        "values" => d.into_values().collect(),
                        _ => d
                            .into_iter()
                            .map(|(k, v)| Py::Tuple(vec![k.to_py(), v]))
                            .collect(),
                    }))
                }
                _ => no_attr(&obj, name),
            },
            Py::JArr(_) | Py::List(_) | Py::Tuple(_) if name == "index" || name == "count" => {
                want(1, 1)?;
                let items = match &obj {
                    Py::Tuple(t) => t.clone(),
                    o => seq(o).expect("a list"),
                };
                if name == "count" {
                    return Ok(Py::Int(
                        items.iter().filter(|x| py_eq(x, &args[0])).count() as i64
                    ));
                }
                match items.iter().position(|x| py_eq(x, &args[0])) {
                    Some(i) => Ok(Py::Int(i as i64)),
                    None => fail(format!("{} is not in list", py_repr(&args[0]))),
                }
            }
            Py::Date(d) => match name {
                "isoformat" => {
                    want(0, 0)?;
                    self.string(d.format("%Y-%m-%d").to_string())
                }
                "strftime" => {
                    want(1, 1)?;
                    let Py::Str(f) = &args[0] else {
                        return fail("strftime() argument must be str");
                    };
                    let s = strftime(f, &d.and_hms_opt(0, 0, 0).expect("midnight exists"), &None)?;
                    self.string(s)
                }
                "weekday" => {
                    want(0, 0)?;
                    Ok(Py::Int(i64::from(d.weekday().num_days_from_monday())))
                }
                "isoweekday" => {
                    want(0, 0)?;
                    Ok(Py::Int(i64::from(d.weekday().number_from_monday())))
                }
                _ => no_attr(&obj, name),
            },
            Py::DateTime(dt, off) => match name {
                "isoformat" => {
                    want(0, 1)?;
                    let sep = match args
                        .first()
                        .or_else(|| kw.iter().find(|(k, _)| *k == "sep").map(|(_, v)| v))
                    {
                        Some(Py::Str(s)) if s.chars().count() == 1 => {
                            s.chars().next().expect("one char")
                        }
                        Some(_) => {
                            return fail("isoformat() argument 1 must be a unicode character");
                        }
                        None => 'T',
                    };
                    self.string(iso_datetime(dt, off, sep))
                }
                "strftime" => {
                    want(1, 1)?;
                    let Py::Str(f) = &args[0] else {
                        return fail("strftime() argument must be str");
                    };
                    let s = strftime(f, dt, off)?;
                    self.string(s)
                }
                "timestamp" => {
                    want(0, 0)?;
                    let utc = match off {
                        Some(o) => *dt - *o,
                        None => *dt,
                    };
                    let t = utc.and_utc();
                    Ok(Py::Float(
                        t.timestamp() as f64 + f64::from(t.timestamp_subsec_micros()) / 1e6,
                    ))
                }
                "date" => {
                    want(0, 0)?;
                    Ok(Py::Date(dt.date()))
                }
                "weekday" => {
                    want(0, 0)?;
                    Ok(Py::Int(i64::from(dt.weekday().num_days_from_monday())))
                }
                "isoweekday" => {
                    want(0, 0)?;
                    Ok(Py::Int(i64::from(dt.weekday().number_from_monday())))
                }
                _ => no_attr(&obj, name),
            },
            _ => no_attr(&obj, name),
        }
    }
}

pub(super) fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        if prev_cased {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_cased = c.is_alphabetic();
    }
    out
}

pub(super) fn split(
    s: &str,
    sep: Option<&str>,
    max: i64,
    from_right: bool,
) -> Result<Vec<String>, EvalError> {
    let max = if max < 0 { usize::MAX } else { max as usize };
    match sep {
        Some("") => fail("empty separator"),
        Some(sep) => Ok(if from_right {
            let mut v: Vec<String> = s
                .rsplitn(max.saturating_add(1), sep)
                .map(str::to_string)
                .collect();
            v.reverse();
            v
        } else {
            s.splitn(max.saturating_add(1), sep)
                .map(str::to_string)
                .collect()
        }),
        None => {
            // Whitespace split: runs of whitespace separate, edges are dropped.
            let words: Vec<&str> = s.split_whitespace().collect();
            if words.len() <= max.saturating_add(1) || max == usize::MAX {
                return Ok(words.into_iter().map(str::to_string).collect());
            }
            if from_right {
                let keep = &words[words.len() - max..];
                let head_end = s.trim_end().len() - keep.join(" ").len();
                let mut out = vec![s[..head_end].trim().to_string()];
                out.extend(keep.iter().map(|w| w.to_string()));
                // Python keeps the original spacing in the head; approximate by trimming.
                Ok(out)
            } else {
                let mut out: Vec<String> = words[..max].iter().map(|w| w.to_string()).collect();
                let mut rest = s.trim_start();
                for _ in 0..max {
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    rest = rest[end..].trim_start();
                }
                out.push(rest.to_string());
                Ok(out)
            }
        }
    }
}
