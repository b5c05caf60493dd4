//! Feeds arbitrary bytes to the v1 ciphertext parser and decryption; the checks live in
//! `shared::crypto::format::fuzzing`, where stable tests run them too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    shared::crypto::format::fuzzing::ciphertext_parse(data);
});
