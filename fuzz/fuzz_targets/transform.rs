//! Every transformation over any bytes (request data is untrusted): no panic, and the decoders
//! ModSecurity bounds never grow their input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qalxan_waf::syntax::names::TRANSFORMATIONS;
use qalxan_waf::Transformation;

fuzz_target!(|data: &[u8]| {
    for name in TRANSFORMATIONS {
        let Some(t) = Transformation::from_name(name) else { continue };
        let out = t.apply(data);
        if matches!(
            t,
            Transformation::HtmlEntityDecode
                | Transformation::UrlDecode
                | Transformation::UrlDecodeUni
                | Transformation::JsDecode
                | Transformation::CssDecode
                | Transformation::NormalizePath
                | Transformation::NormalizePathWin
                | Transformation::RemoveNulls
                | Transformation::CompressWhitespace
        ) {
            assert!(out.len() <= data.len(), "{name} grew {} to {}", data.len(), out.len());
        }
    }
});
