//! Fuzz the DKIM verifier's parsers (RFC 6376 §3.2 tag lists, §3.5 DKIM-Signature, §3.6.1 key
//! records) and the sans-I/O message checks: no input may panic, a parsed signature must
//! satisfy the rules the parser enforces (no l=, From signed, x= after t=), and a message
//! whose header block is the input must be handled whatever its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mta_sts_dkim::{
    KeyRecord, Signature, SignedMessage, parse_tag_list, reporting_domains,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(tags) = parse_tag_list(data) {
        for (i, (name, _)) in tags.iter().enumerate() {
            assert!(name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()));
            assert!(
                tags[..i].iter().all(|(n, _)| n != name),
                "duplicate tag accepted"
            );
        }
    }
    if let Ok(sig) = Signature::parse(data) {
        assert!(sig.signed_headers.iter().any(|h| h == "from"));
        assert!(!sig.signature.is_empty());
        if let (Some(t), Some(x)) = (sig.timestamp, sig.expiration) {
            assert!(x > t);
        }
        assert!(sig.key_name().ends_with(&sig.domain));
    }
    if let Ok(key) = KeyRecord::parse(data) {
        assert!(!key.public_key.is_empty());
    }
    // The input as a whole message, and as the value of a DKIM-Signature field.
    for message in [
        data.to_vec(),
        [b"DKIM-Signature:".as_slice(), data, b"\r\n\r\nbody\r\n"].concat(),
    ] {
        let message = SignedMessage::new(&message);
        let _ = reporting_domains(&message);
        for (index, sig) in message.signatures().into_iter().enumerate() {
            if let Ok(sig) = sig {
                let _ = message.check_body(&sig, 0);
                if let Ok(key) =
                    KeyRecord::parse(b"k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
                {
                    let _ = message.verify(index, &sig, &key);
                }
            }
        }
    }
});
