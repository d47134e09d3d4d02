//! DKIM signing of report mail (RFC 8460 §5.3: "The report MUST be signed with DKIM by the
//! reporting domain"; RFC 6376), with ring: `rsa-sha256` (RFC 6376 §3.3.1) or
//! `ed25519-sha256` (RFC 8463), `c=relaxed/relaxed`, no `l=` (RFC 8460 §5.3 forbids it), and
//! `h=` covering `TLS-Report-Domain` and `TLS-Report-Submitter` (§5.3 SHOULD).
//!
//! The signing domain's key record is `<selector>._domainkey.<domain>` and SHOULD carry
//! `s=tlsrpt` (RFC 8460 §5.3), e.g. `v=DKIM1; k=ed25519; s=tlsrpt; p=<base64 public key>`.
//! Without a key, the relay must sign (see [`crate::deliver`]).
//!
//! (The `mail-auth` crate was considered: its crypto back ends are aws-lc-rs or RustCrypto,
//! not ring, so it does not fit this project's single-provider rule.)

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;

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

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DKIM key: {0}")]
pub struct DkimError(pub String);

enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
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
        let der = rustls_pemfile::private_key(&mut &pem[..])
            .map_err(|e| DkimError(e.to_string()))?
            .ok_or_else(|| DkimError("no private key in the PEM data".into()))?;
        let key = match &der {
            PrivateKeyDer::Pkcs8(k) => {
                let bytes = k.secret_pkcs8_der();
                match Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes) {
                    Ok(k) => Key::Ed25519(k),
                    Err(_) => Key::Rsa(
                        RsaKeyPair::from_pkcs8(bytes)
                            .map_err(|e| DkimError(format!("neither Ed25519 nor RSA: {e}")))?,
                    ),
                }
            }
            PrivateKeyDer::Pkcs1(k) => Key::Rsa(
                RsaKeyPair::from_der(k.secret_pkcs1_der())
                    .map_err(|e| DkimError(format!("RSA: {e}")))?,
            ),
            _ => return Err(DkimError("only RSA and Ed25519 keys are supported".into())),
        };
        if domain.is_empty() || selector.is_empty() {
            return Err(DkimError(
                "the signing domain and selector are required".into(),
            ));
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
        let (head, body) = split_message(message);
        let fields = header_fields(head);
        let mut names = Vec::new();
        let mut signed = Vec::new();
        for wanted in SIGNED_HEADERS {
            // RFC 6376 §5.4.2: with one instance, sign it; we never repeat a header.
            if let Some((name, value)) = fields.iter().rev().find(|(n, _)| n == wanted) {
                names.push(*wanted);
                signed.extend_from_slice(relaxed_header(name, value).as_bytes());
            }
        }
        let body_hash = ring::digest::digest(&ring::digest::SHA256, &relaxed_body(body));
        let unsigned = format!(
            "DKIM-Signature: v=1; a={}; c=relaxed/relaxed; d={}; s={};\r\n\tt={}; h={};\r\n\tbh={};\r\n\tb=",
            self.algorithm(),
            self.domain,
            self.selector,
            timestamp,
            names.join(":"),
            b64(body_hash.as_ref()),
        );
        let (name, value) = unsigned
            .split_once(':')
            .ok_or_else(|| DkimError("internal: header without colon".into()))?;
        let canonical = relaxed_header(name, value);
        // The signature header is hashed without its trailing CRLF (RFC 6376 §3.7).
        signed.extend_from_slice(canonical.trim_end_matches("\r\n").as_bytes());
        let signature = match &self.key {
            Key::Ed25519(k) => {
                // RFC 8463 §3: Ed25519 over the SHA-256 hash of the data.
                let hash = ring::digest::digest(&ring::digest::SHA256, &signed);
                k.sign(hash.as_ref()).as_ref().to_vec()
            }
            Key::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), &signed, &mut sig)
                    .map_err(|_| DkimError("RSA signing failed".into()))?;
                sig
            }
        };
        let mut out = unsigned.into_bytes();
        out.extend_from_slice(b64(&signature).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(message);
        Ok(out)
    }
}

fn b64(bytes: &[u8]) -> String {
    tlsrpt::mail::base64_lines(bytes).replace("\r\n", "")
}

/// Header block (with its final CRLF) and body.
fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// (lower-case name, raw value with folding) of each header field, in order.
fn header_fields(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str("\r\n");
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim_end().to_ascii_lowercase(), value.to_owned()));
        }
    }
    fields
}

/// RFC 6376 §3.4.2 relaxed header canonicalization, with CRLF.
fn relaxed_header(name: &str, value: &str) -> String {
    let unfolded = value.replace("\r\n", "");
    let collapsed = unfolded
        .split([' ', '\t'])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{}:{}\r\n", name.trim().to_ascii_lowercase(), collapsed)
}

/// RFC 6376 §3.4.4 relaxed body canonicalization.
fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<String> = text
        .split("\r\n")
        .map(|line| {
            let mut out = String::with_capacity(line.len());
            let mut in_space = false;
            for c in line.chars() {
                if c == ' ' || c == '\t' {
                    in_space = true;
                } else {
                    if in_space {
                        out.push(' ');
                        in_space = false;
                    }
                    out.push(c);
                }
            }
            out
        })
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    if lines.is_empty() {
        return Vec::new();
    }
    let mut out = lines.join("\r\n");
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6376_3_4_relaxed_canonicalization() {
        // RFC 6376 §3.4.5 example.
        assert_eq!(relaxed_header("A", " X\r\n"), "a:X\r\n");
        assert_eq!(relaxed_header("B ", " Y\t\r\n\tZ  "), "b:Y Z\r\n");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
    }
}
