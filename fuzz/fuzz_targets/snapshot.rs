//! Fuzz target for projection snapshot decoding. A start decodes a
//! snapshot file's sections before it checks the file's CRC-32, so
//! `State::decode` must reject arbitrary bytes without a panic or an
//! abort. libFuzzer also fails any allocation over its `-malloc_limit_mb`
//! (by default the 2,048 MB of `-rss_limit_mb`). A state that decodes must
//! encode and decode again to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use subledger::projection::State;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = State::decode(data) else {
        return;
    };
    let again = State::decode(&state.encode()).expect("an encoded state decodes");
    assert_eq!(again, state, "a decoded state survives encoding");
});
