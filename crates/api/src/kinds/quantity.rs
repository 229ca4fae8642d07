//! Resource quantities (`500m`, `1Gi`, `2e3`) parsed exactly, for the checks that
//! compare them: requests within limits, a pod's QoS class, storage growth.

use std::cmp::Ordering;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

use super::NEGATIVE;
use crate::error::FieldError;

/// Kubernetes' message for a string that is not a quantity.
pub(super) const FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const SUFFIX_ERROR: &str = "unable to parse quantity's suffix";

/// More digits than this are refused rather than risk overflowing the arithmetic.
const MAX_DIGITS: usize = 30;

/// An exact decimal: `mantissa × 10^exponent`.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    mantissa: i128,
    exponent: i32,
}

impl Quantity {
    pub(super) const ZERO: Self = Self { mantissa: 0, exponent: 0 };

    /// Parses a quantity as Kubernetes' `resource.ParseQuantity` accepts it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (negative, rest) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (number, suffix) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(FORMAT_ERROR.into());
        }
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > MAX_DIGITS {
            return Err(FORMAT_ERROR.into());
        }
        let mut mantissa: i128 =
            if digits.is_empty() { 0 } else { digits.parse().map_err(|_| FORMAT_ERROR.to_string())? };
        let fraction_len = i32::try_from(fraction.len()).map_err(|_| FORMAT_ERROR.to_string())?;
        let (multiplier, exponent) = suffix_scale(suffix)?;
        mantissa = mantissa.checked_mul(multiplier).ok_or_else(|| FORMAT_ERROR.to_string())?;
        if negative {
            mantissa = -mantissa;
        }
        let exponent = exponent.checked_sub(fraction_len).ok_or_else(|| FORMAT_ERROR.to_string())?;
        Ok(Self { mantissa, exponent })
    }

    pub(super) fn is_positive(self) -> bool {
        self.mantissa > 0
    }

    pub(super) fn is_negative(self) -> bool {
        self.mantissa < 0
    }

    /// Whether the value is a whole number.
    pub(super) fn is_integer(self) -> bool {
        if self.exponent >= 0 {
            return true;
        }
        // Fractional digits: whole only if they are all zero.
        10i128.checked_pow(self.exponent.unsigned_abs()).map_or(self.mantissa == 0, |scale| self.mantissa % scale == 0)
    }

    /// The mantissa at a smaller or equal exponent, if it fits.
    fn aligned_to(self, exponent: i32) -> Option<i128> {
        let shift = self.exponent.checked_sub(exponent)?;
        let shift = u32::try_from(shift).ok()?;
        self.mantissa.checked_mul(10i128.checked_pow(shift)?)
    }

    /// Exact comparison; `None` only when the values are too far apart to align, in
    /// which case callers skip the check rather than guess.
    pub(super) fn compare(self, other: Self) -> Option<Ordering> {
        let exponent = self.exponent.min(other.exponent);
        Some(self.aligned_to(exponent)?.cmp(&other.aligned_to(exponent)?))
    }

    /// `⌈self / divisor⌉` as a whole number, the rounding the kubelet applies to resource
    /// values (cpu in millicores, memory in bytes, downward API divisors). `None` when the
    /// divisor is not positive or the values are too far apart to align.
    pub fn ceil_div(self, divisor: Self) -> Option<i128> {
        if !divisor.is_positive() {
            return None;
        }
        let exponent = self.exponent.min(divisor.exponent);
        let (value, divisor) = (self.aligned_to(exponent)?, divisor.aligned_to(exponent)?);
        Some(value.div_euclid(divisor) + i128::from(value.rem_euclid(divisor) != 0))
    }

    /// Exact sum, `None` on overflow.
    pub(super) fn add(self, other: Self) -> Option<Self> {
        let exponent = self.exponent.min(other.exponent);
        let mantissa = self.aligned_to(exponent)?.checked_add(other.aligned_to(exponent)?)?;
        Some(Self { mantissa, exponent })
    }
}

/// A quantity field, or the error Kubernetes reports for it.
pub(super) fn parse_field(value: &ApiQuantity, field: &str) -> Result<Quantity, FieldError> {
    Quantity::parse(&value.0).map_err(|message| FieldError::invalid(field, value.0.as_str(), &message))
}

