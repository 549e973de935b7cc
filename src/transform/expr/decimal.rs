//! Python's `decimal.Decimal` under its default context: 28 significant digits, rounding half to
//! even. The Singer SDK reads every non-integral JSON number of a record as a `Decimal`, so in
//! Meltano `amount * 100` on `19.99` is exactly `1999.00`; doing the same sums in binary floats
//! would give `1998.9999999999998`. Results follow the General Decimal Arithmetic rules Python
//! implements: exact when they fit in 28 digits (keeping the operands' exponents, so trailing
//! zeros stay), otherwise rounded once.
//!
//! `merge::value` keeps a comparison-only decimal of its own: it orders numbers on the merge's
//! per-record path, where reading digits as text is cheaper than building big integers.

use std::cmp::Ordering;

use num_bigint::BigUint;
use num_integer::Integer as _;
use num_traits::{One as _, ToPrimitive as _, Zero as _};

/// Significant digits of a result (Python's default context).
pub const PREC: u64 = 28;
/// The largest adjusted exponent of a result (Python's default `Emax`); beyond it Python raises
/// `Overflow`. The same bound keeps exponents of parsed numbers from asking for absurd powers.
const EMAX: i64 = 999_999;

/// A finite decimal: `(-1)^neg × coeff × 10^exp`. Zero keeps its sign and exponent, as in
/// Python (`-0.00` is a value of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dec {
    neg: bool,
    coeff: BigUint,
    exp: i64,
}

/// Why an operation has no result, in Python's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecError {
    /// `x / 0` or `x // 0` with `x` not zero.
    DivisionByZero,
    /// `0 / 0`, `x % 0`, or a quotient too long for the context.
    InvalidOperation,
    /// The result's exponent is beyond `Emax`.
    Overflow,
}

impl std::fmt::Display for DecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DecError::DivisionByZero => {
                "decimal.DivisionByZero: [<class 'decimal.DivisionByZero'>]"
            }
            DecError::InvalidOperation => {
                "decimal.InvalidOperation: [<class 'decimal.InvalidOperation'>]"
            }
            DecError::Overflow => "decimal.Overflow: [<class 'decimal.Overflow'>]",
        })
    }
}

