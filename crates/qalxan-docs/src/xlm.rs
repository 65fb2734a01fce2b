//! Excel 4 (XLM) formulas from their binary form: the parsed-expression tokens (`Rgce`,
//! [MS-XLS] 2.5.198, [MS-XLSB] 2.5.97) of BIFF5/BIFF8 FORMULA records in .xls workbooks and of
//! BIFF12 cell records in .xlsb macro sheets, turned back into the text Excel shows, so the
//! analyst reads `=EXEC("cmd /c ...")` and the keyword analysis runs over it.
//!
//! Written by hand: calamine, the Rust spreadsheet reader, names neither the macro-sheet
//! commands (Cetab: `ALERT`, `FILE.DELETE`...) nor opens .xlsb macro sheets, and those are
//! what attackers write.

use crate::vba::{u16le, u32le};
use crate::xlm_names::{CETAB, FTAB};

/// The record format the tokens come from: their operands differ in size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Biff {
    /// Excel 5/95: 8-bit strings, 3-byte cell references.
    V5,
    /// Excel 97-2003 (.xls).
    V8,
    /// Excel 2007+ binary (.xlsb): 32-bit rows, UTF-16 strings.
    V12,
}

/// What a formula refers to by number: defined names (1-based, as ptgName counts them) and
/// the sheets behind 3-D references.
#[derive(Default)]
pub struct Names {
    pub defined: Vec<String>,
    /// By XTI index (BIFF8/BIFF12) or sheet index (BIFF5).
    pub sheets: Vec<String>,
}

impl Names {
    /// The sheet names 3-D references use: the sheet each XTI starts at, from the
    /// workbook's sheets in order.
    pub fn sheets_of_xtis(sheets: &[String], first_sheets: &[i32]) -> Vec<String> {
        first_sheets
            .iter()
            .map(|&first| {
                usize::try_from(first)
                    .ok()
                    .and_then(|i| sheets.get(i).cloned())
                    .unwrap_or_else(|| format!("SHEET#{first}"))
            })
            .collect()
    }

    fn defined(&self, index: u32) -> String {
        index
            .checked_sub(1)
            .and_then(|i| self.defined.get(i as usize))
            .cloned()
            .unwrap_or_else(|| format!("NAME#{index}"))
    }

    fn sheet(&self, index: i32) -> String {
        let name = usize::try_from(index)
            .ok()
            .and_then(|i| self.sheets.get(i))
            .cloned()
            .unwrap_or_else(|| format!("SHEET#{index}"));
        if name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
        {
            name
        } else {
            format!("'{}'", name.replace('\'', "''"))
        }
    }
}

/// A formula's text is cut here: the analyst needs its start, the keyword analysis its
/// calls, and nothing needs megabytes built by nested concatenation.
const MAX_TEXT: usize = 32 * 1024;

/// Excel's own formulas stop at 16 KiB of tokens ([MS-XLS] cce is 16 bits; .xlsb allows
/// more, Excel does not write it). Each token costs at most one copy of `MAX_TEXT`.
const MAX_TOKENS: usize = 64 * 1024;

