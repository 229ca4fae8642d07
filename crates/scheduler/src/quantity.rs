//! Resource quantities as the scheduler counts them: CPU in millicores, everything else
//! in whole units, rounded up as Kubernetes' `MilliValue()`/`Value()` do. Parsed once when
//! a pod or node enters the cache, so the filters work on integers.

/// A parsed quantity: `mantissa × 2^binary × 10^decimal` (one of the exponents is 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Parsed {
    mantissa: i128,
    decimal: i32,
    binary: u32,
}

fn parse(text: &str) -> Option<Parsed> {
    let text = text.trim();
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
    let (number, suffix) = rest.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || whole.len() + fraction.len() > 30 {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mut mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    if negative {
        mantissa = -mantissa;
    }
    let mut decimal = -(fraction.len() as i32);
    let mut binary = 0;
    match suffix {
        "" => {}
        "n" => decimal -= 9,
        "u" => decimal -= 6,
        "m" => decimal -= 3,
        "k" => decimal += 3,
        "M" => decimal += 6,
        "G" => decimal += 9,
        "T" => decimal += 12,
        "P" => decimal += 15,
        "E" => decimal += 18,
        "Ki" => binary = 10,
        "Mi" => binary = 20,
        "Gi" => binary = 30,
        "Ti" => binary = 40,
        "Pi" => binary = 50,
        "Ei" => binary = 60,
        exponent if exponent.starts_with(['e', 'E']) => decimal += exponent[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    Some(Parsed { mantissa, decimal, binary })
}

/// `value × 10^scale`, rounded up, saturating at the bounds of i64.
fn scaled(text: &str, scale: i32) -> Option<i64> {
    let Parsed { mut mantissa, decimal, binary } = parse(text)?;
    mantissa = mantissa.checked_mul(1i128.checked_shl(binary)?)?;
    let exponent = decimal + scale;
    let value = if exponent >= 0 {
        10i128.checked_pow(exponent as u32).and_then(|p| mantissa.checked_mul(p)).unwrap_or(if mantissa < 0 {
            i128::MIN
        } else {
            i128::MAX
        })
    } else {
        let divisor = 10i128.checked_pow((-exponent) as u32).unwrap_or(i128::MAX);
        let quotient = mantissa / divisor;
        // Round towards +infinity, as resource.Quantity's ScaledValue does.
        if mantissa % divisor > 0 {
            quotient + 1
        } else {
            quotient
        }
    };
    Some(value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// Thousandths of the quantity (CPU in millicores), rounded up; 0 when unparseable.
pub fn milli_value(text: &str) -> i64 {
    scaled(text, 3).unwrap_or(0)
}

/// The quantity in whole units, rounded up; 0 when unparseable.
pub fn value(text: &str) -> i64 {
    scaled(text, 0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(milli_value("100m"), 100);
        assert_eq!(milli_value("1"), 1000);
        assert_eq!(milli_value("0.5"), 500);
        assert_eq!(milli_value("2.5"), 2500);
        assert_eq!(milli_value("1500u"), 2, "rounded up");
        assert_eq!(milli_value("32"), 32_000);
        assert_eq!(milli_value("1e3"), 1_000_000);
    }

    #[test]
    fn bytes_and_counts() {
        assert_eq!(value("1Gi"), 1 << 30);
        assert_eq!(value("500Mi"), 500 << 20);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("110"), 110);
        assert_eq!(value("1.5Ki"), 1536);
        assert_eq!(value("100m"), 1, "a fraction of a unit rounds up");
        assert_eq!(value("1Ti"), 1 << 40);
    }

    #[test]
    fn garbage_is_zero() {
        assert_eq!(value("lots"), 0);
        assert_eq!(value(""), 0);
        assert_eq!(value("1.2.3"), 0);
        assert_eq!(value("5Qi"), 0);
    }

    #[test]
    fn huge_values_saturate() {
        assert_eq!(value("1e30"), i64::MAX);
        assert_eq!(milli_value("9Ei"), i64::MAX);
    }
}
