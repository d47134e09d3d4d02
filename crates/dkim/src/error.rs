//! The errors of this crate, in one module that the signer and every verifier module use
//! (so that the tag-list parser, the signature parser and the key record parser can share
//! [`SignatureError`] without depending on each other).
//!
//! Each enum is `#[non_exhaustive]`: new rules add variants. Causes from ring and the PEM
//! reader are kept as [`std::error::Error::source`].

/// Why a private key cannot be used for signing, or signing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DkimError {
    /// The PEM data is malformed.
    #[error("DKIM key: {0}")]
    Pem(#[source] rustls_pki_types::pem::Error),
    /// The PEM data holds no private key.
    #[error("DKIM key: no private key in the PEM data")]
    NoKey,
    /// A PKCS#8 key that ring reads neither as Ed25519 nor as RSA.
    #[error("DKIM key: neither Ed25519 nor RSA: {0}")]
    Pkcs8(#[source] ring::error::KeyRejected),
    /// A PKCS#1 RSA key that ring refuses.
    #[error("DKIM key: RSA: {0}")]
    Rsa(#[source] ring::error::KeyRejected),
    /// A SEC1 (EC) key, or another kind DKIM does not sign with here.
    #[error("DKIM key: only RSA and Ed25519 keys are supported")]
    Unsupported,
    /// The signing domain (`d=`) or the selector (`s=`) is empty.
    #[error("DKIM key: the signing domain and selector are required")]
    MissingIdentity,
    /// ring failed to produce an RSA signature.
    #[error("DKIM key: RSA signing failed")]
    Signing(#[source] ring::error::Unspecified),
}

/// Why a `DKIM-Signature` field (or a tag list) is unusable (RFC 6376 §3.2, §3.5, §6.1.1;
/// RFC 8301; RFC 8460 §3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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

/// Why a key record is unusable (RFC 6376 §3.6.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The tag list is malformed.
    #[error("malformed key record: {0}")]
    Syntax(#[source] SignatureError),
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

/// Why an otherwise well-formed signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    #[error(transparent)]
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
