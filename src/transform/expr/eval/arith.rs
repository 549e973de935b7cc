//! Arithmetic with Python's rules for `int`, `float` and `decimal.Decimal`, and the `int()`
//! and `float()` conversions.

use std::borrow::Cow;

use super::*;

impl<'c, 'a> Interp<'c, 'a> {
    pub(super) fn binop(&mut self, op: BinOp, l: Py<'a>, r: Py<'a>) -> Result<Py<'a>, EvalError> {
        if let (Some(x), Some(y)) = (num(&l), num(&r)) {
            return arith(op, x, y);
        }
        match (op, &l, &r) {
            (BinOp::Add, Py::Str(a), Py::Str(b)) => {
                let mut s = String::with_capacity(a.len() + b.len());
                s.push_str(a);
                s.push_str(b);
                self.string(s)
            }
            (BinOp::Mul, Py::Str(s), Py::Int(n)) | (BinOp::Mul, Py::Int(n), Py::Str(s)) => {
                let n = (*n).max(0) as usize;
                self.charge(s.len().saturating_mul(n))?;
                Ok(Py::Str(Cow::Owned(s.repeat(n))))
            }
            // Joined and repeated sequences copy their items: what the copies own is charged
            // before they are made.
            (BinOp::Add, Py::Tuple(a), Py::Tuple(b)) => {
                self.charge(size_of(&l, true).saturating_add(size_of(&r, true)))?;
                Ok(Py::Tuple(a.iter().chain(b).cloned().collect()))
            }
            (BinOp::Add, Py::List(_) | Py::JArr(_), Py::List(_) | Py::JArr(_)) => {
                self.charge(size_of(&l, true).saturating_add(size_of(&r, true)))?;
                self.charge((seq_len(&l) + seq_len(&r)) * 16)?;
                let mut a = seq(&l).expect("checked");
                let b = seq(&r).expect("checked");
                a.extend(b);
                Ok(Py::List(a))
            }
            (BinOp::Mul, Py::List(_) | Py::JArr(_), Py::Int(n)) => {
                let n = (*n).max(0) as usize;
                self.charge(size_of(&l, true).saturating_mul(n))?;
                self.charge(seq_len(&l).saturating_mul(n).saturating_mul(16))?;
                let a = seq(&l).expect("checked");
                Ok(Py::List(
                    a.iter().cycle().take(a.len() * n).cloned().collect(),
                ))
            }
            (BinOp::Add, Py::DateTime(dt, off), Py::Delta(d))
            | (BinOp::Add, Py::Delta(d), Py::DateTime(dt, off)) => {
                Ok(Py::DateTime(delta::shift(dt, *d)?, *off))
            }
            (BinOp::Sub, Py::DateTime(dt, off), Py::Delta(d)) => Ok(Py::DateTime(
                delta::shift(dt, d.checked_neg().ok_or_else(overflow)?)?,
                *off,
            )),
            (BinOp::Add, Py::Date(day), Py::Delta(d))
            | (BinOp::Add, Py::Delta(d), Py::Date(day)) => {
                Ok(Py::Date(delta::shift_date(day, *d)?))
            }
            (BinOp::Sub, Py::Date(day), Py::Delta(d)) => Ok(Py::Date(delta::shift_date(
                day,
                d.checked_neg().ok_or_else(overflow)?,
            )?)),
            (BinOp::Sub, Py::DateTime(a, o), Py::DateTime(b, p)) => match (o, p) {
                (None, None) => Ok(Py::Delta(delta::between(a, b)?)),
                (Some(o), Some(p)) => Ok(Py::Delta(delta::between(&(*a - *o), &(*b - *p))?)),
                _ => fail("can't subtract offset-naive and offset-aware datetimes"),
            },
            (BinOp::Sub, Py::Date(a), Py::Date(b)) => Ok(Py::Delta(delta::between(
                &a.and_hms_opt(0, 0, 0).expect("midnight exists"),
                &b.and_hms_opt(0, 0, 0).expect("midnight exists"),
            )?)),
            (BinOp::Add, Py::Delta(a), Py::Delta(b)) => {
                Ok(Py::Delta(delta::checked(i128::from(*a) + i128::from(*b))?))
            }
            (BinOp::Sub, Py::Delta(a), Py::Delta(b)) => {
                Ok(Py::Delta(delta::checked(i128::from(*a) - i128::from(*b))?))
            }
            (BinOp::Mul, Py::Delta(d), n) | (BinOp::Mul, n, Py::Delta(d)) if num(n).is_some() => {
                match num(n).expect("checked") {
                    Num::I(i) => Ok(Py::Delta(delta::checked(i128::from(*d) * i128::from(i))?)),
                    Num::F(f) => Ok(Py::Delta(delta::round_micros(*d as f64 * f)?)),
                    Num::D(_) => fail(format!(
                        "unsupported operand type(s) for *: '{}' and '{}'",
                        l.type_name(),
                        r.type_name()
                    )),
                }
            }
            (BinOp::Div, Py::Delta(a), Py::Delta(b)) => {
                if *b == 0 {
                    return fail("division by zero");
                }
                Ok(Py::Float(*a as f64 / *b as f64))
            }
            (BinOp::FloorDiv, Py::Delta(a), Py::Delta(b)) => {
                if *b == 0 {
                    return fail("integer division or modulo by zero");
                }
                Ok(Py::Int(
                    a.div_euclid(*b) - i64::from(a.rem_euclid(*b) != 0 && *b < 0),
                ))
            }
            (BinOp::Mod, Py::Delta(a), Py::Delta(b)) => {
                if *b == 0 {
                    return fail("integer division or modulo by zero");
                }
                // Python's modulo takes the sign of the divisor.
                Ok(Py::Delta(((a % b) + b) % b))
            }
            (BinOp::Div | BinOp::FloorDiv, Py::Delta(d), n) if num(n).is_some() => {
                match (op, num(n).expect("checked")) {
                    (_, Num::D(_)) => fail(format!(
                        "unsupported operand type(s) for {}: 'datetime.timedelta' and 'decimal.Decimal'",
                        op_symbol(op)
                    )),
                    (_, Num::I(0)) => fail("integer division or modulo by zero"),
                    (_, Num::F(0.0)) => fail("division by zero"),
                    (BinOp::FloorDiv, Num::I(i)) => Ok(Py::Delta(
                        d.div_euclid(i) - i64::from(d.rem_euclid(i) != 0 && i < 0),
                    )),
                    (BinOp::FloorDiv, Num::F(_)) => {
                        fail("unsupported operand type(s) for //: 'datetime.timedelta' and 'float'")
                    }
                    (_, Num::I(i)) => Ok(Py::Delta(delta::round_micros(*d as f64 / i as f64)?)),
                    (_, Num::F(f)) => Ok(Py::Delta(delta::round_micros(*d as f64 / f)?)),
                }
            }
            (BinOp::Add | BinOp::Sub, Py::DateTime(..) | Py::Date(_) | Py::Delta(_), _)
            | (BinOp::Sub, _, Py::DateTime(..) | Py::Date(_) | Py::Delta(_)) => fail(format!(
                "unsupported operand type(s) for {}: '{}' and '{}'",
                op_symbol(op),
                l.type_name(),
                r.type_name()
            )),
            _ => fail(format!(
                "unsupported operand type(s) for {}: '{}' and '{}'",
                op_symbol(op),
                l.type_name(),
                r.type_name()
            )),
        }
    }
}

