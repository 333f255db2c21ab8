//! Fuzz target for amount parsing. It checks that `parse_amount` does not
//! panic, accepts only values within the magnitude and scale limits, agrees
//! with rust_decimal's exact parser on what it accepts, and reads back what
//! `format_amount` writes for every accepted value.

#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use subledger::domain::money::{
    format_amount, parse_amount, AMOUNT_MAGNITUDE_LIMIT, AMOUNT_SCALE_MAX,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(amount) = parse_amount(text) else {
        return;
    };
    assert!(amount.abs() < AMOUNT_MAGNITUDE_LIMIT, "{text:?} is within the magnitude limit");
    assert!(amount.scale() <= AMOUNT_SCALE_MAX, "{text:?} has at most four fraction digits");
    let exact = Decimal::from_str_exact(text).expect("accepted text is a plain decimal");
    assert_eq!(amount, exact, "{text:?} parses to the value rust_decimal reads");

    let formatted = format_amount(amount);
    let reparsed = parse_amount(&formatted).expect("formatted amounts parse");
    assert_eq!(reparsed, amount, "{text:?} formatted as {formatted:?} reads back");
    assert_eq!(Decimal::from_str(&formatted).ok(), Some(amount), "{formatted:?} is plain");
});
