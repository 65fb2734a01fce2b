//! The RTF tokenizer: groups, control words, `\bin` runs, object data in hex.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = qalxan_docs::rtf::parse(data, 1 << 20);
    for o in &parsed.objects {
        let _ = qalxan_docs::rtf::ole1_native(&o.data);
    }
});
