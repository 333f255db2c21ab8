//! Money amounts and currencies, with exact parsing, API formatting and checked sums.
//!
//! Amounts are `rust_decimal::Decimal` values with at most [`AMOUNT_SCALE_MAX`]
//! fraction digits and a magnitude below [`AMOUNT_MAGNITUDE_LIMIT`]. Text never
//! passes through a float on the way in or out.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// Exclusive magnitude limit: every amount satisfies `|amount| < 1_000_000_000`.
pub const AMOUNT_MAGNITUDE_LIMIT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// Maximum number of fraction digits an amount may have.
pub const AMOUNT_SCALE_MAX: u32 = 4;

/// Maximum number of integer digits, leading zeros excluded, that keeps an amount
/// below [`AMOUNT_MAGNITUDE_LIMIT`] (10^9).
const MAX_INTEGER_DIGITS: usize = 9;

/// Minimum number of fraction digits in formatted amounts.
const FORMAT_SCALE_MIN: usize = 2;

/// Reason an amount string was rejected by [`parse_amount`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty, expected plain decimal notation such as 12.50")]
    Empty,

    #[error(
        "amount must be plain decimal notation such as 12.50 \
         (no exponent, sign '+', separators or spaces)"
    )]
    NotPlainNotation,

    #[error("amount has more than {} fraction digits", AMOUNT_SCALE_MAX)]
    TooManyFractionDigits,

    #[error("amount must be below {} in magnitude", AMOUNT_MAGNITUDE_LIMIT)]
    TooLarge,
}

/// Parses an amount exactly from plain decimal notation.
///
/// The accepted grammar is an optional `-`, one or more ASCII digits, then optionally
/// a `.` followed by 1 to [`AMOUNT_SCALE_MAX`] ASCII digits. Leading zeros are
/// accepted ("007.5" is 7.5) because they do not change the value. The result keeps
/// the written scale ("12.50" has scale 2). A negative zero such as "-0.00" parses to
/// a positive zero.
///
/// Checks run in this order, and the first failure is returned: empty input, then
/// syntax, then fraction digit count, then magnitude. The value is built from the
/// digits here, never by rust_decimal's string parser, so inputs of any length are
/// rejected without overflow or panic.
pub fn parse_amount(text: &str) -> Result<Decimal, AmountError> {
    if text.is_empty() {
        return Err(AmountError::Empty);
    }

    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer_digits, fraction_digits) = match unsigned.split_once('.') {
        Some((integer, fraction)) => (integer, fraction),
        None => (unsigned, ""),
    };

    // A '.' must have digits on both sides. A second '.' stays in the fraction part
    // and fails the digit check there.
    let has_decimal_point = integer_digits.len() < unsigned.len();
    if !is_ascii_digits(integer_digits) || (has_decimal_point && !is_ascii_digits(fraction_digits))
    {
        return Err(AmountError::NotPlainNotation);
    }

    if fraction_digits.len() > AMOUNT_SCALE_MAX as usize {
        return Err(AmountError::TooManyFractionDigits);
    }

    let significant_digits = integer_digits.trim_start_matches('0');
    if significant_digits.len() > MAX_INTEGER_DIGITS {
        return Err(AmountError::TooLarge);
    }

    // At most 9 + 4 = 13 digits remain, so the mantissa fits in an i64.
    let magnitude = significant_digits
        .bytes()
        .chain(fraction_digits.bytes())
        .fold(0_i64, |accumulator, digit| accumulator * 10 + i64::from(digit - b'0'));
    // Negating zero gives zero, so "-0" yields a positive zero.
    let mantissa = if negative { -magnitude } else { magnitude };
    let scale = fraction_digits.len() as u32;

    Ok(Decimal::new(mantissa, scale))
}

fn is_ascii_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit())
}