/// The text of one formula (without its leading `=`).
pub fn formula(rgce: &[u8], biff: Biff, names: &Names) -> Result<String, &'static str> {
    if rgce.len() > MAX_TOKENS {
        return Err("formula longer than Excel writes");
    }
    let mut r = Reader { d: rgce, pos: 0 };
    let mut stack: Vec<String> = Vec::new();
    let pop = |stack: &mut Vec<String>| stack.pop().ok_or("formula token without its operand");
    while r.pos < rgce.len() {
        let ptg = r.u8()?;
        // Tokens 0x20-0x7F come in three classes (reference, value, array) that read alike.
        let base = if ptg >= 0x20 {
            (ptg & 0x1f) | 0x20
        } else {
            ptg
        };
        match base {
            0x01 | 0x02 => {
                // ptgExp / ptgTbl: the formula is shared with, or a table at, another cell.
                let (row, col) = match biff {
                    Biff::V12 => (r.u32()?, u32::from(r.u16()?)),
                    _ => (u32::from(r.u16()?), u32::from(r.u16()?)),
                };
                stack.push(format!(
                    "{{shared formula at {}}}",
                    cell(row, col, false, false)
                ));
            }
            0x03..=0x11 => {
                let b = pop(&mut stack)?;
                let a = pop(&mut stack)?;
                let op = match base {
                    0x03 => "+",
                    0x04 => "-",
                    0x05 => "*",
                    0x06 => "/",
                    0x07 => "^",
                    0x08 => "&",
                    0x09 => "<",
                    0x0a => "<=",
                    0x0b => "=",
                    0x0c => ">=",
                    0x0d => ">",
                    0x0e => "<>",
                    0x0f => " ",
                    0x10 => ",",
                    _ => ":",
                };
                stack.push(capped(format!("{a}{op}{b}")));
            }
            0x12..=0x15 => {
                let a = pop(&mut stack)?;
                stack.push(capped(match base {
                    0x12 => format!("+{a}"),
                    0x13 => format!("-{a}"),
                    0x14 => format!("{a}%"),
                    _ => format!("({a})"),
                }));
            }
            0x16 => stack.push(String::new()),
            0x17 => {
                let text = match biff {
                    Biff::V5 => {
                        let n = r.u8()? as usize;
                        r.take(n)?.iter().map(|&b| b as char).collect()
                    }
                    Biff::V8 => {
                        let n = r.u8()? as usize;
                        let high = r.u8()? & 1 != 0;
                        r.chars(n, high)?
                    }
                    Biff::V12 => {
                        let n = r.u16()? as usize;
                        r.chars(n, true)?
                    }
                };
                stack.push(format!("\"{}\"", text.replace('"', "\"\"")));
            }
            0x18 => return Err("extended formula token (ptgExtend)"),
            0x19 => {
                let flags = r.u8()?;
                if flags & 0x04 != 0 {
                    // tAttrChoose: a jump table follows.
                    let cases = r.u16()? as usize;
                    r.take((cases + 1) * 2)?;
                } else {
                    r.u16()?;
                }
                if flags & 0x10 != 0 {
                    // tAttrSum: SUM of a single argument, written as an attribute.
                    let a = pop(&mut stack)?;
                    stack.push(capped(format!("SUM({a})")));
                }
            }
            0x1c => stack.push(error_text(r.u8()?).to_string()),
            0x1d => stack.push(if r.u8()? != 0 { "TRUE" } else { "FALSE" }.into()),
            0x1e => stack.push(r.u16()?.to_string()),
            0x1f => stack.push(number(f64::from_le_bytes(r.array()?))),
            0x20 => {
                r.take(if biff == Biff::V12 { 14 } else { 7 })?;
                stack.push("{array}".into());
            }
            0x21 | 0x22 => {
                let (argc, tab) = if base == 0x21 {
                    let tab = r.u16()?;
                    let argc = FTAB.get(tab as usize).map(|f| f.1).unwrap_or(0);
                    // Functions whose count varies are always written as ptgFuncVar.
                    (if argc == 255 { 0 } else { argc as usize }, tab)
                } else {
                    ((r.u8()? & 0x7f) as usize, r.u16()?)
                };
                if argc > stack.len() {
                    return Err("function call without its arguments");
                }
                let mut args = stack.split_off(stack.len() - argc);
                let command = base == 0x22 && tab & 0x8000 != 0;
                let index = (tab & 0x7fff) as usize;
                let name = if command {
                    CETAB.get(index).copied().unwrap_or("")
                } else {
                    FTAB.get(index).map(|f| f.0).unwrap_or("")
                };
                let name = if !command && index == 255 && !args.is_empty() {
                    // A user-defined or add-in function: its name is the first argument.
                    args.remove(0)
                } else if name.is_empty() {
                    format!("{}#{index}", if command { "COMMAND" } else { "FUNCTION" })
                } else {
                    name.to_string()
                };
                stack.push(capped(format!("{name}({})", args.join(","))));
            }
            0x23 => {
                let index = match biff {
                    Biff::V5 => {
                        let i = u32::from(r.u16()?);
                        r.take(12)?;
                        i
                    }
                    _ => r.u32()?,
                };
                stack.push(names.defined(index));
            }
            0x24 | 0x2c => {
                let (row, col, row_rel, col_rel) = r.reference(biff)?;
                stack.push(if base == 0x24 {
                    cell(row, col, row_rel, col_rel)
                } else {
                    relative(row, col, row_rel, col_rel, biff)
                });
            }
            0x25 | 0x2d => {
                let (a, b) = r.area(biff)?;
                stack.push(if base == 0x25 {
                    format!("{}:{}", cell(a.0, a.1, a.2, a.3), cell(b.0, b.1, b.2, b.3))
                } else {
                    format!(
                        "{}:{}",
                        relative(a.0, a.1, a.2, a.3, biff),
                        relative(b.0, b.1, b.2, b.3, biff)
                    )
                });
            }
            0x26..=0x28 => {
                // ptgMemArea/MemErr/MemNoMem: the tokens of the sub-expression follow and
                // are what Excel shows.
                r.take(4)?;
                r.u16()?;
            }
            0x29 | 0x2e => {
                r.u16()?;
            }
            0x2a => {
                r.reference(biff)?;
                stack.push("#REF!".into());
            }
            0x2b => {
                r.area(biff)?;
                stack.push("#REF!".into());
            }
            0x39 => {
                let (sheet, index) = match biff {
                    Biff::V5 => {
                        let sheet = i32::from(r.u16()? as i16);
                        r.take(8)?;
                        let i = u32::from(r.u16()?);
                        r.take(12)?;
                        (sheet, i)
                    }
                    _ => (i32::from(r.u16()?), r.u32()?),
                };
                stack.push(format!("EXTERNAL#{sheet}!NAME#{index}"));
            }
            0x3a | 0x3c => {
                let sheet = r.sheet(biff)?;
                let (row, col, row_rel, col_rel) = r.reference(biff)?;
                stack.push(if base == 0x3a {
                    format!(
                        "{}!{}",
                        names.sheet(sheet),
                        cell(row, col, row_rel, col_rel)
                    )
                } else {
                    format!("{}!#REF!", names.sheet(sheet))
                });
            }
            0x3b | 0x3d => {
                let sheet = r.sheet(biff)?;
                let (a, b) = r.area(biff)?;
                stack.push(if base == 0x3b {
                    format!(
                        "{}!{}:{}",
                        names.sheet(sheet),
                        cell(a.0, a.1, a.2, a.3),
                        cell(b.0, b.1, b.2, b.3)
                    )
                } else {
                    format!("{}!#REF!", names.sheet(sheet))
                });
            }
            _ => return Err("unknown formula token"),
        }
    }
    // Several values left mean tokens Excel would not have written; show them all.
    Ok(capped(stack.join(" ")))
}

