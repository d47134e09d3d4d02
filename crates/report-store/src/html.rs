//! One self-contained HTML page for a summary: inline CSS, an inline SVG line chart of the
//! success rate per day for each policy domain, and the tables. No scripts, no external
//! resources (images, fonts, style sheets), so it can be mailed or archived as one file.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::store::DaySummary;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const PALETTE: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

fn breakdown(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{} {v}", escape(k)))
        .collect::<Vec<_>>()
        .join("<br>")
}

/// Renders the page. `title` is shown as the heading; `generated` is a free-form line (e.g.
/// the time and filter).
pub fn render(summary: &[DaySummary], title: &str, generated: &str) -> String {
    let mut days: Vec<&str> = summary.iter().map(|d| d.day.as_str()).collect();
    days.sort_unstable();
    days.dedup();
    let mut by_domain: BTreeMap<&str, Vec<&DaySummary>> = BTreeMap::new();
    for d in summary {
        by_domain.entry(&d.policy_domain).or_default().push(d);
    }

    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>\n\
         body{{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222}}\n\
         table{{border-collapse:collapse;margin:1em 0;font-size:.9em}}\n\
         th,td{{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}}\n\
         th{{background:#f3f3f3}} td.n{{text-align:right;font-variant-numeric:tabular-nums}}\n\
         .bad{{color:#b00020;font-weight:600}} .muted{{color:#666}}\n\
         svg text{{font-size:11px;fill:#333}}\n\
         </style>\n</head>\n<body>\n<h1>{t}</h1>\n<p class=\"muted\">{g}</p>\n",
        t = escape(title),
        g = escape(generated)
    );

    if summary.is_empty() {
        html.push_str("<p>No reports match.</p>\n</body>\n</html>\n");
        return html;
    }

    chart(&mut html, &days, &by_domain);
    table(&mut html, summary);
    html.push_str("</body>\n</html>\n");
    html
}

/// The SVG chart: x = day index, y = success rate 0–100 %, one line per policy domain.
fn chart(html: &mut String, days: &[&str], by_domain: &BTreeMap<&str, Vec<&DaySummary>>) {
    let (w, h, left, right, top, bottom) = (900.0_f64, 320.0_f64, 50.0, 20.0, 20.0, 60.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let x_of = |i: usize| {
        if days.len() <= 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (days.len() - 1) as f64
        }
    };
    let y_of = |rate: f64| top + plot_h * (1.0 - rate);
    let legend_h = 16.0 * by_domain.len() as f64;
    let _ = write!(
        html,
        "<h2>Success rate per day</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\" role=\"img\" \
         aria-label=\"TLS success rate per day and policy domain\">\n",
        h + legend_h,
        h + legend_h
    );
    for pct in [0, 25, 50, 75, 100] {
        let y = y_of(f64::from(pct) / 100.0);
        let _ = writeln!(
            html,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{pct}%</text>",
            w - right,
            left - 6.0,
            y + 4.0
        );
    }
    let label_every = days.len().div_ceil(12).max(1);
    for (i, day) in days.iter().enumerate() {
        if i % label_every == 0 || i + 1 == days.len() {
            let x = x_of(i);
            let _ = writeln!(
                html,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"end\" \
                 transform=\"rotate(-40 {x:.1} {:.1})\">{}</text>",
                h - bottom + 14.0,
                h - bottom + 14.0,
                escape(day)
            );
        }
    }
    for (n, (domain, rows)) in by_domain.iter().enumerate() {
        let colour = PALETTE[n % PALETTE.len()];
        let points: Vec<(f64, f64, &DaySummary)> = rows
            .iter()
            .filter_map(|d| {
                let i = days.binary_search(&d.day.as_str()).ok()?;
                Some((x_of(i), y_of(d.success_rate()?), *d))
            })
            .collect();
        if points.len() > 1 {
            let path: Vec<String> = points
                .iter()
                .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
                .collect();
            let _ = writeln!(
                html,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
        }
        for (x, y, d) in &points {
            let _ = writeln!(
                html,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\">\
                 <title>{} {}: {} ok, {} failed</title></circle>",
                escape(domain),
                escape(&d.day),
                d.successful,
                d.failed
            );
        }
        let ly = h + 16.0 * n as f64;
        let shown = if domain.is_empty() {
            "(no policy-domain)"
        } else {
            domain
        };
        let _ = writeln!(
            html,
            "<rect x=\"{left}\" y=\"{:.1}\" width=\"12\" height=\"3\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            ly - 4.0,
            left + 18.0,
            ly,
            escape(shown)
        );
    }
    html.push_str("</svg>\n");
}

/// The table: one row per policy domain and day.
fn table(html: &mut String, summary: &[DaySummary]) {
    html.push_str(
        "<h2>Per policy domain and day</h2>\n<table>\n<tr><th>Policy domain</th><th>Day (UTC)</th>\
         <th>Reports</th><th>Successful</th><th>Failed</th><th>Success rate</th>\
         <th>Failures by result type</th><th>Failures by organisation</th><th>Failures by MX</th></tr>\n",
    );
    for d in summary {
        let rate = d
            .success_rate()
            .map_or("–".to_owned(), |r| format!("{:.2}%", r * 100.0));
        let class = if d.failed > 0 { " bad" } else { "" };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n{class}\">{}</td><td class=\"n\">{rate}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.policy_domain),
            escape(&d.day),
            d.reports,
            d.successful,
            d.failed,
            breakdown(&d.failures_by_result_type),
            breakdown(&d.failures_by_organization),
            breakdown(&d.failures_by_mx),
        );
    }
    html.push_str("</table>\n");
}
