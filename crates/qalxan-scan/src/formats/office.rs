//! Documents that carry files: OLE2 compound files (Word, Excel, PowerPoint, MSI), PDF
//! streams, and RTF embedded objects.

use std::io::Cursor;

use super::{read_capped, visit_bytes, Child, Context, Flow, Visit};

/// Streams nested deeper than this in an OLE2 storage tree are not read.
const MAX_OLE_STREAMS: usize = 4096;

pub fn ole2(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let mut cf = cfb::CompoundFile::open(Cursor::new(data)).map_err(|e| e.to_string())?;
    let streams: Vec<std::path::PathBuf> = cf
        .walk()
        .filter(|e| e.is_stream())
        .take(MAX_OLE_STREAMS)
        .map(|e| e.path().to_path_buf())
        .collect();
    let mut first_error = None;
    for path in streams {
        let name = path.to_string_lossy().into_owned();
        let (bytes, exceeded) = match cf
            .open_stream(&path)
            .and_then(|s| read_capped(s, ctx.max_size))
        {
            Ok(r) => r,
            Err(e) => {
                first_error.get_or_insert(format!("{name}: {e}"));
                continue;
            }
        };
        let leaf = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut extra = Vec::new();
        if leaf == "\u{1}Ole10Native" {
            // A 4-byte size, then an OLE1 "Package": the file a user dragged into the document.
            if let Some(pkg) = bytes.get(4..).and_then(parse_package) {
                extra.push((format!("{name}/{}", package_name(&pkg)), pkg.data.to_vec()));
            }
        } else if leaf == "PowerPoint Document" {
            let max = usize::try_from(ctx.max_size).unwrap_or(usize::MAX);
            for (i, obj) in qalxan_docs::ole::exoleobj_records(&bytes, max, 256)
                .into_iter()
                .enumerate()
            {
                extra.push((format!("{name}/ExOleObjStg{i}"), obj));
            }
        }
        if visit(Child {
            name,
            data: bytes,
            exceeded,
        }) == Flow::Stop
        {
            return Ok(Flow::Stop);
        }
        for (n, d) in extra {
            if visit_bytes(n, d, visit) == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
    }
    first_error.map_or(Ok(Flow::Continue), Err)
}

use qalxan_docs::ole::{parse_package, Package};

/// The name a Packager payload is visited under.
fn package_name(pkg: &Package<'_>) -> String {
    if pkg.label.is_empty() {
        "package".into()
    } else {
        pkg.label.clone()
    }
}

/// PDF: every stream of every object (object streams expanded, the last definition of an
/// object winning, as readers do), decoded through its filters where the sandbox's reader
/// knows them, else raw.
pub fn pdf(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    use qalxan_docs::pdf::{decode_stream, parse, Obj};
    let max = usize::try_from(ctx.max_size).unwrap_or(usize::MAX);
    let doc = parse(data, 1_000_000, max);
    for (num, (_, obj)) in &doc.objects {
        let Obj::Stream(dict, raw) = obj else {
            continue;
        };
        let bytes = decode_stream(dict, raw, max).unwrap_or_else(|_| raw.clone());
        if visit_bytes(format!("obj{num}"), bytes, visit) == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}

/// RTF: `\objdata` payloads, unwrapped from their OLE1 header; Packager payloads too.
pub fn rtf(data: &[u8], ctx: &Context<'_>, visit: &mut Visit<'_>) -> Result<Flow, String> {
    let max = usize::try_from(ctx.max_size).unwrap_or(usize::MAX);
    let parsed = qalxan_docs::rtf::parse(data, max);
    for (i, obj) in parsed.objects.iter().enumerate() {
        let name = format!("objdata{}", i + 1);
        let child = match qalxan_docs::rtf::ole1_native(&obj.data) {
            Some((class, native)) => match parse_package(native).filter(|_| class == "Package") {
                Some(pkg) => (format!("{name}/{}", package_name(&pkg)), pkg.data.to_vec()),
                None => (format!("{name}/{class}"), native.to_vec()),
            },
            None => (name, obj.data.clone()),
        };
        if visit_bytes(child.0, child.1, visit) == Flow::Stop {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Continue)
}
