//! DKIM verification of mailed TLS-RPT reports, sans-I/O (RFC 6376, RFC 8301, RFC 8463,
//! RFC 8460 §3).
//!
//! RFC 8460 §3: "Reports sent via SMTP MUST contain a valid DomainKeys Identified Mail (DKIM)
//! signature by the reporting domain. Reports lacking such a signature MUST be ignored by the
//! recipient. DKIM signatures MUST NOT use the "l=" attribute". This module holds every rule
//! that needs no network: the `DKIM-Signature` tag list ([`Signature::parse`]), the key record
//! ([`KeyRecord::parse`]), canonicalization (shared with the signer in [`crate::dkim`]), the
//! body hash, the signature check with ring, alignment with the reporting domain
//! ([`aligned`]) and the verdict over several signatures ([`Verdict`]). The key lookup
//! (`<s>._domainkey.<d>` TXT) is in [`crate::dkim_dns`].
//!
//! Accepted: `a=rsa-sha256` (RSA keys of 1024 to 8192 bits, RFC 8301 §3.2) and
//! `a=ed25519-sha256` (RFC 8463); `c=simple|relaxed` for header and body. Refused:
//! `a=rsa-sha1` (RFC 8301 §3.1: not valid), any `l=` (RFC 8460 §3), `h=` without `from`
//! (RFC 6376 §5.4), an `i=` outside `d=`, expired `x=`, duplicate tags (RFC 6376 §3.2).
//!
//! Messages read from files (Maildir, mbox) usually have bare LF line ends; they are turned
//! into CRLF before hashing, as the signer saw them on the wire (RFC 5322 §2.1).
//!
//! # Which domain must sign: alignment
//!
//! "By the reporting domain" is read as: the signing domain `d=` must be *aligned* with the
//! reporting domain, which is the domain in the `TLS-Report-Submitter` header (RFC 8460 §5.3:
//! MUST be present, and equal to the domain of the report's `contact-info`), or, for mail
//! lacking that header, the domain of the `From:` address. Aligned means, like DMARC relaxed
//! alignment (RFC 7489 §3.1.1) without the public suffix list: `d=` equals the reporting
//! domain, or one is a subdomain of the other (`d=example.com` signs for submitter
//! `mail.example.com` and vice versa), and the shorter of the two has at least two labels (a
//! top-level domain never aligns). Publishing a key under a parent domain needs control of
//! that zone, which already controls the names below it; a subdomain signer is trusted the way
//! DMARC trusts it, so a domain that delegates subdomains to third parties should know that
//! they can sign its reports. With several `TLS-Report-Submitter` headers, `d=` must be
//! aligned with each. With several signatures, one valid aligned signature is enough.
//!
//! # mail-auth
//!
//! The `mail-auth` crate (Stalwart) was checked against this workspace with `cargo tree`:
//! 0.15 offers aws-lc-rs or RustCrypto back ends only and needs mail-parser 1.0 (Rust 1.98,
//! newer than this project's toolchain); 0.14 dropped the ring back end; 0.13 still had one
//! (with hickory-resolver 0.26) but is a release line no longer developed, and its key record
//! keeps the service type (`s=`) crate-private, so the RFC 8460 `s=tlsrpt` rule would need a
//! second lookup and parser anyway. Hence this small verifier, on ring, reusing the signer's
//! canonicalization.

use std::borrow::Cow;

use ring::signature::{ED25519, RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, UnparsedPublicKey};

use crate::dkim::{
    RawField, raw_fields, relaxed_body, relaxed_header_bytes, simple_body, simple_header,
    split_message,
};

/// At most this many `DKIM-Signature` fields of one message are evaluated (from the top);
/// more are ignored, so a message cannot make the importer do unbounded DNS work.
pub const MAX_SIGNATURES: usize = 8;

/// A signing algorithm this verifier accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `rsa-sha256` (RFC 6376 §3.3.1).
    RsaSha256,
    /// `ed25519-sha256` (RFC 8463 §3).
    Ed25519Sha256,
}

impl Algorithm {
    /// The `a=` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

/// A canonicalization algorithm (RFC 6376 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonicalization {
    /// `simple`: almost unchanged.
    Simple,
    /// `relaxed`: whitespace and header name case normalised.
    Relaxed,
}

impl Canonicalization {
    /// The `c=` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Canonicalization::Simple => "simple",
            Canonicalization::Relaxed => "relaxed",
        }
    }
}

