//! The TLS-RPT part of a running daemon: starts the flush ticker, the collector and the
//! send scheduler that the configuration turns on; reload and shutdown.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::collector::{bind_collector, collect};
use super::error::TlsrptError;
use super::events_file::EventsFile;
use super::flush::{Flusher, unix_seconds, until_next_tick};
use super::probe::{ProbeSetup, Prober};
use super::recorder::Recorder;
use super::schedule::{Schedule, build_sender};
use crate::config::{ResolverConfig, TlsrptConfig};
use crate::metrics::Metrics;
use mta_sts_net::Clock;

/// The TLS-RPT part of a running daemon: the recorder, the flush ticker, the collector
/// socket and the send scheduler (see the module documentation).
pub struct TlsrptService {
    flusher: Arc<Flusher>,
    prober: Arc<Prober>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    socket: Option<PathBuf>,
}

impl std::fmt::Debug for TlsrptService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsrptService")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl TlsrptService {
    /// Starts what `config` turns on. `resolver` gives DNS servers, extra CA certificates
    /// and connect-to overrides to the sender; `clock` stamps events and drives the send
    /// schedule.
    pub async fn start(
        config: &TlsrptConfig,
        resolver: &ResolverConfig,
        recorder: Arc<Recorder>,
        prober: Arc<Prober>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<TlsrptService, TlsrptError> {
        recorder.configure(config.events.is_some());
        prober.install(ProbeSetup::new(config, resolver, Arc::clone(&clock))?);
        let events = Arc::new(EventsFile::new(config.events.clone()));
        let flusher = Arc::new(Flusher {
            recorder,
            events,
            metrics: Arc::clone(&metrics),
            last: Mutex::new(unix_seconds(&*clock)),
            clock,
        });
        let sender = match &config.send {
            Some(send) => Some(build_sender(send, resolver)?),
            None => None,
        };
        let socket = match &config.socket {
            Some(path) => Some((
                bind_collector(path, config.socket_group.as_deref(), config.socket_mode).await?,
                path.clone(),
            )),
            None => None,
        };
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        {
            let flusher = Arc::clone(&flusher);
            let mut stop = stop_rx.clone();
            let interval = config.flush_interval;
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(until_next_tick(interval, &*flusher.clock)) => {}
                        _ = stop.changed() => break,
                    }
                    if flusher.recorder.enabled() {
                        let f = Arc::clone(&flusher);
                        let _ = tokio::task::spawn_blocking(move || f.flush()).await;
                    }
                }
            }));
        }
        let socket_path = socket.as_ref().map(|(_, p)| p.clone());
        if let Some((socket, path)) = socket {
            tracing::info!(path = %path.display(), "TLS-RPT collector listening (libtlsrpt datagrams)");
            tasks.push(tokio::spawn(collect(
                socket,
                Arc::clone(&flusher),
                stop_rx.clone(),
            )));
        }
        if let (Some(sender), Some(send)) = (sender, &config.send) {
            let schedule = Schedule {
                sender,
                flusher: Arc::clone(&flusher),
                jitter: send.jitter,
                retry_interval: send.retry_interval,
            };
            let handle = tokio::runtime::Handle::current();
            let stop = stop_rx.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                handle.block_on(schedule.run(stop));
            }));
            tracing::info!(db = %send.db.display(), submitter = %send.submitter, "TLS-RPT reports are generated after each UTC day");
        }
        if let Some(path) = &config.events {
            tracing::info!(path = %path.display(), "TLS-RPT events recorded");
        }
        if prober.enabled() {
            tracing::info!(interval = ?config.probe_interval, concurrency = config.probe_concurrency, "MX hosts of testing-mode domains are probed for TLS-RPT");
        }
        Ok(TlsrptService {
            flusher,
            prober,
            stop,
            tasks: Mutex::new(tasks),
            socket: socket_path,
        })
    }

    /// The testing-mode prober the lookups hand `testing` policies to.
    pub fn prober(&self) -> &Arc<Prober> {
        &self.prober
    }

    /// The recorder the lookups count into.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.flusher.recorder
    }

    /// Appends the counts since the last flush to the events file now.
    pub async fn flush(&self) {
        let f = Arc::clone(&self.flusher);
        let _ = tokio::task::spawn_blocking(move || f.flush()).await;
    }

    /// Applies a reloaded configuration: flushes, then switches `events`. The other keys
    /// (`socket`, `socket_mode`, `flush_interval`, `[tlsrpt.send]`) take effect after a
    /// restart; `app::restart_pending` names the changed ones.
    pub async fn reload(&self, config: &TlsrptConfig) {
        self.flush().await;
        self.flusher.events.set_path(config.events.clone());
        self.flusher.recorder.configure(config.events.is_some());
    }

    /// Stops the tasks, flushes the last counts and removes the collector socket.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            // The scheduler may be in the middle of a delivery; give it a moment.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("TLS-RPT task did not stop within 5s");
            }
        }
        self.flush().await;
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for TlsrptService {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
