//! Excel 4 formula tokens (BIFF5, BIFF8, BIFF12) and .xlsb record streams.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qalxan_docs::xlm::{self, Biff, Names};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let biff = [Biff::V5, Biff::V8, Biff::V12][pick as usize % 3];
    let names = Names {
        defined: vec!["Auto_Open".into()],
        sheets: vec!["Macro1".into()],
    };
    if let Ok(text) = xlm::formula(rest, biff, &names) {
        assert!(text.len() <= 33 * 1024);
    }
    let _ = xlm::biff_formula_line(rest, biff, &names);
    let _ = xlm::xlsb_formulas(rest, &xlm::xlsb_names(rest, 10_000), 10_000);
});
