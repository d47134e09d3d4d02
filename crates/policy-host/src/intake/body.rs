//! What the intake does with a POSTed body before a sink sees it: gunzip (RFC 8460 §6.5)
//! within the size cap and the decompressed-bytes budget, then the `report-id` check
//! (§4.4) by [`scan`](super::scan).

use std::io::Read;

use bytes::Bytes;

use super::BodyError;
use super::scan::{Scanned, scan};

/// A body the intake takes: the report JSON (decompressed) and its `report-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedBody {
    /// The report JSON.
    pub json: Bytes,
    /// Its `report-id` (RFC 8460 §4.4).
    pub report_id: String,
    /// The distinct `policy-domain` values of its policies (RFC 8460 §4.4), lower case,
    /// without a trailing dot; empty when it names none.
    pub policy_domains: Vec<String>,
}

/// What the intake does with a POSTed body before a sink sees it: gunzip when `gzip`
/// (RFC 8460 §6.5; at most `max_report` bytes, counted as they are produced), then check
/// that it is a JSON object with a `report-id` string (§4.4). Memory: the body, the JSON,
/// and the id; no JSON tree.
pub fn check_body(
    body: impl Into<Bytes>,
    gzip: bool,
    max_report: usize,
) -> Result<CheckedBody, BodyError> {
    check_body_within(body.into(), gzip, max_report, usize::MAX, &mut |_| true)
}

