//! Netstrings (`<decimal length>:<bytes>,`), the framing of Postfix `socketmap_table(5)`.
//!
//! Sans-I/O: feed the bytes as they arrive ([`Decoder::feed`]) and take out complete
//! payloads ([`Decoder::decode`]). A request may arrive split at any byte, and several may
//! arrive in one read (pipelining); both give the same payloads.
//!
//! Limits protect the daemon from junk and slow-loris clients: at most
//! [`Limits::max_digits`] length digits (leading zeros count, and are accepted as
//! postfix-mta-sts-resolver accepts `00017:…`) and at most [`Limits::max_payload`] bytes of
//! payload. Errors are detected as early as the bytes allow (`aaa` fails at the first byte,
//! `99999` fails before any payload is sent), so the server can close the connection at once.
//!
//! ```
//! use mta_sts_socketmap::netstring::{encode, Decoder, Limits};
//! let mut decoder = Decoder::new(Limits::default());
//! decoder.feed(b"12:postfix a.ex,00003:");
//! assert_eq!(decoder.decode()?.as_deref(), Some(&b"postfix a.ex"[..]));
//! assert_eq!(decoder.decode()?, None); // the second one is incomplete
//! decoder.feed(b"abc,");
//! assert_eq!(decoder.decode()?.as_deref(), Some(&b"abc"[..]));
//! assert_eq!(encode(b"NOTFOUND "), b"9:NOTFOUND ,");
//! # Ok::<(), mta_sts_socketmap::netstring::NetstringError>(())
//! ```

use bytes::{Buf, Bytes, BytesMut};

/// Default largest payload: 64 KiB (RFC 8461 §3.3 uses the same bound for policies; a
/// socketmap request is a map name and a host name, far smaller).
pub const DEFAULT_MAX_PAYLOAD: usize = 64 * 1024;

/// Size limits of a [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most decimal digits in the length prefix, leading zeros included (default 5).
    pub max_digits: usize,
    /// Largest payload in bytes (default [`DEFAULT_MAX_PAYLOAD`]).
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_digits: 5,
            max_payload: DEFAULT_MAX_PAYLOAD,
        }
    }
}

impl Limits {
    /// Limits for payloads of at most `max_payload` bytes, with just enough digits to write
    /// that length (at least 1).
    pub fn for_payload(max_payload: usize) -> Self {
        Limits {
            max_digits: max_payload.to_string().len(),
            max_payload,
        }
    }
}

/// Why a byte stream is not a sequence of netstrings. After any of these the stream
/// position is lost: a server must close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NetstringError {
    /// The length prefix is empty or has a byte other than an ASCII digit before `:`.
    #[error("bad netstring length: expected decimal digits then `:`, found byte 0x{found:02x}")]
    BadLength {
        /// The offending byte.
        found: u8,
    },
    /// More length digits than [`Limits::max_digits`].
    #[error("netstring length has more than {max} digits")]
    TooManyDigits {
        /// The limit.
        max: usize,
    },
    /// The announced length exceeds [`Limits::max_payload`].
    #[error("netstring of {length}+ bytes is longer than the limit of {max} bytes")]
    TooLong {
        /// The announced length (or the part of it read so far).
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The byte after the payload is not `,`.
    #[error("netstring payload is not followed by `,` (found byte 0x{found:02x})")]
    BadTerminator {
        /// The byte found instead.
        found: u8,
    },
    /// The stream ended inside a netstring ([`Decoder::finish`]).
    #[error("the stream ended inside a netstring ({buffered} bytes buffered)")]
    Incomplete {
        /// Bytes of the unfinished netstring.
        buffered: usize,
    },
}

/// Appends the netstring of `payload` to `out`.
pub fn encode_into(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(payload);
    out.push(b',');
}

/// The netstring of `payload`: `b"X"` becomes `b"1:X,"`, the empty payload `b"0:,"`.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    encode_into(payload, &mut out);
    out
}

/// Decodes a complete byte string into its payloads, for tests and one-shot use.
///
/// ```
/// use mta_sts_socketmap::netstring::{decode_all, Limits};
/// assert_eq!(decode_all(b"00:,1:X,", Limits::default())?, vec![b"".to_vec(), b"X".to_vec()]);
/// # Ok::<(), mta_sts_socketmap::netstring::NetstringError>(())
/// ```
pub fn decode_all(data: &[u8], limits: Limits) -> Result<Vec<Vec<u8>>, NetstringError> {
    let mut decoder = Decoder::new(limits);
    decoder.feed(data);
    let mut out = Vec::new();
    while let Some(payload) = decoder.decode()? {
        out.push(payload.to_vec());
    }
    decoder.finish()?;
    Ok(out)
}

/// Incremental netstring decoder over a byte buffer.
///
/// Once it has returned an error it keeps returning that error: the stream cannot be
/// resynchronised.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    buf: BytesMut,
    failed: Option<NetstringError>,
}

impl Decoder {
    /// A decoder with the given limits and an empty buffer.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            buf: BytesMut::new(),
            failed: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Bytes received but not yet returned as payloads.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete payload, `Ok(None)` when more bytes are needed, or the first framing
    /// error (detected as soon as the buffered bytes prove it).
    pub fn decode(&mut self) -> Result<Option<Bytes>, NetstringError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.try_decode() {
            Ok(found) => Ok(found),
            Err(err) => {
                self.failed = Some(err.clone());
                self.buf.clear();
                Err(err)
            }
        }
    }

    /// Checks that the stream ended between netstrings.
    pub fn finish(&self) -> Result<(), NetstringError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(NetstringError::Incomplete {
                buffered: self.buf.len(),
            })
        }
    }

    fn try_decode(&mut self) -> Result<Option<Bytes>, NetstringError> {
        let mut length: usize = 0;
        let mut digits = 0;
        let mut colon = None;
        for (i, &byte) in self.buf.iter().enumerate() {
            match byte {
                b'0'..=b'9' => {
                    digits += 1;
                    if digits > self.limits.max_digits {
                        return Err(NetstringError::TooManyDigits {
                            max: self.limits.max_digits,
                        });
                    }
                    length = length
                        .saturating_mul(10)
                        .saturating_add(usize::from(byte - b'0'));
                    if length > self.limits.max_payload {
                        return Err(NetstringError::TooLong {
                            length,
                            max: self.limits.max_payload,
                        });
                    }
                }
                b':' if digits > 0 => {
                    colon = Some(i);
                    break;
                }
                found => return Err(NetstringError::BadLength { found }),
            }
        }
        let Some(colon) = colon else {
            return Ok(None);
        };
        let start = colon + 1;
        let end = start + length;
        let Some(&terminator) = self.buf.get(end) else {
            return Ok(None);
        };
        if terminator != b',' {
            return Err(NetstringError::BadTerminator { found: terminator });
        }
        self.buf.advance(start);
        let payload = self.buf.split_to(length).freeze();
        self.buf.advance(1);
        Ok(Some(payload))
    }
}
