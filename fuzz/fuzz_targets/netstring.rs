//! Netstring decoder: arbitrary bytes, split at arbitrary points, never panic; whatever
//! decodes re-encodes to the bytes it came from (modulo leading zeros), and any split gives
//! the same payloads as one feed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mta_sts_socketmap::netstring::{Decoder, Limits, encode};
use mta_sts_socketmap::{Key, Request};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_digits: 5, max_payload: 1024 };
    let whole = decode(data, &[data.len()], limits);
    // First byte picks a split pattern for the rest.
    let (step, rest) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s % 17) + 1, rest),
        None => (1, data),
    };
    let sizes: Vec<usize> = std::iter::repeat(step).take(rest.len() / step + 1).collect();
    let split = decode(rest, &sizes, limits);
    let one = decode(rest, &[rest.len()], limits);
    assert_eq!(split, one, "splitting the input must not change the payloads");
    for payload in whole.0 {
        let again = decode(&encode(&payload), &[usize::MAX], limits);
        assert_eq!(again.0, vec![payload.clone()]);
        if let Ok(request) = Request::parse(&payload) {
            let _ = Key::normalise(request.key);
        }
    }
});

/// Payloads and whether an error occurred, feeding `data` in pieces of `sizes` (cycled).
fn decode(data: &[u8], sizes: &[usize], limits: Limits) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = Decoder::new(limits);
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        i += 1;
        decoder.feed(chunk);
        loop {
            match decoder.decode() {
                Ok(Some(p)) => out.push(p.to_vec()),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}