fn capped(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn error_text(code: u8) -> &'static str {
    match code {
        0x00 => "#NULL!",
        0x07 => "#DIV/0!",
        0x0f => "#VALUE!",
        0x17 => "#REF!",
        0x1d => "#NAME?",
        0x24 => "#NUM!",
        0x2a => "#N/A",
        0x2b => "#GETTING_DATA",
        _ => "#ERROR!",
    }
}

pub(crate) fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A1-style cell name; `$` marks what does not move when the formula is copied.
pub fn cell(row: u32, col: u32, row_rel: bool, col_rel: bool) -> String {
    let mut letters = Vec::new();
    let mut c = col + 1;
    while c > 0 {
        letters.push(b'A' + ((c - 1) % 26) as u8);
        c = (c - 1) / 26;
    }
    letters.reverse();
    format!(
        "{}{}{}{}",
        if col_rel { "" } else { "$" },
        String::from_utf8_lossy(&letters),
        if row_rel { "" } else { "$" },
        u64::from(row) + 1
    )
}

/// The offsets of ptgRefN/ptgAreaN (shared formulas, names) in R1C1 notation.
fn relative(row: u32, col: u32, row_rel: bool, col_rel: bool, biff: Biff) -> String {
    let row = if row_rel {
        let r = match biff {
            Biff::V12 => row as i32,
            Biff::V5 => ((row as i32) << 18) >> 18,
            Biff::V8 => i32::from(row as u16 as i16),
        };
        format!("R[{r}]")
    } else {
        format!("R{}", u64::from(row) + 1)
    };
    let col = if col_rel {
        let c = match biff {
            Biff::V5 => i32::from(col as u8 as i8),
            _ => ((col as i32) << 18) >> 18,
        };
        format!("C[{c}]")
    } else {
        format!("C{}", col + 1)
    };
    format!("{row}{col}")
}