/// A quantity field that may not be negative.
pub(super) fn nonnegative_field(value: &ApiQuantity, field: &str) -> Result<Quantity, FieldError> {
    match parse_field(value, field)? {
        parsed if parsed.is_negative() => Err(FieldError::invalid(field, value.0.as_str(), NEGATIVE)),
        parsed => Ok(parsed),
    }
}

/// The multiplier and power of ten a suffix stands for.
fn suffix_scale(suffix: &str) -> Result<(i128, i32), String> {
    let binary = |power: u32| Ok((1i128 << (10 * power), 0));
    match suffix {
        "" => Ok((1, 0)),
        "n" => Ok((1, -9)),
        "u" => Ok((1, -6)),
        "m" => Ok((1, -3)),
        "k" => Ok((1, 3)),
        "M" => Ok((1, 6)),
        "G" => Ok((1, 9)),
        "T" => Ok((1, 12)),
        "P" => Ok((1, 15)),
        "E" => Ok((1, 18)),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => exponent_suffix(suffix),
    }
}

/// `e3`, `E-2`: a power of ten.
fn exponent_suffix(suffix: &str) -> Result<(i128, i32), String> {
    let letters = suffix.bytes().take_while(|b| b"eEinumkKMGTP".contains(b)).count();
    let (head, tail) = suffix.split_at(letters);
    let digits = tail.strip_prefix(['+', '-']).unwrap_or(tail);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FORMAT_ERROR.into());
    }
    if !matches!(head, "e" | "E") || digits.is_empty() {
        return Err(SUFFIX_ERROR.into());
    }
    match tail.parse::<i32>() {
        Ok(power) if power.abs() <= 100 => Ok((1, power)),
        _ => Err(SUFFIX_ERROR.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap()
    }

    #[test]
    fn parses_every_suffix_form() {
        assert_eq!(q("500m").compare(q("0.5")), Some(Ordering::Equal));
        assert_eq!(q("1Gi").compare(q("1024Mi")), Some(Ordering::Equal));
        assert_eq!(q("1k").compare(q("1e3")), Some(Ordering::Equal));
        assert_eq!(q("1.5Gi").compare(q("1536Mi")), Some(Ordering::Equal));
        assert_eq!(q("100M").compare(q("100Mi")), Some(Ordering::Less));
        assert_eq!(q("1.").compare(q("1")), Some(Ordering::Equal));
        assert!(q("-1").is_negative());
        assert!(q("+0").compare(Quantity::ZERO) == Some(Ordering::Equal));
        assert!(q("1n").is_positive());
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in ["", "abc", "1x", ".", "1..2", "--1", "1e", "Mi"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Quantity::parse("1KK").unwrap_err(), SUFFIX_ERROR);
        assert_eq!(Quantity::parse("1 Gi").unwrap_err(), FORMAT_ERROR);
        assert!(Quantity::parse(&"9".repeat(40)).is_err());
    }

    #[test]
    fn divides_rounding_up() {
        assert_eq!(q("250m").ceil_div(q("1m")), Some(250));
        assert_eq!(q("0.5").ceil_div(q("1")), Some(1));
        assert_eq!(q("1Gi").ceil_div(q("1Mi")), Some(1024));
        assert_eq!(q("1500").ceil_div(q("1k")), Some(2));
        assert_eq!(q("1").ceil_div(Quantity::ZERO), None);
    }

    #[test]
    fn sums_and_integers() {
        let sum = q("100m").add(q("200m")).unwrap();
        assert_eq!(sum.compare(q("300m")), Some(Ordering::Equal));
        assert!(q("2").is_integer());
        assert!(q("2000m").is_integer());
        assert!(!q("1500m").is_integer());
        assert!(q("1k").is_integer());
    }

    #[test]
    fn far_apart_values_do_not_panic() {
        let tiny = q("1e-100");
        let huge = q("1e100");
        assert_eq!(tiny.compare(huge), None);
        assert!(tiny.add(huge).is_none());
    }
}
