//! Where in a file a body signature may start: ClamAV's offset field.

use crate::pe::PeInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// From the start of the file.
    Start,
    /// Back from the end of the file (`EOF-n`).
    Eof,
    /// From the PE entry point (`EP+n`, `EP-n`).
    EntryPoint,
    /// From the start of PE section `n` (`Sn+m`).
    Section(u32),
    /// From the start of the last PE section (`SL+m`).
    LastSection,
    /// From the end of PE section `n` (`SEn`).
    SectionEnd(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    Any,
    At {
        anchor: Anchor,
        delta: i64,
        shift: u64,
    },
}

impl Offset {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(Offset::Any);
        }
        let (base, shift) = match s.split_once(',') {
            Some((b, sh)) => (
                b,
                sh.parse::<u64>()
                    .map_err(|_| format!("bad offset shift {sh:?}"))?,
            ),
            None => (s, 0),
        };
        let number = |t: &str| t.parse::<i64>().map_err(|_| format!("bad offset {s:?}"));
        let signed = |t: &str| -> Result<i64, String> {
            if let Some(n) = t.strip_prefix('+') {
                number(n)
            } else if let Some(n) = t.strip_prefix('-') {
                Ok(-number(n)?)
            } else if t.is_empty() {
                Ok(0)
            } else {
                Err(format!("bad offset {s:?}"))
            }
        };
        let (anchor, delta) = if let Some(rest) = base.strip_prefix("EOF") {
            (Anchor::Eof, signed(rest)?)
        } else if let Some(rest) = base.strip_prefix("EP") {
            (Anchor::EntryPoint, signed(rest)?)
        } else if let Some(rest) = base.strip_prefix("SL") {
            (Anchor::LastSection, signed(rest)?)
        } else if let Some(rest) = base.strip_prefix("SE") {
            let n = rest
                .parse::<u32>()
                .map_err(|_| format!("bad offset {s:?}"))?;
            (Anchor::SectionEnd(n), 0)
        } else if let Some(rest) = base.strip_prefix('S') {
            let digits = rest.find(['+', '-']).unwrap_or(rest.len());
            let n = rest[..digits]
                .parse::<u32>()
                .map_err(|_| format!("bad offset {s:?}"))?;
            (Anchor::Section(n), signed(&rest[digits..])?)
        } else {
            let n = number(base)?;
            if n < 0 {
                return Err(format!("bad offset {s:?}"));
            }
            (Anchor::Start, n)
        };
        if anchor == Anchor::Eof && delta > 0 {
            return Err(format!("offset {s:?} points past the end of the file"));
        }
        Ok(Offset::At {
            anchor,
            delta,
            shift,
        })
    }

    /// Whether the offset needs PE structure to resolve.
    pub fn needs_pe(&self) -> bool {
        matches!(self, Offset::At { anchor, .. } if !matches!(anchor, Anchor::Start | Anchor::Eof))
    }

    /// The inclusive range of allowed start offsets in a file of `len` bytes, or `None` when the
    /// offset cannot apply (e.g. an entry-point offset in a file that is not a PE).
    pub fn resolve(&self, len: u64, pe: Option<&PeInfo>) -> Option<(u64, u64)> {
        let Offset::At {
            anchor,
            delta,
            shift,
        } = *self
        else {
            return Some((0, u64::MAX));
        };
        let base: i64 = match anchor {
            Anchor::Start => 0,
            Anchor::Eof => len as i64,
            Anchor::EntryPoint => pe?.entry_offset? as i64,
            Anchor::Section(n) => pe?.sections.get(n as usize)?.raw_offset as i64,
            Anchor::LastSection => pe?.sections.last()?.raw_offset as i64,
            Anchor::SectionEnd(n) => {
                let s = pe?.sections.get(n as usize)?;
                (s.raw_offset + s.raw_size) as i64
            }
        };
        let start = base.checked_add(delta)?;
        if start < 0 || start as u64 > len {
            return None;
        }
        Some((start as u64, (start as u64).saturating_add(shift)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_clamav_uses() {
        assert_eq!(Offset::parse("*"), Ok(Offset::Any));
        assert_eq!(
            Offset::parse("0"),
            Ok(Offset::At {
                anchor: Anchor::Start,
                delta: 0,
                shift: 0
            })
        );
        assert_eq!(
            Offset::parse("EOF-288"),
            Ok(Offset::At {
                anchor: Anchor::Eof,
                delta: -288,
                shift: 0
            })
        );
        assert_eq!(
            Offset::parse("EP+10,20"),
            Ok(Offset::At {
                anchor: Anchor::EntryPoint,
                delta: 10,
                shift: 20
            })
        );
        assert_eq!(
            Offset::parse("S2+4"),
            Ok(Offset::At {
                anchor: Anchor::Section(2),
                delta: 4,
                shift: 0
            })
        );
        assert!(Offset::parse("EOF+3").is_err());
        assert!(Offset::parse("x").is_err());
        assert!(Offset::parse("-5").is_err());
    }

    #[test]
    fn resolves_against_the_file() {
        let eof = Offset::parse("EOF-10").expect("parses");
        assert_eq!(eof.resolve(100, None), Some((90, 90)));
        assert_eq!(eof.resolve(5, None), None);
        assert_eq!(
            Offset::parse("EP+0").expect("parses").resolve(100, None),
            None
        );
    }
}
