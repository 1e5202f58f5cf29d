//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`, `100M`) parsed exactly:
//! the value is kept as an integer mantissa with decimal and binary exponents,
//! so conversions round up like `Quantity.MilliValue()` / `Value()` upstream.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid quantity {input:?}: {why}")]
pub struct QuantityError {
    pub input: String,
    pub why: &'static str,
}

/// An exact quantity: `sign * mantissa * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let err = |why| QuantityError {
            input: input.to_owned(),
            why,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (negative, rest) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        if number.is_empty() || number == "." {
            return Err(err("no digits"));
        }
        let mut mantissa: u128 = 0;
        let mut exp10: i32 = 0;
        let mut seen_dot = false;
        let mut digits = 0;
        for c in number.bytes() {
            if c == b'.' {
                if seen_dot {
                    return Err(err("more than one decimal point"));
                }
                seen_dot = true;
                continue;
            }
            let d = (c - b'0') as u128;
            if mantissa == 0 && d == 0 {
                // Leading zeros carry no precision.
                if seen_dot {
                    exp10 -= 1;
                }
                continue;
            }
            digits += 1;
            if digits > 36 {
                // Beyond u128 precision: drop the digit but keep its magnitude.
                if !seen_dot {
                    exp10 += 1;
                }
                continue;
            }
            mantissa = mantissa * 10 + d;
            if seen_dot {
                exp10 -= 1;
            }
        }
        let mut exp2 = 0u32;
        match suffix {
            "" => {}
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            s if s.starts_with(['e', 'E']) => {
                let e: i32 = s[1..].parse().map_err(|_| err("bad exponent"))?;
                if !(-1000..=1000).contains(&e) {
                    return Err(err("exponent out of range"));
                }
                exp10 += e;
            }
            _ => return Err(err("unknown suffix")),
        }
        Ok(Quantity {
            negative: negative && mantissa != 0,
            mantissa,
            exp10,
            exp2,
        })
    }

    /// `ceil(value * 10^scale)`, saturating at the i64 range.
    fn scaled_ceil(&self, scale: i32) -> i64 {
        if self.mantissa == 0 {
            return 0;
        }
        // Apply the binary exponent first: it is always a multiplication.
        let mut m = self.mantissa;
        for _ in 0..self.exp2 {
            m = match m.checked_mul(2) {
                Some(v) => v,
                None => return self.saturate(),
            };
        }
        let e = self.exp10 + scale;
        let magnitude: u128 = if e >= 0 {
            let mut v = m;
            for _ in 0..e {
                v = match v.checked_mul(10) {
                    Some(v) => v,
                    None => return self.saturate(),
                };
            }
            v
        } else {
            let mut div: u128 = 1;
            for _ in 0..(-e) {
                div = match div.checked_mul(10) {
                    Some(d) => d,
                    None => {
                        // Divisor larger than any mantissa: the value is below one unit.
                        return if self.negative { 0 } else { 1 };
                    }
                };
            }
            // Round away from zero for positives (ceil); toward zero for negatives (ceil).
            if self.negative {
                m / div
            } else {
                m.div_ceil(div)
            }
        };
        if magnitude > i64::MAX as u128 {
            return self.saturate();
        }
        if self.negative {
            -(magnitude as i64)
        } else {
            magnitude as i64
        }
    }

    fn saturate(&self) -> i64 {
        if self.negative {
            i64::MIN
        } else {
            i64::MAX
        }
    }

    /// Value in thousandths, rounded up (`MilliValue()`): CPU in milli-cores.
    pub fn milli_value(&self) -> i64 {
        self.scaled_ceil(3)
    }

    /// Value in units, rounded up (`Value()`): bytes, GPUs, pods.
    pub fn value(&self) -> i64 {
        self.scaled_ceil(0)
    }

    pub fn is_negative(&self) -> bool {
        self.negative
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::prop_assert_eq;

    fn milli(s: &str) -> i64 {
        Quantity::parse(s).unwrap().milli_value()
    }
    fn val(s: &str) -> i64 {
        Quantity::parse(s).unwrap().value()
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(milli("500m"), 500);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("0.5"), 500);
        assert_eq!(milli("2.25"), 2250);
        assert_eq!(milli("100u"), 1); // rounds up like MilliValue
        assert_eq!(milli("1n"), 1);
        assert_eq!(milli("0"), 0);
        assert_eq!(milli("1e3"), 1_000_000);
        assert_eq!(milli("1.5E-3"), 2);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("+3"), 3000);
        assert_eq!(milli("1k"), 1_000_000);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(val("1Ki"), 1024);
        assert_eq!(val("1Mi"), 1 << 20);
        assert_eq!(val("1.5Gi"), 3 << 29);
        assert_eq!(val("128974848"), 128_974_848);
        assert_eq!(val("129e6"), 129_000_000);
        assert_eq!(val("129M"), 129_000_000);
        assert_eq!(val("123Mi"), 128_974_848);
        assert_eq!(val("1Ei"), 1 << 60);
        assert_eq!(val("0.1"), 1); // rounds up like Value
        assert_eq!(val("1Ti"), 1 << 40);
        assert_eq!(val("5G"), 5_000_000_000);
    }

    #[test]
    fn saturates_instead_of_overflowing() {
        assert_eq!(val("100Ei"), i64::MAX);
        assert_eq!(val("1e100"), i64::MAX);
        assert_eq!(val("-1e100"), i64::MIN);
        assert_eq!(val("1e-100"), 1);
    }

    #[test]
    fn negative_values() {
        assert_eq!(milli("-500m"), -500);
        assert!(Quantity::parse("-1").unwrap().is_negative());
        assert!(!Quantity::parse("-0").unwrap().is_negative());
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "lots", "1.2.3", "1Qi", "m", "1 Gi", "1e", "1ex", "--1", "1KI", "Gi",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest::proptest! {
        /// Bad input never panics: any string either parses or is an error.
        #[test]
        fn any_string_parses_or_errors(s in "\\PC{0,24}") {
            if let Ok(q) = Quantity::parse(&s) {
                let _ = (q.milli_value(), q.value());
            }
        }

        /// Decimal forms agree with integer arithmetic, rounding up.
        #[test]
        fn milli_rounds_up(whole in 0u32..100_000, frac in 0u32..10_000) {
            let q = Quantity::parse(&format!("{whole}.{frac:04}")).unwrap();
            let exact_tenth_milli = whole as i64 * 10_000 + frac as i64;
            prop_assert_eq!(q.milli_value(), (exact_tenth_milli + 9) / 10);
        }
    }
}
