//! DKIM verification of mailed TLS-RPT reports, sans-I/O (RFC 6376, RFC 8301, RFC 8463,
//! RFC 8460 §3).
//!
//! RFC 8460 §3: "Reports sent via SMTP MUST contain a valid DomainKeys Identified Mail (DKIM)
//! signature by the reporting domain. Reports lacking such a signature MUST be ignored by the
//! recipient. DKIM signatures MUST NOT use the "l=" attribute". This module holds every rule
//! that needs no network, one concern per module:
//!
//! - [`tag`]: the tag list (RFC 6376 §3.2, [`parse_tag_list`]) and base64 values;
//! - [`signature`]: the `DKIM-Signature` field ([`Signature::parse`], RFC 6376 §3.5);
//! - [`key`]: the key record ([`KeyRecord::parse`], RFC 6376 §3.6.1);
//! - [`message`]: the message as verified ([`SignedMessage`]), canonicalization shared with
//!   the signer in [`crate::canon`];
//! - [`body`]: expiry and the body hash ([`SignedMessage::check_body`]);
//! - [`check`]: the signature check with ring ([`SignedMessage::verify`]);
//! - [`domain`]: alignment with the reporting domain ([`aligned`]);
//! - [`verdict`]: the verdict over several signatures ([`Verdict`]).
//!
//! The key lookup (`<s>._domainkey.<d>` TXT) is the caller's: it is I/O (the report store's
//! `dkim_dns` module does it over DNS).
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

pub mod body;
pub mod check;
pub mod domain;
pub mod key;
pub mod message;
pub mod signature;
pub mod tag;
pub mod verdict;

pub use domain::{address_domain, aligned};
pub use key::{KeyRecord, KeyType};
pub use message::{MAX_SIGNATURES, SignedMessage};
pub use signature::{Algorithm, Signature};
pub use tag::{base64_decode, parse_tag_list};
pub use verdict::{DkimRefusal, Pass, Verdict, reporting_domains, signer_label};