pub(super) fn overflow() -> EvalError {
    EvalError::Failed("integer overflow (dsm integers are 64-bit)".into())
}

pub(super) fn op_symbol(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::FloorDiv => "//",
        BinOp::Mod => "%",
        BinOp::Pow => "**",
    }
}

pub(super) fn arith<'a>(op: BinOp, x: Num, y: Num) -> Result<Py<'a>, EvalError> {
    match (x, y) {
        (Num::D(_), Num::F(_)) => fail(format!(
            "TypeError: unsupported operand type(s) for {}: 'decimal.Decimal' and 'float'",
            op_symbol(op)
        )),
        (Num::F(_), Num::D(_)) => fail(format!(
            "TypeError: unsupported operand type(s) for {}: 'float' and 'decimal.Decimal'",
            op_symbol(op)
        )),
        (x @ Num::D(_), y) | (x, y @ Num::D(_)) => {
            let exact = |n: Num| match n {
                Num::I(i) => Dec::from_i64(i),
                Num::D(d) => d,
                Num::F(_) => unreachable!("floats were turned away above"),
            };
            dec_arith(op, &exact(x), &exact(y))
        }
        (x, y) => float_or_int_arith(op, x, y),
    }
}

/// Arithmetic on `Decimal`s (an integer operand was made one): exact within 28 digits.
pub(super) fn dec_arith<'a>(op: BinOp, a: &Dec, b: &Dec) -> Result<Py<'a>, EvalError> {
    dec(match op {
        BinOp::Add => a.add(b),
        BinOp::Sub => a.sub(b),
        BinOp::Mul => a.mul(b),
        BinOp::Div => a.div(b),
        BinOp::FloorDiv => a.floor_div(b),
        BinOp::Mod => a.rem(b),
        BinOp::Pow => {
            let power = b.is_integral().then(|| b.trunc()).flatten();
            match power.and_then(|n| a.powi(n)) {
                Some(r) => r,
                None => {
                    return fail(
                        "a Decimal raised to a non-integral or very large power is not supported; \
                         convert with float() first",
                    );
                }
            }
        }
    })
}

