//! Windows shortcuts (MS-SHLLINK): the target and its arguments, which attackers fill with
//! PowerShell, mshta or cmd command lines.

use crate::report::{Context, Severity};
use crate::vba::{u16le, u32le};

const HAS_ID_LIST: u32 = 0x1;
const HAS_LINK_INFO: u32 = 0x2;
const HAS_NAME: u32 = 0x4;
const HAS_RELATIVE_PATH: u32 = 0x8;
const HAS_WORKING_DIR: u32 = 0x10;
const HAS_ARGUMENTS: u32 = 0x20;
const HAS_ICON: u32 = 0x40;
const IS_UNICODE: u32 = 0x80;

/// What a shortcut runs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shortcut {
    pub target: String,
    pub arguments: String,
    pub working_dir: String,
    pub icon: String,
    pub hidden_window: bool,
}

pub fn parse(d: &[u8]) -> Option<Shortcut> {
    let flags = u32le(d, 0x14)?;
    let show = u32le(d, 0x3c).unwrap_or(1);
    let mut pos = 0x4c;
    let mut s = Shortcut {
        hidden_window: show == 7 || show == 2,
        ..Shortcut::default()
    };
    if flags & HAS_ID_LIST != 0 {
        pos += 2 + u16le(d, pos)? as usize;
    }
    if flags & HAS_LINK_INFO != 0 {
        let size = u32le(d, pos)? as usize;
        let info = d.get(pos..pos.checked_add(size)?)?;
        // LinkInfo: the local base path (ANSI) at LocalBasePathOffset.
        let local_off = u32le(info, 0x10).unwrap_or(0) as usize;
        if local_off > 0 && local_off < info.len() {
            let rest = &info[local_off..];
            let end = memchr::memchr(0, rest).unwrap_or(rest.len());
            s.target = String::from_utf8_lossy(&rest[..end]).into_owned();
        }
        pos += size;
    }
    let unicode = flags & IS_UNICODE != 0;
    let string = |pos: &mut usize| -> Option<String> {
        let n = u16le(d, *pos)? as usize;
        *pos += 2;
        let bytes = if unicode { n * 2 } else { n };
        let raw = d.get(*pos..pos.checked_add(bytes)?)?;
        *pos += bytes;
        Some(if unicode {
            let u: Vec<u16> = raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&u)
        } else {
            String::from_utf8_lossy(raw).into_owned()
        })
    };
    if flags & HAS_NAME != 0 {
        string(&mut pos)?;
    }
    if flags & HAS_RELATIVE_PATH != 0 {
        let rel = string(&mut pos)?;
        if s.target.is_empty() {
            s.target = rel;
        }
    }
    if flags & HAS_WORKING_DIR != 0 {
        s.working_dir = string(&mut pos)?;
    }
    if flags & HAS_ARGUMENTS != 0 {
        s.arguments = string(&mut pos)?;
    }
    if flags & HAS_ICON != 0 {
        s.icon = string(&mut pos)?;
    }
    Some(s)
}

pub(crate) fn analyze(cx: &mut Context<'_>, data: &[u8], location: &str) {
    let Some(s) = parse(data) else {
        cx.malformed(location, "shortcut too short for its own header fields");
        return;
    };
    let target = s.target.to_ascii_lowercase();
    let args = s.arguments.to_ascii_lowercase();
    let interpreters = [
        "powershell",
        "pwsh",
        "cmd.exe",
        "mshta",
        "wscript",
        "cscript",
        "rundll32",
        "regsvr32",
        "certutil",
        "bitsadmin",
        "msiexec",
        "forfiles",
        "conhost",
        "wmic",
        "schtasks",
    ];
    let runs_interpreter = interpreters
        .iter()
        .find(|i| target.contains(*i) || (target.is_empty() && args.contains(*i)));
    let description = format!(
        "shortcut runs {} {}",
        if s.target.is_empty() {
            "(no target path)"
        } else {
            &s.target
        },
        s.arguments.chars().take(400).collect::<String>()
    );
    if let Some(i) = runs_interpreter {
        let long = s.arguments.len() > 200;
        let remote = args.contains("http:") || args.contains("https:") || args.contains("\\\\");
        cx.add(
            "lnk.command",
            if !args.trim().is_empty() {
                Severity::High
            } else {
                Severity::Medium
            },
            location,
            format!(
                "{description} — starts {i}{}{}{}",
                if long {
                    ", with a very long command line"
                } else {
                    ""
                },
                if remote {
                    ", fetching from the network"
                } else {
                    ""
                },
                if s.hidden_window {
                    ", in a hidden or minimised window"
                } else {
                    ""
                }
            ),
        );
    } else {
        cx.add("lnk.target", Severity::Low, location, description);
    }
}
