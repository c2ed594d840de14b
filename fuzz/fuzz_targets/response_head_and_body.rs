#![no_main]
//! See `cloakroom::fuzzing::response_head_and_body`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cloakroom::fuzzing::response_head_and_body(data);
});
