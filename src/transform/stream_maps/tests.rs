use serde_json::json;

use super::*;

fn run(config: Value, lines: &[&str]) -> Result<Vec<Value>, TransformError> {
    let mut t = StreamMaps::from_config(&config)?;
    let mut out = Vec::new();
    for l in lines {
        let m = Message::parse(l.as_bytes()).unwrap();
        if t.touches(m.stream().unwrap_or_default()) {
            t.apply(m, &mut out)?;
        } else {
            out.push(m);
        }
    }
    Ok(out.iter().map(Message::to_value).collect())
}

const SCHEMA: &str = r#"{"type":"SCHEMA","stream":"users","schema":{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":["string","null"]}}},"key_properties":["id"]}"#;

#[test]
fn bad_expression_is_rejected_naming_stream_property_and_expression() {
    let Err(e) = StreamMaps::from_config(&json!({"stream_maps": {"users": {"x": "email.("}}}))
    else {
        panic!("accepted a broken expression");
    };
    for part in ["`users`", "`x`", "`email.(`"] {
        assert!(e.message.contains(part), "{}", e.message);
    }
}

#[test]
fn fstrings_and_format_build_string_properties_on_both_paths() {
    let config = json!({"stream_maps": {"users": {
            "label": "f'{id:05d}-{email.upper()}'",
            "line": "'{} <{}>'.format(id, email)"}}});
    let out = run(
        config.clone(),
        &[
            SCHEMA,
            r#"{"type":"RECORD","stream":"users","record":{"id":7,"email":"a@x.io"}}"#,
        ],
    )
    .unwrap();
    assert_eq!(
        out[0]["schema"]["properties"]["label"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(out[1]["record"]["label"], json!("00007-A@X.IO"));
    assert_eq!(out[1]["record"]["line"], json!("7 <a@x.io>"));
    let (fast, full) = both_paths(
        &config,
        USERS,
        r#"{"type":"RECORD","stream":"users","record":{"id":7,"email":"a@x.io","status":"x"}}"#,
    )
    .unwrap();
    assert_eq!(fast.expect("the line path maps it").unwrap(), full.unwrap());
}

#[test]
fn untouched_streams_are_not_claimed() {
    let t = StreamMaps::from_config(&json!({"stream_maps": {"users": {"x": "1"}, "ord*": null}}))
        .unwrap();
    assert!(t.touches("users"));
    assert!(t.touches("orders"));
    assert!(!t.touches("products"));
}

#[test]
fn removing_a_key_property_is_an_error() {
    let e = StreamMaps::from_config(
        &json!({"stream_maps": {"users": {"id": null, "__key_properties__": ["id"]}}}),
    );
    assert!(e.is_err());
}

#[test]
fn missing_property_names_record_number() {
    let e = run(
        json!({"stream_maps": {"users": {"h": "md5(email)"}}}),
        &[
            SCHEMA,
            r#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"a"}}"#,
            r#"{"type":"RECORD","stream":"users","record":{"id":2}}"#,
        ],
    )
    .unwrap_err();
    assert!(
        e.message.contains("record 2 of stream `users`"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("`email` is not defined"),
        "{}",
        e.message
    );
}

#[test]
fn split_stream_keeps_both_outputs_in_order() {
    let out = run(
        json!({"stream_maps": {"copy": {"__source__": "users", "id": "id", "__else__": null}}}),
        &[
            SCHEMA,
            r#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"a"}}"#,
        ],
    )
    .unwrap();
    let streams: Vec<_> = out
        .iter()
        .map(|m| format!("{}:{}", m["type"], m["stream"]))
        .collect();
    assert_eq!(
        streams,
        [
            r#""SCHEMA":"users""#,
            r#""SCHEMA":"copy""#,
            r#""RECORD":"users""#,
            r#""RECORD":"copy""#
        ]
    );
    assert_eq!(out[3]["record"], json!({"id": 1}));
}

/// The bytes a record became, or the error message.
type Mapped = Result<Vec<u8>, String>;

/// Maps `line` (after `schema`) both ways: the line path, and the full parse with `apply`
/// and `write_line`. Returns (line path result, full path result); `None` for the line
/// path when it declined.
fn both_paths(config: &Value, schema: &str, line: &str) -> Option<(Option<Mapped>, Mapped)> {
    let mut fast = StreamMaps::from_config(config).ok()?;
    let mut full = StreamMaps::from_config(config).unwrap();
    let mut sink = Vec::new();
    fast.apply(Message::parse(schema.as_bytes()).unwrap(), &mut sink)
        .ok()?;
    full.apply(Message::parse(schema.as_bytes()).unwrap(), &mut sink)
        .unwrap();
    let env = crate::singer::envelope::scan(line.as_bytes()).ok()?;
    let stream = env.stream.as_deref().unwrap();
    let mut out = Vec::new();
    let line_path = match fast.apply_record_line(stream, line.as_bytes(), &mut out) {
        Ok(true) => Some(Ok(out)),
        Ok(false) => {
            assert!(out.is_empty(), "declined after writing");
            None
        }
        Err(e) => Some(Err(e.message)),
    };
    let full_path = match Message::parse_scanned(line.as_bytes(), env.kind.clone()) {
        Err(e) => Err(format!("parse: {e}")),
        Ok(m) => {
            let mut msgs = Vec::new();
            match full.apply(m, &mut msgs) {
                Err(e) => Err(e.message),
                Ok(()) => {
                    let mut bytes = Vec::new();
                    for m in msgs {
                        m.write_line(&mut bytes);
                        bytes.push(b'\n');
                    }
                    Ok(bytes)
                }
            }
        }
    };
    Some((line_path, full_path))
}

const USERS: &str = r#"{"type":"SCHEMA","stream":"users","schema":{"type":"object","properties":{"id":{"type":"integer"},"email":{"type":"string"},"status":{"type":"string"},"a":{},"b":{},"c":{}}},"key_properties":["id"]}"#;

#[test]
fn the_benchmark_map_takes_the_line_path_and_writes_what_the_full_path_writes() {
    let config = json!({"stream_maps": {"users": {
            "__alias__": "customers", "__filter__": "status == 'active'",
            "contact": "email", "email": null, "note": null, "email_hash": "md5(email)"}}});
    for (line, kept) in [
        (
            r#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"u@x.io","status":"active","note":"n","amount":1.50},"time_extracted":"2024-01-01T00:00:00Z"}"#,
            true,
        ),
        (
            r#"{"type": "RECORD", "stream": "users", "record": {"id": 2, "email": "v@x.io", "status": "inactive", "a": [1, 2]}}"#,
            false,
        ),
    ] {
        let (fast, full) = both_paths(&config, USERS, line).unwrap();
        let fast = fast.expect("the line path declined").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&fast),
            String::from_utf8_lossy(&full.unwrap())
        );
        assert_eq!(!fast.is_empty(), kept, "{}", String::from_utf8_lossy(&fast));
    }
    let (fast, _) = both_paths(
        &config,
        USERS,
        r#"{"type":"RECORD","stream":"users","record":{"id":1,"email":"u","status":"active"}}"#,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(fast.unwrap().unwrap()).unwrap(),
        r#"{"type":"RECORD","stream":"customers","record":{"id":1,"status":"active","contact":"u","email_hash":"7b774effe4a349c6dd82ad4f4f21d34c"}}
"#
    );
}

#[test]
fn maps_reading_the_whole_record_or_flattening_take_the_full_path() {
    let line = r#"{"type":"RECORD","stream":"users","record":{"id":1}}"#;
    for config in [
        json!({"stream_maps": {"users": {"x": "record.get('id')"}}}),
        json!({"stream_maps": {"users": {"x": "_['id']"}}}),
        json!({"stream_maps": {"users": {}}, "flattening_enabled": true, "flattening_max_depth": 1}),
    ] {
        let (fast, full) = both_paths(&config, USERS, line).unwrap();
        assert!(fast.is_none(), "{config}");
        assert!(full.is_ok());
    }
}

/// Maps `lines` (RECORDs of `users`, after [`USERS`]) one at a time with
/// `apply_record_line`, stopping as a run stops: the output, the lines mapped, the error.
fn one_by_one(config: &Value, lines: &[String]) -> (Vec<u8>, usize, Option<String>) {
    let mut maps = StreamMaps::from_config(config).unwrap();
    maps.apply(Message::parse(USERS.as_bytes()).unwrap(), &mut Vec::new())
        .unwrap();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mark = out.len();
        match maps.apply_record_line("users", line.as_bytes(), &mut out) {
            Ok(true) => {}
            Ok(false) => {
                out.truncate(mark);
                return (out, i, None);
            }
            Err(e) => {
                out.truncate(mark);
                return (out, i, Some(e.message));
            }
        }
    }
    (out, lines.len(), None)
}

