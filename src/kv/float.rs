//! INCRBYFLOAT's arithmetic, exactly as Redis 7.0 on x86-64 does it, in
//! plain integer arithmetic so that every replica gets the same bytes.
//!
//! Redis reads the stored value and the increment with C's `strtold`, adds
//! them as `long double`s, and prints the sum with `printf("%.17Lf")` minus
//! trailing zeros. On x86-64 a `long double` is the x87 80-bit extended
//! format: a sign, a 64-bit significand with an explicit leading bit and a
//! 15-bit exponent. A finite value is `m × 2^e` with `m < 2^64` and
//! `-16445 <= e <= 16320`; `m >= 2^63` unless `e = -16445` (the subnormals,
//! down to 2^-16445 ≈ 3.6e-4951). The largest value is about 1.19e4932, so
//! `1e4000` is an ordinary number here although no `f64` holds it.
//!
//! Rust has no such type, and borrowing the FPU would tie the answer to the
//! machine, so [`LongDouble`] does it in software, and every step rounds
//! once from the exact value, as glibc and the x87 do:
//!
//! - **Reading** ([`LongDouble::parse`], Redis's `string2ld`): the text is
//!   taken apart as `strtold` does (sign, decimal digits with an optional
//!   `.` and `e` exponent, hexadecimal `0x…p…`, `inf`/`infinity` in any
//!   case) and its exact value is rounded to nearest, ties to even: a
//!   decimal `D × 10^k` becomes the integer `D × 10^k`, or for `k < 0` the
//!   quotient `D × 2^j / 10^-k` to 66 or 67 bits, plus a bit saying
//!   whether the remainder was zero, which is all rounding needs. Redis
//!   refuses what `strtold` does not consume entirely, text that starts
//!   with white space, text of 5 KiB or more, NaN, and results that
//!   overflowed to infinity or underflowed all the way to zero. A nonzero
//!   subnormal is accepted. Before any big number is built, an exponent
//!   that puts the value beyond 10^4933 or below 10^-4951 is refused (the
//!   significant digits are at most 5119, so they cannot bring it back);
//!   a zero mantissa is zero whatever its exponent (`0e999999999` is 0, as
//!   glibc says).
//! - **Adding** ([`LongDouble::add`]): both values are made exact integers
//!   at the smaller exponent, added or subtracted exactly, and rounded;
//!   past the largest value the sum is infinite (and INCRBYFLOAT refuses
//!   it). An exact zero sum of opposite signs is +0, as IEEE says.
//! - **Printing** ([`LongDouble::to_human`], `ld2string`'s human mode): the
//!   exact binary value times 10^17, rounded to an integer with ties to
//!   even (as glibc's `printf` rounds), written out in full — up to 4933
//!   digits before the point — with trailing zeros and a bare `.`
//!   dropped, and `-0` written `0`.
//!
//! The big numbers are `Big`, a minimal unsigned integer on `u32` limbs;
//! no value ever needs more than about 34,000 bits, as the exponent bounds
//! see to, so an INCRBYFLOAT takes microseconds, and a millisecond or so at
//! worst (printing a 4933-digit sum). Nothing here reads a clock, the
//! environment or the locale (Redis leaves the numeric locale at "C"), or
//! panics. The tests hold a table of replies read off a real redis-server
//! 7.0.15 and, ignored by default, a randomized comparison with a live one.

use std::cmp::Ordering;
use std::fmt;

/// The longest text Redis parses is one byte shorter than this
/// (`MAX_LONG_DOUBLE_CHARS`, the size of the buffer `string2ld` copies to).
const MAX_CHARS: usize = 5 * 1024;
/// The smallest binary exponent of a finite value (that of the subnormals
/// and of the smallest normals).
const MIN_EXP: i64 = -16445;
/// The largest binary exponent of a finite value.
const MAX_EXP: i64 = 16320;
/// Decimal digits printed after the point (`%.17Lf`).
const PRINT_DIGITS: u32 = 17;
/// How far an exponent in the text is read before it is clamped: far past
/// any exponent whose value can be finite and nonzero, and far from `i64`'s
/// limits once digits are added to it.
const EXPONENT_CLAMP: i64 = 1_000_000_000;

/// An x87 extended-precision value: what C's `long double` is on x86-64.
///
/// Equality is of the representation: `-0` and `+0` differ, and a NaN
/// equals a NaN of the same sign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LongDouble {
    negative: bool,
    class: Class,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    /// `mantissa × 2^exponent`, canonical as the module doc says; zero is a
    /// zero mantissa with exponent `MIN_EXP`.
    Finite {
        mantissa: u64,
        exponent: i64,
    },
    Infinite,
    Nan,
}

impl LongDouble {
    /// Positive zero: the value of a key INCRBYFLOAT finds absent.
    pub const ZERO: LongDouble = LongDouble {
        negative: false,
        class: Class::Finite {
            mantissa: 0,
            exponent: MIN_EXP,
        },
    };

    const fn infinite(negative: bool) -> LongDouble {
        LongDouble {
            negative,
            class: Class::Infinite,
        }
    }

    const fn zero(negative: bool) -> LongDouble {
        LongDouble {
            negative,
            class: Class::Finite {
                mantissa: 0,
                exponent: MIN_EXP,
            },
        }
    }

    /// Redis's `string2ld`: `None` where Redis says "value is not a valid
    /// float" (see the module doc for what is accepted).
    pub fn parse(text: &[u8]) -> Option<LongDouble> {
        if text.is_empty() || text.len() >= MAX_CHARS || is_c_space(text[0]) {
            return None;
        }
        let (negative, body) = match text[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(LongDouble::infinite(negative));
        }
        let value = match body {
            // "0x" must be followed by a hex digit (before or after a
            // point) to be hexadecimal; otherwise strtold reads the "0"
            // alone, and the "x" left over makes the text invalid.
            [b'0', b'x' | b'X', rest @ ..] if starts_hex_mantissa(rest) => parse_hex(rest)?,
            _ => parse_decimal(body)?,
        };
        // strtold reports ERANGE for a result that overflowed or that
        // underflowed to zero from a nonzero input; string2ld refuses both.
        match value {
            Parsed::Zero => Some(LongDouble::zero(negative)),
            Parsed::Exact { digits, exponent } => {
                let rounded = round(negative, &digits, exponent);
                rounded.is_finite_nonzero().then_some(rounded)
            }
            Parsed::OutOfRange => None,
        }
    }