/// Why a `DKIM-Signature` field is unusable (RFC 6376 §3.5, §6.1.1; RFC 8301; RFC 8460 §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The tag list does not follow RFC 6376 §3.2.
    #[error("malformed tag list: {0}")]
    Syntax(String),
    /// A tag occurs twice (RFC 6376 §3.2: the whole tag list is then invalid).
    #[error("the tag {0}= occurs more than once")]
    DuplicateTag(String),
    /// A required tag is missing.
    #[error("the required tag {0}= is missing")]
    MissingTag(&'static str),
    /// `v=` is not `1`.
    #[error("unsupported version v={0}")]
    Version(String),
    /// `a=rsa-sha1`: RFC 8301 §3.1 says it MUST NOT be used for signing or verifying.
    #[error("a=rsa-sha1 is not a valid algorithm (RFC 8301 §3.1)")]
    RsaSha1,
    /// Any other unknown algorithm.
    #[error("unsupported algorithm a={0}")]
    Algorithm(String),
    /// An unknown canonicalization.
    #[error("unsupported canonicalization c={0}")]
    Canonicalization(String),
    /// `l=` is present: RFC 8460 §3 forbids it in report signatures.
    #[error("the signature has l= (body length limit), which RFC 8460 §3 forbids")]
    BodyLength,
    /// `h=` does not list `from` (RFC 6376 §5.4, §6.1.1).
    #[error("h= does not include From (RFC 6376 §6.1.1)")]
    FromNotSigned,
    /// `i=` is not `d=` or a subdomain of it (RFC 6376 §6.1.1).
    #[error("i={0} is not in the signing domain")]
    Identity(String),
    /// `q=` does not offer `dns/txt`.
    #[error("q={0} does not include dns/txt")]
    QueryMethod(String),
    /// `b=` or `bh=` is not base64.
    #[error("{0}= is not valid base64")]
    Base64(&'static str),
    /// `t=` or `x=` is not a number.
    #[error("{0}= is not a number")]
    Number(&'static str),
    /// `x=` is not later than `t=` (RFC 6376 §3.5).
    #[error("x= is not later than t=")]
    ExpiresBeforeSigned,
    /// `d=` or `s=` is not a usable DNS name.
    #[error("{0:?} is not a valid domain or selector")]
    Name(String),
}

/// A parsed `DKIM-Signature` field (RFC 6376 §3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// `a=`.
    pub algorithm: Algorithm,
    /// `c=` header part.
    pub header_canonicalization: Canonicalization,
    /// `c=` body part.
    pub body_canonicalization: Canonicalization,
    /// `d=`, lower case, without a trailing dot.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `h=`, lower case.
    pub signed_headers: Vec<String>,
    /// `bh=`, decoded.
    pub body_hash: Vec<u8>,
    /// `b=`, decoded.
    pub signature: Vec<u8>,
    /// `i=`, if present.
    pub identity: Option<String>,
    /// `t=`, if present.
    pub timestamp: Option<u64>,
    /// `x=`, if present.
    pub expiration: Option<u64>,
}

/// Splits an RFC 6376 §3.2 tag list into `(name, value)` pairs, values without surrounding
/// whitespace (internal folding whitespace is kept). Empty segments (`;;`, a trailing `;`)
/// are skipped; a duplicate name makes the whole list invalid.
///
/// ```
/// use mta_sts_report_store::dkim_verify::parse_tag_list;
/// let tags = parse_tag_list(b"v=1; a=rsa-sha256;\r\n\tb=ab\r\n cd ;").unwrap();
/// assert_eq!(tags, [("v", "1"), ("a", "rsa-sha256"), ("b", "ab\r\n cd")]);
/// assert!(parse_tag_list(b"v=1; v=1").is_err());
/// ```
pub fn parse_tag_list(text: &[u8]) -> Result<Vec<(&str, &str)>, SignatureError> {
    let text = std::str::from_utf8(text).map_err(|_| SignatureError::Syntax("not ASCII".into()))?;
    let mut out: Vec<(&str, &str)> = Vec::new();
    for spec in text.split(';') {
        let spec = spec.trim_matches(is_fws);
        if spec.is_empty() {
            continue;
        }
        let Some((name, value)) = spec.split_once('=') else {
            return Err(SignatureError::Syntax(format!(
                "{:?} is not tag=value",
                truncate(spec)
            )));
        };
        let name = name.trim_matches(is_fws);
        let value = value.trim_matches(is_fws);
        // tag-name = ALPHA *ALNUMPUNC
        let mut chars = name.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SignatureError::Syntax(format!(
                "{:?} is not a tag name",
                truncate(name)
            )));
        }
        // tag-value: VALCHAR (%x21-3A / %x3C-7E) separated by folding whitespace.
        if !value
            .bytes()
            .all(|b| matches!(b, 0x21..=0x3A | 0x3C..=0x7E) || is_fws(char::from(b)))
        {
            return Err(SignatureError::Syntax(format!(
                "the value of {name}= has characters outside the tag-value grammar"
            )));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(SignatureError::DuplicateTag(name.to_owned()));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn is_fws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn strip_fws(value: &str) -> String {
    value.chars().filter(|c| !is_fws(*c)).collect()
}

impl Signature {
    /// Parses the value of a `DKIM-Signature` field (after the colon).
    pub fn parse(value: &[u8]) -> Result<Signature, SignatureError> {
        let tags = parse_tag_list(value)?;
        let get = |name: &str| tags.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        let required = |name: &'static str| get(name).ok_or(SignatureError::MissingTag(name));
        // RFC 6376 §3.5: v= MUST be 1.
        let version = required("v")?;
        if version != "1" {
            return Err(SignatureError::Version(truncate(version)));
        }
        let algorithm = match strip_fws(required("a")?).to_ascii_lowercase().as_str() {
            "rsa-sha256" => Algorithm::RsaSha256,
            "ed25519-sha256" => Algorithm::Ed25519Sha256,
            // RFC 8301 §3.1: rsa-sha1 MUST NOT be used for signing or verifying.
            "rsa-sha1" => return Err(SignatureError::RsaSha1),
            other => return Err(SignatureError::Algorithm(truncate(other))),
        };
        // RFC 8460 §3: DKIM signatures MUST NOT use the "l=" attribute.
        if get("l").is_some() {
            return Err(SignatureError::BodyLength);
        }
        let signature = base64_decode(required("b")?).ok_or(SignatureError::Base64("b"))?;
        let body_hash = base64_decode(required("bh")?).ok_or(SignatureError::Base64("bh"))?;
        if signature.is_empty() {
            return Err(SignatureError::Base64("b"));
        }
        // RFC 6376 §3.5 c=: "simple" when absent; a header-only value means simple body.
        let (header_canonicalization, body_canonicalization) = match get("c") {
            None => (Canonicalization::Simple, Canonicalization::Simple),
            Some(c) => {
                let c = strip_fws(c).to_ascii_lowercase();
                let (h, b) = c.split_once('/').unwrap_or((c.as_str(), "simple"));
                let parse = |s: &str| match s {
                    "simple" => Ok(Canonicalization::Simple),
                    "relaxed" => Ok(Canonicalization::Relaxed),
                    _ => Err(SignatureError::Canonicalization(truncate(&c))),
                };
                (parse(h)?, parse(b)?)
            }
        };
        let domain = normalize_name(&strip_fws(required("d")?));
        let selector = strip_fws(required("s")?).to_ascii_lowercase();
        if !is_dns_name(&domain) {
            return Err(SignatureError::Name(truncate(&domain)));
        }
        if !is_dns_name(&selector) {
            return Err(SignatureError::Name(truncate(&selector)));
        }
        let signed_headers: Vec<String> = strip_fws(required("h")?)
            .split(':')
            .filter(|h| !h.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        // RFC 6376 §6.1.1: a signature whose h= lacks From MUST be ignored.
        if !signed_headers.iter().any(|h| h == "from") {
            return Err(SignatureError::FromNotSigned);
        }
        // RFC 6376 §6.1.1: the domain of i= must be d= or a subdomain of it.
        let identity = get("i").map(strip_fws);
        if let Some(i) = &identity {
            let at = i.rsplit_once('@').map_or(i.as_str(), |(_, d)| d);
            let at = normalize_name(at);
            if !(at == domain || at.ends_with(&format!(".{domain}"))) {
                return Err(SignatureError::Identity(truncate(i)));
            }
        }
        // RFC 6376 §3.5 q=: only dns/txt is defined.
        if let Some(q) = get("q")
            && !strip_fws(q)
                .split(':')
                .any(|m| m.eq_ignore_ascii_case("dns/txt"))
        {
            return Err(SignatureError::QueryMethod(truncate(q)));
        }
        let number = |name: &'static str| -> Result<Option<u64>, SignatureError> {
            match get(name) {
                None => Ok(None),
                Some(v) => {
                    let v = strip_fws(v);
                    // RFC 6376 §3.5: at most 12 digits ("sig-t-tag = ... 1*12DIGIT").
                    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(SignatureError::Number(name));
                    }
                    v.parse()
                        .map(Some)
                        .map_err(|_| SignatureError::Number(name))
                }
            }
        };
        let timestamp = number("t")?;
        let expiration = number("x")?;
        // RFC 6376 §3.5 x=: "the value of the x= tag MUST be greater than the value of the
        // t= tag if both are present".
        if let (Some(t), Some(x)) = (timestamp, expiration)
            && x <= t
        {
            return Err(SignatureError::ExpiresBeforeSigned);
        }
        Ok(Signature {
            algorithm,
            header_canonicalization,
            body_canonicalization,
            domain,
            selector,
            signed_headers,
            body_hash,
            signature,
            identity,
            timestamp,
            expiration,
        })
    }

    /// The DNS name of the key record: `<s>._domainkey.<d>` (RFC 6376 §3.6.2.1).
    pub fn key_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }
}

