//! The HTML pages: askama templates (`templates/*.html`, auto-escaped) over the views of
//! [`crate::view`]. Charts are rendered by [`crate::chart`] (its own escaping template) and
//! inserted as markup.

use askama::Template;
use mta_sts_report_store::StoredReport;
use tlsrpt::UtcDateTime;

use crate::chart::{self, Span};
use crate::diagnose::Diagnosis;
use crate::query::{PERIODS, Period, ViewQuery, encode, percent};
use crate::served::ServedRecords;
use crate::view::{self, DomainPage, Overview};

/// A link of the period switch.
pub(crate) struct PeriodLink {
    label: String,
    href: String,
    current: bool,
}

/// What the layout (`base.html`) shows around every page.
pub(crate) struct Layout {
    title: String,
    base: String,
    period: String,
    period_label: String,
    period_query: String,
    since: String,
    today: String,
    periods: Vec<PeriodLink>,
    json_href: String,
    csv_href: Option<String>,
}

impl Layout {
    /// The layout of the page at `path` (below `base`) for `query`; its JSON is at
    /// `/api{path}`.
    pub(crate) fn new(title: &str, base: &str, path: &str, query: &ViewQuery, now: i64) -> Layout {
        let period = query.period();
        Layout {
            title: title.to_owned(),
            base: base.to_owned(),
            period: period.key(),
            period_label: period.label(),
            period_query: encode(&[("period", period.key())]),
            since: period.since(now).unwrap_or_default(),
            today: UtcDateTime::from_unix_seconds(now).date_string(),
            periods: PERIODS
                .iter()
                .map(|p| PeriodLink {
                    label: p.label(),
                    href: format!("{base}{path}?{}", query.with_period(*p)),
                    current: *p == period,
                })
                .collect(),
            json_href: format!("{base}/api{path}?{}", query.with_period(period)),
            csv_href: None,
        }
    }
}

/// A domain as shown: `(no policy-domain)` for the empty one.
pub(crate) fn shown_domain(domain: &str) -> String {
    if domain.is_empty() {
        "(no policy-domain)".to_owned()
    } else {
        domain.to_owned()
    }
}

/// The path segment of a domain page: `-` for the empty domain (reporters that left
/// `policy-domain` out).
pub(crate) fn domain_segment(domain: &str) -> String {
    if domain.is_empty() {
        "-".to_owned()
    } else {
        percent(domain)
    }
}

pub(crate) struct OverviewRow {
    domain: String,
    shown: String,
    href: String,
    status: &'static str,
    status_class: &'static str,
    status_symbol: &'static str,
    sessions: u64,
    successful: u64,
    failed: u64,
    reports: u64,
    days: u64,
    rate: String,
    failed_of_result: u64,
    sparkline: String,
    last_day: String,
    organizations: String,
    policy_types: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub(crate) struct OverviewTemplate<'a> {
    layout: Layout,
    view: &'a Overview,
    rows: Vec<OverviewRow>,
    domain_filter: String,
    org_filter: String,
    result_filter: String,
    filtered: bool,
    total: usize,
    page: usize,
    pages: usize,
    previous: Option<String>,
    next: Option<String>,
}

/// Organisations shown in an overview cell before "and N more".
const ORGS_SHOWN: usize = 3;

