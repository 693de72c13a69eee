#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bondledger_fuzz::movement_file(data));
