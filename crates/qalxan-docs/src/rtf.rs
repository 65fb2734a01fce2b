//! RTF: embedded OLE objects (`\object` … `\objdata`), auto-updating links, field
//! instructions (DDE).
//!
//! A tokenizer of our own, like rtfobj's: Word reads RTF loosely (junk inside hex, `\bin`
//! runs, unbalanced groups), and attackers write for Word, not for the specification.

use crate::report::{join, Context, Severity};
use crate::vba::u32le;

/// How deep groups may nest before the rest is read flat (Word's own limit is lower).
const MAX_DEPTH: usize = 1024;

/// One `\object` group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Object {
    /// The class from `\objclass`, if the group names one.
    pub class: String,
    /// `\objdata` decoded from hex: an OLE1 object (header + native data).
    pub data: Vec<u8>,
    pub auto_update: bool,
    pub link: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dest {
    Normal,
    ObjData,
    ObjClass,
    FldInst,
    Skip,
}

#[derive(Clone)]
struct Group {
    dest: Dest,
    /// Index into `objects` of the `\object` group this one belongs to.
    object: Option<usize>,
    field: Option<usize>,
}

/// What an RTF document contains that matters: objects and field instructions.
#[derive(Debug, Default)]
pub struct Parsed {
    pub objects: Vec<Object>,
    pub fields: Vec<String>,
    /// Groups still open at the end, or nested past the depth limit.
    pub unbalanced: bool,
}

