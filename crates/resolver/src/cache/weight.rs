//! What an entry weighs: the heap bytes of a domain's slot, counted as glibc's malloc
//! hands them out, so that `max_memory` bounds memory used, not memory asked for.

use mta_sts::Domain;

use super::entry::{Entry, FailMark, Trouble};
use super::policy::CachedPolicy;
use crate::error::Error;

/// The size glibc's malloc gives a request of `n` bytes (16-byte steps, 8 bytes of header,
/// 32 at least): what a weight counts, so the bound is on memory used, not asked for.
pub(super) fn chunk(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8 + 15) & !15).max(32)
    }
}

/// Heap bytes of a `compact_str` string: none up to 24 bytes (kept inline).
fn compact_heap(len: usize) -> usize {
    if len > 24 { chunk(len) } else { 0 }
}

/// Heap bytes behind an [`Error`] kept in an entry. A "no record" answer (the common
/// negative entry) holds the `_mta-sts` name; other errors hold a name and a message,
/// counted as 128 bytes.
fn error_heap(error: &Error) -> usize {
    match error {
        Error::NoRecord { name } => chunk(name.capacity()),
        _ => 128,
    }
}

impl CachedPolicy {
    /// Bytes this policy holds on the heap, its own `Arc` allocation included.
    pub(super) fn weight(&self) -> usize {
        let policy = &self.policy;
        let patterns: usize = policy
            .mx
            .iter()
            .map(|p| compact_heap(p.base().len() + if p.is_wildcard() { 2 } else { 0 }))
            .sum();
        let extensions: usize = policy
            .extensions
            .iter()
            .map(|(k, v)| chunk(k.capacity()) + chunk(v.capacity()))
            .sum();
        chunk(2 * size_of::<usize>() + size_of::<CachedPolicy>())
            + chunk(policy.mx.capacity() * size_of::<mta_sts::MxPattern>())
            + patterns
            + chunk(policy.extensions.capacity() * size_of::<(String, String)>())
            + extensions
            + self.verbatim.as_ref().map_or(0, |b| chunk(b.len()))
    }
}

impl Entry {
    /// Bytes this entry holds on the heap (the policy counted in full, although lookups
    /// may share it for a while).
    pub(super) fn heap_weight(&self) -> usize {
        let policy = self.policy.as_ref().map_or(0, |p| p.weight());
        let trouble = self.trouble.as_ref().map_or(0, |t| {
            chunk(size_of::<Trouble>())
                + t.negative_error.as_ref().map_or(0, error_heap)
                + chunk(t.fail_marks.capacity() * size_of::<FailMark>())
                + t.fail_marks
                    .iter()
                    .map(|m| chunk(2 * size_of::<usize>() + m.id.len()) + error_heap(&m.error))
                    .sum::<usize>()
        });
        policy + trouble
    }
}

/// The weight of `domain`'s slot holding `entry`.
pub(super) fn weigh(domain: &Domain, entry: &Entry) -> u32 {
    let bytes = compact_heap(domain.as_str().len()) + entry.heap_weight();
    u32::try_from(bytes).unwrap_or(u32::MAX)
}
