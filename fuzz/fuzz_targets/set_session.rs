#![no_main]
//! See `cloakroom::fuzzing::set_session`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cloakroom::fuzzing::set_session(data);
});
