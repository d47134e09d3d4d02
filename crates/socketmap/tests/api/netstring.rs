//! Netstring codec: the vectors of postfix-mta-sts-resolver (vectors §I) and properties.

use mta_sts_socketmap::netstring::{Decoder, Limits, NetstringError, decode_all, encode};
use proptest::prelude::*;

fn limits(max: usize) -> Limits {
    Limits::for_payload(max)
}

fn chunks(parts: &[&[u8]], l: Limits) -> Result<Vec<Vec<u8>>, NetstringError> {
    let mut decoder = Decoder::new(l);
    let mut out = Vec::new();
    for part in parts {
        decoder.feed(part);
        while let Some(p) = decoder.decode()? {
            out.push(p.to_vec());
        }
    }
    decoder.finish()?;
    Ok(out)
}

#[test]
fn netstring_encode_vectors() {
    assert_eq!(encode(b""), b"0:,");
    assert_eq!(encode(b"X"), b"1:X,");
    assert_eq!(encode(b"NOTFOUND "), b"9:NOTFOUND ,");
}

#[test]
fn netstring_decode_vectors_with_leading_zeros() {
    let l = Limits::default();
    let v = |s: &[&str]| s.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
    assert_eq!(decode_all(b"00:,", l), Ok(v(&[""])));
    assert_eq!(decode_all(b"01:X,", l), Ok(v(&["X"])));
    assert_eq!(decode_all(b"00:,1:X,", l), Ok(v(&["", "X"])));
    assert_eq!(decode_all(b"01:X,1:X,", l), Ok(v(&["X", "X"])));
    assert_eq!(decode_all(b"", l), Ok(vec![]));
    assert_eq!(decode_all(b"0:,", l), Ok(v(&[""])));
    assert_eq!(
        decode_all(b"17:5:Hello,6:World!,,", l),
        Ok(v(&["5:Hello,6:World!,"]))
    );
    assert_eq!(
        decode_all(b"00017:postfix good.test,", l),
        Ok(v(&["postfix good.test"]))
    );
}

#[test]
fn netstring_bad_length() {
    let l = Limits::default();
    assert!(matches!(
        decode_all(b":,", l),
        Err(NetstringError::BadLength { .. })
    ));
    assert!(matches!(
        decode_all(b"aaa:aaa", l),
        Err(NetstringError::BadLength { .. })
    ));
    // Detected at the first byte, before any more input.
    let mut d = Decoder::new(l);
    d.feed(b"a");
    assert!(matches!(
        d.decode(),
        Err(NetstringError::BadLength { found: b'a' })
    ));
}

#[test]
fn netstring_incomplete() {
    for input in [&b"3"[..], b"3:", b"3:a", b"3:aa", b"3:aaa"] {
        assert!(
            matches!(
                decode_all(input, Limits::default()),
                Err(NetstringError::Incomplete { .. })
            ),
            "{input:?}"
        );
    }
}

#[test]
fn netstring_bad_terminator() {
    for input in [&b"0:_"[..], b"3:aaa_", b"13:test good.loc!"] {
        assert!(
            matches!(
                decode_all(input, Limits::default()),
                Err(NetstringError::BadTerminator { .. })
            ),
            "{input:?}"
        );
    }
}

#[test]
fn netstring_stream_chunking() {
    let l = Limits::default();
    assert_eq!(chunks(&[b"0", b":", b","], l), Ok(vec![b"".to_vec()]));
    assert_eq!(
        chunks(&[b"1:", b"X,3:abc,2:", b"ok,"], l),
        Ok(vec![b"X".to_vec(), b"abc".to_vec(), b"ok".to_vec()])
    );
    assert_eq!(
        chunks(&[b"1:", b"X,9:123", b"456", b"789", b",2:", b"ok,"], l),
        Ok(vec![b"X".to_vec(), b"123456789".to_vec(), b"ok".to_vec()])
    );
}

#[test]
fn netstring_length_limit() {
    assert!(matches!(
        decode_all(b"6:123456,", limits(5)),
        Err(NetstringError::TooLong { .. })
    ));
    for input in [&b"9999:aaa"[..], b"9999:", b"9999"] {
        assert!(
            matches!(
                decode_all(input, limits(1024)),
                Err(NetstringError::TooLong { .. })
            ),
            "{input:?}"
        );
    }
    // Default: 64 KiB accepted, one more byte refused as soon as the length is read.
    let max = vec![b'a'; 65536];
    assert_eq!(decode_all(&encode(&max), Limits::default()), Ok(vec![max]));
    let mut d = Decoder::new(Limits::default());
    d.feed(b"65537:");
    assert!(matches!(d.decode(), Err(NetstringError::TooLong { .. })));
    // Six digits, even zeros, exceed the digit limit.
    assert!(matches!(
        decode_all(b"000001:X,", Limits::default()),
        Err(NetstringError::TooManyDigits { max: 5 })
    ));
}

#[test]
fn netstring_error_is_sticky() {
    let mut d = Decoder::new(Limits::default());
    d.feed(b"1:X!1:Y,");
    assert!(d.decode().is_err());
    d.feed(b"1:Z,");
    assert!(d.decode().is_err());
}

fn feed_split(data: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, bool) {
    let mut d = Decoder::new(Limits::default());
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    for w in cuts.windows(2) {
        d.feed(&data[w[0]..w[1]]);
        loop {
            match d.decode() {
                Ok(Some(p)) => out.push(p.to_vec()),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

proptest! {
    #[test]
    fn netstring_round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
        let wire: Vec<u8> = payloads.iter().flat_map(|p| encode(p)).collect();
        prop_assert_eq!(decode_all(&wire, Limits::default()), Ok(payloads));
    }

    #[test]
    fn netstring_any_split_same_requests(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..100), 1..6),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let wire: Vec<u8> = payloads.iter().flat_map(|p| encode(p)).collect();
        let (out, failed) = feed_split(&wire, &cuts);
        prop_assert!(!failed);
        prop_assert_eq!(out, payloads);
    }

    #[test]
    fn netstring_arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..200),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = feed_split(&data, &[]);
        let split = feed_split(&data, &cuts);
        prop_assert_eq!(whole, split);
    }
}
