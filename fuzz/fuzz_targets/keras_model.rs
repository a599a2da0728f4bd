#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| autocaption_fuzzing::keras_model(data));