    /// IEEE addition at 64-bit significand precision, round-to-nearest-even.
    /// (Also `+`; named so that callers need not import `std::ops::Add`.)
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, other: LongDouble) -> LongDouble {
        let (a, b) = (self, other);
        let (
            Class::Finite {
                mantissa: ma,
                exponent: ea,
            },
            Class::Finite {
                mantissa: mb,
                exponent: eb,
            },
        ) = (a.class, b.class)
        else {
            return match (a.class, b.class) {
                (Class::Nan, _) => a,
                (_, Class::Nan) => b,
                (Class::Infinite, Class::Infinite) if a.negative != b.negative => LongDouble {
                    negative: true,
                    class: Class::Nan,
                },
                (Class::Infinite, _) => a,
                _ => b,
            };
        };
        match (ma, mb) {
            // Round to nearest: -0 + -0 is -0, any other sum of zeros +0.
            (0, 0) => return LongDouble::zero(a.negative && b.negative),
            (0, _) => return b,
            (_, 0) => return a,
            _ => {}
        }
        let exponent = ea.min(eb);
        let x = Big::from_u64(ma).shl((ea - exponent) as u64);
        let y = Big::from_u64(mb).shl((eb - exponent) as u64);
        if a.negative == b.negative {
            return round(a.negative, &x.add(&y), exponent);
        }
        match x.cmp(&y) {
            Ordering::Equal => LongDouble::ZERO,
            Ordering::Greater => round(a.negative, &x.sub(&y), exponent),
            Ordering::Less => round(b.negative, &y.sub(&x), exponent),
        }
    }

    /// Neither infinite nor NaN.
    pub fn is_finite(self) -> bool {
        matches!(self.class, Class::Finite { .. })
    }

    fn is_finite_nonzero(self) -> bool {
        matches!(self.class, Class::Finite { mantissa, .. } if mantissa != 0)
    }

    /// `ld2string`'s `LD_STR_HUMAN`: `"%.17Lf"`, then trailing zeros and a
    /// trailing `.` removed, and `-0` written `0`. Infinities are `inf` and
    /// `-inf` as there; a NaN is `nan` (INCRBYFLOAT prints neither).
    pub fn to_human(self) -> String {
        let (mantissa, exponent) = match self.class {
            Class::Finite { mantissa, exponent } => (mantissa, exponent),
            Class::Infinite if self.negative => return "-inf".to_owned(),
            Class::Infinite => return "inf".to_owned(),
            Class::Nan => return "nan".to_owned(),
        };
        // The value in units of 10^-17, rounded half to even.
        let mut scaled = Big::from_u64(mantissa);
        scaled.mul_pow10(PRINT_DIGITS);
        let units = if exponent >= 0 {
            scaled.shl(exponent as u64)
        } else {
            scaled.shr_round_even(exponent.unsigned_abs())
        };
        let digits = units.to_decimal();
        let digits = format!("{digits:0>width$}", width = PRINT_DIGITS as usize + 1);
        let (whole, fraction) = digits.split_at(digits.len() - PRINT_DIGITS as usize);
        let fraction = fraction.trim_end_matches('0');
        let mut text = String::with_capacity(digits.len() + 2);
        // printf writes the sign of a negative value even when it rounds
        // to zero; ld2string then rewrites exactly "-0" as "0".
        if self.negative && !(whole == "0" && fraction.is_empty()) {
            text.push('-');
        }
        text.push_str(whole);
        if !fraction.is_empty() {
            text.push('.');
            text.push_str(fraction);
        }
        text
    }
}

impl std::ops::Add for LongDouble {
    type Output = LongDouble;

    fn add(self, other: LongDouble) -> LongDouble {
        LongDouble::add(self, other)
    }
}

/// Why INCRBYFLOAT refused; Display gives Redis's text without "ERR ".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatError {
    /// The stored value or the increment does not parse.
    NotAFloat,
    /// The sum is infinite or NaN.
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

impl std::error::Error for FloatError {}

/// INCRBYFLOAT of `current` (None: absent key, counts as 0) by `increment`:
/// the new value's text, which Redis both stores and replies with.
pub fn incr_by_float(current: Option<&[u8]>, increment: &[u8]) -> Result<Vec<u8>, FloatError> {
    let value = match current {
        None => LongDouble::ZERO,
        Some(text) => LongDouble::parse(text).ok_or(FloatError::NotAFloat)?,
    };
    let increment = LongDouble::parse(increment).ok_or(FloatError::NotAFloat)?;
    let sum = value.add(increment);
    if !sum.is_finite() {
        return Err(FloatError::NanOrInfinity);
    }
    Ok(sum.to_human().into_bytes())
}

/// C's `isspace` in the "C" locale.
fn is_c_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn starts_hex_mantissa(rest: &[u8]) -> bool {
    match rest {
        [first, ..] if first.is_ascii_hexdigit() => true,
        [b'.', second, ..] => second.is_ascii_hexdigit(),
        _ => false,
    }
}

/// A text's exact value, before rounding.
enum Parsed {
    Zero,
    /// `digits × 2^exponent`; `digits` is not zero.
    Exact {
        digits: Big,
        exponent: i64,
    },
    /// So large or so small (and not zero) that it rounds to infinity or
    /// to zero.
    OutOfRange,
}

/// The rest of the text after an `e` or `p`: an optionally signed decimal
/// integer running to the end, clamped to ±[`EXPONENT_CLAMP`]. `None` if it
/// is not that (strtold would stop before the letter, leaving garbage).
fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits.iter().fold(0i64, |acc, d| {
        (acc * 10 + i64::from(d - b'0')).min(EXPONENT_CLAMP)
    });
    Some(if negative { -magnitude } else { magnitude })
}

/// Splits `text` into the digits before a point, those after it, and what
/// follows them; `is_digit` says which bytes are digits.
fn split_mantissa(text: &[u8], is_digit: fn(&u8) -> bool) -> (&[u8], &[u8], &[u8]) {
    let whole_len = text.iter().take_while(|b| is_digit(b)).count();
    let (whole, rest) = text.split_at(whole_len);
    let Some(after_point) = rest.strip_prefix(b".") else {
        return (whole, &[], rest);
    };
    let fraction_len = after_point.iter().take_while(|b| is_digit(b)).count();
    let (fraction, rest) = after_point.split_at(fraction_len);
    (whole, fraction, rest)
}

/// Decimal digits, an optional point and an optional `e` exponent, and
/// nothing else; at least one digit.
fn parse_decimal(text: &[u8]) -> Option<Parsed> {
    let (whole, fraction, rest) = split_mantissa(text, u8::is_ascii_digit);
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let exponent = match rest {
        [] => 0,
        [b'e' | b'E', tail @ ..] => parse_exponent(tail)?,
        _ => return None,
    };
    let all = whole.iter().chain(fraction);
    // The digits without leading or trailing zeros, and the power of ten
    // that scales them.
    let leading = all.clone().take_while(|&&d| d == b'0').count();
    let significant: Vec<u8> = all.skip(leading).copied().collect();
    let Some(last) = significant.iter().rposition(|&d| d != b'0') else {
        return Some(Parsed::Zero);
    };
    let significant = &significant[..=last];
    let trailing = (whole.len() + fraction.len() - leading - significant.len()) as i64;
    let power = exponent - fraction.len() as i64 + trailing;
    let count = significant.len() as i64;
    // The value lies in [10^(count+power-1), 10^(count+power)); the largest
    // finite value is 1.19e4932, and anything below 10^-4951 is less than
    // half the smallest subnormal (3.6e-4951), so rounds to zero.
    if count + power > 4933 {
        return Some(Parsed::OutOfRange);
    }
    if count + power <= -4951 {
        return Some(Parsed::OutOfRange);
    }
    let mut digits = Big::from_decimal(significant);
    if power >= 0 {
        digits.mul_pow10(power as u32);
        return Some(Parsed::Exact {
            digits,
            exponent: 0,
        });
    }
    // digits / 10^-power: a quotient of 66 or 67 bits, then one more bit
    // that is 1 exactly when the division left a remainder. Rounding that
    // to 64 bits drops at least two bits, so the extra bit only breaks
    // ties, which is what the lost remainder would have done.
    let mut divisor = Big::from_u64(1);
    divisor.mul_pow10(power.unsigned_abs() as u32);
    let shift = 66 + divisor.bit_len() as i64 - digits.bit_len() as i64;
    let (numerator, denominator) = if shift >= 0 {
        (digits.shl(shift as u64), divisor)
    } else {
        (digits, divisor.shl(shift.unsigned_abs()))
    };
    let (quotient, exact) = numerator.div_small_quotient(&denominator);
    Some(Parsed::Exact {
        digits: Big::from_u128(quotient << 1 | u128::from(!exact)),
        exponent: -shift - 1,
    })
}

