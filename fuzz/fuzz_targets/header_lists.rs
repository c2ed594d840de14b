#![no_main]
//! See `cloakroom::fuzzing::header_lists`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cloakroom::fuzzing::header_lists(data);
});