/// Formats an amount for API responses with 2 to 4 fraction digits.
///
/// Trailing zeros past the second fraction digit are dropped ("10.50", "11.0041",
/// "0.00", "-3.10"). Zero never prints with a minus sign. An amount with more than
/// [`AMOUNT_SCALE_MAX`] fraction digits is rounded half away from zero first.
/// Amounts from [`parse_amount`] and sums of them never need that rounding.
pub fn format_amount(amount: Decimal) -> String {
    let rounded = amount
        .round_dp_with_strategy(AMOUNT_SCALE_MAX, RoundingStrategy::MidpointAwayFromZero)
        .normalize();
    let scale = rounded.scale() as usize;
    let digits = rounded.mantissa().unsigned_abs().to_string();
    // One string, written in place: every posting's response contains three
    // amounts, and each padding `format!` allocated a string of its own.
    let mut text = String::with_capacity(digits.len() + scale + FORMAT_SCALE_MIN + 2);
    // A negative zero has mantissa 0, so it gets no sign here.
    if rounded.mantissa() < 0 {
        text.push('-');
    }
    // The last `scale` digits of |mantissa| are the fraction. At least one
    // integer digit precedes them, and zeros fill the front of the fraction.
    let integer_digits = digits.len().saturating_sub(scale);
    if integer_digits == 0 {
        text.push('0');
    }
    text.push_str(&digits[..integer_digits]);
    text.push('.');
    text.extend(std::iter::repeat_n('0', scale.saturating_sub(digits.len())));
    text.push_str(&digits[integer_digits..]);
    text.extend(std::iter::repeat_n('0', FORMAT_SCALE_MIN.saturating_sub(scale)));
    text
}

/// Formats a balance as existing clients read it, with the currency before the amount.
///
/// A currency with a symbol gets the symbol ("S$10.00", "$5.25", "€1.00"). Any other
/// currency gets its code and a space ("MYR 3.00"). A minus sign goes before the
/// currency ("-S$1.00"), and zero is never negative. The amount part is
/// [`format_amount`]. CNY and JPY both use "¥", so the text alone does not identify
/// the currency.
///
/// NOTE: every currency prints at least 2 fraction digits, including JPY and KRW,
/// which have no minor unit in ISO 4217.
pub fn format_balance(amount: Decimal, currency: Currency) -> String {
    let formatted = format_amount(amount);
    let (sign, magnitude) = match formatted.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", formatted.as_str()),
    };

    let mut text = String::with_capacity(formatted.len() + 5);
    text.push_str(sign);
    match currency.symbol() {
        Some(symbol) => text.push_str(symbol),
        None => {
            text.push_str(currency.code());
            text.push(' ');
        }
    }
    text.push_str(magnitude);
    text
}

/// Adds two amounts and returns `None` if the sum overflows `Decimal`.
///
/// This does not check [`AMOUNT_MAGNITUDE_LIMIT`].
pub fn checked_add(a: Decimal, b: Decimal) -> Option<Decimal> {
    a.checked_add(b)
}

/// Subtracts `b` from `a` and returns `None` if the difference overflows `Decimal`.
///
/// This does not check [`AMOUNT_MAGNITUDE_LIMIT`].
pub fn checked_sub(a: Decimal, b: Decimal) -> Option<Decimal> {
    a.checked_sub(b)
}

/// ISO 4217 currency supported by the service.
///
/// Serde reads and writes the upper-case code ("SGD") and rejects any other spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    /// Singapore dollar.
    Sgd,
    /// United States dollar.
    Usd,
    /// Euro.
    Eur,
    /// Pound sterling.
    Gbp,
    /// Chinese yuan renminbi.
    Cny,
    /// Hong Kong dollar.
    Hkd,
    /// Malaysian ringgit.
    Myr,
    /// Australian dollar.
    Aud,
    /// Japanese yen.
    Jpy,
    /// Canadian dollar.
    Cad,
    /// New Zealand dollar.
    Nzd,
    /// Indian rupee.
    Inr,
    /// Indonesian rupiah.
    Idr,
    /// Thai baht.
    Thb,
    /// Philippine peso.
    Php,
    /// South Korean won.
    Krw,
    /// New Taiwan dollar.
    Twd,
    /// Swiss franc.
    Chf,
}

