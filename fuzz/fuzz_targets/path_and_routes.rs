#![no_main]
//! See `cloakroom::fuzzing::path_and_routes`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cloakroom::fuzzing::path_and_routes(data);
});
