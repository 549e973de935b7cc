//! A safe evaluator for the Python expressions Singer SDK stream maps use.
//!
//! Expressions are parsed and their names resolved once ([`Expr::compile`]); evaluation then
//! reads the record in place (no copy of the record per expression) and is bounded in steps and
//! in the memory it may allocate, so a hostile expression fails instead of hanging the run.
//! The language is what `simpleeval` (which the SDK uses) accepts, plus `len`, `min`, `max` and
//! a few other pure built-ins users reach for.

mod decimal;
mod delta;
mod eval;
mod fake;
mod format;
mod parse;

use std::cell::RefCell;

use serde_json::{Map, Value};

pub use eval::{Global, Py};
pub(crate) use eval::{iso_datetime, parse_iso_datetime};
pub use fake::Faker;
use parse::{Node, Target};

/// Most evaluation steps one expression may take on one record.
pub const MAX_STEPS: u64 = 1_000_000;
/// Most bytes one evaluation may allocate for strings and containers.
pub const MAX_ALLOC: usize = 16 * 1024 * 1024;

/// An expression could not be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

impl ExprError {
    fn syntax(msg: impl Into<String>) -> Self {
        ExprError(msg.into())
    }
}

/// An expression failed on a record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// A bare name that is neither a built-in nor a property of the record.
    #[error("name `{0}` is not defined")]
    NameNotDefined(String),
    /// Anything else Python would raise (wrong type, bad value, missing key …).
    #[error("{0}")]
    Failed(String),
    /// The expression hit the step or memory limit.
    #[error("{0}")]
    Limit(String),
}

/// What an expression can see while it runs.
pub struct Context<'a> {
    /// The record, whose properties are also bare names.
    pub record: &'a Map<String, Value>,
    /// The property being computed, for `self`.
    pub property: Option<&'a str>,
    /// `stream_map_config`, seen as `config`.
    pub config: &'a Value,
    /// The stream's name after aliasing (`__stream_name__`).
    pub stream_name: &'a str,
    /// The stream's name as the tap sent it (`__original_stream_name__`).
    pub original_stream_name: &'a str,
    /// The `fake` object, when faker is configured.
    pub fake: Option<&'a RefCell<Faker>>,
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    node: Node,
    slots: usize,
}

