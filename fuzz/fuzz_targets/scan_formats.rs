//! Any bytes handed straight to one container parser (the first byte picks which), so the
//! fuzzer reaches each parser without first having to find its magic bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qalxan_scan::filetype::FileType;
use qalxan_scan::formats::{children, Context, Flow};

const TYPES: &[FileType] = &[
    FileType::Zip,
    FileType::Gzip,
    FileType::Bzip2,
    FileType::Xz,
    FileType::Tar,
    FileType::Cpio,
    FileType::SevenZip,
    FileType::Cab,
    FileType::Chm,
    FileType::Arj,
    FileType::Szdd,
    FileType::Ole2,
    FileType::Pdf,
    FileType::Rtf,
    FileType::Html,
    FileType::Mail,
    FileType::BinHex,
    FileType::Uuencoded,
    FileType::Tnef,
    FileType::Sis,
    FileType::Binary,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let t = TYPES[pick as usize % TYPES.len()];
    let passwords = vec!["infected".to_string()];
    let ctx = Context { max_size: 1 << 20, passwords: &passwords };
    let mut total = 0usize;
    let _ = children(t, rest, &ctx, &mut |child| {
        assert!(child.data.len() as u64 <= ctx.max_size);
        total += 1;
        if total > 10_000 { Flow::Stop } else { Flow::Continue }
    });
});
