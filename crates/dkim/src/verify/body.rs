//! The checks of a signature that need no key: expiry and the body hash (RFC 6376 §6.1.3
//! steps 1–2, §3.5 `x=`).

use crate::error::VerifyError;
use crate::verify::message::SignedMessage;
use crate::verify::signature::Signature;

impl SignedMessage<'_> {
    /// The checks that need no key: expiry (`x=` against `now`, Unix seconds) and the body
    /// hash (RFC 6376 §6.1.3 step 1–2).
    pub fn check_body(&self, sig: &Signature, now: u64) -> Result<(), VerifyError> {
        if let Some(x) = sig.expiration
            && now > x
        {
            return Err(VerifyError::Expired(x));
        }
        let canonical = sig.body_canonicalization.body(self.body());
        let hash = ring::digest::digest(&ring::digest::SHA256, &canonical);
        if hash.as_ref() != sig.body_hash.as_slice() {
            return Err(VerifyError::BodyHashMismatch);
        }
        Ok(())
    }
}
