#![no_main]
//! See `cloakroom::fuzzing::session_cookie`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cloakroom::fuzzing::session_cookie(data);
});
