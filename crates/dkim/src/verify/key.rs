//! The key record at `<s>._domainkey.<d>` (RFC 6376 §3.6.1): `v=DKIM1; k=; h=; s=; t=; p=`.
//! The RSA public key in `p=` is read with x509-parser (SubjectPublicKeyInfo, RFC 5280 §4.1,
//! or a bare PKCS#1 `RSAPublicKey`); ring checks it again when verifying.

use x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::RSAPublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::KeyError;
use crate::verify::tag::{base64_decode, parse_tag_list, strip_fws, tag, truncate};

/// A key type (`k=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// `rsa` (the default).
    Rsa,
    /// `ed25519` (RFC 8463 §4).
    Ed25519,
}

impl KeyType {
    /// The `k=` name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }
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
        let get = |name: &str| tag(&tags, name);
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
            KeyType::Rsa => rsa_public_key(&raw).ok_or(KeyError::BadKey("RSA"))?,
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

/// The PKCS#1 `RSAPublicKey` of an RSA `p=` and its modulus size in bits. RFC 6376 §3.6.1:
/// `p=` is a SubjectPublicKeyInfo (RFC 5280 §4.1); a bare PKCS#1 `RSAPublicKey` is accepted
/// too.
fn rsa_public_key(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let pkcs1 = match SubjectPublicKeyInfo::from_der(raw) {
        Ok((_, spki))
            if spki.algorithm.algorithm == OID_PKCS1_RSAENCRYPTION
                && spki.subject_public_key.unused_bits == 0 =>
        {
            spki.subject_public_key.data.to_vec()
        }
        _ => raw.to_vec(),
    };
    let (_, rsa) = RSAPublicKey::from_der(&pkcs1).ok()?;
    let bits = modulus_bits(rsa.modulus)?;
    Some((pkcs1, bits))
}

/// The size in bits of a big-endian unsigned modulus (leading zero octets ignored); `None`
/// for zero.
fn modulus_bits(n: &[u8]) -> Option<usize> {
    let skip = n.iter().take_while(|b| **b == 0).count();
    let n = &n[skip..];
    let first = *n.first()?;
    Some((n.len() - 1) * 8 + (8 - first.leading_zeros() as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