/// After "0x": hex digits, an optional point and an optional `p` binary
/// exponent (decimal digits), and nothing else; at least one hex digit.
fn parse_hex(text: &[u8]) -> Option<Parsed> {
    let (whole, fraction, rest) = split_mantissa(text, u8::is_ascii_hexdigit);
    let exponent = match rest {
        [] => 0,
        [b'p' | b'P', tail @ ..] => parse_exponent(tail)?,
        _ => return None,
    };
    let all = whole.iter().chain(fraction);
    let leading = all.clone().take_while(|&&d| d == b'0').count();
    let significant: Vec<u8> = all.skip(leading).copied().collect();
    if significant.is_empty() {
        return Some(Parsed::Zero);
    }
    let exponent = exponent - 4 * fraction.len() as i64;
    let digits = Big::from_hex(&significant);
    let top = digits.bit_len() as i64 + exponent;
    // The value lies in [2^(top-1), 2^top): at or past 2^16384 it is
    // infinite; at or below 2^-16447 it is under half the smallest
    // subnormal.
    if top > MAX_EXP + 64 || top <= MIN_EXP - 2 {
        return Some(Parsed::OutOfRange);
    }
    Some(Parsed::Exact { digits, exponent })
}

/// `digits × 2^exponent` (digits nonzero), rounded to nearest, ties to
/// even, at 64 bits of significand and the format's exponent range.
fn round(negative: bool, digits: &Big, exponent: i64) -> LongDouble {
    let bits = digits.bit_len() as i64;
    if bits == 0 {
        return LongDouble::zero(negative);
    }
    // The exponent of the result's last significand bit.
    let mut target = (exponent + bits - 64).max(MIN_EXP);
    let mantissa = if target <= exponent {
        // Exact: at most 64 bits, shifted up into place.
        digits.low_u64() << (exponent - target)
    } else {
        let dropped = (target - exponent) as u64;
        let kept = digits.bits_from(dropped);
        let half = digits.bit(dropped - 1);
        let below = digits.any_below(dropped - 1);
        if half && (below || kept & 1 == 1) {
            match kept.checked_add(1) {
                Some(up) => up,
                None => {
                    target += 1;
                    1 << 63
                }
            }
        } else {
            kept
        }
    };
    if mantissa == 0 {
        return LongDouble::zero(negative);
    }
    if target > MAX_EXP {
        return LongDouble::infinite(negative);
    }
    LongDouble {
        negative,
        class: Class::Finite {
            mantissa,
            exponent: target,
        },
    }
}

/// A non-negative integer, little-endian on 32-bit limbs, with no high zero
/// limbs (zero has none). Just the operations this module needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Big {
    limbs: Vec<u32>,
}

impl Big {
    fn from_u64(value: u64) -> Big {
        Big::from_u128(u128::from(value))
    }

    fn from_u128(value: u128) -> Big {
        let mut big = Big {
            limbs: (0..4).map(|i| (value >> (32 * i)) as u32).collect(),
        };
        big.trim();
        big
    }

    /// From ASCII decimal digits, nine at a time.
    fn from_decimal(digits: &[u8]) -> Big {
        let mut big = Big { limbs: Vec::new() };
        for chunk in digits.chunks(9) {
            let value = chunk
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            big.mul_small(10u32.pow(chunk.len() as u32));
            big.add_small(value);
        }
        big
    }