/// Lower case, one trailing dot removed.
fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// LDH (and `_`) labels of 1–63 octets, at most 253 in all: nothing else is ever queried.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A key type (`k=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `rsa` (the default).
    Rsa,
    /// `ed25519` (RFC 8463 §4).
    Ed25519,
}

/// Why a key record is unusable (RFC 6376 §3.6.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The tag list is malformed.
    #[error("malformed key record: {0}")]
    Syntax(SignatureError),
    /// `v=` is present but not `DKIM1` as the first tag.
    #[error("the key record's v= is not DKIM1 (or not the first tag)")]
    Version,
    /// `p=` is missing.
    #[error("the key record has no p=")]
    MissingKey,
    /// `p=` is empty: the key was revoked (RFC 6376 §3.6.1).
    #[error("the key was revoked (empty p=)")]
    Revoked,
    /// `p=` is not base64, or not a key of the declared type.
    #[error("p= is not a valid {0} public key")]
    BadKey(&'static str),
    /// Unknown `k=`.
    #[error("unsupported key type k={0}")]
    KeyType(String),
    /// `h=` of the key does not allow SHA-256.
    #[error("the key's h= does not allow sha256")]
    Hash,
}

/// A parsed DKIM key record (RFC 6376 §3.6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `k=`.
    pub key_type: KeyType,
    /// RSA: the PKCS#1 `RSAPublicKey` DER (unwrapped from the SubjectPublicKeyInfo of `p=`);
    /// Ed25519: the 32-byte public key.
    pub public_key: Vec<u8>,
    /// RSA modulus size in bits (0 for Ed25519).
    pub rsa_bits: usize,
    /// `s=` as written (lower case), `None` when absent (RFC 6376 default `*`).
    pub services: Option<Vec<String>>,
    /// `t=s`: `i=` must not be a subdomain of `d=`.
    pub strict_identity: bool,
}

