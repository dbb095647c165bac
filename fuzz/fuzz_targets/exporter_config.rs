#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stackmedic_fuzz::exporter_config(data));
