#![no_main]
//! See `cloakroom::fuzzing::front_against_hyper`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cloakroom::fuzzing::front_against_hyper(data);
});
