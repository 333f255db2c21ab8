//! Fuzz target for request parameter decoding. It feeds the query string
//! and a JSON or form body to `Params::from_parts`, then takes every
//! parameter an operation reads, as handlers do, and checks that nothing
//! panics.
//!
//! Input layout: byte 0 picks the `Content-Type`, the bytes up to the first
//! newline are the query string (when UTF-8), and the rest is the body.

#![no_main]

use libfuzzer_sys::fuzz_target;
use subledger::api::params::Params;
use subledger::domain::money::parse_amount;

const CONTENT_TYPES: [Option<&str>; 6] = [
    None,
    Some("application/json"),
    Some("application/x-www-form-urlencoded"),
    Some("Application/JSON; charset=utf-8"),
    Some("text/plain"),
    Some("application/x-www-form-urlencoded;"),
];

/// Parameters that handlers read as text.
const TEXT_NAMES: [&str; 18] = [
    "login_id",
    "password",
    "first_name",
    "last_name",
    "email",
    "mobile_phone",
    "domain",
    "currency",
    "developer_id",
    "status",
    "sip_id",
    "alias",
    "type",
    "refer_trans_id",
    "desc",
    "start_date",
    "end_date",
    "name",
];

/// Parameters that handlers read as whole numbers.
const INTEGER_NAMES: [&str; 4] = ["encrypt_type", "pay_method", "page", "page_size"];

fuzz_target!(|data: &[u8]| {
    let Some((selector, rest)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(*selector) % CONTENT_TYPES.len()];
    let (query, body) = match rest.iter().position(|byte| *byte == b'\n') {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (&[][..], rest),
    };
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let Ok(mut params) = Params::from_parts(query, content_type, body) else {
        return;
    };

    if let Some(amount) = params.take("amount") {
        let _ = parse_amount(&amount);
    }
    for name in TEXT_NAMES {
        let _ = params.take(name);
    }
    for name in INTEGER_NAMES {
        let _ = params.take_integer(name);
    }
    let _ = params.finish();
});
