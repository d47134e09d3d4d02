//! DKIM signing of report mail (RFC 8460 §5.3: "The report MUST be signed with DKIM by the
//! reporting domain"; RFC 6376), with ring: `rsa-sha256` (RFC 6376 §3.3.1) or
//! `ed25519-sha256` (RFC 8463), `c=relaxed/relaxed`, no `l=` (RFC 8460 §5.3 forbids it), and
//! `h=` covering `TLS-Report-Domain` and `TLS-Report-Submitter` (§5.3 SHOULD).
//!
//! The signing domain's key record is `<selector>._domainkey.<domain>` and SHOULD carry
//! `s=tlsrpt` (RFC 8460 §5.3), e.g. `v=DKIM1; k=ed25519; s=tlsrpt; p=<base64 public key>`.
//! Without a key, the relay must sign (see [`crate::deliver`]).
//!
//! The canonicalizations here (RFC 6376 §3.4: `simple` and `relaxed`, header and body) are
//! shared with the verifier, [`crate::dkim_verify`].
//!
//! (The `mail-auth` crate was considered: its crypto back ends are aws-lc-rs or RustCrypto,
//! not ring, so it does not fit this project's single-provider rule; see
//! [`crate::dkim_verify`] for the version-by-version check.)

#[cfg(feature = "send")]
use ring::rand::SystemRandom;
#[cfg(feature = "send")]
use ring::signature::{Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
#[cfg(feature = "send")]
use rustls::pki_types::PrivateKeyDer;

pub use crate::dkim_verify::Canonicalization;

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

#[cfg(feature = "send")]
/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DKIM key: {0}")]
pub struct DkimError(pub String);

#[cfg(feature = "send")]
enum Key {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Options of [`DkimSigner::sign_with`].
#[cfg(feature = "send")]
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

#[cfg(feature = "send")]
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

#[cfg(feature = "send")]
/// A DKIM signer: key, signing domain (`d=`) and selector (`s=`).
pub struct DkimSigner {
    key: Key,
    domain: String,
    selector: String,
}

#[cfg(feature = "send")]
impl std::fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimSigner")
            .field("algorithm", &self.algorithm())
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish()
    }
}

#[cfg(feature = "send")]
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
        self.sign_with(message, &SignOptions::new(timestamp))
    }

    /// Like [`DkimSigner::sign`], with the canonicalizations and an `x=` expiry chosen.
    pub fn sign_with(&self, message: &[u8], options: &SignOptions) -> Result<Vec<u8>, DkimError> {
        let (head, body) = split_message(message);
        let fields = raw_fields(head);
        let canonical_field = |f: &RawField<'_>| match options.header {
            Canonicalization::Simple => simple_header(f.raw),
            Canonicalization::Relaxed => relaxed_header_bytes(f.name, f.value),
        };
        let mut names = Vec::new();
        let mut signed = Vec::new();
        for wanted in SIGNED_HEADERS {
            // RFC 6376 §5.4.2: with one instance, sign it; we never repeat a header.
            if let Some(f) = fields.iter().rev().find(|f| f.is(wanted)) {
                names.push(*wanted);
                signed.extend_from_slice(&canonical_field(f));
            }
        }
        let canonical_body = match options.body {
            Canonicalization::Simple => simple_body(body),
            Canonicalization::Relaxed => relaxed_body(body),
        };
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
            b64(body_hash.as_ref()),
        );
        let own = raw_fields(unsigned.as_bytes());
        let own = own
            .first()
            .ok_or_else(|| DkimError("internal: header without colon".into()))?;
        let canonical = canonical_field(own);
        // The signature header is hashed without its trailing CRLF (RFC 6376 §3.7).
        signed.extend_from_slice(canonical.strip_suffix(b"\r\n").unwrap_or(&canonical));
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

#[cfg(feature = "send")]
fn b64(bytes: &[u8]) -> String {
    tlsrpt::mail::base64_lines(bytes).replace("\r\n", "")
}

/// Header block (with its final CRLF) and body.
pub(crate) fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    match message.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (&message[..i + 2], &message[i + 4..]),
        None => (message, &[]),
    }
}

