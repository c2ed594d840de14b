#![no_main]
//! See `cloakroom::fuzzing::redis_record`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cloakroom::fuzzing::redis_record(data);
});
