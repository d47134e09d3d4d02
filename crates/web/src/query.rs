//! The period and filters of a view, as they appear in the URL (`?period=30&domain=…&org=…
//! &result=…`), so a view can be bookmarked and shared.

use serde::Deserialize;
use tlsrpt::UtcDateTime;

/// The query string of every page and endpoint. Unknown or malformed values fall back to
/// the default (30 days, no filter) rather than failing the page.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ViewQuery {
    /// `7`, `30`, `90` or `all`; default 30.
    pub period: Option<String>,
    /// Only this policy domain (overview).
    pub domain: Option<String>,
    /// Only this reporting organisation (`organization-name`).
    pub org: Option<String>,
    /// Only failures of this RFC 8460 §4.3 `result-type`.
    pub result: Option<String>,
    /// Page of the overview (1-based; [`OVERVIEW_PAGE`] domains a page).
    pub page: Option<String>,
}

/// Domains per overview page (the JSON has them all).
pub const OVERVIEW_PAGE: usize = 50;

/// How many days a view covers, ending today (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The last N days, today included.
    Days(u32),
    /// Everything stored.
    All,
}

/// The periods offered in the page's period switch.
pub const PERIODS: [Period; 4] = [
    Period::Days(7),
    Period::Days(30),
    Period::Days(90),
    Period::All,
];

impl Period {
    /// Parses a `period` value: `7`, `30`, `90` or `all`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Period> {
        match text {
            "7" => Some(Period::Days(7)),
            "30" => Some(Period::Days(30)),
            "90" => Some(Period::Days(90)),
            "all" => Some(Period::All),
            _ => None,
        }
    }

    /// The value in the URL.
    pub fn key(self) -> String {
        match self {
            Period::Days(n) => n.to_string(),
            Period::All => "all".to_owned(),
        }
    }

    /// For people: "last 30 days", "all time".
    pub fn label(self) -> String {
        match self {
            Period::Days(n) => format!("last {n} days"),
            Period::All => "all time".to_owned(),
        }
    }

    /// The first day (`YYYY-MM-DD`, UTC) of the period ending on the day of `now` (Unix
    /// seconds); `None` for [`Period::All`]. This is the `--since` of `mta-sts report
    /// summary` that gives the same numbers.
    pub fn since(self, now: i64) -> Option<String> {
        match self {
            Period::Days(n) => Some(
                UtcDateTime::from_unix_seconds(now)
                    .day_start()
                    .plus_seconds(-(i64::from(n) - 1) * 86_400)
                    .date_string(),
            ),
            Period::All => None,
        }
    }
}

impl ViewQuery {
    /// The period asked for, default 30 days.
    pub fn period(&self) -> Period {
        self.period
            .as_deref()
            .and_then(Period::parse)
            .unwrap_or(Period::Days(30))
    }

    /// A filter value, `None` when absent or blank.
    fn non_empty(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    /// The domain filter, normalised as the store keeps domains.
    pub fn domain(&self) -> Option<String> {
        Self::non_empty(&self.domain).map(mta_sts_report_store::normalize_domain)
    }

    /// The overview page asked for, 1-based (default and fallback 1).
    pub fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.parse::<usize>().ok())
            .filter(|&p| p >= 1)
            .unwrap_or(1)
    }

    /// The organisation filter.
    pub fn org(&self) -> Option<&str> {
        Self::non_empty(&self.org)
    }

    /// The result-type filter.
    pub fn result(&self) -> Option<&str> {
        Self::non_empty(&self.result)
    }

    /// The query string of this view with `period` replaced (for the period switch), keys
    /// and values percent-encoded.
    pub fn with_period(&self, period: Period) -> String {
        let mut pairs = vec![("period", period.key())];
        for (k, v) in [
            ("domain", self.domain()),
            ("org", self.org().map(str::to_owned)),
            ("result", self.result().map(str::to_owned)),
        ] {
            if let Some(v) = v {
                pairs.push((k, v));
            }
        }
        encode(&pairs)
    }
}

/// `k=v&…` with each value percent-encoded (RFC 3986 unreserved characters kept).
pub fn encode(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_end_today_and_count_today() {
        // 2024-03-10T12:00:00Z
        let now = 1_710_072_000;
        assert_eq!(Period::Days(7).since(now).as_deref(), Some("2024-03-04"));
        assert_eq!(Period::Days(30).since(now).as_deref(), Some("2024-02-10"));
        assert_eq!(Period::All.since(now), None);
    }

    #[test]
    fn unknown_values_fall_back_and_filters_are_normalised() {
        let q = ViewQuery {
            period: Some("365".into()),
            domain: Some(" Example.COM. ".into()),
            org: Some("  ".into()),
            result: None,
            page: Some("0".into()),
        };
        assert_eq!(q.page(), 1);
        assert_eq!(q.period(), Period::Days(30));
        assert_eq!(q.domain().as_deref(), Some("example.com"));
        assert_eq!(q.org(), None);
        assert_eq!(q.with_period(Period::All), "period=all&domain=example.com");
    }

    #[test]
    fn values_are_percent_encoded() {
        assert_eq!(percent("a b&c=<d>"), "a%20b%26c%3D%3Cd%3E");
    }
}