const ALL_CURRENCIES: [Currency; 18] = [
    Currency::Sgd,
    Currency::Usd,
    Currency::Eur,
    Currency::Gbp,
    Currency::Cny,
    Currency::Hkd,
    Currency::Myr,
    Currency::Aud,
    Currency::Jpy,
    Currency::Cad,
    Currency::Nzd,
    Currency::Inr,
    Currency::Idr,
    Currency::Thb,
    Currency::Php,
    Currency::Krw,
    Currency::Twd,
    Currency::Chf,
];

impl Currency {
    /// Currency used when a request names none.
    pub const DEFAULT: Currency = Currency::Sgd;

    /// Parses an upper-case ISO 4217 code such as "SGD".
    ///
    /// Lower-case or mixed-case spellings and unknown codes are rejected, which
    /// matches what serde accepts.
    pub fn parse(code: &str) -> Result<Currency, CurrencyError> {
        ALL_CURRENCIES
            .iter()
            .copied()
            .find(|currency| currency.code() == code)
            .ok_or_else(|| CurrencyError::new(code))
    }

    /// Returns the upper-case ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Sgd => "SGD",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Gbp => "GBP",
            Currency::Cny => "CNY",
            Currency::Hkd => "HKD",
            Currency::Myr => "MYR",
            Currency::Aud => "AUD",
            Currency::Jpy => "JPY",
            Currency::Cad => "CAD",
            Currency::Nzd => "NZD",
            Currency::Inr => "INR",
            Currency::Idr => "IDR",
            Currency::Thb => "THB",
            Currency::Php => "PHP",
            Currency::Krw => "KRW",
            Currency::Twd => "TWD",
            Currency::Chf => "CHF",
        }
    }

    /// Returns the display prefix, or `None` when the currency is shown by its code.
    ///
    /// Only sign-like symbols count. Currencies whose usual symbol is a letter
    /// abbreviation (MYR "RM", IDR "Rp", CHF "Fr.") return `None`.
    pub fn symbol(self) -> Option<&'static str> {
        match self {
            Currency::Sgd => Some("S$"),
            Currency::Usd => Some("$"),
            Currency::Eur => Some("€"),
            Currency::Gbp => Some("£"),
            Currency::Cny | Currency::Jpy => Some("¥"),
            Currency::Hkd => Some("HK$"),
            Currency::Aud => Some("A$"),
            Currency::Cad => Some("CA$"),
            Currency::Nzd => Some("NZ$"),
            Currency::Inr => Some("₹"),
            Currency::Thb => Some("฿"),
            Currency::Php => Some("₱"),
            Currency::Krw => Some("₩"),
            Currency::Twd => Some("NT$"),
            Currency::Myr | Currency::Idr | Currency::Chf => None,
        }
    }

    /// Returns every supported currency, [`Currency::DEFAULT`] first.
    pub fn all() -> &'static [Currency] {
        &ALL_CURRENCIES
    }
}

impl Default for Currency {
    fn default() -> Self {
        Currency::DEFAULT
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = CurrencyError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::parse(code)
    }
}

/// Maximum number of characters of a rejected code that a [`CurrencyError`] keeps,
/// so that a huge input does not end up in error messages and logs.
const MAX_ECHOED_CODE_CHARS: usize = 16;

/// Error for a currency code that is not an upper-case code from [`Currency::all`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("currency must be one of {} in upper case, got {input:?}", known_codes())]
pub struct CurrencyError {
    input: String,
}

impl CurrencyError {
    fn new(code: &str) -> Self {
        CurrencyError { input: code.chars().take(MAX_ECHOED_CODE_CHARS).collect() }
    }

    /// Returns the rejected code, cut to its first 16 characters.
    pub fn input(&self) -> &str {
        &self.input
    }
}