impl KeyRecord {
    /// Parses a key record (the TXT RR's strings already concatenated, RFC 6376 §3.6.2.2).
    pub fn parse(txt: &[u8]) -> Result<KeyRecord, KeyError> {
        let tags = parse_tag_list(txt).map_err(KeyError::Syntax)?;
        let get = |name: &str| tags.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        // RFC 6376 §3.6.1 v=: if present, MUST be the first tag and be "DKIM1".
        if let Some(pos) = tags.iter().position(|(n, _)| *n == "v")
            && (pos != 0 || tags[pos].1 != "DKIM1")
        {
            return Err(KeyError::Version);
        }
        if let Some(h) = get("h")
            && !strip_fws(h)
                .split(':')
                .any(|a| a.eq_ignore_ascii_case("sha256"))
        {
            return Err(KeyError::Hash);
        }
        let key_type = match get("k").map(|k| strip_fws(k).to_ascii_lowercase()) {
            None => KeyType::Rsa,
            Some(k) if k == "rsa" => KeyType::Rsa,
            Some(k) if k == "ed25519" => KeyType::Ed25519,
            Some(k) => return Err(KeyError::KeyType(truncate(&k))),
        };
        let p = get("p").ok_or(KeyError::MissingKey)?;
        if strip_fws(p).is_empty() {
            return Err(KeyError::Revoked);
        }
        let raw = base64_decode(p).ok_or(KeyError::BadKey("base64"))?;
        let (public_key, rsa_bits) = match key_type {
            KeyType::Ed25519 => {
                // RFC 8463 §4: the raw 32-byte public key.
                if raw.len() != 32 {
                    return Err(KeyError::BadKey("Ed25519"));
                }
                (raw, 0)
            }
            KeyType::Rsa => {
                // RFC 6376 §3.6.1: p= is a SubjectPublicKeyInfo (RFC 5280 §4.1); a bare
                // PKCS#1 RSAPublicKey is accepted too.
                let rsa = spki_rsa_public_key(&raw).unwrap_or(&raw);
                let bits = rsa_modulus_bits(rsa).ok_or(KeyError::BadKey("RSA"))?;
                (rsa.to_vec(), bits)
            }
        };
        let services = get("s").map(|s| {
            strip_fws(s)
                .split(':')
                .filter(|x| !x.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        });
        let strict_identity = get("t").is_some_and(|t| strip_fws(t).split(':').any(|f| f == "s"));
        Ok(KeyRecord {
            key_type,
            public_key,
            rsa_bits,
            services,
            strict_identity,
        })
    }

    /// Whether the record declares the TLS-RPT service: `s=` lists `tlsrpt` or `*`
    /// (RFC 8460 §3: "SHOULD contain the appropriate service type declaration, s=tlsrpt").
    /// A record without `s=` does not declare it.
    pub fn declares_tlsrpt(&self) -> bool {
        self.services
            .as_ref()
            .is_some_and(|s| s.iter().any(|x| x == "tlsrpt" || x == "*"))
    }

    /// Whether the record may be used for TLS-RPT mail at all: RFC 6376 §3.6.1 says a
    /// verifier MUST ignore a record whose `s=` does not list its service; mail signatures are
    /// verified by `email` verifiers too, so `email`, `tlsrpt` and `*` are all accepted here.
    pub fn usable_for_mail(&self) -> bool {
        self.services
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == "tlsrpt" || x == "*" || x == "email"))
    }
}

/// A minimal DER reader: (tag, content, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &b in &rest[..n] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];

/// The `RSAPublicKey` inside an RSA SubjectPublicKeyInfo.
fn spki_rsa_public_key(spki: &[u8]) -> Option<&[u8]> {
    let (0x30, body, _) = der(spki)? else {
        return None;
    };
    let (0x30, algorithm, rest) = der(body)? else {
        return None;
    };
    let (0x06, oid, _) = der(algorithm)? else {
        return None;
    };
    if oid != RSA_ENCRYPTION {
        return None;
    }
    let (0x03, bits, _) = der(rest)? else {
        return None;
    };
    match bits.split_first() {
        Some((0, key)) => Some(key),
        _ => None,
    }
}

