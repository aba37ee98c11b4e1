//! INCRBYFLOAT's arithmetic, exactly as Redis does it (to be written).

use std::fmt;

/// INCRBYFLOAT's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatError {
    NotAFloat,
    NanOrInfinity,
}

impl fmt::Display for FloatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FloatError::NotAFloat => "value is not a valid float",
            FloatError::NanOrInfinity => "increment would produce NaN or Infinity",
        })
    }
}

/// A placeholder until the exact version lands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongDouble(f64);

impl LongDouble {
    pub fn parse(text: &[u8]) -> Option<LongDouble> {
        let s = std::str::from_utf8(text).ok()?;
        if s.is_empty() || s.starts_with(char::is_whitespace) {
            return None;
        }
        s.parse::<f64>()
            .ok()
            .filter(|v| !v.is_nan())
            .map(LongDouble)
    }
}

/// INCRBYFLOAT of `current` by `increment`.
pub fn incr_by_float(current: Option<&[u8]>, increment: &[u8]) -> Result<Vec<u8>, FloatError> {
    let a = match current {
        None => 0.0,
        Some(c) => LongDouble::parse(c).ok_or(FloatError::NotAFloat)?.0,
    };
    let b = LongDouble::parse(increment).ok_or(FloatError::NotAFloat)?.0;
    let sum = a + b;
    if !sum.is_finite() {
        return Err(FloatError::NanOrInfinity);
    }
    Ok(format!("{sum}").into_bytes())
}
