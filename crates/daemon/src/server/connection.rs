//! One connection's request loop: decode requests, start their lookups, write the replies
//! in request order (the [`server`](super) module documentation says what a connection
//! does).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::registry::{BUSY, EVICTED, Slot};
use super::{Served, Shared};
use crate::lookup::{InFlight, start};
use crate::metrics::{Metrics, bump};
use mta_sts_socketmap::netstring::Decoder;
use mta_sts_socketmap::{Key, Reply, Request};

/// Size of one socket read.
const READ_SIZE: usize = 4096;

/// A connection's copy of what the server serves, refreshed after a reload.
struct ServedCopy {
    served: Arc<Served>,
    generation: u64,
}

impl ServedCopy {
    fn new(shared: &Shared) -> ServedCopy {
        let generation = shared.generation.load(Ordering::Acquire);
        ServedCopy {
            served: shared.served(),
            generation,
        }
    }

    /// The current zones and lookup: one atomic load per request, no lock.
    fn current(&mut self, shared: &Shared) -> &Served {
        if shared.generation.load(Ordering::Acquire) != self.generation {
            *self = ServedCopy::new(shared);
        }
        &self.served
    }
}

/// A reply in the making, queued in request order.
enum Pending {
    Ready(Reply),
    Lookup(InFlight),
}

impl Pending {
    /// The reply now if it needs no waiting.
    fn into_ready(self) -> Result<Reply, InFlight> {
        match self {
            Pending::Ready(reply) => Ok(reply),
            Pending::Lookup(in_flight) => in_flight.into_ready(),
        }
    }
}

/// Waits for a started lookup, counting budget overruns.
async fn finish(in_flight: InFlight, metrics: &Metrics) -> Reply {
    let (reply, exceeded) = in_flight.finish_reporting().await;
    if exceeded {
        bump(&metrics.budget_exceeded);
    }
    reply
}

/// What to do with one request payload.
enum Handled {
    Queue(Pending),
    /// Queue the reply, then stop reading.
    QueueAndClose(Pending),
}

fn handle(payload: &[u8], peer: &str, served: &Served) -> Handled {
    if payload.is_empty() {
        // Not a request Postfix sends (`server` module documentation): no lookup, no keep-alive. At
        // debug level: a client sending thousands of them must not flood the log.
        tracing::debug!(%peer, "empty socketmap request; replying PERM and closing the connection");
        return Handled::QueueAndClose(Pending::Ready(Reply::Perm("empty request".to_owned())));
    }
    let request = match Request::parse(payload) {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(%peer, error = %err, "bad socketmap request; replying PERM and closing the connection");
            return Handled::QueueAndClose(Pending::Ready(Reply::Perm(
                "request is not valid UTF-8".to_owned(),
            )));
        }
    };
    match request.key() {
        Key::Skip(reason) => {
            tracing::debug!(%peer, name = request.name, key = request.key, answer = "NOTFOUND ", reason = reason.as_str(), "query without lookup");
            Handled::Queue(Pending::Ready(Reply::NotFound))
        }
        Key::Domain(domain) => {
            let zone = served.zones.get(request.name).clone();
            tracing::trace!(%peer, name = request.name, %domain, "lookup");
            Handled::Queue(Pending::Lookup(start(
                Arc::clone(&served.lookup),
                domain,
                zone,
            )))
        }
    }
}