struct Reader<'a> {
    d: &'a [u8],
    pos: usize,
}

type Ref = (u32, u32, bool, bool);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("formula cut short")?;
        let s = self.d.get(self.pos..end).ok_or("formula cut short")?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn chars(&mut self, n: usize, high: bool) -> Result<String, &'static str> {
        if high {
            let units: Vec<u16> = self
                .take(n * 2)?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            Ok(String::from_utf16_lossy(&units))
        } else {
            Ok(self.take(n)?.iter().map(|&b| b as char).collect())
        }
    }

    /// A cell reference: row, column and whether each is relative.
    fn reference(&mut self, biff: Biff) -> Result<Ref, &'static str> {
        Ok(match biff {
            Biff::V5 => {
                let row = self.u16()?;
                let col = self.u8()?;
                (
                    u32::from(row & 0x3fff),
                    u32::from(col),
                    row & 0x8000 != 0,
                    row & 0x4000 != 0,
                )
            }
            Biff::V8 | Biff::V12 => {
                let row = if biff == Biff::V8 {
                    u32::from(self.u16()?)
                } else {
                    self.u32()?
                };
                let col = self.u16()?;
                (
                    row,
                    u32::from(col & 0x3fff),
                    col & 0x8000 != 0,
                    col & 0x4000 != 0,
                )
            }
        })
    }

    /// An area: first and last rows come before the columns.
    fn area(&mut self, biff: Biff) -> Result<(Ref, Ref), &'static str> {
        Ok(match biff {
            Biff::V5 => {
                let (r1, r2) = (self.u16()?, self.u16()?);
                let (c1, c2) = (self.u8()?, self.u8()?);
                let f = |r: u16, c: u8| {
                    (
                        u32::from(r & 0x3fff),
                        u32::from(c),
                        r & 0x8000 != 0,
                        r & 0x4000 != 0,
                    )
                };
                (f(r1, c1), f(r2, c2))
            }
            Biff::V8 | Biff::V12 => {
                let (r1, r2) = if biff == Biff::V8 {
                    (u32::from(self.u16()?), u32::from(self.u16()?))
                } else {
                    (self.u32()?, self.u32()?)
                };
                let (c1, c2) = (self.u16()?, self.u16()?);
                let f =
                    |r: u32, c: u16| (r, u32::from(c & 0x3fff), c & 0x8000 != 0, c & 0x4000 != 0);
                (f(r1, c1), f(r2, c2))
            }
        })
    }

    /// The sheet of a 3-D reference: an XTI index, or in BIFF5 the sheet's own index.
    fn sheet(&mut self, biff: Biff) -> Result<i32, &'static str> {
        Ok(match biff {
            Biff::V5 => {
                self.take(10)?; // ixals and reserved bytes
                let first = self.u16()? as i16;
                self.u16()?;
                i32::from(first)
            }
            _ => i32::from(self.u16()?),
        })
    }
}

