//! Date-times of TLS-RPT reports (RFC 8460 §4.4 `date-time`, RFC 3339 §5.6).
//!
//! A report's `date-range` is written as RFC 3339 "Internet Date/Time Format". Real reporters
//! deviate: Microsoft sends `2023-01-10T00:00:00` without any zone designator (see
//! `testdata/corpus/tlsrpt/016.json`, `028.json`). [`UtcDateTime::parse`] therefore reads:
//!
//! - `YYYY-MM-DD` `T` (or `t` or a space) `HH:MM:SS` with optional fractional seconds
//!   (truncated to whole seconds), then
//! - `Z` / `z`, a numeric offset `±HH:MM` (converted to UTC), or **nothing, which is taken as
//!   UTC** (the Microsoft shape; the report "should be for a full UTC day", RFC 8460 §4.1).
//!
//! Anything else (`"yesterday"`, a bare date) is an error; there is no silent fallback to the
//! epoch (unlike a peer, vectors S14.3 (d)). [`UtcDateTime`] always prints the strict form
//! `YYYY-MM-DDTHH:MM:SSZ`.

use std::fmt;

/// Seconds in one day.
pub const SECONDS_PER_DAY: i64 = 86_400;

/// A point in time with one-second resolution, always UTC: seconds since the Unix epoch.
///
/// ```
/// use tlsrpt::UtcDateTime;
/// let t = UtcDateTime::parse("2016-04-01T23:59:59Z")?;
/// assert_eq!(t.unix_seconds(), 1_459_555_199);
/// assert_eq!(t.to_string(), "2016-04-01T23:59:59Z");
/// // Microsoft's zoneless form is read as UTC.
/// assert_eq!(UtcDateTime::parse("2016-04-01T23:59:59")?, t);
/// // Offsets are converted.
/// assert_eq!(UtcDateTime::parse("2016-04-02T01:59:59+02:00")?, t);
/// # Ok::<(), tlsrpt::DateTimeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcDateTime(i64);

/// Why a date-time string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an RFC 3339 date-time (expected e.g. 2024-01-31T00:00:00Z): {reason}")]
pub struct DateTimeError {
    /// The text that was refused (truncated to 64 characters).
    pub input: String,
    /// What was wrong.
    pub reason: &'static str,
}

