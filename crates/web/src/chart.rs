//! Server-side SVG charts with a true time axis: one x position per calendar day (UTC)
//! from the first to the last day of the period, so a gap of a year is a year wide, and
//! days without reports are gaps (no bar, the rate line is broken there) rather than being
//! bridged. Each policy domain gets its own chart (small multiples).
//!
//! Geometry is computed here; the markup is the askama template `templates/chart.svg`,
//! which escapes every text (titles carry domain names from reports). Failures are drawn
//! hatched and marked with triangles, so colour is not the only carrier of meaning, and
//! every bar and mark has a `<title>` with its numbers.

use askama::Template;
use mta_sts_report_store::DaySummary;
use tlsrpt::UtcDateTime;

/// Days since 1970-01-01 of a `YYYY-MM-DD` day; `None` when it is not one.
pub fn day_number(day: &str) -> Option<i64> {
    if day.len() != 10 {
        return None;
    }
    UtcDateTime::parse(&format!("{day}T00:00:00Z"))
        .ok()
        .map(|t| t.unix_seconds().div_euclid(86_400))
}

/// The `YYYY-MM-DD` of a day number.
pub fn day_string(day: i64) -> String {
    UtcDateTime::from_unix_seconds(day.saturating_mul(86_400)).date_string()
}

/// One day's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayPoint {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Successful sessions.
    pub successful: u64,
    /// Failed sessions.
    pub failed: u64,
}

impl DayPoint {
    fn rate(&self) -> Option<f64> {
        let total = self.successful.saturating_add(self.failed);
        (total > 0).then(|| self.successful as f64 / total as f64)
    }
}

/// The points of summary rows (of one domain), sorted by day; rows whose day is not a
/// date are left out.
pub fn points<'a>(days: impl IntoIterator<Item = &'a DaySummary>) -> Vec<DayPoint> {
    let mut out: Vec<DayPoint> = days
        .into_iter()
        .filter_map(|d| {
            Some(DayPoint {
                day: day_number(&d.day)?,
                successful: d.successful,
                failed: d.failed,
            })
        })
        .collect();
    out.sort_by_key(|p| p.day);
    out
}

/// The days a chart spans, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First day (day number).
    pub first: i64,
    /// Last day (day number), at least `first`.
    pub last: i64,
}

impl Span {
    /// From `since` (or the first point) to `until` (or the last point); `None` when there
    /// is neither a bound nor a point.
    pub fn new(since: Option<i64>, until: Option<i64>, points: &[DayPoint]) -> Option<Span> {
        let first = since.or_else(|| points.first().map(|p| p.day))?;
        let last = until
            .or_else(|| points.last().map(|p| p.day))
            .unwrap_or(first)
            .max(first);
        Some(Span { first, last })
    }

    fn days(self) -> i64 {
        self.last - self.first + 1
    }
}

/// A rectangle with its tooltip.
#[derive(Debug, Clone)]
pub struct Rect {
    x: String,
    y: String,
    w: String,
    h: String,
    fill: &'static str,
    title: String,
}

/// A lone day of a rate line (its neighbours have no sessions).
#[derive(Debug, Clone)]
pub struct Dot {
    cx: String,
    cy: String,
    title: String,
}

/// A triangle marking a day with failures.
#[derive(Debug, Clone)]
pub struct Mark {
    points: String,
    title: String,
}

/// An axis label.
#[derive(Debug, Clone)]
pub struct Tick {
    x: String,
    y: String,
    label: String,
}

/// A chart ready to render (`templates/chart.svg`).
#[derive(Debug, Clone, Template)]
#[template(path = "chart.svg", escape = "html")]
pub struct Svg {
    width: u32,
    height: u32,
    label: String,
    left: String,
    right: String,
    top: String,
    bottom: String,
    grid: Vec<Tick>,
    xticks: Vec<Tick>,
    bars: Vec<Rect>,
    lines: Vec<String>,
    dots: Vec<Dot>,
    marks: Vec<Mark>,
    /// A sparkline's failure marks as one path (no tooltips).
    marks_path: String,
    /// Whether the bars' hatch pattern is defined (sessions charts only).
    hatch: bool,
}

impl Svg {
    /// The SVG markup (texts escaped by the template).
    pub fn to_markup(&self) -> String {
        self.render().unwrap_or_default()
    }
}

