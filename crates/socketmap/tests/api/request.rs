//! Socketmap requests, key normalisation (vectors §D, §K rows that need no lookup) and reply
//! shapes on the wire.

use mta_sts_socketmap::{Key, Reply, Request, RequestError, SkipReason};

fn domain(key: &str) -> String {
    match Key::normalise(key) {
        Key::Domain(d) => d.as_str().to_owned(),
        Key::Skip(reason) => panic!("{key:?} skipped: {reason:?}"),
    }
}

#[test]
fn socketmap_key_normalisation_like_the_peer() {
    for key in [
        "good.loc",
        "[good.loc]",
        "[good.loc]:123",
        "good.loc:123",
        "good.loc.",
        "GOOD.LOC.",
        "[Good.Loc]:25",
        " good.loc",
    ] {
        assert_eq!(domain(key), "good.loc", "{key:?}");
    }
    assert_eq!(domain("bücher.example"), "xn--bcher-kva.example");
}

#[test]
fn socketmap_dot_keys_are_notfound_without_lookup() {
    for key in [".good.loc", ".good.loc.", ".no-record.loc", ".example.com"] {
        assert_eq!(
            Key::normalise(key),
            Key::Skip(SkipReason::ParentDomain),
            "{key:?}"
        );
    }
}

#[test]
fn socketmap_address_literals_are_notfound_without_lookup() {
    for key in [
        "[1.2.3.4]",
        "[1.2.3.4]:25",
        "127.0.0.1",
        "127.0.0.1:25",
        "[::1]",
        "::1",
        "[a:bb:ccc::dddd]:123",
        "[ipv6:::1]",
        "[IPv6:2001:db8::1]:25",
    ] {
        assert_eq!(
            Key::normalise(key),
            Key::Skip(SkipReason::AddressLiteral),
            "{key:?}"
        );
    }
}

#[test]
fn socketmap_junk_keys_are_notfound_without_lookup() {
    for key in [
        "",
        " ",
        "good.test x",
        "good.loc..",
        "good.loc:",
        "good.loc:abc",
        "[good.loc",
        "[good.loc]x",
        "a:b:c",
        "under_score.test",
        "-bad.test",
        "a..b",
    ] {
        assert_eq!(
            Key::normalise(key),
            Key::Skip(SkipReason::Invalid),
            "{key:?}"
        );
    }
}

#[test]
fn socketmap_request_parsing() {
    let r = Request::parse(b"postfix good.test").unwrap();
    assert_eq!((r.name, r.key), ("postfix", "good.test"));
    // Double space: the key is trimmed, as the peer does.
    let r = Request::parse(b"postfix  good.test").unwrap();
    assert_eq!(r.key(), Request::parse(b"postfix good.test").unwrap().key());
    // No space: empty key, answered NOTFOUND.
    let r = Request::parse(b"good.test").unwrap();
    assert_eq!((r.name, r.key), ("good.test", ""));
    assert_eq!(r.key(), Key::Skip(SkipReason::Invalid));
    assert!(matches!(
        Request::parse(b"postfix \xff.test"),
        Err(RequestError::NotUtf8 { valid_up_to: 8 })
    ));
}

#[test]
fn socketmap_reply_payloads() {
    assert_eq!(Reply::NotFound.payload(), "NOTFOUND ");
    assert_eq!(Reply::NotFound.encode(), b"9:NOTFOUND ,");
    assert_eq!(
        Reply::Ok("secure match=a.test".into()).payload(),
        "OK secure match=a.test"
    );
    assert_eq!(Reply::Temp("x".into()).payload(), "TEMP x");
    assert_eq!(Reply::Timeout("x".into()).payload(), "TIMEOUT x");
    assert_eq!(Reply::Perm("x\ny".into()).payload(), "PERM x y");
}