/// Maps `lines` as one run with `apply_record_lines` in a pool of `threads` threads.
fn as_run(config: &Value, lines: &[String], threads: usize) -> (Vec<u8>, usize, Option<String>) {
    let mut maps = StreamMaps::from_config(config).unwrap();
    maps.apply(Message::parse(USERS.as_bytes()).unwrap(), &mut Vec::new())
        .unwrap();
    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for line in lines {
        ranges.push(buf.len()..buf.len() + line.len());
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let mut out = Vec::new();
    let mapped = pool.install(|| maps.apply_record_lines("users", &buf, &ranges, &mut out));
    (out, mapped.done, mapped.error.map(|e| e.message))
}

fn users(n: usize, code: impl Fn(usize) -> String) -> Vec<String> {
    (0..n)
            .map(|i| {
                format!(
                    r#"{{"type":"RECORD","stream":"users","record":{{"id":{i},"email":"u{i}@x.io","status":"{}","code":{}}}}}"#,
                    if i % 3 == 0 { "active" } else { "gone" },
                    code(i)
                )
            })
            .collect()
}

#[test]
fn a_run_on_several_threads_writes_and_stops_as_one_line_at_a_time_does() {
    let config = json!({"stream_maps": {"users": {
            "__filter__": "status == 'active'", "h": "md5(email)", "n": "int(code) + id"}}});
    // 300 lines in four parts of 75: a failing line (`int('x')`) or one the line path
    // declines (an escaped key) in each part, or none. Every third record passes the filter.
    let escaped =
        r#"{"type":"RECORD","stream":"users","record":{"\u0069d":3,"status":"active","code":"1"}}"#;
    for (k, declined) in [
        (None, false),
        (Some(0), false),
        (Some(72), false),
        (Some(75), false),
        (Some(159), false),
        (Some(297), false),
        (Some(81), true),
        (Some(230), true),
    ] {
        let mut lines = users(300, |i| {
            if Some(i) == k {
                "\"x\"".into()
            } else {
                format!("\"{i}\"")
            }
        });
        if declined {
            lines[k.unwrap()] = escaped.to_owned();
        }
        let expected = one_by_one(&config, &lines);
        assert_eq!(expected.1, k.unwrap_or(300), "where the case stops");
        assert_eq!(expected.2.is_some(), k.is_some() && !declined);
        for threads in [1, 2, 4] {
            let got = as_run(&config, &lines, threads);
            assert_eq!(
                got.1, expected.1,
                "lines mapped, {threads} threads, bad line {k:?}"
            );
            assert_eq!(got.2, expected.2, "{threads} threads, bad line {k:?}");
            assert!(
                got.0 == expected.0,
                "{threads} threads, bad line {k:?}: other bytes"
            );
        }
    }
    // The error names the record's number in the stream, whichever part it is in.
    let lines = users(300, |i| {
        if i == 201 {
            "\"x\"".into()
        } else {
            "\"1\"".into()
        }
    });
    let (_, done, error) = as_run(&config, &lines, 4);
    assert_eq!(done, 201);
    let error = error.unwrap();
    assert!(error.contains("record 202"), "{error}");
}

#[test]
fn fake_values_stay_in_record_order_on_any_pool() {
    let config = json!({"faker_config": {"seed": 3}, "stream_maps": {"users": {
            "who": "fake.name()"}}});
    let lines = users(300, |i| i.to_string());
    let expected = one_by_one(&config, &lines);
    assert_eq!(expected.1, 300);
    assert!(as_run(&config, &lines, 4) == expected);
}

mod line_path {
    use super::*;
    use proptest::prelude::*;

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => Just("null".to_owned()),
            4 => Just("true".to_owned()),
            16 => (-50i64..50).prop_map(|i| i.to_string()),
            12 => prop::sample::select(vec![
                "-0", "1.50", "1E5", "2e-3", "0.0", "12345678901234567890123",
            ])
            .prop_map(str::to_owned),
            16 => "[a-zé ]{0,5}".prop_map(|s| format!("\"{s}\"")),
            12 => prop::sample::select(vec![
                r#""active""#,
                r#""a\"b\\c\n\t""#,
                r#""\u00e9\/x""#,
            ])
            .prop_map(str::to_owned),
            // What serde_json refuses.
            1 => prop::sample::select(vec!["01", "1.", r#""\ud800""#, "\"raw\ttab\""])
                .prop_map(str::to_owned),
        ]
    }

    fn gap() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", " "])
    }

    fn value() -> impl Strategy<Value = String> {
        scalar().prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                (prop::collection::vec(inner.clone(), 0..3), gap())
                    .prop_map(|(v, g)| format!("[{g}{}]", v.join(&format!(",{g}")))),
                (
                    prop::collection::vec((prop::sample::select(vec!["k", "l", "k"]), inner), 0..3),
                    gap()
                )
                    .prop_map(|(v, g)| {
                        let items: Vec<String> =
                            v.iter().map(|(k, x)| format!("\"{k}\":{g}{x}")).collect();
                        format!("{{{}}}", items.join(","))
                    }),
            ]
        })
    }

    fn record() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            40 => prop::sample::select(vec!["a", "b", "c", "note", "d", "e", "f", "g", "h", "i", "j"]),
            4 => prop::sample::select(vec!["id", "email", "status"]),
            1 => Just("q\\\"k"),
        ];
        (
            -3i64..100,
            "[a-z]{1,4}",
            prop::sample::select(vec!["active", "inactive"]),
            prop::collection::vec((key, value(), gap()), 0..4),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(id, email, status, props, at)| {
                let mut items: Vec<String> = props
                    .iter()
                    .map(|(k, v, g)| format!("\"{k}\"{g}:{g}{v}"))
                    .collect();
                // Mostly a record with the usual properties, somewhere among the others.
                if id >= 0 {
                    let usual = format!(r#""id":{id},"email":"{email}@x.io","status":"{status}""#);
                    items.insert(at.index(items.len() + 1), usual);
                }
                format!("{{{}}}", items.join(","))
            })
    }

    fn line() -> impl Strategy<Value = String> {
        (
            record(),
            prop::option::of(value()),
            prop::option::of(value()),
            prop::option::of(value()),
            prop::sample::select(vec!["RECORD", "record"]),
            gap(),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(record, version, time, extra, kind, g, at)| {
                let mut parts = vec![
                    format!("\"type\":{g}\"{kind}\""),
                    format!("\"stream\":\"users\""),
                ];
                if let Some(v) = version {
                    parts.push(format!("\"version\":{v}"));
                }
                if let Some(e) = extra {
                    parts.push(format!("\"x-extra\":{e}"));
                }
                if let Some(t) = time {
                    parts.push(format!("\"time_extracted\":{t}"));
                }
                parts.insert(at.index(parts.len() + 1), format!("\"record\":{record}"));
                format!("{{{g}{}}}", parts.join(&format!(",{g}")))
            })
    }

    fn mapping() -> impl Strategy<Value = Value> {
        let whole = prop::sample::select(vec![json!("record.get('b')"), json!("_")]);
        let expr = prop::sample::select(vec![
            Value::Null,
            json!("__NULL__"),
            json!("id"),
            json!("email"),
            json!("a"),
            json!("md5(str(email))"),
            json!("str(a) + '!'"),
            json!("self"),
            json!("'const'"),
            json!("int(id) * 2"),
            json!("email"),
            json!("md5(email)"),
            json!("status.upper()"),
        ]);
        let expr = prop_oneof![12 => expr, 1 => whole];
        let props = prop::collection::vec(
            (
                prop::sample::select(vec!["id", "email", "status", "a", "b", "new"]),
                expr,
            ),
            0..5,
        );
        let filter = prop::sample::select(vec![
            None,
            None,
            Some("status == 'active'"),
            Some("status != 'active'"),
            Some("len(str(email)) > 8"),
            Some("record.get('c') is None"),
        ]);
        (
            props,
            filter,
            any::<bool>(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![
                json!(["id"]),
                json!(["status", "id"]),
                json!(null),
            ])),
            any::<bool>(),
        )
            .prop_map(|(props, filter, alias, else_null, keys, split)| {
                let mut map = Map::new();
                for (p, e) in props {
                    map.insert(p.into(), e);
                }
                if let Some(f) = filter {
                    map.insert(FILTER.into(), json!(f));
                }
                if alias {
                    map.insert(ALIAS.into(), json!("customers"));
                }
                if else_null {
                    map.insert(ELSE.into(), Value::Null);
                }
                if let Some(k) = keys {
                    map.insert(KEY_PROPERTIES.into(), k);
                }
                let mut maps = Map::new();
                maps.insert("users".into(), Value::Object(map));
                if split {
                    maps.insert(
                        "copy".into(),
                        json!({"__source__": "users", "status": "str(status) + '?'"}),
                    );
                }
                json!({ "stream_maps": maps })
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Issue 5: the line path writes byte for byte what the full path writes (or fails
        /// with the same message, or declines a line the full path refuses).
        #[test]
        fn writes_what_the_full_path_writes(config in mapping(), line in line()) {
            let Some((fast, full)) = both_paths(&config, USERS, &line) else {
                return Ok(());
            };
            match (fast, full) {
                (None, _) => {}
                (Some(Ok(fast)), Ok(full)) => prop_assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&full),
                    "{} with {}", line, config
                ),
                (Some(Err(fast)), Err(full)) => prop_assert_eq!(fast, full),
                (fast, full) => prop_assert!(false, "{line} with {config}: line path {fast:?}, full path {full:?}"),
            }
        }
    }
}

#[test]
fn flatten_key_abbreviates_long_names() {
    let long = "a_very_long_parent_name".repeat(12);
    let k = flatten_key("child", std::slice::from_ref(&long), "__");
    assert!(k.len() < MAX_KEY_LENGTH, "{k}");
    assert_eq!(k, format!("avlpn{}__child", "vlpn".repeat(11)));
}
