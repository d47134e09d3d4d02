//! DKIM signing of report mail (RFC 8460 §5.3: "The report MUST be signed with DKIM by the
//! reporting domain"; RFC 6376), with ring: `rsa-sha256` (RFC 6376 §3.3.1) or
//! `ed25519-sha256` (RFC 8463), `c=relaxed/relaxed`, no `l=` (RFC 8460 §5.3 forbids it), and
//! `h=` covering `TLS-Report-Domain` and `TLS-Report-Submitter` (§5.3 SHOULD).
//!
//! The signing domain's key record is `<selector>._domainkey.<domain>` and SHOULD carry
//! `s=tlsrpt` (RFC 8460 §5.3), e.g. `v=DKIM1; k=ed25519; s=tlsrpt; p=<base64 public key>`.
//! Without a key, the relay must sign (RFC 8460 §5.3 only asks that the report be signed by
//! the reporting domain, not by whom).
//!
//! The canonicalizations (RFC 6376 §3.4: `simple` and `relaxed`, header and body) are in
//! [`crate::canon`], shared with the verifier, [`crate::verify`].
//!
//! (The `mail-auth` crate was considered: its crypto back ends are aws-lc-rs or RustCrypto,
//! not ring, so it does not fit this project's single-provider rule; see [`crate::verify`]
//! for the version-by-version check.)

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::{self, PemObject as _};

use crate::canon::Canonicalization;
use crate::error::DkimError;
use crate::header::{RawField, raw_fields, split_message};

/// The headers signed when present, in this order (RFC 6376 §5.4; RFC 8460 §5.3).
pub const SIGNED_HEADERS: &[&str] = &[
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "tls-report-domain",
    "tls-report-submitter",
    "mime-version",
    "content-type",
];

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Options of [`DkimSigner::sign_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignOptions {
    /// `t=`, Unix seconds.
    pub timestamp: i64,
    /// `x=`, Unix seconds, if any.
    pub expiration: Option<i64>,
    /// Header canonicalization (`c=` first part).
    pub header: Canonicalization,
    /// Body canonicalization (`c=` second part).
    pub body: Canonicalization,
}

impl SignOptions {
    /// `c=relaxed/relaxed`, no `x=`: what report mail uses.
    pub fn new(timestamp: i64) -> Self {
        SignOptions {
            timestamp,
            expiration: None,
            header: Canonicalization::Relaxed,
            body: Canonicalization::Relaxed,
        }
    }
}

/// A DKIM signer: key, signing domain (`d=`) and selector (`s=`).
pub struct DkimSigner {
    key: Key,
    domain: String,
    selector: String,
}

impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigner")
            .field("algorithm", &self.algorithm())
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish()
    }
}

impl DkimSigner {
    /// Reads a PEM private key: PKCS#8 RSA or Ed25519 (`BEGIN PRIVATE KEY`) or PKCS#1 RSA
    /// (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &[u8], domain: &str, selector: &str) -> Result<Self, DkimError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
            pem::Error::NoItemsFound => DkimError::NoKey,
            e => DkimError::Pem(e),
        })?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                match Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes) {
                    Ok(k) => Key::Ed25519(k),
                    Err(_) => Key::Rsa(RsaKeyPair::from_pkcs8(bytes).map_err(DkimError::Pkcs8)?),
                }
            }
            PrivateKeyDer::Pkcs1(k) => {
                Key::Rsa(RsaKeyPair::from_der(k.secret_pkcs1_der()).map_err(DkimError::Rsa)?)
            }
            _ => return Err(DkimError::Unsupported),
        };
        if domain.is_empty() || selector.is_empty() {
            return Err(DkimError::MissingIdentity);
        }
        Ok(DkimSigner {
            key,
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_owned(),
        })
    }

    /// `a=`: `rsa-sha256` or `ed25519-sha256`.
    pub fn algorithm(&self) -> &'static str {
        match self.key {
            Key::Rsa(_) => "rsa-sha256",
            Key::Ed25519(_) => "ed25519-sha256",
        }
    }

    /// Returns `message` with a `DKIM-Signature` header prepended; `timestamp` is `t=`.
    pub fn sign(&self, message: &[u8], timestamp: i64) -> Result<Vec<u8>, DkimError> {
        self.sign_with(message, &SignOptions::new(timestamp))
    }

    /// Like [`DkimSigner::sign`], with the canonicalizations and an `x=` expiry chosen.
    pub fn sign_with(&self, message: &[u8], options: &SignOptions) -> Result<Vec<u8>, DkimError> {
        let (head, body) = split_message(message);
        let fields = raw_fields(head);
        let mut names = Vec::new();
        let mut signed = Vec::new();
        for wanted in SIGNED_HEADERS {
            // RFC 6376 §5.4.2: with one instance, sign it; we never repeat a header.
            if let Some(f) = fields.iter().rev().find(|f| f.is(wanted)) {
                names.push(*wanted);
                signed.extend_from_slice(&options.header.header(f));
            }
        }
        let canonical_body = options.body.body(body);
        let body_hash = ring::digest::digest(&ring::digest::SHA256, &canonical_body);
        let expiration = options
            .expiration
            .map(|x| format!(" x={x};"))
            .unwrap_or_default();
        let unsigned = format!(
            "DKIM-Signature: v=1; a={}; c={}/{}; d={}; s={};\r\n\tt={};{expiration} h={};\r\n\tbh={};\r\n\tb=",
            self.algorithm(),
            options.header.as_str(),
            options.body.as_str(),
            self.domain,
            self.selector,
            options.timestamp,
            names.join(":"),
            BASE64.encode(body_hash.as_ref()),
        );
        // The field just written: name up to the colon, value after it.
        let own = RawField {
            name: b"DKIM-Signature",
            value: &unsigned.as_bytes()["DKIM-Signature:".len()..],
            raw: unsigned.as_bytes(),
        };
        let canonical = options.header.header(&own);
        // The signature header is hashed without its trailing CRLF (RFC 6376 §3.7).
        signed.extend_from_slice(canonical.strip_suffix(b"\r\n").unwrap_or(&canonical));
        let signature = self.signature(&signed)?;
        let mut out = unsigned.into_bytes();
        out.extend_from_slice(BASE64.encode(signature).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        Ok(out)
    }

    /// The signature over the canonical header data.
    fn signature(&self, signed: &[u8]) -> Result<Vec<u8>, DkimError> {
        match &self.key {
            Key::Ed25519(k) => {
                // RFC 8463 §3: Ed25519 over the SHA-256 hash of the data.
                let hash = ring::digest::digest(&ring::digest::SHA256, signed);
                Ok(k.sign(hash.as_ref()).as_ref().to_vec())
            }
            Key::Rsa(k) => {
                // ring's RSA signing blinds with fresh randomness (from the OS): the one
                // system call of this crate, and not a clock or the network.
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed, &mut sig)
                    .map_err(DkimError::Signing)?;
                Ok(sig)
            }
        }
    }
}