fn pow10(n: u64) -> BigUint {
    BigUint::from(10u32).pow(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Decimal digits of `c` (one for zero).
fn digits(c: &BigUint) -> u64 {
    if c.is_zero() {
        return 1;
    }
    // bits × log10(2) is at most one below the count; correct with one comparison.
    let estimate = ((c.bits() - 1) as f64 * std::f64::consts::LOG10_2) as u64 + 1;
    if *c >= pow10(estimate) {
        estimate + 1
    } else {
        estimate
    }
}

/// Divides `c` by `10^n`, rounding half to even.
fn round_off(c: &BigUint, n: u64) -> BigUint {
    let (q, r) = c.div_rem(&pow10(n));
    let twice = r << 1u8;
    let unit = pow10(n);
    match twice.cmp(&unit) {
        Ordering::Greater => q + 1u32,
        Ordering::Equal if q.is_odd() => q + 1u32,
        _ => q,
    }
}

impl Dec {
    fn new(neg: bool, coeff: BigUint, exp: i64) -> Dec {
        Dec { neg, coeff, exp }
    }

    /// Reads a JSON number (or Python's `str` of a finite `Decimal`); `None` when `text` is not
    /// one.
    pub fn parse(text: &str) -> Option<Dec> {
        let (neg, rest) = match text.as_bytes().first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (mantissa, exponent) = match rest.find(['e', 'E']) {
            Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
            None => (rest, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let all = format!("{int}{frac}");
        let coeff = all.parse::<BigUint>().ok()?;
        let exp = exponent.checked_sub(i64::try_from(frac.len()).ok()?)?;
        (exp.abs() <= 2 * EMAX).then(|| Dec::new(neg, coeff, exp))
    }

    /// An integer.
    pub fn from_i64(i: i64) -> Dec {
        Dec::new(i < 0, BigUint::from(i.unsigned_abs()), 0)
    }

    /// The exact value of a finite float (every float is a decimal with at most 767 digits);
    /// `None` for infinities and NaN.
    pub fn from_f64(f: f64) -> Option<Dec> {
        if !f.is_finite() {
            return None;
        }
        let bits = f.to_bits();
        let neg = bits >> 63 == 1;
        let raw_exp = ((bits >> 52) & 0x7ff) as i64;
        let frac = bits & ((1 << 52) - 1);
        let (mut mantissa, mut e2) = if raw_exp == 0 {
            (frac, -1074)
        } else {
            (frac | (1 << 52), raw_exp - 1075)
        };
        if mantissa == 0 {
            return Some(Dec::new(neg, BigUint::zero(), 0));
        }
        // The fewest digits: an even mantissa halves into a smaller power of two.
        let twos = i64::from(mantissa.trailing_zeros()).min(-e2).max(0);
        mantissa >>= twos;
        e2 += twos;
        let m = BigUint::from(mantissa);
        Some(if e2 >= 0 {
            Dec::new(neg, m << u64::try_from(e2).unwrap_or(0), 0)
        } else {
            // m × 2^e2 = m × 5^-e2 × 10^e2
            let five = BigUint::from(5u32).pow(u32::try_from(-e2).unwrap_or(0));
            Dec::new(neg, m * five, e2)
        })
    }

    pub fn is_zero(&self) -> bool {
        self.coeff.is_zero()
    }

    fn adjusted(&self) -> i64 {
        self.exp + digits(&self.coeff) as i64 - 1
    }

    /// Rounds to the context's precision (Python's `_fix`).
    fn fix(mut self) -> Result<Dec, DecError> {
        let n = digits(&self.coeff);
        if n > PREC {
            let drop = n - PREC;
            let mut q = round_off(&self.coeff, drop);
            let mut exp = self.exp + drop as i64;
            if digits(&q) > PREC {
                q /= 10u32;
                exp += 1;
            }
            self.coeff = q;
            self.exp = exp;
        }
        if !self.is_zero() && self.adjusted() > EMAX {
            return Err(DecError::Overflow);
        }
        Ok(self)
    }

    /// `self` with exponent `exp`, rounding half to even when that drops digits.
    fn rescale(&self, exp: i64) -> Dec {
        match exp.cmp(&self.exp) {
            Ordering::Equal => self.clone(),
            Ordering::Less => Dec::new(self.neg, &self.coeff * pow10((self.exp - exp) as u64), exp),
            Ordering::Greater => {
                let drop = (exp - self.exp) as u64;
                let coeff = if drop > digits(&self.coeff) + 1 {
                    BigUint::zero()
                } else {
                    round_off(&self.coeff, drop)
                };
                Dec::new(self.neg, coeff, exp)
            }
        }
    }

    pub fn neg(&self) -> Result<Dec, DecError> {
        // Under half-even rounding, minus zero is plus zero.
        let neg = !self.neg && !self.is_zero();
        Dec::new(neg, self.coeff.clone(), self.exp).fix()
    }

    pub fn abs(&self) -> Result<Dec, DecError> {
        Dec::new(false, self.coeff.clone(), self.exp).fix()
    }

    pub fn add(&self, other: &Dec) -> Result<Dec, DecError> {
        let exp = self.exp.min(other.exp);
        if self.is_zero() && other.is_zero() {
            return Dec::new(self.neg && other.neg, BigUint::zero(), exp).fix();
        }
        if self.is_zero() || other.is_zero() {
            // A zero only lowers the exponent, as far as the precision keeps digits.
            let (x, z) = if self.is_zero() {
                (other, self)
            } else {
                (self, other)
            };
            let floor = x.exp - PREC as i64 - 1;
            return x.rescale(z.exp.max(floor).min(x.exp)).fix();
        }
        // An operand far below the other's last kept digit only decides the rounding: it is
        // replaced by a one just as far below, so the sum stays small.
        let (big, small) = if self.adjusted() >= other.adjusted() {
            (self, other)
        } else {
            (other, self)
        };
        let keep = big.exp.min(big.adjusted() - PREC as i64 - 1);
        let small = if small.adjusted() < keep - 1 {
            Dec::new(small.neg, BigUint::one(), keep - 2)
        } else {
            small.clone()
        };
        let exp = big.exp.min(small.exp);
        let a = &big.coeff * pow10((big.exp - exp) as u64);
        let b = &small.coeff * pow10((small.exp - exp) as u64);
        let (neg, coeff) = if big.neg == small.neg {
            (big.neg, a + b)
        } else {
            match a.cmp(&b) {
                Ordering::Greater => (big.neg, a - b),
                Ordering::Less => (small.neg, b - a),
                Ordering::Equal => (false, BigUint::zero()),
            }
        };
        Dec::new(neg, coeff, exp).fix()
    }

    pub fn sub(&self, other: &Dec) -> Result<Dec, DecError> {
        let minus = Dec::new(!other.neg, other.coeff.clone(), other.exp);
        self.add(&minus)
    }

    pub fn mul(&self, other: &Dec) -> Result<Dec, DecError> {
        Dec::new(
            self.neg != other.neg,
            &self.coeff * &other.coeff,
            self.exp + other.exp,
        )
        .fix()
    }

    /// `self / other` (Python's `/`).
    pub fn div(&self, other: &Dec) -> Result<Dec, DecError> {
        let neg = self.neg != other.neg;
        if other.is_zero() {
            return Err(if self.is_zero() {
                DecError::InvalidOperation
            } else {
                DecError::DivisionByZero
            });
        }
        let ideal = self.exp - other.exp;
        if self.is_zero() {
            return Dec::new(neg, BigUint::zero(), ideal).fix();
        }
        // Enough digits for the precision plus one to round on.
        let shift = digits(&other.coeff) as i64 - digits(&self.coeff) as i64 + PREC as i64 + 1;
        let mut exp = ideal - shift;
        let (mut q, r) = if shift >= 0 {
            (&self.coeff * pow10(shift as u64)).div_rem(&other.coeff)
        } else {
            self.coeff.div_rem(&(&other.coeff * pow10((-shift) as u64)))
        };
        if r.is_zero() {
            // Exact: as close to the ideal exponent as trailing zeros allow.
            while exp < ideal && (&q % 10u32).is_zero() {
                q /= 10u32;
                exp += 1;
            }
        } else if (&q % 5u32).is_zero() {
            // Inexact: make sure a last digit of 0 or 5 does not round as an exact tie.
            q += 1u32;
        }
        Dec::new(neg, q, exp).fix()
    }

    /// Python's `divmod` on decimals: the quotient truncated towards zero, and the remainder
    /// with the sign of `self`.
    fn divmod(&self, other: &Dec) -> Result<(Dec, Dec), DecError> {
        let neg = self.neg != other.neg;
        let ideal = self.exp.min(other.exp);
        if other.is_zero() {
            return Err(if self.is_zero() {
                DecError::InvalidOperation
            } else {
                DecError::DivisionByZero
            });
        }
        let gap = self.adjusted() - other.adjusted();
        if self.is_zero() || gap <= -2 {
            return Ok((
                Dec::new(neg, BigUint::zero(), 0),
                self.rescale(ideal).fix()?,
            ));
        }
        if gap > PREC as i64 {
            return Err(DecError::InvalidOperation);
        }
        let a = &self.coeff * pow10((self.exp - ideal) as u64);
        let b = &other.coeff * pow10((other.exp - ideal) as u64);
        let (q, r) = a.div_rem(&b);
        if digits(&q) > PREC {
            return Err(DecError::InvalidOperation);
        }
        Ok((Dec::new(neg, q, 0), Dec::new(self.neg, r, ideal).fix()?))
    }

    /// `self // other` (truncates towards zero, unlike integers).
    pub fn floor_div(&self, other: &Dec) -> Result<Dec, DecError> {
        self.divmod(other).map(|(q, _)| q)
    }

    /// `self % other` (takes the sign of `self`, unlike integers).
    pub fn rem(&self, other: &Dec) -> Result<Dec, DecError> {
        if other.is_zero() {
            return Err(DecError::InvalidOperation);
        }
        self.divmod(other).map(|(_, r)| r)
    }

    /// `self ** n` for an integer `n`; `None` for exponents too large to compute.
    pub fn powi(&self, n: i64) -> Option<Result<Dec, DecError>> {
        if n.unsigned_abs() > 10_000 {
            return None;
        }
        if n == 0 {
            return Some(if self.is_zero() {
                Err(DecError::InvalidOperation)
            } else {
                Ok(Dec::from_i64(1))
            });
        }
        let e = u32::try_from(n.unsigned_abs()).ok()?;
        if self.is_zero() {
            // Zero to a positive power is a plain zero; to a negative one, an infinity in
            // Python, which JSON cannot carry.
            return Some(if n > 0 {
                Ok(Dec::new(self.neg && e % 2 == 1, BigUint::zero(), 0))
            } else {
                Err(DecError::DivisionByZero)
            });
        }
        let exact = Dec::new(
            self.neg && e % 2 == 1,
            self.coeff.pow(e),
            self.exp * i64::from(e),
        );
        Some(if n > 0 {
            exact.fix()
        } else {
            Dec::from_i64(1).div(&exact)
        })
    }

    /// Rounds to `places` digits after the point, half to even (Python's `round(d, places)`).
    pub fn round_to(&self, places: i64) -> Result<Dec, DecError> {
        // A result longer than the precision is refused before its digits are made (`places`
        // comes from the expression and may be huge).
        let exp = places
            .checked_neg()
            .filter(|e| e.abs() <= 2 * EMAX)
            .ok_or(DecError::InvalidOperation)?;
        if exp < self.exp
            && !self.is_zero()
            && digits(&self.coeff) as i64 + (self.exp - exp) > PREC as i64
        {
            return Err(DecError::InvalidOperation);
        }
        let out = self.rescale(exp);
        if digits(&out.coeff) > PREC {
            return Err(DecError::InvalidOperation);
        }
        Ok(out)
    }

    /// The integer nearest, ties to even (Python's `round(d)`); `None` beyond 64 bits.
    pub fn round_int(&self) -> Option<i64> {
        self.rescale(0.max(self.exp)).to_i64()
    }

    /// The integer part, truncated towards zero (Python's `int(d)`); `None` beyond 64 bits.
    pub fn trunc(&self) -> Option<i64> {
        if self.exp >= 0 {
            return self.to_i64();
        }
        let whole = if self.adjusted() < 0 {
            BigUint::zero()
        } else {
            &self.coeff / pow10((-self.exp) as u64)
        };
        Dec::new(self.neg, whole, 0).to_i64()
    }

    /// The value as an integer, when the exponent is not negative.
    fn to_i64(&self) -> Option<i64> {
        let mag = if self.exp >= 0 {
            if self.exp > 40 && !self.is_zero() {
                return None;
            }
            &self.coeff * pow10(self.exp as u64)
        } else {
            return None;
        };
        let m = mag.to_i128()?;
        i64::try_from(if self.neg { -m } else { m }).ok()
    }

    /// The nearest float (Python's `float(d)`).
    pub fn to_f64(&self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// Compares values (`0.10` equals `0.1`; signs of zeros do not count).
    pub fn cmp_value(&self, other: &Dec) -> Ordering {
        let sign = |d: &Dec| -> i8 {
            match (d.is_zero(), d.neg) {
                (true, _) => 0,
                (false, true) => -1,
                (false, false) => 1,
            }
        };
        let (sa, sb) = (sign(self), sign(other));
        if sa != sb || sa == 0 {
            return sa.cmp(&sb);
        }
        let by_magnitude = if self.adjusted() == other.adjusted() {
            let exp = self.exp.min(other.exp);
            let a = &self.coeff * pow10((self.exp - exp) as u64);
            let b = &other.coeff * pow10((other.exp - exp) as u64);
            a.cmp(&b)
        } else {
            self.adjusted().cmp(&other.adjusted())
        };
        if sa < 0 {
            by_magnitude.reverse()
        } else {
            by_magnitude
        }
    }

    /// Whether the value is an integer (`2.00` is).
    pub fn is_integral(&self) -> bool {
        self.exp >= 0 || {
            let unit = pow10((-self.exp) as u64);
            (&self.coeff % unit).is_zero()
        }
    }
}

/// Python's `str(Decimal)`: plain notation unless the exponent is positive or the number is
/// smaller than `1E-6`, then scientific (`1E+2`, `1.5E-7`).
impl std::fmt::Display for Dec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let coeff = self.coeff.to_string();
        let n = coeff.len() as i64;
        let left = self.exp + n;
        let dot = if self.exp <= 0 && left > -6 { left } else { 1 };
        if self.neg {
            f.write_str("-")?;
        }
        if dot <= 0 {
            write!(f, "0.{}{coeff}", "0".repeat((-dot) as usize))?;
        } else if dot >= n {
            write!(f, "{coeff}{}", "0".repeat((dot - n) as usize))?;
        } else {
            let (int, frac) = coeff.split_at(dot as usize);
            write!(f, "{int}.{frac}")?;
        }
        if left != dot {
            write!(f, "E{:+}", left - dot)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn reads_and_prints_as_python_does() {
        for (text, shown) in [
            ("19.99", "19.99"),
            ("-0.0", "-0.0"),
            ("1e2", "1E+2"),
            ("1.5e-7", "1.5E-7"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1E-7"),
            ("123.4500", "123.4500"),
            ("100", "100"),
            ("1E-3", "0.001"),
        ] {
            assert_eq!(d(text).to_string(), shown, "{text}");
        }
        for bad in ["", "-", ".", "1.2.3", "1e", "abc", "1x", "NaN"] {
            assert_eq!(Dec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn rounding_to_absurd_places_is_refused_without_making_the_digits() {
        assert_eq!(d("1.5").round_to(i64::MAX), Err(DecError::InvalidOperation));
        assert_eq!(d("1.5").round_to(i64::MIN), Err(DecError::InvalidOperation));
        assert_eq!(
            d("1.5").round_to(1_000_000_000),
            Err(DecError::InvalidOperation)
        );
        // What Python gives for round(Decimal('1.5'), -40) and round(Decimal('1.5'), 3).
        assert_eq!(d("1.5").round_to(-40).unwrap().to_string(), "0E+40");
        assert_eq!(d("1.5").round_to(3).unwrap().to_string(), "1.500");
    }

    #[test]
    fn digits_counts_every_power_of_ten_boundary() {
        for n in 0..60u64 {
            let p = pow10(n);
            assert_eq!(digits(&p), n + 1);
            if n > 0 {
                assert_eq!(digits(&(p - 1u32)), n);
            }
        }
    }

    /// Operands of every shape the arithmetic distinguishes: signs, zeros, trailing zeros,
    /// coefficients longer than the precision, exponents far apart.
    fn operands(n: usize) -> Vec<String> {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut out: Vec<String> = [
            "0",
            "-0",
            "0.00",
            "1",
            "-1",
            "19.99",
            "100",
            "0.1",
            "3",
            "7",
            "1E-60",
            "-1E-50",
            "5E+20",
            "9999999999999999999999999999",
            "-99999999999999999999999999995E-1",
            "0E-40",
        ]
        .map(str::to_owned)
        .to_vec();
        while out.len() < n {
            let long = next(4) == 0;
            let len = 1 + next(if long { 40 } else { 8 }) as usize;
            let mut coeff: String = (0..len)
                .map(|_| char::from(b'0' + next(10) as u8))
                .collect();
            if next(3) == 0 {
                coeff.push_str("000");
            }
            let exp = next(50) as i64 - 35;
            let sign = if next(2) == 0 { "-" } else { "" };
            out.push(format!("{sign}{coeff}E{exp}"));
        }
        out
    }

    fn ours(op: &str, a: &str, b: &str) -> String {
        let (x, y) = (d(a), d(b));
        let shown = |r: Result<Dec, DecError>| match r {
            Ok(v) => v.to_string(),
            Err(e) => format!("{e:?}"),
        };
        match op {
            "+" => shown(x.add(&y)),
            "-" => shown(x.sub(&y)),
            "*" => shown(x.mul(&y)),
            "/" => shown(x.div(&y)),
            "//" => shown(x.floor_div(&y)),
            "%" => shown(x.rem(&y)),
            "neg" => shown(x.neg()),
            "abs" => shown(x.abs()),
            "cmp" => format!("{:?}", x.cmp_value(&y)),
            "round" => {
                let places = b.parse().unwrap();
                shown(x.round_to(places))
            }
            "roundint" => x.round_int().map_or("None".into(), |i| i.to_string()),
            "int" => x.trunc().map_or("None".into(), |i| i.to_string()),
            "float" => format!("{:?}", x.to_f64()),
            "pow" => shown(x.powi(b.parse().unwrap()).unwrap()),
            "fromfloat" => {
                let f: f64 = a.parse().unwrap();
                Dec::from_f64(f).unwrap().to_string()
            }
            _ => unreachable!("{op}"),
        }
    }

    /// Python's own `decimal` module decides: every case is computed by one `python3` process.
    #[test]
    fn arithmetic_matches_python_decimal() {
        let values = operands(160);
        let mut cases = Vec::new();
        for (i, a) in values.iter().enumerate() {
            let b = &values[(i * 7 + 3) % values.len()];
            let c = &values[(i * 13 + 5) % values.len()];
            for op in ["+", "-", "*", "/", "//", "%", "cmp"] {
                cases.push((op, a.clone(), b.clone()));
                cases.push((op, a.clone(), c.clone()));
            }
            for op in ["neg", "abs", "roundint", "int", "float"] {
                cases.push((op, a.clone(), "0".to_owned()));
            }
            cases.push(("round", a.clone(), ((i % 7) as i64 - 2).to_string()));
            // Python gives an infinity for zero to a negative power, which JSON cannot carry.
            let power = (i % 6) as i64 - 2;
            if power >= 0 || !d(a).is_zero() {
                cases.push(("pow", a.clone(), power.to_string()));
            }
            if let Ok(f) = a.parse::<f64>() {
                cases.push(("fromfloat", format!("{f:?}"), "0".to_owned()));
            }
        }
        let script = r#"
import decimal, sys
from decimal import Decimal as D
names = {decimal.DivisionByZero: 'DivisionByZero', decimal.Overflow: 'Overflow'}
def run(op, a, b):
    x, y = D(a), D(b)
    f = {'+': lambda: x + y, '-': lambda: x - y, '*': lambda: x * y, '/': lambda: x / y,
         '//': lambda: x // y, '%': lambda: x % y, 'neg': lambda: -x, 'abs': lambda: abs(x),
         'cmp': lambda: 'Less' if x < y else ('Equal' if x == y else 'Greater'),
         'round': lambda: round(x, int(b)), 'roundint': lambda: round(x),
         'int': lambda: int(x), 'float': lambda: repr(float(x)),
         'pow': lambda: x ** int(b), 'fromfloat': lambda: D(float(a))}[op]
    try:
        r = f()
    except decimal.DivisionByZero:
        return 'DivisionByZero'
    except decimal.Overflow:
        return 'Overflow'
    except decimal.InvalidOperation:
        return 'InvalidOperation'
    if op in ('roundint', 'int') and abs(r) >= 2**63:
        return 'None'
    return str(r)
for line in sys.stdin:
    op, a, b = line.split()
    print(run(op, a, b))
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs (the test suite needs Python 3)");
        let input: String = cases
            .iter()
            .map(|(op, a, b)| format!("{op} {a} {b}\n"))
            .collect();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write as _;
            stdin.write_all(input.as_bytes()).unwrap();
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(output.status.success());
        let theirs: Vec<String> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(theirs.len(), cases.len());
        let wrong: Vec<String> = cases
            .iter()
            .zip(&theirs)
            .filter_map(|((op, a, b), want)| {
                let got = ours(op, a, b);
                // Floats are compared by value (Python and Rust spell exponents apart).
                let same = if *op == "float" {
                    want.parse::<f64>().ok().map(f64::to_bits)
                        == got.parse::<f64>().ok().map(f64::to_bits)
                } else {
                    got == *want
                };
                (!same).then(|| format!("{op} {a} {b}: Python {want}, dsm {got}"))
            })
            .collect();
        assert!(
            wrong.is_empty(),
            "{} of {} cases differ:\n{}",
            wrong.len(),
            cases.len(),
            wrong[..wrong.len().min(25)].join("\n")
        );
    }
}
