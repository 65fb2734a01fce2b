//! VBA projects (MS-OVBA): the compression, the `dir` stream, module source, and the
//! keyword analysis analysts know from olevba and mraptor.
//!
//! Written by hand: the crates that read VBA (`ovba`, `calamine`) stop at the first
//! inconsistency, and malware edits exactly the fields they trust (record sizes, module
//! offsets). This reader keeps going where it can and says what was damaged.

use std::sync::OnceLock;

use regex::Regex;

/// MS-OVBA 2.4.1 decompression. Stops quietly at the end of the data or at `max` output
/// bytes; returns None when the container signature is missing.
pub fn decompress(data: &[u8], max: usize) -> Option<Vec<u8>> {
    if data.first() != Some(&1) {
        return None;
    }
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(2).min(max));
    let mut pos = 1;
    while pos + 2 <= data.len() && out.len() < max {
        let header = u16::from_le_bytes([data[pos], data[pos + 1]]);
        let size = (header & 0x0fff) as usize + 3;
        let compressed = header & 0x8000 != 0;
        let chunk_end = (pos + size).min(data.len());
        pos += 2;
        let chunk_start = out.len();
        if !compressed {
            // A raw chunk is 4096 bytes whatever the header says.
            let end = (pos + 4096).min(data.len());
            out.extend_from_slice(&data[pos..end]);
            pos = end;
            continue;
        }
        while pos < chunk_end && out.len() < max {
            let flags = data[pos];
            pos += 1;
            for bit in 0..8 {
                if pos >= chunk_end {
                    break;
                }
                if flags & (1 << bit) == 0 {
                    out.push(data[pos]);
                    pos += 1;
                } else {
                    if pos + 2 > chunk_end {
                        pos = chunk_end;
                        break;
                    }
                    let token = u16::from_le_bytes([data[pos], data[pos + 1]]) as usize;
                    pos += 2;
                    let d = out.len() - chunk_start;
                    let bits = bit_count(d);
                    let length_mask = 0xffffusize >> bits;
                    let offset = (token >> (16 - bits)) + 1;
                    let length = (token & length_mask) + 3;
                    if offset > out.len() {
                        // A copy from before the start: corrupt; stop this chunk.
                        pos = chunk_end;
                        break;
                    }
                    let from = out.len() - offset;
                    for i in 0..length {
                        if out.len() >= max {
                            break;
                        }
                        let b = out[from + i];
                        out.push(b);
                    }
                }
            }
        }
        pos = chunk_end;
    }
    Some(out)
}

fn bit_count(d: usize) -> usize {
    // ceil(log2(d)), at least 4, at most 12.
    let mut bits = 4;
    while bits < 12 && (1usize << bits) < d {
        bits += 1;
    }
    bits
}

/// A module named in the `dir` stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    pub name: String,
    pub stream: String,
    /// Where the compressed source starts in the module stream; p-code comes before it.
    pub offset: u32,
}

/// What the `dir` stream says about a project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Project {
    pub codepage: u16,
    pub modules: Vec<ModuleEntry>,
    /// The stream ended or a record was out of place before the terminator.
    pub damaged: bool,
}

/// Reads a decompressed `dir` stream.
pub fn parse_dir(dir: &[u8]) -> Project {
    let mut project = Project {
        codepage: 1252,
        ..Project::default()
    };
    let mut pos = 0;
    let mut current: Option<ModuleEntry> = None;
    loop {
        let (Some(id), Some(size)) = (u16le(dir, pos), u32le(dir, pos + 2)) else {
            project.damaged = true;
            break;
        };
        let mut size = size as usize;
        // PROJECTVERSION says 4 but carries 6 bytes.
        if id == 0x09 {
            size = 6;
        }
        let body = pos + 6;
        let Some(data) = dir.get(body..body.saturating_add(size)) else {
            project.damaged = true;
            break;
        };
        match id {
            0x03 => {
                if let Some(cp) = u16le(data, 0) {
                    project.codepage = cp;
                }
            }
            0x19 => {
                if let Some(m) = current.take() {
                    project.modules.push(m);
                }
                current = Some(ModuleEntry {
                    name: decode(data, project.codepage),
                    stream: String::new(),
                    offset: 0,
                });
            }
            0x1a => {
                if let Some(m) = current.as_mut() {
                    m.stream = decode(data, project.codepage);
                }
            }
            0x32 => {
                if let Some(m) = current.as_mut() {
                    m.stream = utf16(data);
                }
            }
            0x31 => {
                if let (Some(m), Some(off)) = (current.as_mut(), u32le(data, 0)) {
                    m.offset = off;
                }
            }
            0x2b => {
                if let Some(m) = current.take() {
                    project.modules.push(m);
                }
            }
            0x10 => break,
            _ => {}
        }
        pos = body + size;
    }
    if let Some(m) = current.take() {
        project.modules.push(m);
    }
    project
}

