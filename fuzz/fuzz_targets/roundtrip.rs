//! Whatever parses prints to text that parses to the same rule, and printing is a fixed point.
#![no_main]

use audiencedb::rules::{parse, print};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rule) = parse(text) else {
        return;
    };
    let printed = print(&rule);
    let again = match parse(&printed) {
        Ok(again) => again,
        Err(e) => panic!("{text:?} printed as {printed:?} does not parse:\n{}", e.render()),
    };
    assert_eq!(again, rule, "{text:?} printed as {printed:?} means something else");
    assert_eq!(print(&again), printed, "printing {text:?} is not a fixed point");
});