/// The modulus size of a PKCS#1 `RSAPublicKey`, if it is one.
fn rsa_modulus_bits(rsa: &[u8]) -> Option<usize> {
    let (0x30, body, _) = der(rsa)? else {
        return None;
    };
    let (0x02, n, rest) = der(body)? else {
        return None;
    };
    let (0x02, _e, _) = der(rest)? else {
        return None;
    };
    let n: &[u8] = {
        let skip = n.iter().take_while(|b| **b == 0).count();
        &n[skip..]
    };
    let first = *n.first()?;
    Some((n.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

/// Base64 (RFC 4648 §4) with folding whitespace ignored (RFC 6376 §3.5 b=, bh=, p=).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    let mut padding = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if padding > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if padding > 2 || bits >= 6 {
        return None;
    }
    Some(out)
}

/// Why an otherwise well-formed signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// `bh=` does not match the body (RFC 6376 §6.1.3).
    #[error("body hash mismatch (the body was changed after signing)")]
    BodyHashMismatch,
    /// The signature over the headers does not verify (RFC 6376 §6.1.3).
    #[error(
        "the signature does not verify (a signed header was changed, or the key does not match)"
    )]
    BadSignature,
    /// `x=` is in the past (RFC 6376 §3.5).
    #[error("the signature expired (x={0})")]
    Expired(u64),
    /// The key record is unusable.
    #[error("{0}")]
    Key(KeyError),
    /// `k=` of the key does not fit `a=` of the signature.
    #[error("the key is k={key} but the signature is a={algorithm}")]
    KeyTypeMismatch {
        /// `k=`.
        key: &'static str,
        /// `a=`.
        algorithm: &'static str,
    },
    /// RSA key shorter than 1024 bits (RFC 8301 §3.2) or longer than 8192.
    #[error("the RSA key has {0} bits; RFC 8301 §3.2 requires 1024 to 4096 (8192 accepted)")]
    KeySize(usize),
    /// The key record's `s=` excludes mail.
    #[error("the key record's s= does not include email, tlsrpt or *")]
    Service,
    /// `t=s` and `i=` is a subdomain of `d=` (RFC 6376 §3.6.1).
    #[error("the key has t=s but i= is a subdomain of d=")]
    StrictIdentity,
}

/// A message prepared for verification: line ends made CRLF, headers split.
#[derive(Debug, Clone)]
pub struct SignedMessage<'a> {
    bytes: Cow<'a, [u8]>,
}

impl<'a> SignedMessage<'a> {
    /// Wraps `message`; bare LF line ends (files in a Maildir or mbox) become CRLF.
    pub fn new(message: &'a [u8]) -> Self {
        let bytes = if has_bare_lf(message) {
            let mut out = Vec::with_capacity(message.len() + message.len() / 32);
            let mut prev = 0u8;
            for &b in message {
                if b == b'\n' && prev != b'\r' {
                    out.push(b'\r');
                }
                out.push(b);
                prev = b;
            }
            Cow::Owned(out)
        } else {
            Cow::Borrowed(message)
        };
        SignedMessage { bytes }
    }

    fn fields(&self) -> Vec<RawField<'_>> {
        raw_fields(split_message(&self.bytes).0)
    }

    /// The unfolded, trimmed values of every field called `name`, top to bottom.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.fields()
            .iter()
            .filter(|f| f.is(name))
            .map(|f| {
                let v = String::from_utf8_lossy(f.value).replace("\r\n", "");
                v.trim().to_owned()
            })
            .collect()
    }

    /// The `DKIM-Signature` fields (at most [`MAX_SIGNATURES`], from the top), each parsed.
    pub fn signatures(&self) -> Vec<Result<Signature, SignatureError>> {
        self.fields()
            .iter()
            .filter(|f| f.is("dkim-signature"))
            .take(MAX_SIGNATURES)
            .map(|f| Signature::parse(f.value))
            .collect()
    }

    /// The checks that need no key: expiry (`x=` against `now`, Unix seconds) and the body
    /// hash (RFC 6376 §6.1.3 step 1–2).
    pub fn check_body(&self, sig: &Signature, now: u64) -> Result<(), VerifyError> {
        if let Some(x) = sig.expiration
            && now > x
        {
            return Err(VerifyError::Expired(x));
        }
        let body = split_message(&self.bytes).1;
        let canonical = match sig.body_canonicalization {
            Canonicalization::Simple => simple_body(body),
            Canonicalization::Relaxed => relaxed_body(body),
        };
        let hash = ring::digest::digest(&ring::digest::SHA256, &canonical);
        if hash.as_ref() != sig.body_hash.as_slice() {
            return Err(VerifyError::BodyHashMismatch);
        }
        Ok(())
    }

    /// Verifies the header signature of `sig` (the `index`-th signature of
    /// [`SignedMessage::signatures`]) with `key` (RFC 6376 §3.7, §6.1.3).
    pub fn verify(
        &self,
        index: usize,
        sig: &Signature,
        key: &KeyRecord,
    ) -> Result<(), VerifyError> {
        match (key.key_type, sig.algorithm) {
            (KeyType::Rsa, Algorithm::RsaSha256) | (KeyType::Ed25519, Algorithm::Ed25519Sha256) => {
            }
            (k, a) => {
                return Err(VerifyError::KeyTypeMismatch {
                    key: match k {
                        KeyType::Rsa => "rsa",
                        KeyType::Ed25519 => "ed25519",
                    },
                    algorithm: a.as_str(),
                });
            }
        }
        if !key.usable_for_mail() {
            return Err(VerifyError::Service);
        }
        if key.strict_identity
            && let Some(i) = &sig.identity
        {
            let at = normalize_name(i.rsplit_once('@').map_or(i.as_str(), |(_, d)| d));
            if at != sig.domain {
                return Err(VerifyError::StrictIdentity);
            }
        }
        // RFC 8301 §3.2: keys smaller than 1024 bits MUST NOT be accepted.
        if key.key_type == KeyType::Rsa && !(1024..=8192).contains(&key.rsa_bits) {
            return Err(VerifyError::KeySize(key.rsa_bits));
        }
        let fields = self.fields();
        let Some(own) = fields.iter().filter(|f| f.is("dkim-signature")).nth(index) else {
            return Err(VerifyError::BadSignature);
        };
        let canon = |f: &RawField<'_>| match sig.header_canonicalization {
            Canonicalization::Simple => simple_header(f.raw),
            Canonicalization::Relaxed => relaxed_header_bytes(f.name, f.value),
        };
        // RFC 6376 §5.4.2: each name in h= takes the next instance from the bottom; a name
        // with no instance left contributes nothing.
        let mut data = Vec::new();
        let mut used: Vec<(&str, usize)> = Vec::new();
        for name in &sig.signed_headers {
            let count = match used.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c
                }
                None => {
                    used.push((name, 1));
                    1
                }
            };
            if let Some(f) = fields.iter().rev().filter(|f| f.is(name)).nth(count - 1) {
                data.extend_from_slice(&canon(f));
            }
        }
        // RFC 6376 §3.7: the signature field itself, b= emptied, without its final CRLF.
        let own = RawField {
            name: own.name,
            value: &strip_b_value(own.value),
            raw: &[],
        };
        let stripped_raw;
        let mut own_canon = match sig.header_canonicalization {
            Canonicalization::Simple => {
                stripped_raw = [own.name, b":", own.value].concat();
                simple_header(&stripped_raw)
            }
            Canonicalization::Relaxed => relaxed_header_bytes(own.name, own.value),
        };
        own_canon.truncate(own_canon.len() - 2);
        data.extend_from_slice(&own_canon);
        let ok = match sig.algorithm {
            Algorithm::RsaSha256 => UnparsedPublicKey::new(
                &RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                &key.public_key,
            )
            .verify(&data, &sig.signature)
            .is_ok(),
            Algorithm::Ed25519Sha256 => {
                // RFC 8463 §3: Ed25519 over the SHA-256 hash of the data.
                let hash = ring::digest::digest(&ring::digest::SHA256, &data);
                UnparsedPublicKey::new(&ED25519, &key.public_key)
                    .verify(hash.as_ref(), &sig.signature)
                    .is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(VerifyError::BadSignature)
        }
    }
}