pub fn parse(data: &[u8], max_decoded: usize) -> Parsed {
    let mut out = Parsed::default();
    let mut stack: Vec<Group> = vec![Group {
        dest: Dest::Normal,
        object: None,
        field: None,
    }];
    let mut hex_nibble: Option<u8> = None;
    let mut decoded = 0usize;
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        match b {
            b'{' => {
                let mut g = stack.last().cloned().unwrap_or(Group {
                    dest: Dest::Normal,
                    object: None,
                    field: None,
                });
                if g.dest == Dest::ObjClass || g.dest == Dest::FldInst {
                    g.dest = Dest::Skip;
                }
                if stack.len() < MAX_DEPTH {
                    stack.push(g);
                } else {
                    out.unbalanced = true;
                }
                i += 1;
            }
            b'}' => {
                if stack.len() > 1 {
                    stack.pop();
                }
                hex_nibble = None;
                i += 1;
            }
            b'\\' => {
                i += 1;
                let start = i;
                while i < data.len() && data[i].is_ascii_alphabetic() && i - start < 32 {
                    i += 1;
                }
                let word = &data[start..i];
                if word.is_empty() {
                    // Control symbol: `\'hh`, `\*`, `\\`, `\{`...
                    if data.get(i) == Some(&b'\'') {
                        i += 3;
                    } else {
                        i += 1;
                    }
                    continue;
                }
                let pstart = i;
                if i < data.len() && data[i] == b'-' {
                    i += 1;
                }
                while i < data.len() && data[i].is_ascii_digit() && i - pstart < 10 {
                    i += 1;
                }
                let param: Option<i64> = std::str::from_utf8(&data[pstart..i])
                    .ok()
                    .and_then(|s| s.parse().ok());
                if data.get(i) == Some(&b' ') {
                    i += 1;
                }
                let g = stack.len() - 1;
                match word {
                    b"object" => {
                        out.objects.push(Object::default());
                        stack[g].object = Some(out.objects.len() - 1);
                    }
                    b"objdata" => stack[g].dest = Dest::ObjData,
                    b"objclass" => stack[g].dest = Dest::ObjClass,
                    b"objupdate" => {
                        if let Some(o) = stack[g].object.and_then(|o| out.objects.get_mut(o)) {
                            o.auto_update = true;
                        }
                    }
                    b"objautlink" | b"objlink" => {
                        if let Some(o) = stack[g].object.and_then(|o| out.objects.get_mut(o)) {
                            o.link = true;
                        }
                    }
                    b"fldinst" => {
                        out.fields.push(String::new());
                        stack[g].dest = Dest::FldInst;
                        stack[g].field = Some(out.fields.len() - 1);
                    }
                    b"bin" => {
                        // Raw bytes follow; in objdata they are data, elsewhere skipped.
                        let n = param.unwrap_or(0).max(0) as usize;
                        let end = i.saturating_add(n).min(data.len());
                        if stack[g].dest == Dest::ObjData {
                            if let Some(o) = stack[g].object.and_then(|o| out.objects.get_mut(o)) {
                                if decoded + (end - i) <= max_decoded {
                                    o.data.extend_from_slice(&data[i..end]);
                                    decoded += end - i;
                                }
                            }
                        }
                        i = end;
                    }
                    _ => {}
                }
            }
            _ => {
                let g = &stack[stack.len() - 1];
                if matches!(g.dest, Dest::Normal | Dest::Skip) {
                    // Plain text: nothing to collect until the next group or control word.
                    i = memchr::memchr3(b'{', b'}', b'\\', &data[i..])
                        .map_or(data.len(), |p| i + p);
                    continue;
                }
                match g.dest {
                    Dest::ObjData => {
                        if let Some(v) = (b as char).to_digit(16) {
                            match hex_nibble.take() {
                                Some(h) => {
                                    if let Some(o) = g.object.and_then(|o| out.objects.get_mut(o)) {
                                        if decoded < max_decoded {
                                            o.data.push(h << 4 | v as u8);
                                            decoded += 1;
                                        }
                                    }
                                }
                                None => hex_nibble = Some(v as u8),
                            }
                        }
                    }
                    Dest::ObjClass => {
                        if let Some(o) = g.object.and_then(|o| out.objects.get_mut(o)) {
                            if b >= 0x20 && o.class.len() < 256 {
                                o.class.push(b as char);
                            }
                        }
                    }
                    Dest::FldInst => {
                        if let Some(f) = g.field.and_then(|f| out.fields.get_mut(f)) {
                            if f.len() < 4096 && b != b'\r' && b != b'\n' {
                                f.push(b as char);
                            }
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
    }
    if stack.len() > 1 {
        out.unbalanced = true;
    }
    out
}

/// The OLE1 object header (MS-OLEDS 2.2.4): version, format id, class name, topic, item,
/// then the native data. Returns the class and the native data.
pub fn ole1_native(obj: &[u8]) -> Option<(String, &[u8])> {
    let format = u32le(obj, 4)?;
    if format != 2 && format != 1 {
        return None;
    }
    let class_len = u32le(obj, 8)? as usize;
    let class = obj.get(12..12usize.checked_add(class_len)?)?;
    let class = String::from_utf8_lossy(class.strip_suffix(&[0]).unwrap_or(class)).into_owned();
    let mut pos = 12 + class_len;
    for _ in 0..2 {
        let l = u32le(obj, pos)? as usize;
        pos = pos.checked_add(4 + l)?;
    }
    if format == 1 {
        // A link: no native data.
        return Some((class, &[]));
    }
    let size = u32le(obj, pos)? as usize;
    pos += 4;
    Some((class, obj.get(pos..pos.checked_add(size)?.min(obj.len()))?))
}

pub(crate) fn analyze(cx: &mut Context<'_>, data: &[u8], location: &str, depth: u32) {
    let parsed = parse(data, cx.decode_cap());
    if parsed.unbalanced {
        cx.malformed(location, "RTF groups do not balance");
    }
    for f in &parsed.fields {
        crate::report::dde_field(cx, location, f);
    }
    for (n, obj) in parsed.objects.iter().enumerate() {
        let loc = join(location, &format!("object{}", n + 1));
        cx.flags.ole_objects = true;
        cx.charge(obj.data.len(), &loc);
        let (class, native) = match ole1_native(&obj.data) {
            Some((c, native)) => (c, Some(native)),
            None => (obj.class.clone(), None),
        };
        let class = if class.is_empty() {
            obj.class.clone()
        } else {
            class
        };
        let shown = if class.is_empty() {
            "unknown class".to_string()
        } else {
            class.clone()
        };
        if crate::ole::is_exploit_class(&class) || crate::ole::is_exploit_class(&obj.class) {
            cx.add(
                "ole.exploit_class",
                Severity::High,
                &loc,
                format!("embedded {shown} object, a class used by known exploits (Equation Editor CVE-2017-11882, OLE2Link CVE-2017-0199)"),
            );
        } else {
            cx.add(
                "ole.object",
                Severity::Low,
                &loc,
                format!("embedded OLE object ({shown}, {} bytes)", obj.data.len()),
            );
        }
        if obj.auto_update {
            cx.add(
                "rtf.objupdate",
                Severity::Medium,
                &loc,
                "object updates itself when the document opens (\\objupdate)".into(),
            );
        }
        if obj.link {
            // Only an OLE 1.0 link header names what is linked; the control word alone
            // points nowhere.
            let linked = native.is_some_and(<[u8]>::is_empty);
            if linked {
                cx.flags.external_refs = true;
            }
            cx.add(
                "rtf.link",
                Severity::Medium,
                &loc,
                if linked {
                    format!("linked {shown} object, fetched when the document opens")
                } else {
                    "object marked as an automatic link (\\objautlink)".into()
                },
            );
        }
        match native {
            Some(native) if class.eq_ignore_ascii_case("Package") => {
                match crate::ole::parse_package(native) {
                    Some(pkg) => crate::ole::package(cx, &pkg, &loc, depth),
                    None => cx.malformed(&loc, "Package object that is not well formed"),
                }
            }
            Some(native) if !native.is_empty() => cx.analyze(native, &loc, depth + 1),
            Some(_) => {}
            None if !obj.data.is_empty() => {
                cx.malformed(&loc, "objdata is not a well-formed OLE 1.0 object");
                cx.analyze(&obj.data, &loc, depth + 1);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_fields() {
        let mut hex = String::new();
        let mut obj = vec![1, 5, 0, 0, 2, 0, 0, 0, 11, 0, 0, 0];
        obj.extend_from_slice(b"Equation.3\0");
        obj.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', b'c']);
        for b in &obj {
            hex.push_str(&format!("{b:02x}"));
        }
        // Junk and a control word inside the hex, as exploit kits write it.
        let doc = format!(
            "{{\\rtf1{{\\object\\objemb\\objupdate{{\\*\\objclass Equation.3}}{{\\*\\objdata {} \\par {}}}}}{{\\field{{\\*\\fldinst DDEAUTO cmd \"/c calc\"}}}}}}",
            &hex[..10],
            &hex[10..]
        );
        let p = parse(doc.as_bytes(), 1 << 20);
        assert_eq!(p.objects.len(), 1);
        assert!(p.objects[0].auto_update);
        assert_eq!(p.objects[0].class, "Equation.3");
        let (class, native) = ole1_native(&p.objects[0].data).expect("ole1");
        assert_eq!(class, "Equation.3");
        assert_eq!(native, b"abc");
        assert_eq!(p.fields, vec!["DDEAUTO cmd \"/c calc\"".to_string()]);
        assert!(!p.unbalanced);
    }
}
