//! Sans-I/O DKIM (RFC 6376) for SMTP TLS Reporting (RFC 8460): the signer of report mail
//! (RFC 8460 §5.3) and the verifier of received report mail (RFC 8460 §3), on ring.
//!
//! No network, no files, no clock: the verifier is given the key records the caller looked
//! up (`<s>._domainkey.<d>` TXT) and the current time; the signer is given `t=`.
//!
//! Modules, each using only those listed before it:
//!
//! - [`error`]: the error enums;
//! - [`header`]: a message's header fields as written (RFC 5322 §2.2);
//! - [`canon`]: canonicalization (RFC 6376 §3.4), shared by signer and verifier;
//! - [`sign`]: [`DkimSigner`] (`rsa-sha256`, `ed25519-sha256` per RFC 8463);
//! - [`verify`]: tag lists, the `DKIM-Signature` field, key records, body hash, signature
//!   check, alignment and the [`Verdict`] over a message.
//!
//! Why an own signer and verifier rather than the `mail-auth` crate: see [`verify`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod canon;
pub mod error;
pub mod header;
pub mod sign;
pub mod verify;

pub use canon::Canonicalization;
pub use error::{DkimError, KeyError, SignatureError, VerifyError};
pub use sign::{DkimSigner, SIGNED_HEADERS, SignOptions};
pub use verify::{
    Algorithm, DkimRefusal, KeyRecord, KeyType, MAX_SIGNATURES, Pass, Signature, SignedMessage,
    Verdict, address_domain, aligned, base64_decode, parse_tag_list, reporting_domains,
    signer_label,
};
