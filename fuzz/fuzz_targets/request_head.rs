#![no_main]
//! See `cloakroom::fuzzing::fuzz_take`: the HTTP/1 front's request-head
//! reader.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = cloakroom::fuzzing::fuzz_take(data);
});