fn known_codes() -> String {
    let codes: Vec<&str> = ALL_CURRENCIES.iter().map(|currency| currency.code()).collect();
    codes.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(mantissa: i64, scale: u32) -> Decimal {
        Decimal::new(mantissa, scale)
    }

    #[test]
    fn magnitude_limit_matches_integer_digits() {
        let ten_to_max_digits = Decimal::from(10_i64.pow(MAX_INTEGER_DIGITS as u32));
        assert_eq!(AMOUNT_MAGNITUDE_LIMIT, ten_to_max_digits, "limit is 10^9");
        assert_eq!(AMOUNT_MAGNITUDE_LIMIT.to_string(), "1000000000", "limit text");
    }

    #[test]
    fn parse_accepts_plain_amounts() {
        let cases: &[(&str, Decimal)] = &[
            ("0", decimal(0, 0)),
            ("1", decimal(1, 0)),
            ("12.5", decimal(125, 1)),
            ("12.50", decimal(1250, 2)),
            ("-3.1234", decimal(-31234, 4)),
            ("999999999.9999", decimal(9_999_999_999_999, 4)),
            ("-999999999.9999", decimal(-9_999_999_999_999, 4)),
            ("999999999", decimal(999_999_999, 0)),
            ("0007", decimal(7, 0)),
            ("007.5", decimal(75, 1)),
            ("0.0001", decimal(1, 4)),
            ("-0.0001", decimal(-1, 4)),
            ("1.0000", decimal(10000, 4)),
            ("0000000000999999999", decimal(999_999_999, 0)),
        ];
        for (input, expected) in cases {
            let parsed = parse_amount(input);
            assert_eq!(parsed, Ok(*expected), "value of {input:?}");
            if let Ok(value) = parsed {
                assert_eq!(value.scale(), expected.scale(), "scale of {input:?}");
            }
        }
    }

    #[test]
    fn parse_negative_zero_is_positive() {
        for input in ["-0", "-0.00", "-0000", "-0.0000", "0", "0.00"] {
            let parsed = parse_amount(input);
            assert_eq!(parsed, Ok(Decimal::ZERO), "value of {input:?}");
            if let Ok(value) = parsed {
                assert!(value.is_sign_positive(), "sign of {input:?}");
            }
        }
    }

    #[test]
    fn parse_accepts_many_leading_zeros() {
        let input = format!("{}1.5", "0".repeat(10_000));
        assert_eq!(parse_amount(&input), Ok(decimal(15, 1)), "10,000 leading zeros");
    }

    #[test]
    fn parse_rejects_invalid_amounts() {
        use AmountError::*;

        let cases: &[(&str, AmountError)] = &[
            ("", Empty),
            ("-", NotPlainNotation),
            ("1e3", NotPlainNotation),
            ("1E3", NotPlainNotation),
            ("1.2e-3", NotPlainNotation),
            ("NaN", NotPlainNotation),
            ("nan", NotPlainNotation),
            ("Infinity", NotPlainNotation),
            ("-Infinity", NotPlainNotation),
            ("inf", NotPlainNotation),
            ("+1", NotPlainNotation),
            ("1,000", NotPlainNotation),
            ("1_000", NotPlainNotation),
            ("1'000", NotPlainNotation),
            (" 1", NotPlainNotation),
            ("1 ", NotPlainNotation),
            ("1\n", NotPlainNotation),
            ("1 000", NotPlainNotation),
            ("1.", NotPlainNotation),
            ("-1.", NotPlainNotation),
            (".5", NotPlainNotation),
            ("-.5", NotPlainNotation),
            (".", NotPlainNotation),
            ("1..2", NotPlainNotation),
            ("1.2.3", NotPlainNotation),
            ("٣", NotPlainNotation),
            ("1٣", NotPlainNotation),
            ("１", NotPlainNotation),
            ("0x10", NotPlainNotation),
            ("--1", NotPlainNotation),
            ("-+1", NotPlainNotation),
            ("1-", NotPlainNotation),
            ("1.-5", NotPlainNotation),
            ("1.23456", TooManyFractionDigits),
            ("-0.00000", TooManyFractionDigits),
            ("1.00000", TooManyFractionDigits),
            ("1000000000", TooLarge),
            ("-1000000000", TooLarge),
            ("1000000000.0", TooLarge),
            ("999999999999", TooLarge),
            ("99999999999999999999999999999999", TooLarge),
            ("-99999999999999999999999999999999", TooLarge),
            ("79228162514264337593543950336", TooLarge),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_amount(input), Err(expected.clone()), "error for {input:?}");
        }
    }

    #[test]
    fn parse_rejects_huge_inputs() {
        let nines = "9".repeat(10_000);
        assert_eq!(parse_amount(&nines), Err(AmountError::TooLarge), "10,000-digit integer");

        let long_fraction = format!("0.{}", "1".repeat(10_000));
        assert_eq!(
            parse_amount(&long_fraction),
            Err(AmountError::TooManyFractionDigits),
            "10,000-digit fraction"
        );

        let long_with_exponent = format!("{nines}e1");
        assert_eq!(
            parse_amount(&long_with_exponent),
            Err(AmountError::NotPlainNotation),
            "10,000 digits then an exponent"
        );
    }

    #[test]
    fn amount_error_messages() {
        assert_eq!(
            AmountError::TooManyFractionDigits.to_string(),
            "amount has more than 4 fraction digits",
            "TooManyFractionDigits message"
        );
        assert_eq!(
            AmountError::TooLarge.to_string(),
            "amount must be below 1000000000 in magnitude",
            "TooLarge message"
        );
        assert_eq!(
            AmountError::NotPlainNotation.to_string(),
            "amount must be plain decimal notation such as 12.50 \
             (no exponent, sign '+', separators or spaces)",
            "NotPlainNotation message"
        );
        assert!(
            AmountError::Empty.to_string().contains("empty"),
            "Empty message says the amount is empty"
        );
    }

    #[test]
    fn format_amount_fraction_digits() {
        let cases: &[(Decimal, &str)] = &[
            (decimal(1050, 2), "10.50"),
            (decimal(105, 1), "10.50"),
            (decimal(105_000, 4), "10.50"),
            (decimal(110_041, 4), "11.0041"),
            (decimal(12_340, 4), "1.234"),
            (decimal(12_300, 4), "1.23"),
            (decimal(10, 0), "10.00"),
            (decimal(0, 0), "0.00"),
            (decimal(0, 4), "0.00"),
            (decimal(1, 4), "0.0001"),
            (decimal(-1, 4), "-0.0001"),
            (decimal(-310, 2), "-3.10"),
            (decimal(-31, 1), "-3.10"),
            (decimal(-5, 0), "-5.00"),
            (decimal(9_999_999_999_999, 4), "999999999.9999"),
            (decimal(-9_999_999_999_999, 4), "-999999999.9999"),
            (Decimal::MAX, "79228162514264337593543950335.00"),
            (Decimal::MIN, "-79228162514264337593543950335.00"),
        ];
        for (amount, expected) in cases {
            assert_eq!(format_amount(*amount), *expected, "format of {amount:?}");
        }
    }

    /// Formats as `format_amount` did before, with padding `format!`s.
    fn format_amount_by_padding(amount: Decimal) -> String {
        let rounded = amount
            .round_dp_with_strategy(AMOUNT_SCALE_MAX, RoundingStrategy::MidpointAwayFromZero)
            .normalize();
        let scale = rounded.scale() as usize;
        let digits = rounded.mantissa().unsigned_abs().to_string();
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (integer_part, fraction_part) = padded.split_at(padded.len() - scale);
        let sign = if rounded.mantissa() < 0 { "-" } else { "" };
        format!("{sign}{integer_part}.{fraction_part:0<FORMAT_SCALE_MIN$}")
    }

    /// Formats as `format_balance` did before, with `format!`.
    fn format_balance_by_format(amount: Decimal, currency: Currency) -> String {
        let formatted = format_amount_by_padding(amount);
        let (sign, magnitude) = match formatted.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", formatted.as_str()),
        };
        match currency.symbol() {
            Some(symbol) => format!("{sign}{symbol}{magnitude}"),
            None => format!("{sign}{} {magnitude}", currency.code()),
        }
    }

    proptest::proptest! {
        #[test]
        fn format_balance_matches_old(mantissa in proptest::prelude::any::<i64>(), scale in 0u32..=6, currency in proptest::sample::select(Currency::all().to_vec())) {
            let amount = Decimal::new(mantissa, scale);
            proptest::prop_assert_eq!(format_balance(amount, currency), format_balance_by_format(amount, currency));
        }

        #[test]
        fn format_amount_matches_old(mantissa in proptest::prelude::any::<i64>(), wide in proptest::prelude::any::<bool>(), scale in 0u32..=28) {
            let mantissa = if wide { i128::from(mantissa) << 32 } else { i128::from(mantissa) };
            let amount = Decimal::from_i128_with_scale(mantissa, scale);
            proptest::prop_assert_eq!(format_amount(amount), format_amount_by_padding(amount));
        }
    }

    #[test]
    fn format_amount_rounds_past_four_digits() {
        let cases: &[(Decimal, &str)] = &[
            (decimal(123_455, 5), "1.2346"),
            (decimal(-123_455, 5), "-1.2346"),
            (decimal(123_454, 5), "1.2345"),
            (decimal(199_999, 5), "2.00"),
            (decimal(-1, 5), "0.00"),
            (decimal(4, 5), "0.00"),
        ];
        for (amount, expected) in cases {
            assert_eq!(format_amount(*amount), *expected, "format of {amount:?}");
        }
    }

    #[test]
    fn format_amount_negative_zero() {
        for scale in [0, 2, 4, 6] {
            let negative_zero = -decimal(0, scale);
            assert!(
                negative_zero.is_sign_negative(),
                "test input -0 with scale {scale} is negative"
            );
            assert_eq!(format_amount(negative_zero), "0.00", "-0 with scale {scale}");
        }
    }

    #[test]
    fn format_amount_round_trips_parse() {
        let cases = [
            ("12.50", "12.50"),
            ("12.5", "12.50"),
            ("0007", "7.00"),
            ("-0", "0.00"),
            ("-3.1234", "-3.1234"),
            ("11.0041", "11.0041"),
            ("1.2300", "1.23"),
        ];
        for (input, expected) in cases {
            let formatted = parse_amount(input).map(format_amount);
            assert_eq!(formatted.as_deref(), Ok(expected), "format of parsed {input:?}");
        }
    }

    #[test]
    fn format_balance_every_currency() {
        let cases: &[(Currency, &str, &str)] = &[
            (Currency::Sgd, "S$10.00", "-S$1.00"),
            (Currency::Usd, "$10.00", "-$1.00"),
            (Currency::Eur, "€10.00", "-€1.00"),
            (Currency::Gbp, "£10.00", "-£1.00"),
            (Currency::Cny, "¥10.00", "-¥1.00"),
            (Currency::Hkd, "HK$10.00", "-HK$1.00"),
            (Currency::Myr, "MYR 10.00", "-MYR 1.00"),
            (Currency::Aud, "A$10.00", "-A$1.00"),
            (Currency::Jpy, "¥10.00", "-¥1.00"),
            (Currency::Cad, "CA$10.00", "-CA$1.00"),
            (Currency::Nzd, "NZ$10.00", "-NZ$1.00"),
            (Currency::Inr, "₹10.00", "-₹1.00"),
            (Currency::Idr, "IDR 10.00", "-IDR 1.00"),
            (Currency::Thb, "฿10.00", "-฿1.00"),
            (Currency::Php, "₱10.00", "-₱1.00"),
            (Currency::Krw, "₩10.00", "-₩1.00"),
            (Currency::Twd, "NT$10.00", "-NT$1.00"),
            (Currency::Chf, "CHF 10.00", "-CHF 1.00"),
        ];
        assert_eq!(cases.len(), Currency::all().len(), "one case per currency");
        for (currency, positive, negative) in cases {
            assert_eq!(
                format_balance(decimal(1000, 2), *currency),
                *positive,
                "positive balance in {currency}"
            );
            assert_eq!(
                format_balance(decimal(-1, 0), *currency),
                *negative,
                "negative balance in {currency}"
            );
        }
    }

    #[test]
    fn format_balance_examples() {
        let cases: &[(Decimal, Currency, &str)] = &[
            (decimal(525, 2), Currency::Usd, "$5.25"),
            (decimal(1, 0), Currency::Eur, "€1.00"),
            (decimal(3, 0), Currency::Myr, "MYR 3.00"),
            (decimal(-3, 0), Currency::Myr, "-MYR 3.00"),
            (decimal(110_041, 4), Currency::Sgd, "S$11.0041"),
            (decimal(-310, 2), Currency::Sgd, "-S$3.10"),
            (decimal(0, 2), Currency::Sgd, "S$0.00"),
            (-decimal(0, 2), Currency::Sgd, "S$0.00"),
            (-decimal(0, 2), Currency::Myr, "MYR 0.00"),
            (decimal(-1, 5), Currency::Usd, "$0.00"),
        ];
        for (amount, currency, expected) in cases {
            assert_eq!(
                format_balance(*amount, *currency),
                *expected,
                "balance {amount:?} in {currency}"
            );
        }
    }

    #[test]
    fn currency_codes_round_trip() {
        for currency in Currency::all() {
            let code = currency.code();
            assert_eq!(Currency::parse(code), Ok(*currency), "parse of {code}");
            assert_eq!(code.parse::<Currency>(), Ok(*currency), "FromStr of {code}");
            assert_eq!(currency.to_string(), code, "Display of {code}");
            assert_eq!(code.len(), 3, "length of {code}");
            assert!(code.bytes().all(|byte| byte.is_ascii_uppercase()), "{code} is upper case");
        }
    }

    #[test]
    fn currency_list_has_no_duplicates() {
        let mut codes: Vec<&str> = Currency::all().iter().map(|c| c.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Currency::all().len(), "codes are unique");
        assert_eq!(Currency::all()[0], Currency::DEFAULT, "DEFAULT comes first");
        assert_eq!(Currency::default(), Currency::Sgd, "Default is SGD");
    }

    #[test]
    fn currency_parse_rejects_other_spellings() {
        for input in ["sgd", "Sgd", "sGD", "SGD ", " SGD", "SG", "SGDX", "XYZ", "", "S$"] {
            let parsed = Currency::parse(input);
            assert!(parsed.is_err(), "parse of {input:?} fails");
        }
    }

    #[test]
    fn currency_error_message() {
        let message = Currency::parse("sgd").expect_err("lower-case code is rejected").to_string();
        assert!(
            message.starts_with("currency must be one of SGD, USD, EUR, "),
            "message lists codes: {message}"
        );
        assert!(message.ends_with("in upper case, got \"sgd\""), "message names input: {message}");
        for currency in Currency::all() {
            assert!(
                message.contains(currency.code()),
                "message lists {}: {message}",
                currency.code()
            );
        }
    }

    #[test]
    fn currency_error_truncates_long_input() {
        let input = "X".repeat(1_000);
        let error = Currency::parse(&input).expect_err("long code is unknown");
        assert_eq!(error.input(), "X".repeat(16), "kept part of the input");
    }

    #[test]
    fn currency_serde_uses_iso_code() {
        assert_eq!(
            serde_json::to_string(&Currency::Sgd).ok().as_deref(),
            Some("\"SGD\""),
            "serialize SGD"
        );
        assert_eq!(
            serde_json::from_str::<Currency>("\"SGD\"").ok(),
            Some(Currency::Sgd),
            "deserialize \"SGD\""
        );
        for input in ["\"sgd\"", "\"Sgd\"", "\"XYZ\"", "1"] {
            assert!(serde_json::from_str::<Currency>(input).is_err(), "deserialize {input} fails");
        }
        for currency in Currency::all() {
            let json = serde_json::to_string(currency).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", currency.code()), "serialize {currency}");
            let parsed = serde_json::from_str::<Currency>(&json).ok();
            assert_eq!(parsed, Some(*currency), "round trip of {currency}");
        }
    }

    #[test]
    fn checked_sums_detect_overflow() {
        assert_eq!(
            checked_add(decimal(1050, 2), decimal(5, 1)),
            Some(decimal(1100, 2)),
            "10.50 + 0.5"
        );
        assert_eq!(checked_sub(decimal(1, 0), decimal(325, 2)), Some(decimal(-225, 2)), "1 - 3.25");
        assert_eq!(checked_add(Decimal::MAX, Decimal::ONE), None, "MAX + 1 overflows");
        assert_eq!(checked_sub(Decimal::MIN, Decimal::ONE), None, "MIN - 1 overflows");

        let zero = checked_sub(decimal(100, 2), decimal(1, 0));
        assert_eq!(zero.map(format_amount).as_deref(), Some("0.00"), "1.00 - 1 formats as 0.00");
    }
}
