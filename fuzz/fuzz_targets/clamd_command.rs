//! Any text as a clamd command line: parsed to a command or UNKNOWN, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = qalxan_clamd::Command::parse(&String::from_utf8_lossy(data));
});
