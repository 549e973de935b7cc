//! Stream-map expressions: compile any text, and evaluate what compiles against a small
//! record. Evaluation is capped in steps and memory, so it ends with a value or an error.
#![no_main]

use dsm::transform::expr::{Context, Expr};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|source: &str| {
    let Ok(expr) = Expr::compile(source) else {
        return;
    };
    let record = json!({"id": 7, "name": "ada", "amount": 19.99, "tags": ["a", "b"],
        "nested": {"k": [1, 2, {"x": null}]}, "created": "2024-01-01T12:00:00Z"});
    let record = record.as_object().unwrap();
    let config = json!({"salt": "s"});
    let ctx = Context {
        record,
        property: Some("name"),
        config: &config,
        stream_name: "users",
        original_stream_name: "users",
        fake: None,
    };
    let _ = expr.eval_json(&ctx);
});