pub(crate) fn overview(base: &str, query: &ViewQuery, now: i64, view: &Overview) -> String {
    let mut layout = Layout::new("Overview", base, "/", query, now);
    layout.csv_href = Some(format!(
        "{base}/export/overview.csv?{}",
        query.with_period(query.period())
    ));
    let today = chart::day_number(&view.filters.today);
    let since = view.filters.since.as_deref().and_then(chart::day_number);
    // One time axis for every sparkline: the period, or (all time) the days stored.
    let first = since.or_else(|| {
        view.domains
            .iter()
            .filter_map(|r| r.first_day.as_deref().and_then(chart::day_number))
            .min()
    });
    let last = view
        .domains
        .iter()
        .filter_map(|r| r.last_day.as_deref().and_then(chart::day_number))
        .max()
        .into_iter()
        .chain(today)
        .max();
    let link_query = encode(&[("period", query.period().key())]);
    let pages = view.pages();
    let page = query.page().min(pages);
    let page_href = |n: usize| {
        let mut q = query.clone();
        q.page = Some(n.to_string());
        format!("{base}/?{}&page={n}", q.with_period(q.period()))
    };
    let rows = view.domains[view.page_rows(page)]
        .iter()
        .map(|r| {
            let sparkline = Span::new(first, last, &r.points)
                .map(|span| {
                    chart::rate_chart(
                        &format!(
                            "Success rate per day for {}",
                            shown_domain(&r.policy_domain)
                        ),
                        &r.points,
                        span,
                        180,
                        true,
                    )
                    .to_markup()
                })
                .unwrap_or_default();
            let more = r.organizations.len().saturating_sub(ORGS_SHOWN);
            let mut orgs: Vec<String> = r.organizations.iter().take(ORGS_SHOWN).cloned().collect();
            if more > 0 {
                orgs.push(format!("and {more} more"));
            }
            OverviewRow {
                domain: r.policy_domain.clone(),
                shown: shown_domain(&r.policy_domain),
                href: format!(
                    "{base}/domain/{}?{link_query}",
                    domain_segment(&r.policy_domain)
                ),
                status: r.status.label(),
                status_class: r.status.class(),
                status_symbol: r.status.symbol(),
                sessions: r.successful.saturating_add(r.failed),
                successful: r.successful,
                failed: r.failed,
                reports: r.reports,
                days: r.days,
                rate: view::rate_text(r.successful, r.failed),
                failed_of_result: r.failed_of_result.unwrap_or(0),
                sparkline,
                last_day: r.last_day.clone().unwrap_or_default(),
                organizations: orgs.join(", "),
                policy_types: r.policy_types.join(", "),
            }
        })
        .collect();
    OverviewTemplate {
        layout,
        view,
        rows,
        domain_filter: query.domain().unwrap_or_default(),
        org_filter: query.org().unwrap_or_default().to_owned(),
        result_filter: query.result().unwrap_or_default().to_owned(),
        filtered: query.domain().is_some() || query.org().is_some() || query.result().is_some(),
        total: view.domains.len(),
        page,
        pages,
        previous: (page > 1).then(|| page_href(page - 1)),
        next: (page < pages).then(|| page_href(page + 1)),
    }
    .render()
    .unwrap_or_else(|e| format!("template error: {e}"))
}

#[derive(Template)]
#[template(path = "domain.html")]
pub(crate) struct DomainTemplate<'a> {
    layout: Layout,
    view: &'a DomainPage,
    shown: String,
    status: &'static str,
    status_class: &'static str,
    status_symbol: &'static str,
    rate: String,
    sessions_chart: String,
    rate_chart: String,
    organizations: Vec<String>,
    result_types: Vec<String>,
    org_filter: String,
    result_filter: String,
    report_limit: u32,
    diagnosis: Option<&'a Diagnosis>,
    checked_at: String,
    can_check: bool,
    check_href: String,
    csrf: &'a str,
    served: Option<&'a ServedRecords>,
    served_config: &'a str,
}

/// Inputs of the domain page beyond its view.
pub(crate) struct DomainExtras<'a> {
    pub(crate) report_limit: u32,
    pub(crate) diagnosis: Option<&'a Diagnosis>,
    pub(crate) can_check: bool,
    pub(crate) csrf: &'a str,
    /// Every organisation that reported for the domain in the period (the filter's choices).
    pub(crate) organizations: Vec<String>,
    /// The records to publish, when the domain is in the serve configuration.
    pub(crate) served: Option<&'a ServedRecords>,
    /// That configuration file.
    pub(crate) served_config: Option<&'a str>,
}