fn has_bare_lf(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
}

/// The field value with the value of its `b=` tag removed, surrounding whitespace included
/// (RFC 6376 §3.5 b=, §3.7); `bh=` is left alone.
fn strip_b_value(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for (i, spec) in value.split(|b| *b == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let name_end = spec.iter().position(|b| *b == b'=');
        let is_b = name_end.is_some_and(|e| {
            spec[..e]
                .iter()
                .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .eq(b"b".iter())
        });
        match (is_b, name_end) {
            (true, Some(e)) => out.extend_from_slice(&spec[..=e]),
            _ => out.extend_from_slice(spec),
        }
    }
    out
}

/// Whether signing domain `d` is aligned with reporting domain `reporting` (see the module
/// documentation): equal, or one a subdomain of the other, the shorter having two or more
/// labels. Both are compared in lower case without a trailing dot.
///
/// ```
/// use mta_sts_report_store::dkim_verify::aligned;
/// assert!(aligned("example.com", "mail.example.com"));
/// assert!(aligned("mail.example.com", "example.com"));
/// assert!(!aligned("com", "example.com"));
/// assert!(!aligned("example.net", "example.com"));
/// assert!(!aligned("badexample.com", "example.com"));
/// ```
pub fn aligned(d: &str, reporting: &str) -> bool {
    let d = normalize_name(d);
    let r = normalize_name(reporting);
    if d.is_empty() || r.is_empty() {
        return false;
    }
    let (short, long) = if d.len() <= r.len() {
        (&d, &r)
    } else {
        (&r, &d)
    };
    short.contains('.') && (long == short || long.ends_with(&format!(".{short}")))
}

/// The domain of the first address in a `From:` value (`Name <user@domain>` or
/// `user@domain`), lower case.
pub fn address_domain(value: &str) -> Option<String> {
    let addr = match (value.rfind('<'), value.rfind('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value.split(',').next().unwrap_or(value),
    };
    let (_, domain) = addr.trim().rsplit_once('@')?;
    let domain = normalize_name(domain.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()));
    is_dns_name(&domain).then_some(domain)
}

/// The reporting domain(s) of a report message: every `TLS-Report-Submitter` value
/// (RFC 8460 §5.3), else the domain of `From:`; empty when there is neither.
pub fn reporting_domains(message: &SignedMessage<'_>) -> Vec<String> {
    let submitters: Vec<String> = message
        .header_values("tls-report-submitter")
        .iter()
        .map(|s| normalize_name(s))
        .filter(|s| !s.is_empty())
        .collect();
    if !submitters.is_empty() {
        return submitters;
    }
    message
        .header_values("from")
        .first()
        .and_then(|f| address_domain(f))
        .into_iter()
        .collect()
}