impl DateTimeError {
    fn new(input: &str, reason: &'static str) -> Self {
        DateTimeError {
            input: input.chars().take(64).collect(),
            reason,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Reads exactly `n` ASCII digits at `pos`.
fn digits(bytes: &[u8], pos: usize, n: usize) -> Option<u32> {
    let slice = bytes.get(pos..pos + n)?;
    slice.iter().try_fold(0u32, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

impl UtcDateTime {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const EPOCH: UtcDateTime = UtcDateTime(0);

    /// From seconds since the Unix epoch.
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        UtcDateTime(seconds)
    }

    /// Seconds since the Unix epoch.
    pub const fn unix_seconds(self) -> i64 {
        self.0
    }

    /// Midnight UTC at the start of a civil date; `None` for an impossible date or a year
    /// outside 0000–9999 (RFC 3339 §5.6 `date-fullyear` is four digits).
    pub fn from_ymd(year: i64, month: u32, day: u32) -> Option<Self> {
        if !(0..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
        {
            return None;
        }
        Some(UtcDateTime(
            days_from_civil(year, month, day) * SECONDS_PER_DAY,
        ))
    }

    /// Parses a report date-time; see the module documentation for what is accepted.
    pub fn parse(text: &str) -> Result<Self, DateTimeError> {
        let b = text.as_bytes();
        let err = |reason| DateTimeError::new(text, reason);
        let year = digits(b, 0, 4).ok_or_else(|| err("the year is not four digits"))?;
        let month = (b.get(4) == Some(&b'-'))
            .then(|| digits(b, 5, 2))
            .flatten()
            .ok_or_else(|| err("the month is not `-MM`"))?;
        let day = (b.get(7) == Some(&b'-'))
            .then(|| digits(b, 8, 2))
            .flatten()
            .ok_or_else(|| err("the day is not `-DD`"))?;
        if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
            return Err(err("the date is not followed by `T` and a time"));
        }
        let hour = digits(b, 11, 2).ok_or_else(|| err("the hour is not two digits"))?;
        let minute = (b.get(13) == Some(&b':'))
            .then(|| digits(b, 14, 2))
            .flatten()
            .ok_or_else(|| err("the minute is not `:MM`"))?;
        let second = (b.get(16) == Some(&b':'))
            .then(|| digits(b, 17, 2))
            .flatten()
            .ok_or_else(|| err("the second is not `:SS`"))?;
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err("the time of day is out of range"));
        }
        let year = i64::from(year);
        let date = UtcDateTime::from_ymd(year, month, day)
            .ok_or_else(|| err("the date does not exist"))?;
        let mut pos = 19;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while b.get(pos).is_some_and(u8::is_ascii_digit) {
                pos += 1;
            }
            if pos == start {
                return Err(err("no digits after the decimal point"));
            }
        }
        let offset = match b.get(pos) {
            // No zone designator (Microsoft): taken as UTC, RFC 8460 §4.1.
            None => 0,
            Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() => {
                let oh = digits(b, pos + 1, 2);
                let om = (b.get(pos + 3) == Some(&b':'))
                    .then(|| digits(b, pos + 4, 2))
                    .flatten();
                match (oh, om) {
                    (Some(h), Some(m)) if h <= 23 && m <= 59 => {
                        let seconds = i64::from(h * 3600 + m * 60);
                        if *sign == b'+' { seconds } else { -seconds }
                    }
                    _ => return Err(err("the offset is not `±HH:MM`")),
                }
            }
            Some(_) => return Err(err("unexpected text after the time")),
        };
        let seconds = i64::from(hour * 3600 + minute * 60 + second);
        Ok(UtcDateTime(date.0 + seconds - offset))
    }

    /// Midnight UTC at the start of this instant's day.
    pub fn day_start(self) -> Self {
        UtcDateTime(self.0.div_euclid(SECONDS_PER_DAY) * SECONDS_PER_DAY)
    }

    /// The UTC civil date as `YYYY-MM-DD`.
    pub fn date_string(self) -> String {
        let (y, m, d) = civil_from_days(self.0.div_euclid(SECONDS_PER_DAY));
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// This instant plus `seconds`.
    pub fn plus_seconds(self, seconds: i64) -> Self {
        UtcDateTime(self.0.saturating_add(seconds))
    }
}

impl fmt::Display for UtcDateTime {
    /// The strict RFC 3339 form with `Z`, e.g. `2016-04-01T00:00:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(SECONDS_PER_DAY);
        let secs = self.0.rem_euclid(SECONDS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        )
    }
}

impl std::str::FromStr for UtcDateTime {
    type Err = DateTimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UtcDateTime::parse(s)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for UtcDateTime {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for UtcDateTime {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        UtcDateTime::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-719_468, -1, 0, 1, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn parses_shapes() {
        let t = UtcDateTime::parse("2024-02-29T12:34:56.789Z").unwrap();
        assert_eq!(t.to_string(), "2024-02-29T12:34:56Z");
        assert_eq!(t.date_string(), "2024-02-29");
        assert_eq!(
            UtcDateTime::parse("2024-03-01T00:30:00-01:00")
                .unwrap()
                .to_string(),
            "2024-03-01T01:30:00Z"
        );
        for bad in [
            "yesterday",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00Zjunk",
            "2024-01-01T00:00:00.Z",
            "２０２４-01-01T00:00:00Z",
        ] {
            assert!(UtcDateTime::parse(bad).is_err(), "{bad}");
        }
    }
}
