//! The parser never panics, on any text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = audiencedb::rules::parse(text) {
            // Rendering the error must not panic either.
            let _ = e.render();
        }
    }
});
