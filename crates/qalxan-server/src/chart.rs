//! Small bar charts as inline SVG, drawn on the server: no script, no chart library, and they
//! take the page's colours (light or dark) from the stylesheet.

use maud::{html, Markup};
use time::macros::format_description;
use time::OffsetDateTime;

const WIDTH: f64 = 320.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 92.0;
const HEIGHT: f64 = 110.0;

/// Bin start as a short label: the hour for hourly bins, the day otherwise (UTC).
pub fn time_label(ms: i64, bin_ms: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return String::new();
    };
    let formatted = if bin_ms < 24 * 3_600_000 {
        t.format(format_description!("[hour]:[minute]"))
    } else {
        t.format(format_description!("[month repr:short] [day]"))
    };
    formatted.unwrap_or_default()
}

/// A bar per bin, `bins[0]` starting at `start_ms`, each `bin_ms` wide.
pub fn bars(label: &str, bins: &[i64], start_ms: i64, bin_ms: i64) -> Markup {
    let max = bins.iter().copied().max().unwrap_or(0).max(1);
    let n = bins.len().max(1) as f64;
    let slot = WIDTH / n;
    let gap = (slot * 0.2).min(3.0);
    let scale = (BOTTOM - TOP) / max as f64;
    let last = bins.len().saturating_sub(1) as i64;
    html! {
        svg.chart viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label={(label) " per period"} {
            text.axis x="0" y="10" { "max " (crate::pages::fmt_int(max)) }
            line.base x1="0" y1=(BOTTOM) x2=(WIDTH) y2=(BOTTOM) {}
            @for (i, &v) in bins.iter().enumerate() {
                @let h = (v as f64 * scale).max(if v > 0 { 1.5 } else { 0.0 });
                rect.bar x=(fmt(i as f64 * slot + gap / 2.0)) y=(fmt(BOTTOM - h))
                    width=(fmt(slot - gap)) height=(fmt(h)) {
                    title { (time_label(start_ms + i as i64 * bin_ms, bin_ms)) ": " (crate::pages::fmt_int(v)) }
                }
            }
            text.axis x="0" y=(HEIGHT - 2.0) { (time_label(start_ms, bin_ms)) }
            text.axis x=(WIDTH) y=(HEIGHT - 2.0) text-anchor="end" {
                (time_label(start_ms + last * bin_ms, bin_ms))
            }
        }
    }
}

/// Horizontal bars for named counts (categories, institutions), largest first as given.
pub fn hbars(label: &str, items: &[(String, i64)]) -> Markup {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let row = 18.0;
    let label_w = 130.0;
    let height = row * items.len().max(1) as f64;
    html! {
        svg.chart.hbars viewBox={"0 0 " (WIDTH) " " (fmt(height))} role="img" aria-label=(label) {
            @for (i, (name, v)) in items.iter().enumerate() {
                @let y = i as f64 * row;
                @let w = (*v as f64 / max as f64 * (WIDTH - label_w - 40.0)).max(if *v > 0 { 1.5 } else { 0.0 });
                text.axis x="0" y=(fmt(y + 12.0)) { (name) }
                rect.bar x=(fmt(label_w)) y=(fmt(y + 3.0)) width=(fmt(w)) height=(fmt(row - 6.0)) {
                    title { (name) ": " (crate::pages::fmt_int(*v)) }
                }
                text.axis x=(fmt(label_w + w + 4.0)) y=(fmt(y + 12.0)) { (crate::pages::fmt_int(*v)) }
            }
        }
    }
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_bin() {
        let svg = bars("Blocks", &[0, 5, 10], 1_795_622_400_000, 3_600_000).into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains(r#"height="78.0""#), "{svg}");
        assert!(svg.contains("max 10"));
        assert!(svg.contains("16:00"), "{svg}");
    }

    #[test]
    fn day_labels_for_day_bins() {
        assert_eq!(time_label(1_795_622_400_000, 86_400_000), "Nov 25");
    }
}