/// Why a signature (or a whole message) does not count as "a valid DKIM signature by the
/// reporting domain" (RFC 8460 §3). [`DkimRefusal::code`] is a stable kebab-case code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DkimRefusal {
    /// No `DKIM-Signature` field.
    #[error(
        "dkim-missing: the message has no DKIM signature (RFC 8460 §3: such reports are ignored)"
    )]
    Missing,
    /// Neither `TLS-Report-Submitter` nor a `From:` domain.
    #[error(
        "dkim-no-reporting-domain: no TLS-Report-Submitter header or From: domain to match the signing domain against"
    )]
    NoReportingDomain,
    /// Signed, but not by (a domain aligned with) the reporting domain.
    #[error(
        "dkim-not-aligned: signed by d={signing}, which is not the reporting domain {reporting} (RFC 8460 §3)"
    )]
    NotAligned {
        /// `d=`.
        signing: String,
        /// The reporting domain(s), comma-separated.
        reporting: String,
    },
    /// The signature is malformed, forbidden (`l=`, `rsa-sha1`) or does not verify.
    #[error("dkim-invalid: {reason}{}", signer.as_deref().map(|s| format!(" ({s})")).unwrap_or_default())]
    Invalid {
        /// `d=… s=…` when known.
        signer: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// NXDOMAIN or NODATA at `<s>._domainkey.<d>`.
    #[error("dkim-key-not-found: no DKIM key record at {name}")]
    KeyNotFound {
        /// The name queried.
        name: String,
    },
    /// The key lookup failed (SERVFAIL, timeout, …): nothing is known; try again later.
    #[error(
        "dkim-temporary: the DNS lookup of the DKIM key {name} failed ({message}); try the import again later"
    )]
    Temporary {
        /// The name queried.
        name: String,
        /// The resolver's message.
        message: String,
    },
    /// A valid aligned signature whose key lacks `s=tlsrpt`, refused on request
    /// (RFC 8460 §3 MAY).
    #[error(
        "dkim-no-tlsrpt-service: the key at {name} does not declare s=tlsrpt (RFC 8460 §3), which was required"
    )]
    ServiceNotDeclared {
        /// The key's DNS name.
        name: String,
    },
}

impl DkimRefusal {
    /// The stable code: `dkim-missing`, `dkim-no-reporting-domain`, `dkim-not-aligned`,
    /// `dkim-invalid`, `dkim-key-not-found`, `dkim-temporary`, `dkim-no-tlsrpt-service`.
    pub fn code(&self) -> &'static str {
        match self {
            DkimRefusal::Missing => "dkim-missing",
            DkimRefusal::NoReportingDomain => "dkim-no-reporting-domain",
            DkimRefusal::NotAligned { .. } => "dkim-not-aligned",
            DkimRefusal::Invalid { .. } => "dkim-invalid",
            DkimRefusal::KeyNotFound { .. } => "dkim-key-not-found",
            DkimRefusal::Temporary { .. } => "dkim-temporary",
            DkimRefusal::ServiceNotDeclared { .. } => "dkim-no-tlsrpt-service",
        }
    }

    /// Whether trying again later may succeed (a DNS failure, not a verdict on the message).
    pub fn is_temporary(&self) -> bool {
        matches!(self, DkimRefusal::Temporary { .. })
    }

    /// Which refusal to report when several signatures failed: a temporary failure first (a
    /// retry may pass), then the most specific verdict on an aligned signature.
    fn rank(&self) -> u8 {
        match self {
            DkimRefusal::Temporary { .. } => 0,
            DkimRefusal::ServiceNotDeclared { .. } => 1,
            DkimRefusal::Invalid { .. } | DkimRefusal::KeyNotFound { .. } => 2,
            DkimRefusal::NotAligned { .. } => 3,
            DkimRefusal::NoReportingDomain => 4,
            DkimRefusal::Missing => 5,
        }
    }
}

/// A valid, aligned signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// `d=`.
    pub domain: String,
    /// `s=`.
    pub selector: String,
    /// `a=`.
    pub algorithm: Algorithm,
    /// Whether the key declares `s=tlsrpt` (or `*`).
    pub declares_tlsrpt: bool,
}

/// The outcome for a whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// At least one valid signature aligned with the reporting domain.
    Pass(Pass),
    /// None: the report must be ignored (RFC 8460 §3).
    Refused(DkimRefusal),
}

impl Verdict {
    /// Combines the outcomes of every signature of a message: any pass wins (one whose key
    /// declares `s=tlsrpt` preferred); otherwise the most useful refusal
    /// ([`DkimRefusal::Missing`] when there was no signature).
    pub fn from_outcomes(outcomes: Vec<Result<Pass, DkimRefusal>>) -> Verdict {
        let mut best_pass: Option<Pass> = None;
        let mut best_refusal: Option<DkimRefusal> = None;
        for outcome in outcomes {
            match outcome {
                Ok(p) => {
                    if best_pass
                        .as_ref()
                        .is_none_or(|b| !b.declares_tlsrpt && p.declares_tlsrpt)
                    {
                        best_pass = Some(p);
                    }
                }
                Err(r) => {
                    if best_refusal.as_ref().is_none_or(|b| r.rank() < b.rank()) {
                        best_refusal = Some(r);
                    }
                }
            }
        }
        match (best_pass, best_refusal) {
            (Some(p), _) => Verdict::Pass(p),
            (None, Some(r)) => Verdict::Refused(r),
            (None, None) => Verdict::Refused(DkimRefusal::Missing),
        }
    }
}