/// One line per formula of a BIFF5/BIFF8 FORMULA record ([MS-XLS] 2.4.127): `A1: =...`.
pub fn biff_formula_line(body: &[u8], biff: Biff, names: &Names) -> Option<String> {
    let row = u32::from(u16le(body, 0)?);
    let col = u32::from(u16le(body, 2)?);
    let cce = u16le(body, 20)? as usize;
    let at = cell(row, col, true, true);
    Some(match body.get(22..22 + cce) {
        Some(rgce) => line(&at, formula(rgce, biff, names)),
        None => format!("{at}: (formula cut short)"),
    })
}

fn line(at: &str, text: Result<String, &'static str>) -> String {
    match text {
        Ok(t) => format!("{at}: ={t}"),
        Err(e) => format!("{at}: (unreadable formula: {e})"),
    }
}

/// BIFF12 records ([MS-XLSB] 2.1.4): a type and a size, each in 7-bit groups.
fn biff12_records(d: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let mut kind = 0u32;
        for i in 0..2 {
            let b = *d.get(pos)?;
            pos += 1;
            kind |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        let mut size = 0usize;
        for i in 0..4 {
            let b = *d.get(pos)?;
            pos += 1;
            size |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        let body = d.get(pos..pos.checked_add(size)?)?;
        pos += size;
        Some((kind, body))
    })
}

fn wide_string(d: &[u8], at: usize) -> Option<(String, usize)> {
    let n = u32le(d, at)? as usize;
    let bytes = d.get(at + 4..at.checked_add(4 + n.checked_mul(2)?)?)?;
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Some((String::from_utf16_lossy(&units), at + 4 + n * 2))
}

/// The names and sheets of an .xlsb workbook (`xl/workbook.bin`) that formulas refer to.
pub fn xlsb_names(workbook: &[u8], max_records: usize) -> Names {
    let mut sheets = Vec::new();
    let mut xti = Vec::new();
    let mut names = Names::default();
    for (kind, body) in biff12_records(workbook).take(max_records) {
        match kind {
            // BrtBundleSh: state, tab id, relationship id, then the sheet's name.
            0x009c => {
                // strRelID may be null (a count of 0xFFFFFFFF and no characters).
                let after = match u32le(body, 8) {
                    Some(u32::MAX) => Some(12),
                    _ => wide_string(body, 8).map(|(_, end)| end),
                };
                let name = after
                    .and_then(|at| wide_string(body, at))
                    .map(|(n, _)| n)
                    .unwrap_or_default();
                sheets.push(name);
            }
            // BrtName: flags, shortcut key, sheet, then the name.
            0x0027 => {
                let name = wide_string(body, 9).map(|(n, _)| n).unwrap_or_default();
                names.defined.push(name);
            }
            // BrtExternSheet: XTIs of (supporting link, first sheet, last sheet).
            0x016a => {
                let n = u32le(body, 0).unwrap_or(0) as usize;
                for i in 0..n.min(body.len() / 12) {
                    xti.push(u32le(body, 4 + i * 12 + 4).map_or(-1, |v| v as i32));
                }
            }
            _ => {}
        }
    }
    names.sheets = Names::sheets_of_xtis(&sheets, &xti);
    names
}