/// Serves one connection until EOF, error, idle timeout or shutdown.
///
/// One loop, no helper task: requests are decoded as bytes arrive, replies known at once
/// (cached policies, skipped keys) are encoded straight into the output buffer, lookups
/// that need I/O run in their own tasks and are awaited in request order while reading
/// goes on. The idle timer is armed once and only moved when it fires, so a busy
/// connection does not touch the timer wheel per request.
///
/// Longer than our ~120-line rule, on purpose: every branch of the one `select!` shares the
/// loop's state (the decoder, the reply queue, the `head` future that borrows `shared`, the
/// pinned timer and stop signal). Split into helpers, that state would move into a struct
/// whose borrow of `head` ties every field together; this loop is the hot path the
/// socketmap benchmarks measure, and it reads best as one piece.
pub(super) async fn connection<S>(
    mut stream: S,
    peer: &str,
    shared: &Shared,
    slot: &Slot,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    // Reads happen only inside the `select!` below and writes only outside it, so the
    // stream needs no split (and no lock).
    let idle = shared.options.idle_timeout;
    let max_pipelined = shared.options.max_pipelined;
    let mut served = ServedCopy::new(shared);
    let mut decoder = Decoder::new(shared.options.limits);
    let mut buf = vec![0u8; READ_SIZE];
    let mut out: Vec<u8> = Vec::with_capacity(256);
    // Replies not yet known, in request order; `head` is the oldest, being awaited.
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut head: Option<Pin<Box<dyn Future<Output = Reply> + Send + '_>>> = None;
    // No more requests are read: a bad request, EOF, shutdown (perhaps already begun).
    let mut closing = *stop.borrow_and_update();
    // Last byte read or reply written, and when the request now arriving began.
    let mut last_activity = tokio::time::Instant::now();
    let mut request_started: Option<tokio::time::Instant> = None;
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    // Registered once, not once per request.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    // Whether `slot` says idle; registered idle.
    let mut marked_idle = true;

    loop {
        // Every complete request: answer or start its lookup.
        while !closing && queue.len() + usize::from(head.is_some()) < max_pipelined {
            match decoder.decode() {
                Ok(Some(payload)) => {
                    request_started = None;
                    let (pending, close) = match handle(&payload, peer, served.current(shared)) {
                        Handled::Queue(p) => (p, false),
                        Handled::QueueAndClose(p) => (p, true),
                    };
                    closing = close;
                    if head.is_none() && queue.is_empty() {
                        // Nothing ahead of it: a reply known now goes straight out.
                        match pending.into_ready() {
                            Ok(reply) => write_reply(&mut out, &reply, &shared.metrics),
                            Err(in_flight) => queue.push_back(Pending::Lookup(in_flight)),
                        }
                    } else {
                        queue.push_back(pending);
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(%peer, error = %err, "malformed socketmap netstring; closing the connection");
                    closing = true;
                }
            }
        }
        // Replies now known, in order.
        if head.is_none() {
            while let Some(next) = queue.pop_front() {
                match next.into_ready() {
                    Ok(reply) => write_reply(&mut out, &reply, &shared.metrics),
                    Err(in_flight) => {
                        head = Some(Box::pin(finish(in_flight, &shared.metrics)));
                        break;
                    }
                }
            }
        }
        if !out.is_empty() {
            if !write_out(&mut stream, &out, idle, peer).await {
                return;
            }
            out.clear();
            last_activity = tokio::time::Instant::now();
        }
        if head.is_none() && queue.is_empty() && closing {
            let _ = stream.shutdown().await;
            return;
        }
        if !marked_idle && head.is_none() && queue.is_empty() {
            // Nothing owed to the client: evictable, longest-idle first.
            slot.state.store(shared.registry.stamp(), Ordering::Release);
            marked_idle = true;
        }
        let reading = !closing && queue.len() + usize::from(head.is_some()) < max_pipelined;
        tokio::select! {
            biased;
            _ = &mut stopped, if !closing => {
                closing = true;
            }
            () = slot.evict.notified() => {
                if slot.state.load(Ordering::Acquire) == EVICTED {
                    tracing::debug!(%peer, "idle socketmap connection evicted to make room");
                    return;
                }
            }
            reply = async {
                match head.as_mut() {
                    Some(head) => head.await,
                    None => std::future::pending().await,
                }
            }, if head.is_some() => {
                head = None;
                write_reply(&mut out, &reply, &shared.metrics);
            }
            read = stream.read(&mut buf), if reading => match read {
                Ok(0) => {
                    if decoder.buffered() > 0 {
                        tracing::debug!(%peer, buffered = decoder.buffered(), "client closed the connection inside a request");
                    }
                    closing = true;
                }
                Ok(n) => {
                    if slot.state.swap(BUSY, Ordering::AcqRel) == EVICTED {
                        // Evicted while these bytes arrived: the client sees EOF and
                        // reconnects.
                        tracing::debug!(%peer, "socketmap connection evicted to make room");
                        return;
                    }
                    marked_idle = false;
                    let now = tokio::time::Instant::now();
                    last_activity = now;
                    if decoder.buffered() == 0 {
                        request_started = Some(now);
                    }
                    decoder.feed(buf.get(..n).unwrap_or_default());
                }
                Err(err) => {
                    tracing::debug!(%peer, error = %err, "socketmap read failed");
                    closing = true;
                }
            },
            () = &mut timer, if reading => {
                // A partial request must be complete within `idle` of its first byte; an
                // idle connection is closed `idle` after its last activity.
                let deadline = match request_started.filter(|_| decoder.buffered() > 0) {
                    Some(started) => started + idle,
                    None => last_activity + idle,
                };
                if tokio::time::Instant::now() < deadline {
                    timer.as_mut().reset(deadline);
                } else if decoder.buffered() > 0 {
                    tracing::info!(%peer, buffered = decoder.buffered(), timeout = ?idle, "socketmap request not completed in time; closing the connection");
                    return;
                } else if head.is_none() && queue.is_empty() {
                    tracing::debug!(%peer, "idle socketmap connection closed");
                    return;
                } else {
                    timer.as_mut().reset(tokio::time::Instant::now() + idle);
                }
            }
        }
    }
}

/// Appends the netstring of `reply` to `out` and counts it.
fn write_reply(out: &mut Vec<u8>, reply: &Reply, metrics: &Metrics) {
    metrics.count_reply(reply);
    reply.encode_into(out);
}

/// Writes `bytes`; false when the connection is to be dropped (an error, or a client that
/// has not read its replies for `idle`). A write the socket takes at once arms no timer.
async fn write_out<W: AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
    idle: Duration,
    peer: &str,
) -> bool {
    let done = {
        let mut attempt = std::pin::pin!(wr.write(bytes));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match attempt.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Ok(n)) => n,
            std::task::Poll::Ready(Err(err)) => {
                tracing::debug!(%peer, error = %err, "socketmap write failed");
                return false;
            }
            std::task::Poll::Pending => 0,
        }
    };
    let rest = bytes.get(done..).unwrap_or_default();
    if rest.is_empty() {
        return true;
    }
    match tokio::time::timeout(idle, wr.write_all(rest)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::debug!(%peer, error = %err, "socketmap write failed");
            false
        }
        Err(_) => {
            tracing::debug!(%peer, "client does not read its replies; closing");
            false
        }
    }
}