    /// From ASCII hex digits.
    fn from_hex(digits: &[u8]) -> Big {
        let mut limbs = Vec::with_capacity(digits.len() / 8 + 1);
        for chunk in digits.rchunks(8) {
            let value = chunk.iter().fold(0u32, |acc, &d| {
                acc << 4 | char::from(d).to_digit(16).unwrap_or(0)
            });
            limbs.push(value);
        }
        let mut big = Big { limbs };
        big.trim();
        big
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    fn bit_len(&self) -> u64 {
        match self.limbs.last() {
            None => 0,
            Some(top) => self.limbs.len() as u64 * 32 - u64::from(top.leading_zeros()),
        }
    }

    fn bit(&self, index: u64) -> bool {
        let limb = (index / 32) as usize;
        self.limbs
            .get(limb)
            .is_some_and(|l| l >> (index % 32) & 1 == 1)
    }

    /// Whether any of the bits below `index` is set.
    fn any_below(&self, index: u64) -> bool {
        let whole = (index / 32) as usize;
        let partial = index % 32;
        self.limbs.iter().take(whole).any(|&l| l != 0)
            || (partial > 0
                && self
                    .limbs
                    .get(whole)
                    .is_some_and(|&l| l & ((1u32 << partial) - 1) != 0))
    }

    /// The 64 bits from bit `start` up.
    fn bits_from(&self, start: u64) -> u64 {
        (0..64)
            .filter(|i| self.bit(start + i))
            .fold(0u64, |acc, i| acc | 1 << i)
    }

    fn low_u64(&self) -> u64 {
        let limb = |i: usize| u64::from(self.limbs.get(i).copied().unwrap_or(0));
        limb(0) | limb(1) << 32
    }

    fn mul_small(&mut self, factor: u32) {
        let mut carry = 0u64;
        for limb in &mut self.limbs {
            let product = u64::from(*limb) * u64::from(factor) + carry;
            *limb = product as u32;
            carry = product >> 32;
        }
        if carry > 0 {
            self.limbs.push(carry as u32);
        }
        self.trim();
    }

    fn add_small(&mut self, addend: u32) {
        let mut carry = u64::from(addend);
        for limb in &mut self.limbs {
            if carry == 0 {
                return;
            }
            let sum = u64::from(*limb) + carry;
            *limb = sum as u32;
            carry = sum >> 32;
        }
        if carry > 0 {
            self.limbs.push(carry as u32);
        }
    }

    /// Multiplies by 10^power, as 5^power (thirteen fives at a time, the
    /// most a limb holds) and a shift.
    fn mul_pow10(&mut self, power: u32) {
        let mut fives = power;
        while fives >= 13 {
            self.mul_small(5u32.pow(13));
            fives -= 13;
        }
        self.mul_small(5u32.pow(fives));
        *self = self.shl(u64::from(power));
    }

    fn shl(&self, bits: u64) -> Big {
        if self.limbs.is_empty() {
            return self.clone();
        }
        let (whole, partial) = ((bits / 32) as usize, (bits % 32) as u32);
        let mut limbs = vec![0u32; whole];
        limbs.reserve(self.limbs.len() + 1);
        let mut carry = 0u32;
        for &limb in &self.limbs {
            if partial == 0 {
                limbs.push(limb);
            } else {
                limbs.push(limb << partial | carry);
                carry = limb >> (32 - partial);
            }
        }
        limbs.push(carry);
        let mut big = Big { limbs };
        big.trim();
        big
    }

    /// `self / 2^bits`, rounded to nearest, ties to even.
    fn shr_round_even(&self, bits: u64) -> Big {
        let (whole, partial) = ((bits / 32) as usize, (bits % 32) as u32);
        let mut limbs: Vec<u32> = (whole..self.limbs.len())
            .map(|i| {
                let low = u64::from(self.limbs[i]);
                let high = u64::from(self.limbs.get(i + 1).copied().unwrap_or(0));
                ((high << 32 | low) >> partial) as u32
            })
            .collect();
        let half = bits > 0 && self.bit(bits - 1);
        let odd = limbs.first().is_some_and(|l| l & 1 == 1);
        let mut result = Big {
            limbs: std::mem::take(&mut limbs),
        };
        result.trim();
        if half && (odd || self.any_below(bits - 1)) {
            result.add_small(1);
        }
        result
    }

    fn add(&self, other: &Big) -> Big {
        let (long, short) = if self.limbs.len() >= other.limbs.len() {
            (self, other)
        } else {
            (other, self)
        };
        let mut limbs = Vec::with_capacity(long.limbs.len() + 1);
        let mut carry = 0u64;
        for (i, &limb) in long.limbs.iter().enumerate() {
            let sum = u64::from(limb) + u64::from(short.limbs.get(i).copied().unwrap_or(0)) + carry;
            limbs.push(sum as u32);
            carry = sum >> 32;
        }
        limbs.push(carry as u32);
        let mut big = Big { limbs };
        big.trim();
        big
    }

    /// `self - other`, for `self >= other`.
    fn sub(&self, other: &Big) -> Big {
        let mut difference = self.clone();
        difference.sub_assign(other);
        difference
    }

    /// `self -= other`, for `self >= other`.
    fn sub_assign(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for (i, limb) in self.limbs.iter_mut().enumerate() {
            let difference =
                i64::from(*limb) - i64::from(other.limbs.get(i).copied().unwrap_or(0)) - borrow;
            borrow = i64::from(difference < 0);
            *limb = difference.rem_euclid(1 << 32) as u32;
        }
        self.trim();
    }

    /// `self /= 2`.
    fn halve(&mut self) {
        let mut carry = 0u32;
        for limb in self.limbs.iter_mut().rev() {
            let low_bit = *limb & 1;
            *limb = *limb >> 1 | carry << 31;
            carry = low_bit;
        }
        self.trim();
    }

    /// `(self / divisor, whether it divided exactly)`, for a nonzero
    /// divisor and a quotient below 2^127 (found bit by bit, so only fit
    /// for short quotients).
    fn div_small_quotient(&self, divisor: &Big) -> (u128, bool) {
        let mut remainder = self.clone();
        let mut quotient = 0u128;
        // The quotient is below 2^(top + 1).
        let top = self.bit_len().saturating_sub(divisor.bit_len()).min(126);
        let mut shifted = divisor.shl(top);
        for bit in (0..=top).rev() {
            if remainder >= shifted {
                remainder.sub_assign(&shifted);
                quotient |= 1 << bit;
            }
            shifted.halve();
        }
        (quotient, remainder.limbs.is_empty())
    }

    /// Divides in place by 10^9, returning the remainder. (A constant
    /// divisor lets the compiler multiply instead of divide.)
    fn div_rem_billion(&mut self) -> u32 {
        const BILLION: u64 = 1_000_000_000;
        let mut remainder = 0u64;
        for limb in self.limbs.iter_mut().rev() {
            let current = remainder << 32 | u64::from(*limb);
            *limb = (current / BILLION) as u32;
            remainder = current % BILLION;
        }
        self.trim();
        remainder as u32
    }

    /// Decimal digits, without leading zeros ("0" for zero).
    fn to_decimal(&self) -> String {
        let mut rest = self.clone();
        let mut groups = Vec::new();
        while !rest.limbs.is_empty() {
            groups.push(rest.div_rem_billion());
        }
        let mut text = groups.pop().unwrap_or(0).to_string();
        for group in groups.iter().rev() {
            text.push_str(&format!("{group:09}"));
        }
        text
    }
}

impl PartialOrd for Big {
    fn partial_cmp(&self, other: &Big) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Big {
    fn cmp(&self, other: &Big) -> Ordering {
        self.limbs
            .len()
            .cmp(&other.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }
}

#[cfg(test)]
mod tests {
    use super::FloatError::{NanOrInfinity, NotAFloat};
    use super::*;

    /// What redis-server answered.
    enum Expected {
        /// The reply, in full.
        Text(&'static str),
        /// A reply too long to write here: its length, first and last
        /// twenty digits.
        Digits(usize, &'static str, &'static str),
        Refused(FloatError),
    }
    use Expected::{Digits, Refused, Text};

    type Case = (Option<&'static [u8]>, &'static [u8], Expected);

    /// (stored value, None for an absent key; increment; reply) as a real
    /// redis-server 7.0.15 gave them to `SET k <stored>` and
    /// `INCRBYFLOAT k <increment>`. Escapes are Rust's.
    const FROM_REDIS: &[Case] = &[
        (Some(b"10.50"), b"0.1", Text("10.6")),
        (Some(b"5.0e3"), b"2.0e2", Text("5200")),
        (Some(b"0.1"), b"0.2", Text("0.3")),
        (Some(b"1e20"), b"0.1", Text("100000000000000000000")),
        (Some(b"-1.5"), b"1.5", Text("0")),
        (Some(b"1.5"), b"-1.5", Text("0")),
        (Some(b"-0"), b"0", Text("0")),
        (Some(b"-0"), b"-0", Text("0")),
        (Some(b"0"), b"-0", Text("0")),
        (Some(b"-0"), b"1", Text("1")),
        (None, b"1", Text("1")),
        (None, b"0", Text("0")),
        (None, b"-0", Text("0")),
        (None, b"0.1", Text("0.1")),
        (None, b"-5", Text("-5")),
        (None, b"3.0e3", Text("3000")),
        (None, b"", Refused(NotAFloat)),
        (None, b"abc", Refused(NotAFloat)),
        (Some(b"10"), b"5", Text("15")),
        (Some(b"10"), b"-5.5", Text("4.5")),
        (
            Some(b"9223372036854775807"),
            b"1",
            Text("9223372036854775808"),
        ),
        (
            Some(b"-9223372036854775808"),
            b"-1",
            Text("-9223372036854775809"),
        ),
        (
            Some(b"18446744073709551615"),
            b"0",
            Text("18446744073709551615"),
        ),
        (
            Some(b"18446744073709551616"),
            b"1",
            Text("18446744073709551616"),
        ),
        (
            Some(b"36893488147419103231"),
            b"0",
            Text("36893488147419103232"),
        ),
        (Some(b"1"), b"1e-17", Text("1.00000000000000001")),
        (Some(b"1"), b"1e-18", Text("1")),
        (Some(b"1"), b"5e-18", Text("1")),
        (
            Some(b"0.3333333333333333333"),
            b"0",
            Text("0.33333333333333333"),
        ),
        (
            Some(b"1"),
            b"0.3333333333333333333",
            Text("1.33333333333333333"),
        ),
        (Some(b"0"), b"0.1", Text("0.1")),
        (Some(b"0"), b"1.1", Text("1.1")),
        (Some(b"3"), b"0.1", Text("3.1")),
        (Some(b"100"), b"0.001", Text("100.001")),
        (
            Some(b"1.23456789012345678901234567890"),
            b"0",
            Text("1.23456789012345679"),
        ),
        (Some(b"1e17"), b"1", Text("100000000000000001")),
        (Some(b"1e18"), b"1", Text("1000000000000000001")),
        (Some(b"1e19"), b"1", Text("10000000000000000001")),
        (Some(b"1e19"), b"0.5", Text("10000000000000000000")),
        (
            Some(b"123456789012345678901234567890"),
            b"0",
            Text("123456789012345678899921813504"),
        ),
        (
            Some(b"0.00000000000000001"),
            b"0",
            Text("0.00000000000000001"),
        ),
        (Some(b"0.000000000000000005"), b"0", Text("0")),
        (
            Some(b"0.000000000000000015"),
            b"0",
            Text("0.00000000000000002"),
        ),
        (
            Some(b"0.000000000000000025"),
            b"0",
            Text("0.00000000000000002"),
        ),
        (Some(b"-0.000000000000000005"), b"0", Text("0")),
        (
            Some(b"-0.00000000000000001"),
            b"0",
            Text("-0.00000000000000001"),
        ),
        (
            Some(b"0.000003814697265625"),
            b"0",
            Text("0.00000381469726562"),
        ),
        (
            Some(b"0.000011444091796875"),
            b"0",
            Text("0.00001144409179688"),
        ),
        (
            Some(b"-0.000003814697265625"),
            b"0",
            Text("-0.00000381469726562"),
        ),
        (Some(b"1e-4940"), b"0", Text("0")),
        (Some(b"1e-4940"), b"1", Text("1")),
        (Some(b"1e-4951"), b"0", Refused(NotAFloat)),
        (Some(b"1.9e-4951"), b"0", Text("0")),
        (Some(b"1.8e-4951"), b"0", Refused(NotAFloat)),
        (Some(b"4e-4951"), b"0", Text("0")),
        (Some(b"3.6e-4951"), b"0", Text("0")),
        (Some(b"-1e-4940"), b"0", Text("0")),
        (Some(b"1e-5000"), b"0", Refused(NotAFloat)),
        (Some(b"1e4932"), b"1e4932", Refused(NanOrInfinity)),
        (
            Some(b"1e4932"),
            b"0",
            Digits(4933, "10000000000000000000", "38418113791886622720"),
        ),
        (
            Some(b"1.18973149535723176502e4932"),
            b"0",
            Digits(4933, "11897314953572317650", "19552086811989770240"),
        ),
        (
            Some(b"1.18973149535723176509e4932"),
            b"0",
            Refused(NotAFloat),
        ),
        (Some(b"1.2e4932"), b"0", Refused(NotAFloat)),
        (Some(b"-1e4932"), b"-1e4932", Refused(NanOrInfinity)),
        (Some(b"1e4933"), b"0", Refused(NotAFloat)),
        (Some(b"1e999999999"), b"0", Refused(NotAFloat)),
        (Some(b"0e999999999"), b"1", Text("1")),
        (Some(b"0e99999999999999999999"), b"1", Text("1")),
        (Some(b"0e-999999999"), b"1", Text("1")),
        (Some(b"1e-999999999"), b"1", Refused(NotAFloat)),
        (Some(b"0.0e5"), b"2", Text("2")),
        (Some(b"00000.00000"), b"1", Text("1")),
        (
            Some(b"1e308"),
            b"1e308",
            Digits(309, "19999999999999999999", "56510092687857156096"),
        ),
        (
            Some(b"1e400"),
            b"0",
            Digits(401, "10000000000000000000", "43732497430221946880"),
        ),
        (Some(b"inf"), b"1", Refused(NanOrInfinity)),
        (Some(b"-inf"), b"1", Refused(NanOrInfinity)),
        (Some(b"1"), b"inf", Refused(NanOrInfinity)),
        (Some(b"1"), b"-inf", Refused(NanOrInfinity)),
        (Some(b"inf"), b"-inf", Refused(NanOrInfinity)),
        (Some(b"infinity"), b"0", Refused(NanOrInfinity)),
        (Some(b"INF"), b"0", Refused(NanOrInfinity)),
        (Some(b"InFiNiTy"), b"0", Refused(NanOrInfinity)),
        (Some(b"infin"), b"0", Refused(NotAFloat)),
        (Some(b"+inf"), b"0", Refused(NanOrInfinity)),
        (Some(b"nan"), b"0", Refused(NotAFloat)),
        (Some(b"1"), b"nan", Refused(NotAFloat)),
        (Some(b"NaN"), b"0", Refused(NotAFloat)),
        (Some(b"-nan"), b"0", Refused(NotAFloat)),
        (Some(b"nan(1)"), b"0", Refused(NotAFloat)),
        (Some(b" 1"), b"1", Refused(NotAFloat)),
        (Some(b"1 "), b"1", Refused(NotAFloat)),
        (Some(b"1"), b"1 ", Refused(NotAFloat)),
        (Some(b"1"), b" 1", Refused(NotAFloat)),
        (Some(b"\x091"), b"1", Refused(NotAFloat)),
        (Some(b"\x0a1"), b"1", Refused(NotAFloat)),
        (Some(b"1\x0a"), b"1", Refused(NotAFloat)),
        (Some(b"1"), b"\x0b1", Refused(NotAFloat)),
        (Some(b"0x10"), b"1", Text("17")),
        (Some(b"0X1P3"), b"0", Text("8")),
        (Some(b"0x1p-1"), b"0", Text("0.5")),
        (Some(b"0x.8"), b"0", Text("0.5")),
        (Some(b"0x1."), b"0", Text("1")),
        (Some(b"0x"), b"0", Refused(NotAFloat)),
        (Some(b"0x.p1"), b"0", Refused(NotAFloat)),
        (Some(b"0x1p"), b"0", Refused(NotAFloat)),
        (
            Some(b"0xffffffffffffffff"),
            b"0",
            Text("18446744073709551615"),
        ),
        (Some(b"0x1.fffffffffffffffffp0"), b"0", Text("2")),
        (
            Some(b"0x1p16383"),
            b"0",
            Digits(4932, "59486574767861588254", "23513645334982033408"),
        ),
        (Some(b"0x1p16384"), b"0", Refused(NotAFloat)),
        (Some(b"0x1p-16445"), b"0", Text("0")),
        (Some(b"0x1p-16446"), b"0", Refused(NotAFloat)),
        (Some(b"0x1.8p-16446"), b"0", Text("0")),
        (Some(b"0x0p99999999999999"), b"1", Text("1")),
        (Some(b"0x1p-16445"), b"0x1p-16445", Text("0")),
        (Some(b"1"), b"0x1p-63", Text("1")),
        (Some(b"1"), b"0x1p-64", Text("1")),
        (Some(b"1"), b"0x1.8p-64", Text("1")),
        (Some(b"1"), b"0x1p-65", Text("1")),
        (Some(b""), b"1", Refused(NotAFloat)),
        (Some(b"1"), b"", Refused(NotAFloat)),
        (Some(b"abc"), b"1", Refused(NotAFloat)),
        (Some(b"1"), b"abc", Refused(NotAFloat)),
        (Some(b"1e"), b"1", Refused(NotAFloat)),
        (Some(b"1e+"), b"1", Refused(NotAFloat)),
        (Some(b"1e-"), b"1", Refused(NotAFloat)),
        (Some(b"e5"), b"1", Refused(NotAFloat)),
        (Some(b"."), b"1", Refused(NotAFloat)),
        (Some(b".5"), b"1", Text("1.5")),
        (Some(b"5."), b"1", Text("6")),
        (Some(b"-.5"), b"1", Text("0.5")),
        (Some(b"+.5"), b"1", Text("1.5")),
        (Some(b"1.e5"), b"1", Text("100001")),
        (Some(b"+1"), b"+1", Text("2")),
        (Some(b"+-1"), b"1", Refused(NotAFloat)),
        (Some(b"--1"), b"1", Refused(NotAFloat)),
        (Some(b"1,5"), b"1", Refused(NotAFloat)),
        (Some(b"1_000"), b"1", Refused(NotAFloat)),
        (Some(b"1.5.5"), b"1", Refused(NotAFloat)),
        (Some(b"1e5.5"), b"1", Refused(NotAFloat)),
        (Some(b"1E5"), b"1", Text("100001")),
        (Some(b"1e+05"), b"1", Text("100001")),
        (Some(b"1e-05"), b"1", Text("1.00001")),
        (Some(b"007"), b"1", Text("8")),
        (Some(b"-007.500"), b"0", Text("-7.5")),
        (Some(b"1\x00"), b"1", Refused(NotAFloat)),
        (Some(b"1"), b"1\x00", Refused(NotAFloat)),
        (
            Some(b"3.14159265358979323846264338327950288"),
            b"0",
            Text("3.14159265358979324"),
        ),
        (
            Some(b"2.718281828459045235360287"),
            b"1",
            Text("3.71828182845904524"),
        ),
        (Some(b"0.1"), b"0.7", Text("0.8")),
        (Some(b"0.1"), b"-0.3", Text("-0.2")),
        (Some(b"1e-10"), b"1e-10", Text("0.0000000002")),
        (Some(b"123.456"), b"-123.456", Text("0")),
        (
            Some(b"123.456"),
            b"-123.4560000000001",
            Text("-0.0000000000001"),
        ),
        (
            Some(b"99999999999999999999"),
            b"1",
            Text("100000000000000000000"),
        ),
        (Some(b"0.99999999999999999999"), b"0", Text("1")),
        (Some(b"0.999999999999999995"), b"0", Text("1")),
        (
            Some(b"9.999999999999999995"),
            b"0",
            Text("9.99999999999999999"),
        ),
        (
            Some(b"1"),
            b"-0.99999999999999999",
            Text("0.00000000000000001"),
        ),
        (Some(b"1e-17"), b"-1e-17", Text("0")),
        (Some(b"5e-324"), b"0", Text("0")),
        (
            Some(b"1.7976931348623157e308"),
            b"1.7976931348623157e308",
            Digits(309, "35953862697246313999", "53604933726679072768"),
        ),
        (Some(b"4.9406564584124654e-324"), b"0", Text("0")),
        (Some(b"0.1e1"), b"0.01e2", Text("2")),
        (Some(b"1e-4931"), b"1e-4931", Text("0")),
        (
            Some(b"1e+4931"),
            b"1",
            Digits(4932, "10000000000000000000", "53841811379188662272"),
        ),
        (Some(b"-1e4932"), b"1e4932", Text("0")),
        (Some(b"1e4932"), b"-1e4932", Text("0")),
        (Some(b"1.5"), b"0x1p-64", Text("1.5")),
        (Some(b"-1"), b"0x1p-64", Text("-1")),
        (Some(b"2.5e-18"), b"0", Text("0")),
        (Some(b"7.5e-18"), b"0", Text("0.00000000000000001")),
    ];

    fn check(stored: Option<&[u8]>, increment: &[u8], expected: &Expected) -> Result<(), String> {
        let got = incr_by_float(stored, increment);
        let ok = match (&got, expected) {
            (Ok(text), Text(want)) => text == want.as_bytes(),
            (Ok(text), Digits(len, starts, ends)) => {
                text.len() == *len
                    && text.starts_with(starts.as_bytes())
                    && text.ends_with(ends.as_bytes())
            }
            (Err(error), Refused(want)) => error == want,
            _ => false,
        };
        if ok {
            return Ok(());
        }
        let show = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        Err(format!(
            "{:?} + {:?}: got {:?}",
            stored.map(show),
            show(increment),
            got.map(|t| show(&t))
        ))
    }

    #[test]
    fn replies_match_those_read_off_a_real_redis_server() {
        let wrong: Vec<String> = FROM_REDIS
            .iter()
            .filter_map(|(stored, increment, expected)| check(*stored, increment, expected).err())
            .collect();
        assert!(
            wrong.is_empty(),
            "{} differ:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        assert!(FROM_REDIS.len() >= 60);
    }

    /// Inputs near the 5 KiB limit, with redis-server's answers.
    #[test]
    fn long_inputs_are_read_up_to_the_limit() {
        let cases: Vec<(Vec<u8>, &[u8], Expected)> = vec![
            // 1e5000 overflows; 1e-5001 underflows to zero.
            (
                [b"1".as_slice(), &[b'0'; 5000]].concat(),
                b"0",
                Refused(NotAFloat),
            ),
            (
                [b"0.".as_slice(), &[b'0'; 5000], b"1"].concat(),
                b"1",
                Refused(NotAFloat),
            ),
            // 5119 bytes is the longest text read, 5120 too long.
            (vec![b'0'; 5119], b"1", Text("1")),
            (vec![b'0'; 5120], b"1", Refused(NotAFloat)),
            (
                [[b'0'; 5000].as_slice(), b"1.5"].concat(),
                b"1",
                Text("2.5"),
            ),
            // 1.1e5118 overflows.
            (vec![b'1'; 5119], b"0", Refused(NotAFloat)),
        ];
        for (stored, increment, expected) in &cases {
            check(Some(stored), increment, expected).unwrap();
        }
        // A 5119-digit mantissa scaled back into range is read exactly:
        // 0.000…(4000 zeros)1111… with exponent 4000 is 0.1111….
        let mut long = b"0.".to_vec();
        long.extend([b'0'; 4000]);
        long.extend([b'1'; 1100]);
        long.extend(b"e4000");
        assert_eq!(
            incr_by_float(Some(&long), b"0"),
            Ok(b"0.11111111111111111".to_vec())
        );
    }

    #[test]
    fn errors_say_what_redis_says() {
        assert_eq!(NotAFloat.to_string(), "value is not a valid float");
        assert_eq!(
            NanOrInfinity.to_string(),
            "increment would produce NaN or Infinity"
        );
        assert_eq!(incr_by_float(Some(b"inf"), b"1"), Err(NanOrInfinity));
        assert_eq!(incr_by_float(Some(b"x"), b"inf"), Err(NotAFloat));
    }

    fn parsed(text: &str) -> (bool, u64, i64) {
        match LongDouble::parse(text.as_bytes()) {
            Some(LongDouble {
                negative,
                class: Class::Finite { mantissa, exponent },
            }) => (negative, mantissa, exponent),
            other => panic!("{text:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn decimal_reading_rounds_half_to_even() {
        // 1 + 2^-64 is exactly halfway between 1 and its successor
        // 1 + 2^-63: ties go to the even one, 1; a hair more rounds up.
        let half = "1.0000000000000000000542101086242752217003726400434970855712890625";
        assert_eq!(parsed(half), (false, 1 << 63, -63));
        assert_eq!(parsed(&format!("{half}1")), (false, (1 << 63) + 1, -63));
        assert_eq!(parsed(&format!("-{half}")), (true, 1 << 63, -63));
        // 1 + 3 × 2^-64 is halfway between 1 + 2^-63 (odd) and 1 + 2^-62.
        let three_halves = "1.0000000000000000001626303258728256651011179201304912567138671875";
        assert_eq!(parsed(three_halves), (false, (1 << 63) + 2, -63));
        // 0.1 is 0xcccccccccccccccd × 2^-67 (rounded up).
        assert_eq!(parsed("0.1"), (false, 0xcccc_cccc_cccc_cccd, -67));
        assert_eq!(parsed("1e4000").1 >> 63, 1);
    }

    #[test]
    fn subnormals_and_the_ends_of_the_range() {
        assert_eq!(parsed("0x1p-16445"), (false, 1, MIN_EXP));
        assert_eq!(
            parsed("0x1.8p-16446"),
            (false, 1, MIN_EXP),
            "3/4 of the least rounds up"
        );
        assert!(
            LongDouble::parse(b"0x1p-16446").is_none(),
            "half the least ties to 0"
        );
        assert_eq!(
            parsed("0x1p-16382"),
            (false, 1 << 63, MIN_EXP),
            "the least normal"
        );
        assert_eq!(
            parsed("0x.fffffffffffffffep-16382"),
            (false, (1 << 63) - 1, MIN_EXP)
        );
        assert_eq!(
            parsed("0x1.fffffffffffffffep16383"),
            (false, u64::MAX, MAX_EXP)
        );
        assert!(
            LongDouble::parse(b"0x1.ffffffffffffffffp16383").is_none(),
            "rounds to infinity"
        );
        assert!(LongDouble::parse(b"1e-99999999999999999999").is_none());
        assert!(LongDouble::parse(b"0e-99999999999999999999").is_some());
        assert_eq!(parsed("-0"), (true, 0, MIN_EXP));
    }

    #[test]
    fn addition_rounds_once_and_knows_its_zeros() {
        let value = |text: &str| LongDouble::parse(text.as_bytes()).unwrap();
        let one = value("1");
        // 1 + 2^-64 ties to 1; 1 + (2^-64 + 2^-100) does not.
        assert_eq!(one.add(value("0x1p-64")), one);
        assert_eq!(
            one.add(value("0x1.00000000001p-64")),
            value("0x1.0000000000000002p0")
        );
        // Far apart: the smaller only breaks ties.
        assert_eq!(value("1e4000").add(value("1e-4000")), value("1e4000"));
        assert_eq!(value("-0").add(value("-0")), value("-0"));
        assert_eq!(value("-0").add(value("0")), LongDouble::ZERO);
        assert_eq!(value("2.5").add(value("-2.5")), LongDouble::ZERO);
        // Subnormal sums are exact.
        assert_eq!(
            value("0x1p-16445").add(value("0x1p-16445")),
            value("0x1p-16444")
        );
        assert!(!value("1e4932").add(value("1e4932")).is_finite());
        assert!(!value("inf").add(value("-inf")).is_finite());
        assert_eq!(value("-inf").add(value("1")), value("-inf"));
        assert_eq!(value("0.1") + value("0.2"), value("0.1").add(value("0.2")));
    }

    #[test]
    fn printing_is_seventeen_decimals_rounded_half_to_even() {
        let human = |text: &str| LongDouble::parse(text.as_bytes()).unwrap().to_human();
        // 2^-18 = 0.000003814697265625 has 18 decimals: a tie, to even.
        assert_eq!(human("0x1p-18"), "0.00000381469726562");
        assert_eq!(human("0x3p-18"), "0.00001144409179688");
        assert_eq!(human("-0x1p-60"), "0");
        assert_eq!(human("-0"), "0");
        assert_eq!(human("100"), "100");
        assert_eq!(human("0x1p64"), "18446744073709551616");
        assert_eq!(human("-inf"), "-inf");
        assert_eq!(human("0x1p-16445"), "0");
        assert_eq!(human("0x1.fffffffffffffffep16383").len(), 4933);
    }

    #[test]
    fn big_numbers_do_what_the_rounding_relies_on() {
        let big = Big::from_decimal(b"123456789012345678901234567890");
        assert_eq!(big.to_decimal(), "123456789012345678901234567890");
        assert_eq!(Big::from_hex(b"fFfF").to_decimal(), "65535");
        assert_eq!(big.shl(100).shr_round_even(100), big);
        let seven = Big::from_u64(7);
        let divisor = Big::from_decimal(b"123456789012345678901");
        assert_eq!(big.div_small_quotient(&divisor), (1_000_000_000, false));
        assert_eq!(big.shl(3).div_small_quotient(&big), (8, true));
        assert_eq!(big.div_small_quotient(&big.add(&seven)), (0, false));
        let mut power = Big::from_u64(1);
        power.mul_pow10(40);
        assert_eq!(power.to_decimal(), format!("1{}", "0".repeat(40)));
        assert_eq!(seven.shr_round_even(1).to_decimal(), "4", "3.5 to even");
        assert_eq!(
            Big::from_u64(5).shr_round_even(1).to_decimal(),
            "2",
            "2.5 to even"
        );
        assert_eq!(seven.add(&seven).sub(&seven), seven);
        assert!(big.bit(0) == (big.low_u64() & 1 == 1));
        assert!(!Big::from_u64(8).any_below(3) && Big::from_u64(9).any_below(3));
        assert_eq!(Big::from_u64(0).to_decimal(), "0");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        /// Any bytes, and strings over the bytes numbers are made of: no
        /// panic, and every sum printed reads back as a finite number.
        #[test]
        fn any_input_gives_a_reply_that_reads_back(
            stored in proptest::collection::vec(proptest::sample::select(NUMBERISH.to_vec()), 0..30),
            increment in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..30),
        ) {
            for (a, b) in [(&stored, &increment), (&increment, &stored), (&stored, &stored)] {
                if let Ok(sum) = incr_by_float(Some(a), b) {
                    proptest::prop_assert!(LongDouble::parse(&sum).is_some_and(LongDouble::is_finite));
                    proptest::prop_assert!(sum.len() < MAX_CHARS);
                }
            }
        }
    }

    const NUMBERISH: &[u8] = b"0123456789.eE+-xXpPaAfFinINtyn \x00";

    #[test]
    fn the_worst_inputs_take_milliseconds() {
        let start = std::time::Instant::now();
        let mut tiny = b"1.".to_vec();
        tiny.extend([b'7'; 5100]);
        tiny.extend(b"e-4950");
        let mut huge = vec![b'9'; 4900];
        huge.extend(b".5e32");
        for _ in 0..10 {
            assert!(incr_by_float(Some(&tiny), b"0").is_ok());
            assert!(incr_by_float(Some(&huge), b"-1e4931").is_ok());
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }
}

/// A redis-server of its own on a unix socket, for the ignored tests here
/// and in [`super::glob`] that compare with the real thing.
#[cfg(test)]
pub(crate) mod redis_reference {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixStream;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// A reply, as far as these tests need to tell replies apart.
    #[derive(Debug, PartialEq)]
    pub enum Reply {
        Status(String),
        Error(String),
        Integer(i64),
        Bulk(Option<Vec<u8>>),
        Array(Vec<Reply>),
    }

    pub struct RedisServer {
        child: Child,
        reader: BufReader<UnixStream>,
        _dir: tempfile::TempDir,
    }

    impl RedisServer {
        /// Starts one, or says why not.
        pub fn start() -> Result<RedisServer, String> {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let socket = dir.path().join("redis.sock");
            let mut child = Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--unixsocket",
                ])
                .arg(&socket)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server: {e}"))?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let stream = loop {
                match UnixStream::connect(&socket) {
                    Ok(stream) => break stream,
                    Err(_) if Instant::now() < deadline => {
                        if let Ok(Some(status)) = child.try_wait() {
                            return Err(format!("redis-server exited: {status}"));
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(format!("redis-server did not listen: {e}"));
                    }
                }
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .map_err(|e| e.to_string())?;
            Ok(RedisServer {
                child,
                reader: BufReader::new(stream),
                _dir: dir,
            })
        }

        /// Sends every command, then reads every reply.
        pub fn pipeline(&mut self, commands: &[Vec<&[u8]>]) -> Vec<Reply> {
            let mut out = Vec::new();
            for command in commands {
                out.extend(format!("*{}\r\n", command.len()).as_bytes());
                for arg in command {
                    out.extend(format!("${}\r\n", arg.len()).as_bytes());
                    out.extend(*arg);
                    out.extend(b"\r\n");
                }
            }
            self.reader
                .get_mut()
                .write_all(&out)
                .expect("write to redis-server");
            commands.iter().map(|_| self.read()).collect()
        }

        fn read(&mut self) -> Reply {
            let mut line = Vec::new();
            self.reader
                .read_until(b'\n', &mut line)
                .expect("read from redis-server");
            let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
            let number = || text.parse::<i64>().expect("a RESP length");
            match line[0] {
                b'+' => Reply::Status(text),
                b'-' => Reply::Error(text),
                b':' => Reply::Integer(number()),
                b'$' if number() < 0 => Reply::Bulk(None),
                b'$' => {
                    let mut data = vec![0; number() as usize + 2];
                    self.reader
                        .read_exact(&mut data)
                        .expect("read a bulk string");
                    data.truncate(data.len() - 2);
                    Reply::Bulk(Some(data))
                }
                b'*' => Reply::Array((0..number()).map(|_| self.read()).collect()),
                other => panic!("unexpected RESP type byte {other}"),
            }
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Random INCRBYFLOATs against a live redis-server; ignored by default
/// (`cargo test --release --lib kv::float::differential -- --ignored`).
#[cfg(test)]
mod differential {
    use super::redis_reference::{RedisServer, Reply};
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn digits(rng: &mut StdRng, count: usize) -> String {
        (0..count)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect()
    }

    fn sign(rng: &mut StdRng) -> &'static str {
        ["", "", "-", "+"][rng.gen_range(0..4)]
    }

    /// The exact decimal expansion of `numerator × 2^-shift`.
    fn binary_fraction(numerator: &Big, shift: u32) -> String {
        let mut scaled = numerator.clone();
        for _ in 0..shift {
            scaled.mul_small(5);
        }
        let text = format!(
            "{:0>width$}",
            scaled.to_decimal(),
            width = shift as usize + 1
        );
        let (whole, fraction) = text.split_at(text.len() - shift as usize);
        format!("{whole}.{fraction}")
    }

    /// One random operand, from a mix meant to reach every path: short and
    /// long decimals, exponents near the ends of the range, exact binary
    /// fractions (ties when printed), exact halfway points between
    /// neighbouring long doubles (ties when read), hex, and junk.
    fn operand(rng: &mut StdRng) -> String {
        match rng.gen_range(0..12) {
            0 => {
                let whole = rng.gen_range(1..7);
                let fraction = rng.gen_range(0..7);
                format!(
                    "{}{}.{}",
                    sign(rng),
                    digits(rng, whole),
                    digits(rng, fraction)
                )
            }
            1 => format!("{}{}", sign(rng), rng.gen::<i64>() >> rng.gen_range(0..64)),
            2 => {
                let exponent: i32 = match rng.gen_range(0..4) {
                    0 => rng.gen_range(-30..30),
                    1 => rng.gen_range(4900..4940),
                    2 => rng.gen_range(-4970..-4920),
                    _ => rng.gen_range(-400..400),
                };
                let count = rng.gen_range(1..25);
                let mantissa = digits(rng, count);
                let point = rng.gen_range(0..=mantissa.len());
                let e = ["e", "E"][rng.gen_range(0..2)];
                format!(
                    "{}{}.{}{e}{exponent}",
                    sign(rng),
                    &mantissa[..point],
                    &mantissa[point..]
                )
            }
            3 => {
                let count = rng.gen_range(15..45);
                let all = digits(rng, count);
                let point = rng.gen_range(0..=all.len());
                format!("{}{}.{}", sign(rng), &all[..point], &all[point..])
            }
            4 => {
                let count = rng.gen_range(40..5300);
                let all = digits(rng, count);
                let point = rng.gen_range(0..=all.len());
                let exponent = rng.gen_range(-5000..5000);
                format!("{}.{}e{exponent}", &all[..point], &all[point..])
            }
            5 => {
                let shift = rng.gen_range(1..70);
                let numerator = Big::from_u64(rng.gen::<u64>() >> rng.gen_range(0..40));
                format!("{}{}", sign(rng), binary_fraction(&numerator, shift))
            }
            6 => {
                // (2m + 1) × 2^-shift with m of 64 bits: halfway between
                // two neighbours; sometimes nudged by a trailing digit.
                let m = Big::from_u64(rng.gen::<u64>() | 1 << 63);
                let odd = m.shl(1).add(&Big::from_u64(1));
                let shift = rng.gen_range(1..100);
                let nudge = ["", "", "1", "0001"][rng.gen_range(0..4)];
                format!("{}{}{nudge}", sign(rng), binary_fraction(&odd, shift))
            }
            7 => {
                let count = rng.gen_range(1..20);
                let hex: String = (0..count)
                    .map(|_| char::from(b"0123456789abcdefABCDEF"[rng.gen_range(0..22)]))
                    .collect();
                let point = rng.gen_range(0..=hex.len());
                let exponent = match rng.gen_range(0..3) {
                    0 => rng.gen_range(-80..80),
                    1 => rng.gen_range(16300..16400),
                    _ => rng.gen_range(-16540..-16400),
                };
                format!(
                    "{}0x{}.{}p{exponent}",
                    sign(rng),
                    &hex[..point],
                    &hex[point..]
                )
            }
            8 => {
                let junk = [
                    "", " 1", "1 ", "inf", "-inf", "Infinity", "nan", "0x", "1e", "e1", ".", "-",
                    "+", "-0", "0", ".5", "5.", "1e5000", "1e-5000", "0e99999", "1.5.", "0x1p",
                    "1\u{0}", "١", "1e+", "\u{b}1", "0x.p1", "--1", "1d5",
                ];
                junk[rng.gen_range(0..junk.len())].to_owned()
            }
            9 => {
                let count = rng.gen_range(1..22);
                let exponent = rng.gen_range(-4952..-4935);
                format!("{}{}e{exponent}", sign(rng), digits(rng, count))
            }
            10 => {
                let count = rng.gen_range(1..22);
                let exponent = rng.gen_range(4910..4915);
                format!(
                    "{}1.189731495357231765{}e{exponent}",
                    sign(rng),
                    digits(rng, count)
                )
            }
            _ => {
                let value = rng.gen_range(-1000..1000);
                let hundredths = rng.gen_range(0..100);
                format!("{value}.{hundredths:02}")
            }
        }
    }

    #[test]
    #[ignore = "needs redis-server; minutes"]
    fn random_increments_match_a_live_redis_server() {
        let mut redis = RedisServer::start().expect("redis-server");
        // DIFFERENTIAL_SEED=n runs another sample.
        let seed = std::env::var("DIFFERENTIAL_SEED")
            .ok()
            .and_then(|s| s.parse().ok());
        let mut rng = StdRng::seed_from_u64(seed.unwrap_or(1414));
        let (mut compared, mut mismatched) = (0usize, Vec::new());
        let (mut accepted, mut refused, mut overflowed) = (0usize, 0usize, 0usize);
        for _ in 0..400 {
            let pairs: Vec<(Option<String>, String)> = (0..500)
                .map(|_| {
                    let stored = (rng.gen_range(0..20) != 0).then(|| operand(&mut rng));
                    (stored, operand(&mut rng))
                })
                .collect();
            let keys: Vec<String> = (0..pairs.len()).map(|i| format!("k{i}")).collect();
            let mut commands: Vec<Vec<&[u8]>> = vec![vec![b"FLUSHALL"]];
            for ((stored, increment), key) in pairs.iter().zip(&keys) {
                if let Some(stored) = stored {
                    commands.push(vec![b"SET", key.as_bytes(), stored.as_bytes()]);
                }
                commands.push(vec![b"INCRBYFLOAT", key.as_bytes(), increment.as_bytes()]);
            }
            let replies = redis.pipeline(&commands);
            let mut replies = replies.into_iter().skip(1);
            for (stored, increment) in &pairs {
                if stored.is_some() {
                    assert_eq!(replies.next(), Some(Reply::Status("OK".into())));
                }
                let reply = replies.next().expect("a reply");
                let ours =
                    incr_by_float(stored.as_deref().map(str::as_bytes), increment.as_bytes());
                let same = match (&ours, &reply) {
                    (Ok(text), Reply::Bulk(Some(theirs))) => {
                        accepted += 1;
                        text == theirs
                    }
                    (Err(error), Reply::Error(theirs)) => {
                        match error {
                            FloatError::NotAFloat => refused += 1,
                            FloatError::NanOrInfinity => overflowed += 1,
                        }
                        *theirs == format!("ERR {error}")
                    }
                    _ => false,
                };
                compared += 1;
                if !same {
                    mismatched.push(format!(
                        "{stored:?} + {increment:?}: ours {ours:?}, redis {reply:?}"
                    ));
                }
            }
        }
        eprintln!(
            "{compared} compared: {accepted} sums, {refused} not a float, {overflowed} NaN or infinity; {} differ",
            mismatched.len()
        );
        assert!(
            mismatched.is_empty(),
            "{}",
            mismatched[..mismatched.len().min(20)].join("\n")
        );
    }
}
