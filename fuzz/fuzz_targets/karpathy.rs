#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| autocaption_fuzzing::karpathy(data));