/// The formulas of an .xlsb macro sheet (`xl/macrosheets/sheetN.bin`), one line each.
pub fn xlsb_formulas(sheet: &[u8], names: &Names, max_records: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut row = 0u32;
    for (kind, body) in biff12_records(sheet).take(max_records) {
        let value_len = match kind {
            // BrtRowHdr: the row the following cells are in.
            0x0000 => {
                row = u32le(body, 0).unwrap_or(row);
                continue;
            }
            // BrtFmlaString, BrtFmlaNum, BrtFmlaBool, BrtFmlaError: a cell with a formula.
            0x0008 => match u32le(body, 8) {
                Some(n) => (n as usize).saturating_mul(2) + 4,
                None => continue,
            },
            0x0009 => 8,
            0x000a | 0x000b => 1,
            _ => continue,
        };
        let Some(col) = u32le(body, 0) else {
            continue;
        };
        let at = cell(row, col, true, true);
        // Cell (8 bytes), the cached value, grbitFlags (2), then cce and the tokens.
        let start = 8usize.saturating_add(value_len).saturating_add(2);
        let rgce = u32le(body, start)
            .and_then(|cce| body.get(start + 4..(start + 4).checked_add(cce as usize)?));
        lines.push(match rgce {
            Some(rgce) => line(&at, formula(rgce, Biff::V12, names)),
            None => format!("{at}: (formula cut short)"),
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rgce: &[u8], biff: Biff) -> String {
        formula(rgce, biff, &Names::default()).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn commands_functions_and_operators() {
        // EXEC("calc") as ptgStr + ptgFuncVar(1 arg, Ftab 110).
        let mut f = vec![0x17, 4, 0];
        f.extend_from_slice(b"calc");
        f.extend_from_slice(&[0x42, 1, 110, 0]);
        assert_eq!(text(&f, Biff::V8), "EXEC(\"calc\")");
        // ALERT("hi",2): command equivalent (fCeFunc) 0x76.
        let f = [0x17, 2, 0, b'h', b'i', 0x1e, 2, 0, 0x42, 2, 0x76, 0x80];
        assert_eq!(text(&f, Biff::V8), "ALERT(\"hi\",2)");
        // HALT(), whose argument is optional, as ptgFuncVar with none; NOW() as ptgFunc.
        assert_eq!(text(&[0x42, 0, 54, 0], Biff::V8), "HALT()");
        assert_eq!(text(&[0x41, 74, 0], Biff::V8), "NOW()");
        // CHAR(61)&"x" with a relative reference to A1 and an absolute one to $B$3.
        let f = [
            0x1e, 61, 0, 0x41, 111, 0, 0x17, 1, 0, b'x', 0x08, 0x44, 0, 0, 0, 0xc0, 0x44, 2, 0, 1,
            0, 0x08,
        ];
        assert_eq!(text(&f, Biff::V8), "CHAR(61)&\"x\" A1&$B$3");
    }

    #[test]
    fn formats_differ_in_operand_sizes() {
        // BIFF5: 8-bit string without the flags byte; reference row with the flags.
        let f = [0x17, 2, b'o', b'k', 0x44, 0x04, 0xc0, 0x02, 0x08];
        assert_eq!(text(&f, Biff::V5), "\"ok\"&C5");
        // BIFF12: UTF-16 string with a 16-bit count; 32-bit rows.
        let f = [
            0x17, 2, 0, b'o', 0, b'k', 0, 0x44, 9, 0, 0, 0, 1, 0xc0, 0x08,
        ];
        assert_eq!(text(&f, Biff::V12), "\"ok\"&B10");
    }

    #[test]
    fn malformed_tokens_are_errors_not_panics() {
        assert!(formula(&[0x03], Biff::V8, &Names::default()).is_err());
        assert!(formula(&[0x42, 200, 110, 0], Biff::V8, &Names::default()).is_err());
        assert!(formula(&[0x17, 9, 0, b'a'], Biff::V8, &Names::default()).is_err());
        assert!(formula(&[0xff], Biff::V12, &Names::default()).is_err());
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            for biff in [Biff::V5, Biff::V8, Biff::V12] {
                let _ = formula(&junk, biff, &Names::default());
            }
        }
    }

    #[test]
    fn column_letters() {
        assert_eq!(cell(0, 25, true, true), "Z1");
        assert_eq!(cell(0, 26, true, true), "AA1");
        assert_eq!(cell(99, 16383, false, false), "$XFD$100");
    }
}
