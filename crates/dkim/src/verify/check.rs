//! The signature check with a key (RFC 6376 §3.7, §6.1.3): the key must fit the signature
//! (type, service, `t=s`, RSA size per RFC 8301 §3.2), the signed header fields are hashed
//! in `h=` order, then ring verifies.

use ring::signature::{ED25519, RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY, UnparsedPublicKey};

use crate::error::VerifyError;
use crate::header::RawField;
use crate::verify::domain::identity_domain;
use crate::verify::key::{KeyRecord, KeyType};
use crate::verify::message::SignedMessage;
use crate::verify::signature::{Algorithm, Signature};

impl SignedMessage<'_> {
    /// Verifies the header signature of `sig` (the `index`-th signature of
    /// [`SignedMessage::signatures`]) with `key` (RFC 6376 §3.7, §6.1.3).
    pub fn verify(
        &self,
        index: usize,
        sig: &Signature,
        key: &KeyRecord,
    ) -> Result<(), VerifyError> {
        check_key(sig, key)?;
        let data = self.signed_data(index, sig)?;
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

    /// The data the signature covers (RFC 6376 §3.7): the fields named in `h=`, then the
    /// `index`-th `DKIM-Signature` field itself with `b=` emptied and no final CRLF.
    fn signed_data(&self, index: usize, sig: &Signature) -> Result<Vec<u8>, VerifyError> {
        let fields = self.fields();
        let Some(own) = fields.iter().filter(|f| f.is("dkim-signature")).nth(index) else {
            return Err(VerifyError::BadSignature);
        };
        let canon = sig.header_canonicalization;
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
                data.extend_from_slice(&canon.header(f));
            }
        }
        // RFC 6376 §3.7: the signature field itself, b= emptied, without its final CRLF.
        let value = strip_b_value(own.value);
        let raw = [own.name, b":", &value].concat();
        let own = RawField {
            name: own.name,
            value: &value,
            raw: &raw,
        };
        let mut own_canon = canon.header(&own);
        own_canon.truncate(own_canon.len() - 2);
        data.extend_from_slice(&own_canon);
        Ok(data)
    }
}

/// Whether `key` may verify `sig`: `k=` fits `a=`, `s=` allows mail, `t=s` holds, and an RSA
/// key has 1024 to 8192 bits.
fn check_key(sig: &Signature, key: &KeyRecord) -> Result<(), VerifyError> {
    match (key.key_type, sig.algorithm) {
        (KeyType::Rsa, Algorithm::RsaSha256) | (KeyType::Ed25519, Algorithm::Ed25519Sha256) => {}
        (k, a) => {
            return Err(VerifyError::KeyTypeMismatch {
                key: k.as_str(),
                algorithm: a.as_str(),
            });
        }
    }
    if !key.usable_for_mail() {
        return Err(VerifyError::Service);
    }
    // RFC 6376 §3.6.1 t=s: the domain of i= must be d= itself.
    if key.strict_identity
        && let Some(i) = &sig.identity
        && identity_domain(i) != sig.domain
    {
        return Err(VerifyError::StrictIdentity);
    }
    // RFC 8301 §3.2: keys smaller than 1024 bits MUST NOT be accepted.
    if key.key_type == KeyType::Rsa && !(1024..=8192).contains(&key.rsa_bits) {
        return Err(VerifyError::KeySize(key.rsa_bits));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6376_3_7_b_value_removed() {
        assert_eq!(
            strip_b_value(b" v=1; bh=abc; b = de\r\n f ;x=1"),
            b" v=1; bh=abc; b =;x=1"
        );
        assert_eq!(strip_b_value(b"b=xyz"), b"b=");
    }
}