/// Plot area and the day → x mapping.
struct Frame {
    span: Span,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn slot(&self) -> f64 {
        (self.right - self.left) / self.span.days() as f64
    }
    /// Centre of a day's slot.
    fn x(&self, day: i64) -> f64 {
        self.left + (day - self.span.first) as f64 * self.slot() + self.slot() / 2.0
    }
    fn y(&self, fraction: f64) -> f64 {
        self.bottom - (self.bottom - self.top) * fraction.clamp(0.0, 1.0)
    }
}

fn f(v: f64) -> String {
    format!("{v:.1}")
}

/// Labels on the time axis: days for a month or less, months for up to 13 months,
/// quarters up to 4 years, years beyond (every k-th year, at most 12 labels). The work is
/// bounded by the labels, not by the span: a hostile report dated in the year 9999 makes
/// a long axis, not a slow page.
fn time_ticks(frame: &Frame, y: f64) -> Vec<Tick> {
    let n = frame.span.days();
    let tick = |day: i64, label: String| Tick {
        x: f(frame.x(day)),
        y: f(y),
        label,
    };
    if n <= 31 {
        let step = ((n + 6) / 7).max(1);
        return (frame.span.first..=frame.span.last)
            .step_by(usize::try_from(step).unwrap_or(1))
            .map(|d| tick(d, day_string(d)[5..].to_owned()))
            .collect();
    }
    let first = day_string(frame.span.first);
    let last = day_string(frame.span.last);
    let year = |s: &str| s.get(..4).and_then(|y| y.parse::<i64>().ok());
    let (Some(y0), Some(y1)) = (year(&first), year(&last)) else {
        return Vec::new();
    };
    let (months, every): (&[u32], i64) = if n <= 400 {
        (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 1)
    } else if n <= 1500 {
        (&[1, 4, 7, 10], 1)
    } else {
        (&[1], ((y1 - y0) / 12 + 1).max(1))
    };
    let mut out = Vec::new();
    let mut y = y0;
    while y <= y1 {
        if (y - y0) % every == 0 || n <= 1500 {
            for &m in months {
                let Some(day) = day_number(&format!("{y:04}-{m:02}-01")) else {
                    continue;
                };
                if day >= frame.span.first && day <= frame.span.last {
                    let label = if n > 1500 {
                        format!("{y:04}")
                    } else {
                        format!("{y:04}-{m:02}")
                    };
                    out.push(tick(day, label));
                }
            }
        }
        y += 1;
    }
    out
}

/// Sessions per day as stacked bars: successful (solid) below failed (hatched).
pub fn sessions_chart(label: &str, points: &[DayPoint], span: Span, width: u32) -> Svg {
    let height = 180;
    let frame = Frame {
        span,
        left: 56.0,
        right: f64::from(width) - 24.0,
        top: 10.0,
        bottom: f64::from(height) - 26.0,
    };
    let max = points
        .iter()
        .map(|p| p.successful.saturating_add(p.failed))
        .max()
        .unwrap_or(0)
        .max(1);
    let w = (frame.slot() * 0.8).max(1.0);
    let mut bars = Vec::new();
    for p in points
        .iter()
        .filter(|p| p.day >= span.first && p.day <= span.last)
    {
        let x = frame.x(p.day) - w / 2.0;
        let ok_top = frame.y(p.successful as f64 / max as f64);
        let all_top = frame.y(p.successful.saturating_add(p.failed) as f64 / max as f64);
        let title = format!(
            "{}: {} successful, {} failed",
            day_string(p.day),
            p.successful,
            p.failed
        );
        if p.successful > 0 {
            bars.push(Rect {
                x: f(x),
                y: f(ok_top),
                w: f(w),
                h: f((frame.bottom - ok_top).max(0.5)),
                fill: "#2e7d32",
                title: title.clone(),
            });
        }
        if p.failed > 0 {
            bars.push(Rect {
                x: f(x),
                y: f(all_top),
                w: f(w),
                h: f((ok_top - all_top).max(1.0)),
                fill: "url(#failed-hatch)",
                title,
            });
        }
    }
    let grid = [0.0, 0.5, 1.0]
        .iter()
        .map(|&fr| Tick {
            x: f(frame.left - 4.0),
            y: f(frame.y(fr)),
            label: format!("{}", (max as f64 * fr).round() as u64),
        })
        .collect();
    Svg {
        width,
        height,
        label: label.to_owned(),
        left: f(frame.left),
        right: f(frame.right),
        top: f(frame.top),
        bottom: f(frame.bottom),
        grid,
        xticks: time_ticks(&frame, frame.bottom + 16.0),
        bars,
        lines: Vec::new(),
        dots: Vec::new(),
        marks: Vec::new(),
        marks_path: String::new(),
        hatch: true,
    }
}

