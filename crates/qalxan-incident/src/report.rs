//! Reports for the authorities, as a small document model with two renderings: Markdown (to
//! paste, to diff, to archive) and PDF ([`crate::pdf`]). The store computes the figures; this
//! module only lays them out, so the two renderings always say the same thing.

use qalxan_core::{named_enum, Tlp};
use serde::Serialize;

named_enum!(
    /// Who an incident report is for. `cert`: everything, for the CERT and the authorities it
    /// reports to. `partners`: what may be passed on to partner CERTs and sector peers under
    /// the incident's TLP: the facts, the description as written, victims as figures,
    /// observables and file hashes; no names of institutions, people or files, no tasks,
    /// alerts or work log.
    Audience, "report audience", {
        Cert => "cert",
        Partners => "partners",
    }
);

impl Audience {
    /// Whether a report for this audience may be made of an incident marked `tlp`: partners
    /// may receive TLP:CLEAR, GREEN and AMBER; AMBER+STRICT stays inside the CERT's own
    /// organisation and RED with its named recipients.
    pub fn may_receive(self, tlp: Tlp) -> bool {
        match self {
            Audience::Cert => true,
            Audience::Partners => matches!(tlp, Tlp::Clear | Tlp::Green | Tlp::Amber),
        }
    }
}

/// One block of a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "block", rename_all = "snake_case")]
pub enum Block {
    /// Level 1 is the title; 2 and 3 are sections.
    Heading {
        level: u8,
        text: String,
    },
    Paragraph {
        text: String,
    },
    /// Label/value lines.
    Facts {
        rows: Vec<(String, String)>,
    },
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// A horizontal bar chart.
    Bars {
        title: String,
        bars: Vec<(String, i64)>,
    },
}

/// A report: blocks in reading order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Document {
    /// How far the report may be shared, e.g. `TLP:AMBER`: Markdown opens with it, PDF pages
    /// carry it at the top and the bottom, as the TLP standard asks of documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marking: Option<String>,
    pub blocks: Vec<Block>,
}

impl Document {
    pub fn mark(&mut self, marking: impl Into<String>) -> &mut Self {
        self.marking = Some(marking.into());
        self
    }

