//! XML documents: Word 2003 XML and Excel 2003 XML (SpreadsheetML), Flat OPC packages, and
//! the MIME HTML (`.mht`) form of Word documents. They carry the same active content as
//! their binary and zip siblings, as base64 blobs and attributes.

use crate::report::{join, Context, Severity};

/// The parts of an XML event the analysers need: local names, unescaped text.
pub(crate) enum Node {
    Start {
        name: String,
        attrs: Vec<(String, String)>,
    },
    End {
        name: String,
    },
    Text(String),
}

/// Walks an XML document, calling `f` for each element start (and empty element, followed
/// by its end), end and text. Malformed XML ends the walk where it breaks.
pub(crate) fn walk(data: &[u8], mut f: impl FnMut(Node)) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(data);
    reader.config_mut().check_end_names = false;
    let mut buf = Vec::new();
    let start = |e: &quick_xml::events::BytesStart<'_>| -> (String, Vec<(String, String)>) {
        let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
        let attrs = e
            .attributes()
            .flatten()
            .map(|a| {
                let key = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
                let value = a
                    .unescape_value()
                    .map(|v| v.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&a.value).into_owned());
                (key, value)
            })
            .collect();
        (name, attrs)
    };
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                let (name, attrs) = start(&e);
                f(Node::Start { name, attrs });
            }
            Ok(Event::Empty(e)) => {
                let (name, attrs) = start(&e);
                f(Node::Start {
                    name: name.clone(),
                    attrs,
                });
                f(Node::End { name });
            }
            Ok(Event::End(e)) => f(Node::End {
                name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
            }),
            Ok(Event::Text(t)) => {
                let text = t
                    .unescape()
                    .map(|v| v.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(&t).into_owned());
                f(Node::Text(text));
            }
            Ok(Event::CData(t)) => f(Node::Text(String::from_utf8_lossy(&t).into_owned())),
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
}

pub(crate) fn analyze(cx: &mut Context<'_>, data: &[u8], location: &str, depth: u32) {
    // Blobs: Word 2003 `w:binData`, Flat OPC `pkg:binaryData`.
    let mut blobs: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut part_name = String::new();
    let mut formulas = Vec::new();
    let mut ole_objects = Vec::new();
    walk(data, |node| match node {
        Node::Start { name, attrs } => match name.as_str() {
            "binData" => {
                let n = crate::ooxml::attr(&attrs, "name")
                    .unwrap_or("binData")
                    .to_string();
                current = Some((n, String::new()));
            }
            "part" => part_name = crate::ooxml::attr(&attrs, "name").unwrap_or("").to_string(),
            "binaryData" => current = Some((part_name.clone(), String::new())),
            "OLEObject" if crate::ooxml::attr(&attrs, "Type") != Some("Link") => {
                ole_objects.push(
                    crate::ooxml::attr(&attrs, "ProgID")
                        .unwrap_or("unknown")
                        .to_string(),
                );
            }
            "Cell" => {
                if let Some(f) = crate::ooxml::attr(&attrs, "Formula") {
                    formulas.push(f.to_string());
                }
            }
            _ => {}
        },
        Node::Text(t) => {
            if let Some((_, b)) = current.as_mut() {
                if b.len() < 256 << 20 {
                    b.push_str(&t);
                }
            }
        }
        Node::End { name } => {
            if name == "binData" || name == "binaryData" {
                if let Some(b) = current.take() {
                    blobs.push(b);
                }
            }
        }
    });
    for class in &ole_objects {
        cx.flags.ole_objects = true;
        cx.add(
            "ole.object",
            Severity::Low,
            location,
            format!("embedded OLE object ({class})"),
        );
    }
    for f in &formulas {
        crate::report::dde_formula(cx, location, f);
    }
    crate::ooxml::fields_and_links(cx, data, location);
    crate::ooxml::relationships(cx, data, location);
    for (name, b64) in blobs {
        let Some(bytes) = crate::report::base64_lenient(&b64) else {
            cx.malformed(&join(location, &name), "base64 blob that does not decode");
            continue;
        };
        if !cx.charge(bytes.len(), location) {
            return;
        }
        let loc = join(location, &name);
        let lower = name.to_ascii_lowercase();
        if lower.ends_with("editdata.mso")
            || lower.ends_with("oledata.mso")
            || bytes.starts_with(b"ActiveMime")
        {
            let inner = if bytes.starts_with(b"ActiveMime") {
                active_mime(&bytes, cx.decode_cap()).unwrap_or(bytes)
            } else {
                bytes
            };
            if lower.ends_with("oledata.mso") {
                cx.flags.ole_objects = true;
            }
            cx.analyze(&inner, &loc, depth + 1);
        } else if lower.contains("/embeddings/") {
            cx.flags.ole_objects = true;
            cx.add("ole.object", Severity::Low, &loc, "embedded object".into());
            cx.analyze(&bytes, &loc, depth + 1);
        } else if lower.ends_with(".bin") || lower.ends_with(".mso") {
            cx.analyze(&bytes, &loc, depth + 1);
        }
    }
}

/// ActiveMime (`.mso` blobs of Word 2003 XML and MHT): a header, then a zlib stream holding
/// an OLE2 file (the VBA project or the embedded objects).
fn active_mime(data: &[u8], cap: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let start = data.get(..data.len().min(256))?;
    let z = (0x20..start.len().saturating_sub(1))
        .find(|&i| start[i] == 0x78 && matches!(start[i + 1], 0x01 | 0x5e | 0x9c | 0xda))?;
    let mut out = Vec::new();
    let _ = flate2::read::ZlibDecoder::new(&data[z..])
        .take(cap as u64)
        .read_to_end(&mut out);
    (!out.is_empty()).then_some(out)
}

/// MIME HTML: base64 parts that hold ActiveMime blobs.
pub(crate) fn analyze_mht(cx: &mut Context<'_>, data: &[u8], location: &str, depth: u32) {
    let text = String::from_utf8_lossy(data);
    let mut index = 0;
    for (pos, _) in text.match_indices("QWN0aXZlTWlt") {
        let block: String = text[pos..]
            .lines()
            .take_while(|l| !l.trim().is_empty() && !l.starts_with("--"))
            .collect::<String>();
        index += 1;
        let loc = join(location, &format!("part{index}.mso"));
        match crate::report::base64_lenient(&block) {
            Some(bytes) => {
                let inner = active_mime(&bytes, cx.decode_cap()).unwrap_or(bytes);
                cx.charge(inner.len(), &loc);
                cx.analyze(&inner, &loc, depth + 1);
            }
            None => cx.malformed(&loc, "ActiveMime part that is not valid base64"),
        }
    }
    crate::html::analyze(cx, data, location);
}
