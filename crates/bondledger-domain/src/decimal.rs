//! Exact decimals: the one grammar quantities, rates and amounts are written
//! in, and the one rounding (six places, halves away from zero) used when a
//! figure is printed or compared on its rounded value.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Digits a decimal string may carry, leading zeros aside (interchange §1).
pub const MAX_SIGNIFICANT_DIGITS: usize = 28;

/// Places every printed quantity is rounded to.
pub const PRINTED_PLACES: u32 = 6;

/// Why a decimal string was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("{0:?} is not a decimal string (digits, an optional '-' and an optional fraction)")]
    Grammar(String),
    #[error("{0:?} has more than {MAX_SIGNIFICANT_DIGITS} digits")]
    TooManyDigits(String),
    #[error("{0:?} is a negative zero")]
    NegativeZero(String),
}

/// Parses `-?[0-9]+(\.[0-9]+)?` with at most 28 digits (leading zeros
/// aside) into an exact decimal. Exponents, `NaN`, `+`, blanks are refused.
pub fn parse_decimal(text: &str) -> Result<Decimal, DecimalError> {
    let (whole, trimmed_fraction) = digits_of(text)?;
    // The digits without trailing fraction zeros, as one whole number, and
    // the places of the fraction left: twenty-eight digits always fit
    // rust_decimal's 96-bit mantissa, so a failure is a bug.
    let mantissa = whole
        .bytes()
        .chain(trimmed_fraction.bytes())
        .fold(0_i128, |number, digit| {
            number * 10 + i128::from(digit - b'0')
        });
    let places = u32::try_from(trimmed_fraction.len())
        .map_err(|_| DecimalError::TooManyDigits(text.to_owned()))?;
    let value = Decimal::try_from_i128_with_scale(mantissa, places)
        .map_err(|_| DecimalError::TooManyDigits(text.to_owned()))?;
    signed(text, value)
}

/// The whole part of a decimal string and its fraction without trailing
/// zeros (empty when there is none), once the string is found to be of the
/// grammar and within [`MAX_SIGNIFICANT_DIGITS`].
fn digits_of(text: &str) -> Result<(&str, &str), DecimalError> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !fraction.is_none_or(all_digits) {
        return Err(DecimalError::Grammar(text.to_owned()));
    }
    let significant = whole.trim_start_matches('0').len() + fraction.map_or(0, str::len);
    if significant > MAX_SIGNIFICANT_DIGITS {
        return Err(DecimalError::TooManyDigits(text.to_owned()));
    }
    Ok((whole, fraction.map_or("", |f| f.trim_end_matches('0'))))
}

/// `value`, the magnitude `text` writes, with the sign `text` gives it; a
/// negative zero is refused.
fn signed(text: &str, value: Decimal) -> Result<Decimal, DecimalError> {
    if text.starts_with('-') {
        if value.is_zero() {
            return Err(DecimalError::NegativeZero(text.to_owned()));
        }
        return Ok(-value);
    }
    Ok(value)
}

/// round6: six places, halves away from zero (四舍五入).
pub fn round6(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(PRINTED_PLACES, RoundingStrategy::MidpointAwayFromZero)
}