impl Expr {
    /// Parses `source` and resolves its names. Fails on syntax the language does not have,
    /// on calls of unknown functions and on attributes no value has.
    pub fn compile(source: &str) -> Result<Expr, ExprError> {
        let mut node = parse::parse(source)?;
        let mut scope = Vec::new();
        let mut slots = 0;
        resolve(&mut node, &mut scope, &mut slots)?;
        check(&node)?;
        Ok(Expr {
            source: source.to_owned(),
            node,
            slots,
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// If the expression is a bare property name, that name (a fast passthrough).
    pub fn as_property(&self) -> Option<&str> {
        match &self.node {
            Node::Prop(p) => Some(p),
            _ => None,
        }
    }

    /// The record properties the expression can read while computing `property` (`None` for
    /// `__filter__`): its bare names, and `property` itself when it uses `self`. `None` when it
    /// reads the whole record (`record`, `_`), so every property may matter.
    pub fn record_names(&self, property: Option<&str>) -> Option<Vec<String>> {
        let mut names: Vec<String> = Vec::new();
        let mut whole = false;
        walk(&self.node, &mut |n| match n {
            Node::Prop(p) if !names.contains(p) => names.push(p.clone()),
            Node::Global(Global::Record) => whole = true,
            Node::Global(Global::SelfValue) => {
                if let Some(p) = property
                    && !names.iter().any(|n| n == p)
                {
                    names.push(p.to_owned());
                }
            }
            _ => {}
        });
        (!whole).then_some(names)
    }

    /// Whether the expression calls `fake`, whose values depend on how many came before: such
    /// an expression must see the records one at a time, in order.
    pub fn uses_fake(&self) -> bool {
        let mut found = false;
        walk(&self.node, &mut |n| {
            found |= matches!(n, Node::Global(Global::Fake));
        });
        found
    }

    /// What the expression uses beyond the Singer SDK's evaluator: functions the SDK does not
    /// define (`len`, `min`, `round` ...) and the `format` / `format_map` string methods it
    /// refuses. Empty when the SDK's mapper runs it as well (the `sdk` dialect).
    pub fn beyond_sdk(&self) -> Vec<&'static str> {
        let mut found: Vec<&'static str> = Vec::new();
        walk(&self.node, &mut |n| {
            let name = match n {
                Node::Global(Global::Func(f)) => eval::sdk_missing(*f),
                Node::Call(callee, _, _) => match callee.as_ref() {
                    Node::Attr(_, m) if m == "format" => Some("str.format"),
                    Node::Attr(_, m) if m == "format_map" => Some("str.format_map"),
                    _ => None,
                },
                _ => None,
            };
            if let Some(name) = name
                && !found.contains(&name)
            {
                found.push(name);
            }
        });
        found
    }

    /// Evaluates the expression on one record.
    pub fn eval<'a>(&'a self, ctx: &Context<'a>) -> Result<Py<'a>, EvalError> {
        eval::Interp::new(ctx, self.slots).eval(&self.node)
    }

    /// Evaluates the expression and converts the result to JSON.
    pub fn eval_json(&self, ctx: &Context<'_>) -> Result<Value, EvalError> {
        match self.eval(ctx)? {
            // A string the expression built (`md5(...)`, `str(...)`) moves into the record.
            Py::Str(std::borrow::Cow::Owned(s)) => Ok(Value::String(s)),
            other => other.to_json(),
        }
    }
}

fn resolve(
    node: &mut Node,
    scope: &mut Vec<(String, usize)>,
    slots: &mut usize,
) -> Result<(), ExprError> {
    match node {
        Node::Name(name) => {
            *node = if let Some((_, slot)) = scope.iter().rev().find(|(n, _)| n == name) {
                Node::Local(*slot)
            } else if let Some(g) = Global::by_name(name) {
                Node::Global(g)
            } else {
                Node::Prop(std::mem::take(name))
            };
        }
        Node::Const(_) | Node::Prop(_) | Node::Global(_) | Node::Local(_) => {}
        Node::Attr(inner, _) | Node::Neg(inner) | Node::Pos(inner) | Node::Not(inner) => {
            resolve(inner, scope, slots)?
        }
        Node::Call(f, args, kwargs) => {
            resolve(f, scope, slots)?;
            for a in args {
                resolve(a, scope, slots)?;
            }
            for (_, a) in kwargs {
                resolve(a, scope, slots)?;
            }
        }
        Node::Index(a, b) | Node::Bin(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
            resolve(a, scope, slots)?;
            resolve(b, scope, slots)?;
        }
        Node::Slice(a, parts) => {
            resolve(a, scope, slots)?;
            for p in parts.iter_mut().flatten() {
                resolve(p, scope, slots)?;
            }
        }
        Node::Cmp(a, rest) => {
            resolve(a, scope, slots)?;
            for (_, n) in rest {
                resolve(n, scope, slots)?;
            }
        }
        Node::IfElse(a, b, c) => {
            resolve(a, scope, slots)?;
            resolve(b, scope, slots)?;
            resolve(c, scope, slots)?;
        }
        Node::List(items) | Node::Tuple(items) | Node::Set(items) => {
            for i in items {
                resolve(i, scope, slots)?;
            }
        }
        Node::Dict(items) => {
            for (k, v) in items {
                resolve(k, scope, slots)?;
                resolve(v, scope, slots)?;
            }
        }
        Node::ListComp(elt, gens) | Node::SetComp(elt, gens) => {
            let depth = scope.len();
            resolve_gens(gens, scope, slots)?;
            resolve(elt, scope, slots)?;
            scope.truncate(depth);
        }
        Node::DictComp(k, v, gens) => {
            let depth = scope.len();
            resolve_gens(gens, scope, slots)?;
            resolve(k, scope, slots)?;
            resolve(v, scope, slots)?;
            scope.truncate(depth);
        }
    }
    Ok(())
}

fn resolve_gens(
    gens: &mut [parse::Generator],
    scope: &mut Vec<(String, usize)>,
    slots: &mut usize,
) -> Result<(), ExprError> {
    for g in gens {
        resolve(&mut g.iter, scope, slots)?;
        bind(&mut g.target, scope, slots);
        for c in &mut g.conds {
            resolve(c, scope, slots)?;
        }
    }
    Ok(())
}

fn bind(target: &mut Target, scope: &mut Vec<(String, usize)>, slots: &mut usize) {
    match target {
        Target::Name(n) => {
            scope.push((n.clone(), *slots));
            *target = Target::Slot(*slots);
            *slots += 1;
        }
        Target::Slot(_) => {}
        Target::Tuple(items) => {
            for t in items {
                bind(t, scope, slots);
            }
        }
    }
}

/// Rejects calls and attributes that can never work, so the run stops before any record moves.
fn check(node: &Node) -> Result<(), ExprError> {
    let mut err = None;
    walk(node, &mut |n| {
        if err.is_some() {
            return;
        }
        match n {
            Node::Call(f, _, _) => match f.as_ref() {
                Node::Global(g) if !g.is_callable() => {
                    err = Some(ExprError(format!("`{}` is not a function", g.name())));
                }
                Node::Prop(p) => {
                    err = Some(ExprError(format!("`{p}` is not a function dsm knows")));
                }
                Node::Const(_) => err = Some(ExprError("a constant is not callable".into())),
                Node::Attr(_, name) if !eval::is_known_method(name) => {
                    err = Some(ExprError(format!("`.{name}()` is not a method dsm knows")));
                }
                _ => {}
            },
            Node::Attr(_, name) if !eval::is_known_attribute(name) => {
                err = Some(ExprError(format!(
                    "`.{name}` is not an attribute dsm knows"
                )));
            }
            _ => {}
        }
    });
    err.map_or(Ok(()), Err)
}

fn walk(node: &Node, f: &mut impl FnMut(&Node)) {
    f(node);
    match node {
        Node::Const(_) | Node::Name(_) | Node::Prop(_) | Node::Global(_) | Node::Local(_) => {}
        Node::Attr(inner, _) | Node::Neg(inner) | Node::Pos(inner) | Node::Not(inner) => {
            walk(inner, f)
        }
        Node::Call(g, args, kwargs) => {
            walk(g, f);
            args.iter().for_each(|a| walk(a, f));
            kwargs.iter().for_each(|(_, a)| walk(a, f));
        }
        Node::Index(a, b) | Node::Bin(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
            walk(a, f);
            walk(b, f);
        }
        Node::Slice(a, parts) => {
            walk(a, f);
            parts.iter().flatten().for_each(|p| walk(p, f));
        }
        Node::Cmp(a, rest) => {
            walk(a, f);
            rest.iter().for_each(|(_, n)| walk(n, f));
        }
        Node::IfElse(a, b, c) => {
            walk(a, f);
            walk(b, f);
            walk(c, f);
        }
        Node::List(items) | Node::Tuple(items) | Node::Set(items) => {
            items.iter().for_each(|i| walk(i, f))
        }
        Node::Dict(items) => items.iter().for_each(|(k, v)| {
            walk(k, f);
            walk(v, f);
        }),
        Node::ListComp(elt, gens) | Node::SetComp(elt, gens) => {
            walk(elt, f);
            gens.iter().for_each(|g| {
                walk(&g.iter, f);
                g.conds.iter().for_each(|c| walk(c, f));
            });
        }
        Node::DictComp(k, v, gens) => {
            walk(k, f);
            walk(v, f);
            gens.iter().for_each(|g| {
                walk(&g.iter, f);
                g.conds.iter().for_each(|c| walk(c, f));
            });
        }
    }
}

#[cfg(test)]
mod tests;
