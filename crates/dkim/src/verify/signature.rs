//! The `DKIM-Signature` header field (RFC 6376 §3.5), with the rules this verifier adds:
//! `rsa-sha1` refused (RFC 8301 §3.1), `l=` refused (RFC 8460 §3), `h=` must sign `From`
//! (RFC 6376 §6.1.1).

use crate::canon::Canonicalization;
use crate::error::SignatureError;
use crate::verify::domain::{identity_domain, is_dns_name, normalize_name};
use crate::verify::tag::{base64_decode, parse_tag_list, strip_fws, tag, truncate};

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

impl Signature {
    /// Parses the value of a `DKIM-Signature` field (after the colon).
    pub fn parse(value: &[u8]) -> Result<Signature, SignatureError> {
        let tags = parse_tag_list(value)?;
        let get = |name: &str| tag(&tags, name);
        let required = |name: &'static str| get(name).ok_or(SignatureError::MissingTag(name));
        // RFC 6376 §3.5: v= MUST be 1.
        let version = required("v")?;
        if version != "1" {
            return Err(SignatureError::Version(truncate(version)));
        }
        let algorithm = parse_algorithm(required("a")?)?;
        // RFC 8460 §3: DKIM signatures MUST NOT use the "l=" attribute.
        if get("l").is_some() {
            return Err(SignatureError::BodyLength);
        }
        let signature = base64_decode(required("b")?).ok_or(SignatureError::Base64("b"))?;
        let body_hash = base64_decode(required("bh")?).ok_or(SignatureError::Base64("bh"))?;
        if signature.is_empty() {
            return Err(SignatureError::Base64("b"));
        }
        let (header_canonicalization, body_canonicalization) = parse_canonicalization(get("c"))?;
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
        let identity = get("i").map(strip_fws);
        if let Some(i) = &identity {
            check_identity(i, &domain)?;
        }
        // RFC 6376 §3.5 q=: only dns/txt is defined.
        if let Some(q) = get("q")
            && !strip_fws(q)
                .split(':')
                .any(|m| m.eq_ignore_ascii_case("dns/txt"))
        {
            return Err(SignatureError::QueryMethod(truncate(q)));
        }
        let timestamp = parse_time(get("t"), "t")?;
        let expiration = parse_time(get("x"), "x")?;
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

/// The `a=` tag.
fn parse_algorithm(value: &str) -> Result<Algorithm, SignatureError> {
    match strip_fws(value).to_ascii_lowercase().as_str() {
        "rsa-sha256" => Ok(Algorithm::RsaSha256),
        "ed25519-sha256" => Ok(Algorithm::Ed25519Sha256),
        // RFC 8301 §3.1: rsa-sha1 MUST NOT be used for signing or verifying.
        "rsa-sha1" => Err(SignatureError::RsaSha1),
        other => Err(SignatureError::Algorithm(truncate(other))),
    }
}

/// The `c=` tag: header and body canonicalization.
fn parse_canonicalization(
    value: Option<&str>,
) -> Result<(Canonicalization, Canonicalization), SignatureError> {
    // RFC 6376 §3.5 c=: "simple" when absent; a header-only value means simple body.
    let Some(c) = value else {
        return Ok((Canonicalization::Simple, Canonicalization::Simple));
    };
    let c = strip_fws(c).to_ascii_lowercase();
    let (h, b) = c.split_once('/').unwrap_or((c.as_str(), "simple"));
    let parse = |s: &str| match s {
        "simple" => Ok(Canonicalization::Simple),
        "relaxed" => Ok(Canonicalization::Relaxed),
        _ => Err(SignatureError::Canonicalization(truncate(&c))),
    };
    Ok((parse(h)?, parse(b)?))
}

/// RFC 6376 §6.1.1: the domain of `i=` must be `d=` or a subdomain of it.
fn check_identity(identity: &str, domain: &str) -> Result<(), SignatureError> {
    let at = identity_domain(identity);
    if at == domain || at.ends_with(&format!(".{domain}")) {
        Ok(())
    } else {
        Err(SignatureError::Identity(truncate(identity)))
    }
}

/// `t=` or `x=`: Unix seconds, when present.
fn parse_time(value: Option<&str>, name: &'static str) -> Result<Option<u64>, SignatureError> {
    let Some(v) = value else {
        return Ok(None);
    };
    let v = strip_fws(v);
    // RFC 6376 §3.5: at most 12 digits ("sig-t-tag = ... 1*12DIGIT").
    if v.is_empty() || v.len() > 12 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Number(name));
    }
    v.parse()
        .map(Some)
        .map_err(|_| SignatureError::Number(name))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