/// The label of a signature in refusals: `d=… s=…`.
pub fn signer_label(sig: &Signature) -> String {
    format!("d={} s={}", sig.domain, sig.selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6376_3_2_tag_list() {
        assert_eq!(
            parse_tag_list(b" a = b ; c=d e;").unwrap(),
            [("a", "b"), ("c", "d e")]
        );
        assert!(parse_tag_list(b"1a=b").is_err());
        assert!(parse_tag_list(b"a").is_err());
        assert!(parse_tag_list(b"a=\xff").is_err());
        assert!(matches!(
            parse_tag_list(b"a=1;a=2"),
            Err(SignatureError::DuplicateTag(_))
        ));
    }

    #[test]
    fn rfc6376_3_5_signature_tags() {
        let base = "v=1; a=rsa-sha256; d=Example.COM.; s=sel; h=From:To; bh=AAAA; b=AAAA";
        let sig = Signature::parse(base.as_bytes()).unwrap();
        assert_eq!(sig.domain, "example.com");
        assert_eq!(sig.header_canonicalization, Canonicalization::Simple);
        assert_eq!(sig.key_name(), "sel._domainkey.example.com");
        let with = |extra: &str| Signature::parse(format!("{base}; {extra}").as_bytes());
        assert_eq!(with("l=10"), Err(SignatureError::BodyLength));
        assert_eq!(
            with("c=relaxed").unwrap().body_canonicalization,
            Canonicalization::Simple
        );
        assert!(matches!(
            with("c=fancy"),
            Err(SignatureError::Canonicalization(_))
        ));
        assert_eq!(
            with("i=@other.com"),
            Err(SignatureError::Identity("@other.com".into()))
        );
        assert!(with("i=x@mail.example.com").is_ok());
        assert_eq!(with("t=10; x=5"), Err(SignatureError::ExpiresBeforeSigned));
        assert!(matches!(
            with("q=http"),
            Err(SignatureError::QueryMethod(_))
        ));
        assert_eq!(
            Signature::parse(base.replace("rsa-sha256", "rsa-sha1").as_bytes()),
            Err(SignatureError::RsaSha1)
        );
        assert_eq!(
            Signature::parse(base.replace("From:To", "To").as_bytes()),
            Err(SignatureError::FromNotSigned)
        );
        assert!(matches!(
            Signature::parse(base.replace("s=sel", "s=a!b").as_bytes()),
            Err(SignatureError::Name(_)) | Err(SignatureError::Syntax(_))
        ));
    }

    #[test]
    fn rfc6376_3_6_1_key_record() {
        let k = KeyRecord::parse(
            b"v=DKIM1; k=ed25519; s=tlsrpt; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        )
        .unwrap();
        assert_eq!(k.key_type, KeyType::Ed25519);
        assert!(k.declares_tlsrpt());
        let k =
            KeyRecord::parse(b"k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=").unwrap();
        assert!(!k.declares_tlsrpt() && k.usable_for_mail());
        assert_eq!(KeyRecord::parse(b"v=DKIM1; p="), Err(KeyError::Revoked));
        assert_eq!(
            KeyRecord::parse(b"k=rsa; v=DKIM1; p=AA"),
            Err(KeyError::Version)
        );
        assert_eq!(
            KeyRecord::parse(b"k=dsa; p=AA"),
            Err(KeyError::KeyType("dsa".into()))
        );
        assert_eq!(KeyRecord::parse(b"h=sha1; p=AA"), Err(KeyError::Hash));
        assert_eq!(KeyRecord::parse(b"p=AAAA"), Err(KeyError::BadKey("RSA")));
    }

    #[test]
    fn rfc4648_base64() {
        assert_eq!(base64_decode("Zm9v YmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm8=").unwrap(), b"fo");
        assert_eq!(base64_decode("Zg==").unwrap(), b"f");
        assert!(base64_decode("Zg=a").is_none());
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Z!==").is_none());
    }

    #[test]
    fn rfc6376_3_7_b_value_removed() {
        assert_eq!(
            strip_b_value(b" v=1; bh=abc; b = de\r\n f ;x=1"),
            b" v=1; bh=abc; b =;x=1"
        );
        assert_eq!(strip_b_value(b"b=xyz"), b"b=");
    }

    #[test]
    fn rfc8460_3_alignment_and_from_domain() {
        assert!(aligned("Example.com.", "example.com"));
        assert!(!aligned("example.com", ""));
        assert_eq!(
            address_domain("\"TLS\" <tlsrpt@Mail.Example.com>").as_deref(),
            Some("mail.example.com")
        );
        assert_eq!(address_domain("a@b.example").as_deref(), Some("b.example"));
        assert_eq!(address_domain("nobody"), None);
    }

    #[test]
    fn verdict_prefers_pass_then_temporary() {
        let pass = Pass {
            domain: "a.example".into(),
            selector: "s".into(),
            algorithm: Algorithm::Ed25519Sha256,
            declares_tlsrpt: false,
        };
        let temp = DkimRefusal::Temporary {
            name: "n".into(),
            message: "SERVFAIL".into(),
        };
        assert_eq!(
            Verdict::from_outcomes(vec![Err(DkimRefusal::Missing), Ok(pass.clone())]),
            Verdict::Pass(pass)
        );
        assert_eq!(
            Verdict::from_outcomes(vec![
                Err(DkimRefusal::KeyNotFound { name: "n".into() }),
                Err(temp.clone())
            ]),
            Verdict::Refused(temp)
        );
        assert_eq!(
            Verdict::from_outcomes(vec![]),
            Verdict::Refused(DkimRefusal::Missing)
        );
    }
}
