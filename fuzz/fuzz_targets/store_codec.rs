#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| watchpost::fuzz::store_codec(data));