/// Text in the project's code page (Windows-1252 when the code page is unknown).
pub fn decode(data: &[u8], codepage: u16) -> String {
    let enc = codepage::to_encoding(codepage).unwrap_or(encoding_rs::WINDOWS_1252);
    enc.decode_without_bom_handling(data).0.into_owned()
}

fn utf16(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

mod codepage {
    pub fn to_encoding(cp: u16) -> Option<&'static encoding_rs::Encoding> {
        Some(match cp {
            874 => encoding_rs::WINDOWS_874,
            932 => encoding_rs::SHIFT_JIS,
            936 => encoding_rs::GBK,
            949 => encoding_rs::EUC_KR,
            950 => encoding_rs::BIG5,
            1250 => encoding_rs::WINDOWS_1250,
            1251 => encoding_rs::WINDOWS_1251,
            1252 => encoding_rs::WINDOWS_1252,
            1253 => encoding_rs::WINDOWS_1253,
            1254 => encoding_rs::WINDOWS_1254,
            1255 => encoding_rs::WINDOWS_1255,
            1256 => encoding_rs::WINDOWS_1256,
            1257 => encoding_rs::WINDOWS_1257,
            1258 => encoding_rs::WINDOWS_1258,
            10000 => encoding_rs::MACINTOSH,
            65001 => encoding_rs::UTF_8,
            _ => return None,
        })
    }
}

