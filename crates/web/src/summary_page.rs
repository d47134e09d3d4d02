//! The one-file HTML page of `mta-sts report summary --html`: inline CSS, no scripts, no
//! external resources (it can be mailed or archived), one small chart per policy domain
//! (small multiples, the dashboard's renderer: true time axis, gaps for days without
//! reports) and the per-day table. Escaped by its askama template.

use std::collections::BTreeMap;

use askama::Template;
use mta_sts_report_store::DaySummary;

use crate::chart::{self, Span};
use crate::view::rate_text;

struct Multiple {
    domain: String,
    sessions: String,
    rate: String,
    chart: String,
}

struct Row {
    domain: String,
    day: String,
    reports: u64,
    successful: u64,
    failed: u64,
    rate: String,
    by_type: Vec<String>,
    by_org: Vec<String>,
    by_mx: Vec<String>,
}

#[derive(Template)]
#[template(path = "summary.html")]
struct SummaryTemplate {
    title: String,
    generated: String,
    multiples: Vec<Multiple>,
    rows: Vec<Row>,
}

fn entries(map: &BTreeMap<String, u64>) -> Vec<String> {
    map.iter().map(|(k, v)| format!("{k} {v}")).collect()
}

/// Renders the page. `title` is the heading; `generated` a free-form line (time, filter).
pub fn render(summary: &[DaySummary], title: &str, generated: &str) -> String {
    let mut by_domain: BTreeMap<&str, Vec<&DaySummary>> = BTreeMap::new();
    for d in summary {
        by_domain.entry(&d.policy_domain).or_default().push(d);
    }
    // One time axis for all the small multiples, so they compare at a glance.
    let all = chart::points(summary.iter());
    let first = all.iter().map(|p| p.day).min();
    let last = all.iter().map(|p| p.day).max();
    let multiples = by_domain
        .iter()
        .map(|(domain, days)| {
            let shown = if domain.is_empty() {
                "(no policy-domain)".to_owned()
            } else {
                (*domain).to_owned()
            };
            let points = chart::points(days.iter().copied());
            let (ok, ko) = days.iter().fold((0u64, 0u64), |(a, b), d| {
                (a.saturating_add(d.successful), b.saturating_add(d.failed))
            });
            Multiple {
                chart: Span::new(first, last, &points)
                    .map(|span| {
                        chart::rate_chart(
                            &format!("Success rate per UTC day for {shown}"),
                            &points,
                            span,
                            420,
                            false,
                        )
                        .to_markup()
                    })
                    .unwrap_or_default(),
                sessions: format!("{ok} successful, {ko} failed"),
                rate: rate_text(ok, ko),
                domain: shown,
            }
        })
        .collect();
    let rows = summary
        .iter()
        .map(|d| Row {
            domain: d.policy_domain.clone(),
            day: d.day.clone(),
            reports: d.reports,
            successful: d.successful,
            failed: d.failed,
            rate: rate_text(d.successful, d.failed),
            by_type: entries(&d.failures_by_result_type),
            by_org: entries(&d.failures_by_organization),
            by_mx: entries(&d.failures_by_mx),
        })
        .collect();
    SummaryTemplate {
        title: title.to_owned(),
        generated: generated.to_owned(),
        multiples,
        rows,
    }
    .render()
    .unwrap_or_else(|e| format!("template error: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_strings_are_text_and_each_domain_has_its_chart() {
        let mut d = DaySummary {
            policy_domain: "a.example".into(),
            day: "2024-01-01".into(),
            reports: 1,
            successful: 3,
            failed: 1,
            ..DaySummary::default()
        };
        d.failures_by_organization
            .insert("<script>alert(1)</script>".into(), 1);
        let mut e = d.clone();
        e.policy_domain = "b.example".into();
        let page = render(&[d, e], "T <b>", "g");
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("T <b>"));
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(
            !page.contains("http://")
                || page.matches("http://").count()
                    == page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
        );
    }
}