pub(crate) fn domain(
    base: &str,
    query: &ViewQuery,
    now: i64,
    view: &DomainPage,
    extras: DomainExtras<'_>,
) -> String {
    let segment = domain_segment(&view.policy_domain);
    let shown = shown_domain(&view.policy_domain);
    let mut layout = Layout::new(&shown, base, &format!("/domain/{segment}"), query, now);
    layout.csv_href = Some(format!(
        "{base}/export/days.csv?{}",
        encode(&[
            ("period", query.period().key()),
            ("domain", view.policy_domain.clone())
        ])
    ));
    let points = chart::points(&view.days);
    let since = view.filters.since.as_deref().and_then(chart::day_number);
    let today = chart::day_number(&view.filters.today);
    let last = points.last().map(|p| p.day).into_iter().chain(today).max();
    let (sessions_chart, rate_chart) = match Span::new(since, last, &points) {
        Some(span) if !points.is_empty() => (
            chart::sessions_chart(
                &format!("Sessions per UTC day for {shown}"),
                &points,
                span,
                720,
            )
            .to_markup(),
            chart::rate_chart(
                &format!("Success rate per UTC day for {shown}"),
                &points,
                span,
                720,
                false,
            )
            .to_markup(),
        ),
        _ => (String::new(), String::new()),
    };
    let result_types = view
        .days
        .iter()
        .flat_map(|d| d.failures_by_result_type.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    DomainTemplate {
        layout,
        view,
        status: view.status.label(),
        status_class: view.status.class(),
        status_symbol: view.status.symbol(),
        rate: view::rate_text(view.totals.successful, view.totals.failed),
        shown,
        sessions_chart,
        rate_chart,
        organizations: extras.organizations,
        result_types,
        org_filter: query.org().unwrap_or_default().to_owned(),
        result_filter: query.result().unwrap_or_default().to_owned(),
        report_limit: extras.report_limit,
        checked_at: extras
            .diagnosis
            .map(|d| UtcDateTime::from_unix_seconds(d.checked_at).to_string())
            .unwrap_or_default(),
        diagnosis: extras.diagnosis,
        can_check: extras.can_check,
        check_href: format!("{base}/domain/{segment}/check"),
        csrf: extras.csrf,
        served: extras.served,
        served_config: extras.served_config.unwrap_or_default(),
    }
    .render()
    .unwrap_or_else(|e| format!("template error: {e}"))
}

pub(crate) struct PolicyRow {
    domain: String,
    href: String,
    policy_type: String,
    successful: u64,
    failed: u64,
    details: Vec<String>,
}

#[derive(Template)]
#[template(path = "report.html")]
pub(crate) struct ReportTemplate<'a> {
    layout: Layout,
    report: &'a StoredReport,
    start: String,
    end: String,
    imported: String,
    policies: Vec<PolicyRow>,
    raw: String,
}

pub(crate) fn report(base: &str, query: &ViewQuery, now: i64, report: &StoredReport) -> String {
    let layout = Layout::new(
        &format!("Report {}", report.report.report_id),
        base,
        &format!("/report/{}", report.id),
        query,
        now,
    );
    let link_query = encode(&[("period", Period::All.key())]);
    let policies = report
        .report
        .policies
        .iter()
        .map(|p| {
            let domain = mta_sts_report_store::normalize_domain(&p.policy.policy_domain);
            PolicyRow {
                href: format!("{base}/domain/{}?{link_query}", domain_segment(&domain)),
                domain: shown_domain(&domain),
                policy_type: p.policy.policy_type.to_string(),
                successful: p.summary.total_successful_session_count,
                failed: p.summary.total_failure_session_count,
                details: p
                    .failure_details
                    .iter()
                    .map(|d| {
                        let mut parts =
                            vec![format!("{} ×{}", d.result_type, d.failed_session_count)];
                        for (label, v) in [
                            ("mx", &d.receiving_mx_hostname),
                            ("ip", &d.receiving_ip),
                            ("from", &d.sending_mta_ip),
                            ("reason", &d.failure_reason_code),
                        ] {
                            if let Some(v) = v {
                                parts.push(format!("{label} {v}"));
                            }
                        }
                        parts.join(", ")
                    })
                    .collect(),
            }
        })
        .collect();
    let raw = serde_json::from_str::<serde_json::Value>(&report.raw_json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| report.raw_json.clone());
    ReportTemplate {
        layout,
        report,
        start: report.report.date_range.start.to_string(),
        end: report.report.date_range.end.to_string(),
        imported: UtcDateTime::from_unix_seconds(report.imported_at).to_string(),
        policies,
        raw,
    }
    .render()
    .unwrap_or_else(|e| format!("template error: {e}"))
}

#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorTemplate {
    layout: Layout,
    heading: String,
    message: String,
}

pub(crate) fn error(
    base: &str,
    query: &ViewQuery,
    now: i64,
    heading: &str,
    message: &str,
) -> String {
    ErrorTemplate {
        layout: Layout::new(heading, base, "/", query, now),
        heading: heading.to_owned(),
        message: message.to_owned(),
    }
    .render()
    .unwrap_or_else(|e| format!("template error: {e}"))
}