/// [`check_body`], asking `reserve` for every decompressed byte before keeping it.
pub(super) fn check_body_within(
    body: Bytes,
    gzip: bool,
    max_report: usize,
    max_weight: usize,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Result<CheckedBody, BodyError> {
    let json = if gzip {
        let json = gunzip(&body, max_report, reserve)?;
        drop(body);
        Bytes::from(json)
    } else {
        if body.len() > max_report {
            return Err(BodyError::TooLarge(max_report));
        }
        if !reserve(body.len()) {
            return Err(BodyError::Busy);
        }
        body
    };
    let Scanned {
        id: report_id,
        containers,
        domains: policy_domains,
    } = scan(&json)?;
    // What parsing and storing the report costs beyond its text grows with its objects and
    // arrays (a 20-byte `{"result-type":"x"}` becomes a struct of some 200 bytes, and the
    // store holds more than one form at once): counted too, so a report of tiny objects
    // takes the budget its memory takes.
    let weight = json
        .len()
        .saturating_add(containers.saturating_mul(PARSED_OBJECT_COST));
    if weight > max_weight {
        return Err(BodyError::TooComplex {
            containers,
            limit: max_weight,
        });
    }
    if !reserve(weight - json.len()) {
        return Err(BodyError::Busy);
    }
    Ok(CheckedBody {
        json,
        report_id,
        policy_domains,
    })
}

/// What each JSON object or array of a report counts against `max_inflight`, bytes, on top
/// of the JSON text. Measured: storing a report takes about 6× its budget count, for big
/// reports of few large objects and of many tiny ones alike.
pub const PARSED_OBJECT_COST: usize = 64;

/// Decompresses at most `max` bytes (more is a 413: a gzip bomb stops here), taking the
/// bytes from `reserve` before keeping them.
///
/// The size the gzip trailer declares (`ISIZE`, RFC 1952 §2.3.1) is taken first, at once:
/// reports that arrive together then either fit whole or are refused at once, instead of
/// each taking part of the budget and all failing. The declaration is not trusted: more
/// output is taken chunk by chunk as it comes, and the cap counts what is produced.
fn gunzip(
    body: &[u8],
    max: usize,
    reserve: &mut dyn FnMut(usize) -> bool,
) -> Result<Vec<u8>, BodyError> {
    let declared = match body.len() {
        // 10-byte header, 8-byte trailer: anything shorter is not gzip.
        0..18 => 0,
        n => body[n - 4..]
            .try_into()
            .map_or(0, |b| u32::from_le_bytes(b) as usize),
    };
    let mut reserved = declared.min(max);
    if !reserve(reserved) {
        return Err(BodyError::Busy);
    }
    let mut decoder = flate2::read::MultiGzDecoder::new(body);
    let mut out = Vec::with_capacity(reserved);
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Err(BodyError::Gzip),
        };
        let len = out.len().saturating_add(n);
        if len > max {
            return Err(BodyError::TooLarge(max));
        }
        if len > reserved {
            if !reserve(len - reserved) {
                return Err(BodyError::Busy);
            }
            reserved = len;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    // Growth by doubling leaves up to half the buffer unused; the report is kept a while.
    if out.capacity() - out.len() > out.len() / 8 {
        out.shrink_to_fit();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gunzip_caps_output() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 100_000]).unwrap();
        let gz = enc.finish().unwrap();
        let all = &mut |_| true;
        assert_eq!(gunzip(&gz, 1000, all), Err(BodyError::TooLarge(1000)));
        assert_eq!(gunzip(&gz, 100_000, all).unwrap().len(), 100_000);
        assert_eq!(gunzip(b"nope", 10, all), Err(BodyError::Gzip));
    }

    // The decompressed bytes are taken from the budget: the declared size (gzip ISIZE) at
    // once, then whatever comes beyond it as it is produced; a report that does not fit is
    // Busy (503) once the budget says no, not after inflating it all.
    #[test]
    fn gunzip_takes_from_the_budget() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; 1 << 20]).unwrap();
        let gz = enc.finish().unwrap();
        let mut asked = Vec::new();
        let mut budget = |n: usize| {
            asked.push(n);
            true
        };
        assert_eq!(gunzip(&gz, 2 << 20, &mut budget).unwrap().len(), 1 << 20);
        assert_eq!(asked, [1 << 20], "the declared size, at once");
        assert_eq!(
            gunzip(&gz, 2 << 20, &mut |n| n < (1 << 20)),
            Err(BodyError::Busy)
        );
        // A trailer that declares less than comes: the rest is taken as it comes, and
        // refused once the budget runs out.
        let mut lying = gz.clone();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&1000u32.to_le_bytes());
        let mut taken = 0;
        let mut budget = |n: usize| {
            taken += n;
            taken <= 256 * 1024
        };
        assert_eq!(
            check_body_within(Bytes::from(lying), true, 2 << 20, usize::MAX, &mut budget),
            Err(BodyError::Busy)
        );
        assert!(taken <= 256 * 1024 + 64 * 1024, "{taken}");
        let json = Bytes::from_static(br#"{"report-id":"r"}"#);
        let mut seen = 0;
        let checked = check_body_within(json.clone(), false, 100, usize::MAX, &mut |n| {
            seen += n;
            true
        })
        .unwrap();
        // Plain JSON is taken whole, plus its one object's parsed cost.
        assert_eq!(
            (checked.report_id.as_str(), seen),
            ("r", json.len() + PARSED_OBJECT_COST)
        );
        assert_eq!(
            check_body_within(json, false, 100, usize::MAX, &mut |_| false),
            Err(BodyError::Busy)
        );
        assert!(matches!(
            check_body(gz, true, 1 << 20),
            Err(BodyError::Json(_))
        ));
    }

    // A report of many tiny objects counts what its parsed form costs: 1000 objects of 20
    // bytes count 64 bytes more each, and are refused (413) when that can never fit.
    #[test]
    fn tiny_objects_count_against_the_budget() {
        let details = vec![r#"{"result-type":"x"}"#; 1000].join(",");
        let json = Bytes::from(format!(
            r#"{{"report-id":"r","policies":[{{"failure-details":[{details}]}}]}}"#
        ));
        let containers = 1 + 1 + 1 + 1 + 1000;
        let weight = json.len() + containers * PARSED_OBJECT_COST;
        let mut taken = 0;
        let checked = check_body_within(json.clone(), false, 1 << 20, weight, &mut |n| {
            taken += n;
            true
        })
        .unwrap();
        assert_eq!((checked.report_id.as_str(), taken), ("r", weight));
        assert_eq!(
            check_body_within(json, false, 1 << 20, weight - 1, &mut |_| true),
            Err(BodyError::TooComplex {
                containers,
                limit: weight - 1
            })
        );
    }
}