pub(super) fn float_or_int_arith<'a>(op: BinOp, x: Num, y: Num) -> Result<Py<'a>, EvalError> {
    if let (Num::I(a), Num::I(b)) = (&x, &y) {
        let (a, b) = (*a, *b);
        return Ok(match op {
            BinOp::Add => Py::Int(a.checked_add(b).ok_or_else(overflow)?),
            BinOp::Sub => Py::Int(a.checked_sub(b).ok_or_else(overflow)?),
            BinOp::Mul => Py::Int(a.checked_mul(b).ok_or_else(overflow)?),
            BinOp::Div => {
                if b == 0 {
                    return fail("ZeroDivisionError: division by zero");
                }
                Py::Float(a as f64 / b as f64)
            }
            BinOp::FloorDiv | BinOp::Mod => {
                if b == 0 {
                    return fail("ZeroDivisionError: integer division or modulo by zero");
                }
                let q = a.checked_div_euclid(b).ok_or_else(overflow)?;
                let r = a.rem_euclid(b);
                // Python floors towards negative infinity; the remainder takes the divisor's sign.
                let (q, r) = if b < 0 && r != 0 {
                    (q + 1, r + b)
                } else {
                    (q, r)
                };
                if op == BinOp::FloorDiv {
                    Py::Int(q)
                } else {
                    Py::Int(r)
                }
            }
            BinOp::Pow => {
                if b < 0 {
                    Py::Float((a as f64).powf(b as f64))
                } else {
                    let e = u32::try_from(b).map_err(|_| overflow())?;
                    Py::Int(a.checked_pow(e).ok_or_else(overflow)?)
                }
            }
        });
    }
    let (a, b) = (as_f64(x), as_f64(y));
    Ok(Py::Float(match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => {
            if b == 0.0 {
                return fail("ZeroDivisionError: float division by zero");
            }
            a / b
        }
        BinOp::FloorDiv => {
            if b == 0.0 {
                return fail("ZeroDivisionError: float floor division by zero");
            }
            (a / b).floor()
        }
        BinOp::Mod => {
            if b == 0.0 {
                return fail("ZeroDivisionError: float modulo");
            }
            let r = a % b;
            if r != 0.0 && (r < 0.0) != (b < 0.0) {
                r + b
            } else {
                r
            }
        }
        BinOp::Pow => a.powf(b),
    }))
}

pub(super) fn float_to_int(f: f64) -> Result<i64, EvalError> {
    if !f.is_finite() {
        return fail("cannot convert float infinity or NaN to integer");
    }
    if f.abs() >= 9.2e18 {
        return Err(overflow());
    }
    Ok(f.trunc() as i64)
}

pub(super) fn to_i64(v: &Py<'_>) -> Result<i64, EvalError> {
    match v {
        Py::Int(i) => Ok(*i),
        Py::Bool(b) => Ok(i64::from(*b)),
        other => fail(format!(
            "'{}' object cannot be interpreted as an integer",
            other.type_name()
        )),
    }
}

pub(super) fn to_int<'a>(v: Py<'a>) -> Result<Py<'a>, EvalError> {
    Ok(match &v {
        Py::Int(_) => v,
        Py::Bool(b) => Py::Int(i64::from(*b)),
        Py::Float(f) => Py::Int(float_to_int(*f)?),
        Py::Dec(d) => match Dec::parse(d) {
            Some(x) => Py::Int(x.trunc().ok_or_else(overflow)?),
            None => Py::Int(float_to_int(d.parse().unwrap_or(f64::NAN))?),
        },
        Py::Str(s) => {
            let t = s.trim().replace('_', "");
            match t.parse::<i64>() {
                Ok(i) => Py::Int(i),
                Err(_) => {
                    return fail(format!(
                        "invalid literal for int() with base 10: {}",
                        py_repr(&v)
                    ));
                }
            }
        }
        other => {
            return fail(format!(
                "int() argument must be a string or a real number, not '{}'",
                other.type_name()
            ));
        }
    })
}

pub(super) fn to_float<'a>(v: Py<'a>) -> Result<Py<'a>, EvalError> {
    Ok(match &v {
        Py::Str(s) => {
            let t = s.trim().to_lowercase();
            let f = match t.as_str() {
                "nan" | "+nan" | "-nan" => f64::NAN,
                "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
                "-inf" | "-infinity" => f64::NEG_INFINITY,
                _ => match t.replace('_', "").parse::<f64>() {
                    Ok(f) => f,
                    Err(_) => {
                        return fail(format!(
                            "could not convert string to float: {}",
                            py_repr(&v)
                        ));
                    }
                },
            };
            Py::Float(f)
        }
        other => match num(other) {
            Some(n) => Py::Float(as_f64(n)),
            None => {
                return fail(format!(
                    "float() argument must be a string or a real number, not '{}'",
                    other.type_name()
                ));
            }
        },
    })
}