    pub fn heading(&mut self, level: u8, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Heading {
            level,
            text: text.into(),
        });
        self
    }

    pub fn paragraph(&mut self, text: impl Into<String>) -> &mut Self {
        self.blocks.push(Block::Paragraph { text: text.into() });
        self
    }

    pub fn facts(&mut self, rows: Vec<(String, String)>) -> &mut Self {
        self.blocks.push(Block::Facts { rows });
        self
    }

    pub fn table(&mut self, header: &[&str], rows: Vec<Vec<String>>) -> &mut Self {
        self.blocks.push(Block::Table {
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            rows,
        });
        self
    }

    pub fn bars(&mut self, title: impl Into<String>, bars: Vec<(String, i64)>) -> &mut Self {
        self.blocks.push(Block::Bars {
            title: title.into(),
            bars,
        });
        self
    }

    /// The report as CommonMark (GFM tables).
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        if let Some(m) = &self.marking {
            out.push_str(&format!("**{}**\n\n", inline(m)));
        }
        for block in &self.blocks {
            match block {
                Block::Heading { level, text } => {
                    out.push_str(&"#".repeat(usize::from((*level).clamp(1, 6))));
                    out.push(' ');
                    out.push_str(&inline(text));
                    out.push_str("\n\n");
                }
                Block::Paragraph { text } => {
                    out.push_str(&inline(text));
                    out.push_str("\n\n");
                }
                Block::Facts { rows } => {
                    for (label, value) in rows {
                        out.push_str(&format!("- **{}:** {}\n", inline(label), inline(value)));
                    }
                    out.push('\n');
                }
                Block::Table { header, rows } => {
                    if rows.is_empty() {
                        out.push_str("_None._\n\n");
                        continue;
                    }
                    out.push_str(&row(header));
                    out.push_str(&row(&header
                        .iter()
                        .map(|_| "---".to_owned())
                        .collect::<Vec<_>>()));
                    for r in rows {
                        out.push_str(&row(r));
                    }
                    out.push('\n');
                }
                Block::Bars { title, bars } => {
                    out.push_str(&format!("**{}**\n\n", inline(title)));
                    if bars.is_empty() {
                        out.push_str("_None._\n\n");
                        continue;
                    }
                    out.push_str(&row(&["".to_owned(), "".to_owned()]));
                    out.push_str(&row(&["---".to_owned(), "---:".to_owned()]));
                    for (label, value) in bars {
                        out.push_str(&row(&[label.clone(), value.to_string()]));
                    }
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Text from the database inside Markdown: one line, and no character that would start markup
/// (`#` and `>` only where they would: at the start).
fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match c {
            '\r' | '\n' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '#' | '>' | '-' | '+' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn row(cells: &[String]) -> String {
    let mut s = String::from("|");
    for c in cells {
        s.push(' ');
        s.push_str(&inline(c));
        s.push_str(" |");
    }
    s.push('\n');
    s
}

/// `part` of `whole` as a whole percentage, for sentences such as "40 % administrative".
pub fn percent(part: i64, whole: i64) -> i64 {
    if whole <= 0 {
        0
    } else {
        ((part as f64) * 100.0 / (whole as f64)).round() as i64
    }
}

/// The figures of a periodic report, computed by the store from the data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PeriodicFigures {
    /// The half-open window, Unix milliseconds.
    pub from: i64,
    pub to: i64,
    /// Whose data: "all institutions" or one institution's name.
    pub scope: String,
    /// The platform's figures over the window: (label, total, peak).
    pub figures: Vec<(String, i64, i64)>,
    pub alerts: i64,
    /// Alerts by kind of detection.
    pub alerts_by_rule: Vec<(String, i64)>,
    pub incidents_opened: i64,
    pub incidents_closed: i64,
    /// Incidents opened in the window by RSIT class.
    pub by_category: Vec<(String, i64)>,
    /// Incidents opened in the window by affected institution.
    pub by_institution: Vec<(String, i64)>,
    pub by_severity: Vec<(String, i64)>,
    /// Victims recorded in the window.
    pub employees: i64,
    /// Institutions the employee victims work for.
    pub employee_institutions: i64,
    pub administrative: i64,
    pub citizens: i64,
    pub victims_by_role: Vec<(String, i64)>,
    /// The incidents opened in the window: id, title, category, severity, status, opened.
    pub incidents: Vec<Vec<String>>,
}

/// The periodic report for the authorities.
pub fn periodic_document(f: &PeriodicFigures, title: &str) -> Document {
    use qalxan_core::format_rfc3339;
    let mut d = Document::default();
    d.heading(1, title);
    d.facts(vec![
        (
            "Period".into(),
            format!("{} to {}", format_rfc3339(f.from), format_rfc3339(f.to)),
        ),
        ("Scope".into(), f.scope.clone()),
    ]);
    d.heading(2, "Summary");
    let mut rows: Vec<Vec<String>> = f
        .figures
        .iter()
        .map(|(label, total, peak)| vec![label.clone(), total.to_string(), peak.to_string()])
        .collect();
    rows.push(vec![
        "Alerts raised".into(),
        f.alerts.to_string(),
        String::new(),
    ]);
    rows.push(vec![
        "Incidents opened".into(),
        f.incidents_opened.to_string(),
        String::new(),
    ]);
    rows.push(vec![
        "Incidents closed".into(),
        f.incidents_closed.to_string(),
        String::new(),
    ]);
    d.table(&["Figure", "Total", "Peak"], rows);
    d.heading(2, "Victims");
    d.paragraph(victims_sentence(f));
    d.bars("Employee victims by role", f.victims_by_role.clone());
    d.heading(2, "Incidents");
    d.bars("By category (RSIT)", f.by_category.clone());
    d.bars("By institution", f.by_institution.clone());
    d.bars("By severity", f.by_severity.clone());
    d.table(
        &["#", "Title", "Category", "Severity", "Status", "Opened"],
        f.incidents.clone(),
    );
    d.heading(2, "Alerts");
    d.bars("By kind of detection", f.alerts_by_rule.clone());
    d
}

/// "N employees from M institutions fell victim, X % administrative; C citizens."
pub fn victims_sentence(f: &PeriodicFigures) -> String {
    format!(
        "{} employee{} from {} institution{} fell victim, {} % administrative staff; {} citizen{}.",
        f.employees,
        if f.employees == 1 { "" } else { "s" },
        f.employee_institutions,
        if f.employee_institutions == 1 {
            ""
        } else {
            "s"
        },
        percent(f.administrative, f.employees),
        f.citizens,
        if f.citizens == 1 { "" } else { "s" },
    )
}

#[cfg(test)]
mod audience_tests {
    use super::*;

    #[test]
    fn partners_get_nothing_above_amber() {
        let shared: Vec<Tlp> = Tlp::ALL
            .iter()
            .copied()
            .filter(|t| Audience::Partners.may_receive(*t))
            .collect();
        assert_eq!(shared, vec![Tlp::Clear, Tlp::Green, Tlp::Amber]);
        assert!(Tlp::ALL.iter().all(|t| Audience::Cert.may_receive(*t)));
    }

    #[test]
    fn the_marking_leads_the_markdown() {
        let mut doc = Document::default();
        doc.mark("TLP:GREEN").heading(1, "Incident #1");
        assert!(doc
            .to_markdown()
            .starts_with("**TLP:GREEN**\n\n# Incident #1"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_what_it_is_given() {
        let mut d = Document::default();
        d.heading(1, "Report")
            .paragraph("a *b* <script>\nnext")
            .table(&["Name", "N"], vec![vec!["x|y".into(), "2".into()]])
            .bars("By class", vec![("Fraud".into(), 3)]);
        let md = d.to_markdown();
        assert!(md.starts_with("# Report\n\n"));
        assert!(md.contains("a \\*b\\* \\<script> next"));
        assert!(md.contains("| x\\|y | 2 |"));
        assert!(md.contains("| Fraud | 3 |"));
    }

    #[test]
    fn percentages() {
        assert_eq!(percent(2, 5), 40);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(1, 0), 0);
    }
}
