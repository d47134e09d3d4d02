//! The socketmap protocol crate's tests, one binary: netstring codec, requests, keys and
//! reply shapes on the wire.

mod netstring;
mod request;