/// One header field exactly as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawField<'a> {
    /// The name as written (before the colon, trailing WSP included).
    pub name: &'a [u8],
    /// The value after the colon, folding CRLFs included, without the final CRLF.
    pub value: &'a [u8],
    /// The whole field (name, colon, value), without the final CRLF: what `c=simple` hashes.
    pub raw: &'a [u8],
}

impl RawField<'_> {
    /// Whether the field's name is `name` (ASCII case-insensitive, WSP before the colon
    /// ignored).
    pub fn is(&self, name: &str) -> bool {
        trim_wsp(self.name).eq_ignore_ascii_case(name.as_bytes())
    }
}

fn trim_wsp(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// The header fields of a CRLF header block, in order (RFC 5322 §2.2: a line starting with
/// WSP continues the previous field). Lines without a colon are skipped.
pub(crate) fn raw_fields(head: &[u8]) -> Vec<RawField<'_>> {
    let mut out: Vec<RawField<'_>> = Vec::new();
    // (start of the field, end of its last line) for the field being read.
    let mut current: Option<(usize, usize)> = None;
    let mut pos = 0;
    fn push<'a>(head: &'a [u8], out: &mut Vec<RawField<'a>>, (start, end): (usize, usize)) {
        let raw = &head[start..end];
        if let Some(colon) = raw.iter().position(|b| *b == b':') {
            out.push(RawField {
                name: &raw[..colon],
                value: &raw[colon + 1..],
                raw,
            });
        }
    }
    while pos < head.len() {
        let line_end = head[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(head.len(), |i| pos + i);
        let line = &head[pos..line_end];
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some((_, end)) = current.as_mut() {
                *end = line_end;
            }
        } else {
            if let Some(field) = current.take() {
                push(head, &mut out, field);
            }
            if !line.is_empty() {
                current = Some((pos, line_end));
            }
        }
        pos = line_end + 2;
    }
    if let Some(field) = current {
        push(head, &mut out, field);
    }
    out
}

/// RFC 6376 §3.4.2 relaxed header canonicalization of raw bytes, with CRLF: name lower-cased,
/// value unfolded, WSP runs to one SP, WSP around the colon and at the end removed.
pub(crate) fn relaxed_header_bytes(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = trim_wsp(name).to_ascii_lowercase();
    out.push(b':');
    let mut in_space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => in_space = true,
            _ => {
                if in_space && started {
                    out.push(b' ');
                }
                in_space = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// RFC 6376 §3.4.1 simple header canonicalization: the field unchanged, with CRLF.
pub(crate) fn simple_header(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    out.extend_from_slice(b"\r\n");
    out
}

/// RFC 6376 §3.4.4 relaxed body canonicalization: WSP at line ends removed, WSP runs to one
/// SP, empty lines at the end removed, a non-empty body ends with CRLF.
pub(crate) fn relaxed_body(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    loop {
        let (line, next, had_crlf) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], &rest[i + 2..], true),
            None => (rest, &[][..], false),
        };
        if !had_crlf && line.is_empty() {
            break;
        }
        let mut in_space = false;
        for &b in line {
            if b == b' ' || b == b'\t' {
                in_space = true;
            } else {
                if in_space {
                    out.push(b' ');
                    in_space = false;
                }
                out.push(b);
            }
        }
        out.extend_from_slice(b"\r\n");
        if !had_crlf {
            break;
        }
        rest = next;
    }
    // RFC 6376 §3.4.4 (b): ignore all empty lines at the end of the message body.
    while out.ends_with(b"\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    if out == b"\r\n" {
        out.clear();
    }
    out
}

/// RFC 6376 §3.4.3 simple body canonicalization: any run of CRLFs at the end becomes one CRLF;
/// an empty body is one CRLF.
pub(crate) fn simple_body(body: &[u8]) -> Vec<u8> {
    let mut end = body.len();
    while body[..end].ends_with(b"\r\n") {
        end -= 2;
    }
    let mut out = body[..end].to_vec();
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6376_3_4_relaxed_canonicalization() {
        // RFC 6376 §3.4.5 example.
        assert_eq!(relaxed_header_bytes(b"A", b" X\r\n"), b"a:X\r\n");
        assert_eq!(relaxed_header_bytes(b"B ", b" Y\t\r\n\tZ  "), b"b:Y Z\r\n");
        assert_eq!(relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n"), b" C\r\nD E\r\n");
        assert_eq!(relaxed_body(b"\r\n\r\n"), b"");
    }
}
