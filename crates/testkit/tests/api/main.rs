//! The testkit's own tests, one test binary (as every crate of the workspace keeps
//! `tests/api/main.rs`): each module is one of its servers seen by a real client.

mod dns;
mod https;
mod redis;
mod smtp;
