#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| autocaption_fuzzing::encoder_weights(data));