/// Rounds money to the fen (0.01), halves away from zero.
pub fn round_cents(value: Decimal) -> Decimal {
    value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// The printed form of a quantity: rounded to six places, always written
/// with six places so columns line up and samples compare textually too.
pub fn format6(value: Decimal) -> String {
    let mut rounded = round6(value);
    if rounded.is_zero() {
        rounded = Decimal::ZERO;
    }
    rounded.rescale(PRINTED_PLACES);
    rounded.to_string()
}

/// A decimal carried as a JSON string, exactly as written in a movement file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dec(pub Decimal);

impl Dec {
    pub fn value(self) -> Decimal {
        self.0
    }
}

impl From<Decimal> for Dec {
    fn from(value: Decimal) -> Self {
        Dec(value)
    }
}

impl Serialize for Dec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.normalize().to_string())
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Dec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a decimal string such as \"1250.5\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Dec, E> {
                parse_decimal(text).map(Dec).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reading this module had before it built the mantissa itself: the
    /// digits put in canonical text and parsed by rust_decimal.
    fn parsed_through_text(text: &str) -> Result<Decimal, DecimalError> {
        let (whole, trimmed_fraction) = digits_of(text)?;
        let whole_trimmed = whole.trim_start_matches('0');
        let whole_text = if whole_trimmed.is_empty() {
            "0"
        } else {
            whole_trimmed
        };
        let canonical = if trimmed_fraction.is_empty() {
            whole_text.to_owned()
        } else {
            format!("{whole_text}.{trimmed_fraction}")
        };
        let value: Decimal = canonical
            .parse()
            .map_err(|_| DecimalError::TooManyDigits(text.to_owned()))?;
        signed(text, value)
    }

    proptest! {
        /// The same value, with the same scale (so it prints alike), or the
        /// same refusal, for digit strings of every length around the bound,
        /// leading and trailing zeros included.
        #[test]
        fn reads_as_canonical_text_parsed(
            negative in any::<bool>(),
            leading in 0..4usize,
            whole in "[0-9]{0,30}",
            fraction in proptest::option::of("[0-9]{0,30}"),
            trailing in 0..4usize,
        ) {
            let mut text = String::new();
            if negative {
                text.push('-');
            }
            text.push_str(&"0".repeat(leading));
            text.push_str(&whole);
            if let Some(fraction) = &fraction {
                text.push('.');
                text.push_str(fraction);
                text.push_str(&"0".repeat(trailing));
            }
            let read = parse_decimal(&text);
            let expected = parsed_through_text(&text);
            prop_assert_eq!(&read, &expected, "{}", text);
            if let (Ok(read), Ok(expected)) = (read, expected) {
                prop_assert_eq!(read.scale(), expected.scale(), "{}", text);
                prop_assert_eq!(read.to_string(), expected.to_string(), "{}", text);
            }
        }
    }

    #[test]
    fn accepts_the_grammar_and_nothing_else() {
        assert_eq!(
            parse_decimal("1250.5").map(|d| d.to_string()),
            Ok("1250.5".into())
        );
        assert_eq!(parse_decimal("-3").map(|d| d.to_string()), Ok("-3".into()));
        assert_eq!(
            parse_decimal("000012.500").map(|d| d.to_string()),
            Ok("12.5".into())
        );
        for bad in [
            "", "1.", ".5", "1e5", "NaN", "+1", " 1", "1,5", "0x10", "--1", "1.2.3",
        ] {
            assert!(
                matches!(parse_decimal(bad), Err(DecimalError::Grammar(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_decimal("-0.00"),
            Err(DecimalError::NegativeZero(_))
        ));
    }

    #[test]
    fn counts_digits_without_leading_zeros() {
        let twenty_eight = "1234567890123456789012345678";
        assert!(parse_decimal(twenty_eight).is_ok());
        assert!(parse_decimal(&format!("000{twenty_eight}")).is_ok());
        assert!(matches!(
            parse_decimal(&format!("{twenty_eight}9")),
            Err(DecimalError::TooManyDigits(_))
        ));
        assert!(parse_decimal("0.123456789012345678901234567").is_ok());
    }

    #[test]
    fn rounds_halves_away_from_zero() {
        let d = |s: &str| parse_decimal(s).expect("valid");
        assert_eq!(format6(d("0.0000005")), "0.000001");
        assert_eq!(format6(d("-0.0000005")), "-0.000001");
        assert_eq!(format6(d("-0.0000004")), "0.000000");
        assert_eq!(format6(d("12000")), "12000.000000");
        assert_eq!(round_cents(d("0.585")).to_string(), "0.59");
    }
}