/// Success rate per day as a line broken wherever a day has no sessions, with a triangle
/// above each day with failures. `small` leaves out the axes (a sparkline).
pub fn rate_chart(label: &str, points: &[DayPoint], span: Span, width: u32, small: bool) -> Svg {
    let height = if small { 40 } else { 140 };
    let frame = Frame {
        span,
        left: if small { 2.0 } else { 44.0 },
        right: f64::from(width) - if small { 4.0 } else { 24.0 },
        top: if small { 8.0 } else { 12.0 },
        bottom: f64::from(height) - if small { 3.0 } else { 26.0 },
    };
    // A sparkline has at most one column per two pixels: longer spans are summed into
    // buckets of `step` days (a bucket without reports is still a gap), and its marks carry
    // no tooltip; the row beside it has the numbers.
    let columns = i64::from(width / 2).max(1);
    let step = if small {
        ((span.days() + columns - 1) / columns).max(1)
    } else {
        1
    };
    let bucketed;
    let points = if step > 1 {
        let mut b: Vec<DayPoint> = Vec::new();
        for p in points
            .iter()
            .filter(|p| p.day >= span.first && p.day <= span.last)
        {
            let day = span.first + (p.day - span.first) / step * step;
            match b.last_mut() {
                Some(last) if last.day == day => {
                    last.successful = last.successful.saturating_add(p.successful);
                    last.failed = last.failed.saturating_add(p.failed);
                }
                _ => b.push(DayPoint { day, ..*p }),
            }
        }
        bucketed = b;
        bucketed.as_slice()
    } else {
        points
    };
    let mut lines = Vec::new();
    let mut dots = Vec::new();
    let mut marks = Vec::new();
    let mut marks_path = String::new();
    let mut segment: Vec<(f64, f64, String)> = Vec::new();
    let mut previous: Option<i64> = None;
    let flush =
        |segment: &mut Vec<(f64, f64, String)>, lines: &mut Vec<String>, dots: &mut Vec<Dot>| {
            match segment.as_slice() {
                [] => {}
                [(x, y, title)] => dots.push(Dot {
                    cx: f(*x),
                    cy: f(*y),
                    title: title.clone(),
                }),
                many => lines.push(
                    many.iter()
                        .map(|(x, y, _)| format!("{},{}", f(*x), f(*y)))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            }
            segment.clear();
        };
    for p in points
        .iter()
        .filter(|p| p.day >= span.first && p.day <= span.last)
    {
        let Some(rate) = p.rate() else {
            flush(&mut segment, &mut lines, &mut dots);
            previous = None;
            continue;
        };
        if previous.is_some_and(|d| d + step != p.day) {
            flush(&mut segment, &mut lines, &mut dots);
        }
        previous = Some(p.day);
        let (x, y) = (frame.x(p.day), frame.y(rate));
        let tip = if small {
            String::new()
        } else {
            format!("{}: {:.2}% success", day_string(p.day), rate * 100.0)
        };
        segment.push((x, y, tip));
        if p.failed > 0 && small {
            let t = frame.top - 1.0;
            marks_path.push_str(&format!("M{} {}l3 -5h-6z", f(x), f(t)));
        } else if p.failed > 0 {
            let t = frame.top - 2.0;
            marks.push(Mark {
                points: format!(
                    "{},{} {},{} {},{}",
                    f(x - 3.0),
                    f(t - 5.0),
                    f(x + 3.0),
                    f(t - 5.0),
                    f(x),
                    f(t)
                ),
                title: if small {
                    String::new()
                } else {
                    format!(
                        "{}: {} failed of {} ({:.2}% success)",
                        day_string(p.day),
                        p.failed,
                        p.successful.saturating_add(p.failed),
                        rate * 100.0
                    )
                },
            });
        }
    }
    flush(&mut segment, &mut lines, &mut dots);
    let grid = if small {
        Vec::new()
    } else {
        [0.0, 0.5, 1.0]
            .iter()
            .map(|&fr| Tick {
                x: f(frame.left - 4.0),
                y: f(frame.y(fr)),
                label: format!("{}%", (fr * 100.0) as u32),
            })
            .collect()
    };
    Svg {
        width,
        height,
        label: label.to_owned(),
        left: f(frame.left),
        right: f(frame.right),
        top: f(frame.top),
        bottom: f(frame.bottom),
        grid,
        xticks: if small {
            Vec::new()
        } else {
            time_ticks(&frame, frame.bottom + 16.0)
        },
        bars: Vec::new(),
        lines,
        dots,
        marks,
        marks_path,
        hatch: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(day: &str, ok: u64, ko: u64) -> DayPoint {
        DayPoint {
            day: day_number(day).unwrap(),
            successful: ok,
            failed: ko,
        }
    }

    #[test]
    fn the_time_axis_is_true_and_gaps_break_the_line() {
        let pts = [
            p("2024-01-01", 10, 0),
            p("2024-01-02", 9, 1),
            p("2024-01-10", 10, 0),
            p("2024-01-11", 10, 0),
        ];
        let span = Span::new(None, None, &pts).unwrap();
        assert_eq!(span.days(), 11);
        let svg = rate_chart("t", &pts, span, 400, false);
        // Two segments: 1–2 and 10–11; the 7-day gap is not bridged.
        assert_eq!(svg.lines.len(), 2, "{:?}", svg.lines);
        assert_eq!(svg.marks.len(), 1);
        let x = |i: usize| {
            svg.lines[i]
                .split(' ')
                .next()
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        };
        // Day 10 sits 9/11 of the way along, not 2/4.
        let slot = (376.0 - 44.0) / 11.0;
        assert!(
            (x(1) - (44.0 + 9.0 * slot + slot / 2.0)).abs() < 0.11,
            "{}",
            x(1)
        );
    }

    #[test]
    fn a_day_without_sessions_breaks_the_line_and_lone_days_are_dots() {
        let pts = [
            p("2024-01-01", 1, 0),
            p("2024-01-02", 0, 0),
            p("2024-01-03", 1, 0),
        ];
        let span = Span::new(None, None, &pts).unwrap();
        let svg = rate_chart("t", &pts, span, 200, true);
        assert!(svg.lines.is_empty());
        assert_eq!(svg.dots.len(), 2);
    }

    #[test]
    fn long_sparklines_are_summed_into_buckets_with_gaps_kept() {
        // 400 days on 180 pixels: buckets of 5 days; a 20-day hole stays a gap.
        let mut pts: Vec<DayPoint> = (0..200)
            .map(|d| DayPoint {
                day: d,
                successful: 1,
                failed: 0,
            })
            .collect();
        pts.extend((220..400).map(|d| DayPoint {
            day: d,
            successful: 1,
            failed: u64::from(d == 300),
        }));
        let span = Span::new(Some(0), Some(399), &pts).unwrap();
        let svg = rate_chart("t", &pts, span, 180, true);
        assert_eq!(svg.lines.len(), 2, "the hole breaks the line");
        let columns: usize = svg.lines.iter().map(|l| l.split(' ').count()).sum();
        assert_eq!(columns, 40 + 36);
        assert!(svg.marks.is_empty());
        assert_eq!(svg.marks_path.matches('M').count(), 1, "{}", svg.marks_path);
    }

    #[test]
    fn titles_are_escaped() {
        let pts = [p("2024-01-01", 1, 1)];
        let span = Span::new(None, None, &pts).unwrap();
        let markup = sessions_chart("<script>alert(1)</script>", &pts, span, 300).to_markup();
        assert!(!markup.contains("<script>"), "{markup}");
        assert!(
            markup.contains("&#60;script&#62;") || markup.contains("&lt;script&gt;"),
            "{markup}"
        );
    }

    #[test]
    fn a_far_future_day_makes_a_long_axis_with_few_labels() {
        let pts = [p("2024-01-01", 1, 0), p("9999-12-31", 1, 0)];
        let span = Span::new(None, None, &pts).unwrap();
        let svg = sessions_chart("t", &pts, span, 600);
        assert!(svg.xticks.len() <= 13, "{}", svg.xticks.len());
        assert_eq!(svg.xticks[0].label, "2024");
    }

    #[test]
    fn years_are_labelled_on_long_spans() {
        let pts = [p("2016-04-01", 1, 0), p("2026-11-01", 1, 0)];
        let span = Span::new(None, None, &pts).unwrap();
        let svg = sessions_chart("t", &pts, span, 600);
        let labels: Vec<&str> = svg.xticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels.first(), Some(&"2017"));
        assert_eq!(labels.last(), Some(&"2026"));
        assert_eq!(labels.len(), 10);
    }
}
