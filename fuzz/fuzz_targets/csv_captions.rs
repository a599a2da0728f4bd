#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| autocaption_fuzzing::csv_captions(data));