pub(crate) fn u16le(d: &[u8], pos: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(pos..pos.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(crate) fn u32le(d: &[u8], pos: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(pos..pos.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// What the keyword analysis found in one piece of macro code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Procedures Office runs by itself (AutoOpen, Document_Open, *_Click...).
    pub autoexec: Vec<String>,
    /// Calls that write or download files (mraptor's W).
    pub write: Vec<String>,
    /// Calls that run something (mraptor's X).
    pub execute: Vec<String>,
    /// Everything olevba would list as Suspicious, with why.
    pub suspicious: Vec<(String, &'static str)>,
    /// URLs, IP addresses, executable file names.
    pub iocs: Vec<String>,
    /// Hex and Base64 literals that decode to readable text, shown decoded.
    pub decoded: Vec<(String, String)>,
}

impl Findings {
    /// mraptor's rule: code that starts by itself and writes or runs something.
    pub fn malicious(&self) -> bool {
        !self.autoexec.is_empty() && (!self.write.is_empty() || !self.execute.is_empty())
    }
}

struct Patterns {
    autoexec: Regex,
    write: Regex,
    execute: Regex,
    suspicious: Vec<(Regex, &'static str)>,
    url: Regex,
    ip: Regex,
    exe: Regex,
    hex: Regex,
    base64: Regex,
    comment: Regex,
    chr_chain: Regex,
    chr_call: Regex,
    str_reverse: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("static pattern");
        let suspicious: &[(&str, &'static str)] = &[
            (r"(?i)\bEnviron\b", "may read system environment variables"),
            (
                r"(?i)\bOpen\b[^\n]+\bFor\s+(?:Output|Binary|Append|Random)\b",
                "may open a file for writing",
            ),
            (r"(?i)(?:\bPut\b\s*#|\bPrint\s*#|\bWrite\s*#)", "may write to a file"),
            (r"(?i)\b(?:FileCopy|CopyFile)\b", "may copy a file"),
            (r"(?i)\bKill\b", "may delete a file"),
            (r"(?i)\bCreateTextFile\b", "may create a text file"),
            (r"(?i)\bADODB\.Stream\b", "may create a binary file"),
            (r"(?i)\b(?:WriteText|SaveToFile)\b", "may write a binary file"),
            (r"(?i)\bShell\b", "may run an executable file or a system command"),
            (
                r"(?i)\b(?:vbNormalFocus|vbHide|vbMinimizedFocus|vbMaximizedFocus|vbNormalNoFocus|vbMinimizedNoFocus)\b",
                "may run an executable file or a system command",
            ),
            (r"(?i)\bWScript\.Shell\b", "may run an executable file or a system command"),
            (r"(?i)\bRun\b", "may run an executable file or a system command"),
            (r"(?i)\bShellExecuteA?\b", "may run an executable file or a system command"),
            (r"(?i)\b(?:InvokeVerb|InvokeVerbEx|DoIt)\b", "may run a command through Shell.Application"),
            (r"(?i)\bMacScript\b", "may run an AppleScript"),
            (r"(?i)\bCallByName\b", "may call a function by name, to hide it"),
            (r"(?i)\bDeclare\b[^\n]+\bLib\b", "may call a function in a DLL"),
            (r"(?i)\bCreateObject\b", "may create an OLE object"),
            (r"(?i)\bGetObject\b", "may get an OLE object, possibly a running application"),
            (r"(?i)\bSendKeys\b", "may control another application by simulating keystrokes"),
            (r"(?i)\bAppActivate\b", "may control another application"),
            (r"(?i)\bURLDownloadToFileA?\b", "may download files from the Internet"),
            (
                r"(?i)\b(?:Msxml2\.XMLHTTP|Microsoft\.XMLHTTP|MSXML2\.ServerXMLHTTP|WinHttp\.WinHttpRequest)\b",
                "may download files from the Internet",
            ),
            (r"(?i)\bNet\.WebClient\b", "may download files from the Internet (PowerShell)"),
            (r"(?i)\bDownload(?:File|String)\b", "may download files from the Internet"),
            (r"(?i)\bPowerShell\b", "may run PowerShell commands"),
            (r"(?i)-(?:noexit|noprofile|ExecutionPolicy|EncodedCommand|enc|w\s+hidden)\b", "PowerShell command-line options"),
            (r"(?i)\bInvoke-Expression\b|\bIEX\b", "may run PowerShell code built at run time"),
            (r"(?i)\bStart-Process\b", "may start a process (PowerShell)"),
            (r"(?i)\bmshta\b", "may run an HTML application"),
            (r"(?i)\b(?:cmd\.exe|cmd\s+/c)\b", "may run a Windows command shell"),
            (r"(?i)\bStrReverse\b", "may hide strings by reversing them"),
            (r"(?i)\bChrW?\s*\(\s*\d+\s*[-+*/\\^]", "may hide strings with Chr() arithmetic"),
            (r"(?i)\bXor\b", "may obfuscate data with XOR"),
            (r"(?i)\b(?:VirtualAlloc(?:Ex)?|RtlMoveMemory|WriteProcessMemory|CreateThread|VirtualProtect|QueueUserAPC|NtWriteVirtualMemory)\b", "may inject code into memory"),
            (r"(?i)\bEnumSystemLanguageGroupsW?\b|\bEnumDateFormats\w*\b|\bCallWindowProc\b", "may run shellcode through a callback"),
            (r"(?i)\bExecuteExcel4Macro\b", "may run Excel 4 macros"),
            // Excel 4 (XLM) formulas, written as calls so VBA's `Call Foo` does not count.
            (r"(?i)\bEXEC\s*\(", "may run an executable file or a system command"),
            (r"(?i)\b(?:CALL|REGISTER)\s*\(", "may call a function in a DLL (Excel 4)"),
            (r"(?i)\bFOPEN\s*\(|\bFWRITE(?:LN)?\s*\(", "may write to a file (Excel 4)"),
            (r"(?i)\bFILE\.DELETE\s*\(", "may delete a file (Excel 4)"),
            (r"(?i)\b(?:VBProject|VBComponents|CodeModule|AddFromString|AddFromFile)\b", "may modify the VBA code (self-modification)"),
            (r"(?i)\bApplication\.Visible\b", "may hide the application"),
            (r"(?i)\bAltStartupPath\b", "may change the startup path for persistence"),
            (r"(?i)\bMkDir\b", "may create a directory"),
            (r"(?i)\b(?:ActiveWorkbook|ActiveDocument)\.SaveAs\b", "may save the document to another place"),
            (r"(?i)\bRegWrite\b|\bRegistry\b", "may write to the registry"),
            (r"(?i)\bScheduleService\b|\bschtasks\b", "may create a scheduled task"),
            (r"(?i)\bWin32_Process\b|\bwinmgmts\b", "may run a process through WMI"),
        ];
        Patterns {
            autoexec: re(
                r"(?i)\b(?:Auto(?:Exec|_?Open|_?Close|Exit|New)|Document(?:_?Open|_Close|_?BeforeClose|Change|_New)|NewDocument|Workbook(?:_Open|_Activate|_Close|_BeforeClose|_Deactivate)|\w+_(?:Painted|Painting|GotFocus|LostFocus|MouseHover|Layout|Click|Change|Resize|BeforeNavigate2|BeforeScriptExecute|DocumentComplete|DownloadBegin|DownloadComplete|FileDownload|NavigateComplete2|NavigateError|ProgressChange|PropertyChange|SetSecureLockIcon|StatusTextChange|TitleChange|MouseMove|MouseEnter|MouseLeave|OnConnecting|Initialize))\b|\bAuto_Ope\b",
            ),
            write: re(
                r"(?i)\b(?:FileCopy|CopyFile|Kill|CreateTextFile|VirtualAlloc|RtlMoveMemory|URLDownloadToFileA?|AltStartupPath|WriteProcessMemory|ADODB\.Stream|WriteText|SaveToFile|SaveAs|SaveAsRTF|FileSaveAs|MkDir|RmDir|SaveSetting|SetAttr)\b|\bOpen\b[^\n]+\b(?:Write|Append|Binary|Output|Random)\b|\bFWRITE(?:LN)?\s*\(",
            ),
            execute: re(
                r"(?i)\b(?:Shell|CreateObject|GetObject|SendKeys|RUN|CALL|MacScript|FollowHyperlink|CreateThread|ShellExecuteA?|ExecuteExcel4Macro|EXEC|REGISTER|SetTimer)\b|\bDeclare\b[^\n]+\bLib\b",
            ),
            suspicious: suspicious.iter().map(|(p, why)| (re(p), *why)).collect(),
            url: re(r#"(?i)\b(?:https?|ftp)://[^\s"'<>()]{4,}"#),
            ip: re(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
            exe: re(r#"(?i)\b[\w\-.%\\]+\.(?:exe|dll|scr|pif|bat|cmd|vbs|vbe|js|jse|wsf|wsh|hta|ps1|lnk|jar|msi|cpl)\b"#),
            hex: re(r#""((?:[0-9A-Fa-f]{2}){8,})""#),
            base64: re(r#""((?:[A-Za-z0-9+/]{4}){6,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)""#),
            comment: re(r"(?m)^\s*(?:'|Rem\b).*$"),
            chr_chain: re(r"(?i)(?:\bChr[WB]?\$?\(\s*\d+\s*(?:[-+*/\\]\s*\d+\s*)?\)\s*[&+]?\s*){3,}"),
            chr_call: re(r"(?i)\bChr[WB]?\$?\(\s*(\d+)\s*(?:([-+*/\\])\s*(\d+)\s*)?\)"),
            str_reverse: re(r#"(?i)\bStrReverse\s*\(\s*"([^"]{3,})"\s*\)"#),
        }
    })
}

/// The keyword analysis of macro source code (VBA or the text of Excel 4 formulas).
pub fn analyze_code(code: &str) -> Findings {
    let p = patterns();
    let mut f = Findings::default();
    // Comments say nothing about what code does; matching them would flag a macro that
    // merely mentions Shell in a remark.
    let stripped = p.comment.replace_all(code, "");
    let code = stripped.as_ref();
    let names = |re: &Regex| -> Vec<String> {
        let mut v: Vec<String> = re.find_iter(code).map(|m| m.as_str().to_string()).collect();
        v.sort_by_key(|s| s.to_ascii_lowercase());
        v.dedup_by_key(|s| s.to_ascii_lowercase());
        v.truncate(20);
        v
    };
    f.autoexec = names(&p.autoexec);
    f.write = names(&p.write);
    f.execute = names(&p.execute);
    for (re, why) in &p.suspicious {
        if let Some(m) = re.find(code) {
            let kw = m.as_str().trim().to_string();
            f.suspicious.push((kw.chars().take(60).collect(), why));
        }
    }
    let mut iocs: Vec<String> = Vec::new();
    for re in [&p.url, &p.ip, &p.exe] {
        for m in re.find_iter(code).take(50) {
            let s = m.as_str().to_string();
            if !iocs.contains(&s) {
                iocs.push(s);
            }
        }
    }
    f.iocs = iocs;
    for c in p.hex.captures_iter(code).take(50) {
        let hex = &c[1];
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
            .collect();
        if let Some(text) = readable(&bytes) {
            f.decoded.push((hex.to_string(), text));
        }
    }
    for c in p.base64.captures_iter(code).take(50) {
        use base64::Engine;
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&c[1]) {
            if let Some(text) = readable(&bytes) {
                f.decoded.push((c[1].to_string(), text));
            }
        }
    }
    // Strings spelt out as Chr() arithmetic or reversed: evaluated, as olevba --deobf does.
    for m in p.chr_chain.find_iter(code).take(50) {
        let text: String = p
            .chr_call
            .captures_iter(m.as_str())
            .filter_map(|c| {
                let a: i64 = c[1].parse().ok()?;
                let v = match (
                    c.get(2).map(|o| o.as_str()),
                    c.get(3).and_then(|b| b.as_str().parse::<i64>().ok()),
                ) {
                    (Some("+"), Some(b)) => a.checked_add(b)?,
                    (Some("-"), Some(b)) => a.checked_sub(b)?,
                    (Some("*"), Some(b)) => a.checked_mul(b)?,
                    (Some("/") | Some("\\"), Some(b)) if b != 0 => a / b,
                    (None, None) => a,
                    _ => return None,
                };
                char::from_u32(u32::try_from(v).ok()?)
            })
            .collect();
        if text.chars().count() >= 3 {
            f.decoded
                .push((m.as_str().chars().take(60).collect(), text));
        }
    }
    for c in p.str_reverse.captures_iter(code).take(50) {
        f.decoded
            .push((c[0].to_string(), c[1].chars().rev().collect()));
    }
    if !f.decoded.is_empty() {
        f.suspicious.push((
            "Encoded strings".into(),
            "hex, Base64, Chr() or reversed strings that decode to readable text, often used to hide commands",
        ));
    }
    f
}

/// VBA source with its string obfuscation undone, as olevba's `--reveal` shows it: `Chr()`
/// calls with constant arguments become literals, `StrReverse("...")` of a literal is
/// reversed, and literals joined with `&` or `+` are joined. `None` when nothing changed.
///
/// Works on tokens, not text, so a quote inside a string or a comment never shifts what is
/// code and what is string.
pub fn reveal(code: &str) -> Option<String> {
    let mut tokens = reveal_lex(code);
    let mut changed = false;
    // Each pass folds one layer (`Chr(97) & Chr(98)` needs two); nested obfuscation in
    // the wild is a handful of layers deep.
    for _ in 0..16 {
        if !reveal_fold(&mut tokens) {
            break;
        }
        changed = true;
    }
    if !changed {
        return None;
    }
    let mut out = String::with_capacity(code.len());
    for t in &tokens {
        match t {
            Tok::Str(s) => {
                out.push('"');
                out.push_str(&s.replace('"', "\"\""));
                out.push('"');
            }
            Tok::Other(s) | Tok::Word(s) | Tok::Num(s) | Tok::Space(s) => out.push_str(s),
            Tok::Punct(c) => out.push(*c),
        }
    }
    Some(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Word(String),
    Num(String),
    /// Spaces, tabs and line continuations: what may stand between the parts of one
    /// expression.
    Space(String),
    Punct(char),
    /// Line ends, comments and unterminated strings: kept as they are, never folded across.
    Other(String),
}

fn reveal_lex(code: &str) -> Vec<Tok> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let take = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c == '"' {
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < chars.len() && chars[i] != '\n' {
                if chars[i] == '"' {
                    if chars.get(i + 1) == Some(&'"') {
                        s.push('"');
                        i += 2;
                        continue;
                    }
                    closed = true;
                    i += 1;
                    break;
                }
                s.push(chars[i]);
                i += 1;
            }
            out.push(if closed {
                Tok::Str(s)
            } else {
                Tok::Other(take(start, i))
            });
        } else if c == '\'' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            out.push(Tok::Other(take(start, i)));
        } else if c == '_' && chars.get(i + 1).is_some_and(|n| *n == '\n' || *n == '\r') {
            i += 1;
            while i < chars.len() && (chars[i] == '\r' || chars[i] == '\n') {
                i += 1;
                if chars[i - 1] == '\n' {
                    break;
                }
            }
            out.push(Tok::Space(take(start, i)));
        } else if c == ' ' || c == '\t' {
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
            out.push(Tok::Space(take(start, i)));
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if chars.get(i) == Some(&'$') {
                i += 1;
            }
            out.push(Tok::Word(take(start, i)));
        } else if c.is_ascii_digit()
            || (c == '&'
                && chars.get(i + 1).is_some_and(|h| *h == 'H' || *h == 'h')
                && chars.get(i + 2).is_some_and(char::is_ascii_hexdigit))
        {
            i += if c == '&' { 2 } else { 0 };
            while i < chars.len() && chars[i].is_ascii_hexdigit() {
                i += 1;
            }
            out.push(Tok::Num(take(start, i)));
        } else if c == '\n' || c == '\r' || c == ':' {
            i += 1;
            out.push(Tok::Other(c.to_string()));
        } else {
            i += 1;
            out.push(Tok::Punct(c));
        }
    }
    out
}

fn number(s: &str) -> Option<i64> {
    match s.strip_prefix("&H").or_else(|| s.strip_prefix("&h")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// One pass of folding; whether anything changed.
fn reveal_fold(tokens: &mut Vec<Tok>) -> bool {
    let mut changed = false;
    let mut out: Vec<Tok> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    // The index of the next token that is not a space, from `j`.
    let next = |t: &[Tok], mut j: usize| {
        while matches!(t.get(j), Some(Tok::Space(_))) {
            j += 1;
        }
        j
    };
    while i < tokens.len() {
        // Chr(n), ChrW(n), Chr$(n op m): a one-character literal.
        if let Tok::Word(w) = &tokens[i] {
            let lower = w.to_ascii_lowercase();
            let lower = lower.trim_end_matches('$');
            let open = next(tokens, i + 1);
            if matches!(lower, "chr" | "chrw" | "chrb")
                && tokens.get(open) == Some(&Tok::Punct('('))
            {
                let a = next(tokens, open + 1);
                let mut value = match tokens.get(a) {
                    Some(Tok::Num(n)) => number(n),
                    _ => None,
                };
                let mut close = next(tokens, a + 1);
                if let (Some(v), Some(Tok::Punct(op @ ('+' | '-' | '*' | '/' | '\\')))) =
                    (value, tokens.get(close))
                {
                    let b = next(tokens, close + 1);
                    value = match tokens.get(b).and_then(|t| match t {
                        Tok::Num(n) => number(n),
                        _ => None,
                    }) {
                        Some(m) => match op {
                            '+' => v.checked_add(m),
                            '-' => v.checked_sub(m),
                            '*' => v.checked_mul(m),
                            _ => v.checked_div(m),
                        },
                        None => None,
                    };
                    close = next(tokens, b + 1);
                }
                let ch = value
                    .and_then(|v| u32::try_from(v).ok())
                    .and_then(char::from_u32)
                    .filter(|c| !c.is_control() || *c == '\t');
                if let (Some(ch), Some(Tok::Punct(')'))) = (ch, tokens.get(close)) {
                    out.push(Tok::Str(ch.to_string()));
                    i = close + 1;
                    changed = true;
                    continue;
                }
            }
            // StrReverse("...") of a literal.
            if lower == "strreverse" && tokens.get(open) == Some(&Tok::Punct('(')) {
                let a = next(tokens, open + 1);
                let close = next(tokens, a + 1);
                if let (Some(Tok::Str(s)), Some(Tok::Punct(')'))) =
                    (tokens.get(a), tokens.get(close))
                {
                    out.push(Tok::Str(s.chars().rev().collect()));
                    i = close + 1;
                    changed = true;
                    continue;
                }
            }
        }
        // "a" & "b" (or +): one literal.
        if let Tok::Str(b) = &tokens[i] {
            // Look back past spaces for `&`/`+` and a literal before it.
            let mut k = out.len();
            while k > 0 && matches!(out[k - 1], Tok::Space(_)) {
                k -= 1;
            }
            if k > 0 && matches!(out[k - 1], Tok::Punct('&' | '+')) {
                let mut m = k - 1;
                while m > 0 && matches!(out[m - 1], Tok::Space(_)) {
                    m -= 1;
                }
                if m > 0 {
                    if let Tok::Str(a) = &out[m - 1] {
                        let joined = format!("{a}{b}");
                        out.truncate(m - 1);
                        out.push(Tok::Str(joined));
                        i += 1;
                        changed = true;
                        continue;
                    }
                }
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    *tokens = out;
    changed
}

/// Mostly printable bytes as text, or None: a decoded string is worth showing only when
/// it reads as text.
fn readable(bytes: &[u8]) -> Option<String> {
    if bytes.len() < 4 {
        return None;
    }
    let printable = bytes
        .iter()
        .filter(|&&b| (0x20..0x7f).contains(&b) || b == b'\n' || b == b'\r' || b == b'\t')
        .count();
    (printable * 10 >= bytes.len() * 9).then(|| String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reveal_undoes_string_obfuscation() {
        let code = "Sub AutoOpen()\n  s = Chr(112) & ChrW(&H6F) & Chr$(200 - 81) & \"er\" + \"sh\" & _\n    StrReverse(\"lle\")\n  CreateObject(\"WScript.Shell\").Run s & \" -c x\", 0 ' \"a\" & \"b\"\nEnd Sub";
        let revealed = reveal(code).expect("something to reveal");
        assert_eq!(
            revealed,
            "Sub AutoOpen()\n  s = \"powershell\"\n  CreateObject(\"WScript.Shell\").Run s & \" -c x\", 0 ' \"a\" & \"b\"\nEnd Sub"
        );
        // Quotes inside literals stay quotes; variables are not folded; comments untouched.
        assert_eq!(
            reveal("x = \"say \"\"hi\"\"\" & Chr(33)").as_deref(),
            Some("x = \"say \"\"hi\"\"!\"")
        );
        assert_eq!(reveal("x = a & \"b\" & c"), None);
        assert_eq!(reveal("' Chr(65) & \"x\""), None);
        assert_eq!(reveal("x = Chr(13) & Chr(10)"), None);
        assert_eq!(reveal("x = \"unterminated & Chr(65)"), None);
    }

    /// MS-OVBA 3.2: the example compressed container and its plain text.
    #[test]
    fn spec_example() {
        let compressed: &[u8] = &[
            0x01, 0x2F, 0xB0, 0x00, 0x23, 0x61, 0x61, 0x61, 0x62, 0x63, 0x64, 0x65, 0x82, 0x66,
            0x00, 0x70, 0x61, 0x67, 0x68, 0x69, 0x6A, 0x01, 0x38, 0x08, 0x61, 0x6B, 0x6C, 0x00,
            0x30, 0x6D, 0x6E, 0x6F, 0x70, 0x06, 0x71, 0x02, 0x70, 0x04, 0x10, 0x72, 0x73, 0x74,
            0x75, 0x76, 0x10, 0x77, 0x78, 0x79, 0x7A, 0x00, 0x3C,
        ];
        let out = decompress(compressed, 1 << 20).expect("signature");
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            "#aaabcdefaaaaghijaaaaaklaaamnopqaaaaaaaaaaaarstuvwxyzaaa"
        );
    }

    #[test]
    fn decompress_garbage_is_bounded() {
        assert_eq!(decompress(b"", 10), None);
        assert_eq!(decompress(b"\x02abc", 10), None);
        let out = decompress(&[1, 0xff, 0xbf, 0xff, 0xff, 0xff], 100).expect("sig");
        assert!(out.len() <= 100);
    }

    #[test]
    fn mraptor_rule() {
        let f = analyze_code("Sub AutoOpen()\n Shell \"calc.exe\"\nEnd Sub\n");
        assert!(f.malicious());
        assert!(f.iocs.contains(&"calc.exe".to_string()));
        let f = analyze_code("Sub Foo()\n' Shell is not called here\nMsgBox 1\nEnd Sub\n");
        assert!(!f.malicious());
        assert!(f.suspicious.is_empty());
        let f = analyze_code("x = \"68747470733a2f2f6576696c2e6578616d706c65\"");
        assert_eq!(f.decoded[0].1, "https://evil.example");
        let f = analyze_code(
            "s = Chr(99) & ChrW(100 + 9) & Chr$(200 - 100) & Chr(46)\nt = StrReverse(\"exe.clac\")",
        );
        let decoded: Vec<&str> = f.decoded.iter().map(|d| d.1.as_str()).collect();
        assert_eq!(decoded, vec!["cmd.", "calc.exe"]);
    }
}
