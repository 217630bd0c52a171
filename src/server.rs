//! The HTTP server loop, with the connection hygiene `axum::serve` does not offer: a
//! cap on open connections, a deadline for a request's head (slowly trickling clients
//! are cut off), an idle timeout for keep-alive connections, and a graceful shutdown.
//!
//! Deadlines, per connection: a new connection must deliver a complete request head
//! within `header_read_timeout`; after a response it may stay idle for `idle_timeout`,
//! and once the first byte of its next request arrives the head deadline applies again.
//! No deadline runs while a request is being served. Upgraded connections (WebSockets)
//! leave this loop but keep their connection slot until they close.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::Config;

/// The server's connection settings.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings {
    /// `CURBPAY_HTTP_HEADER_READ_TIMEOUT`.
    pub header_read_timeout: Duration,
    /// `CURBPAY_HTTP_IDLE_TIMEOUT`.
    pub idle_timeout: Duration,
    /// `CURBPAY_HTTP_MAX_CONNECTIONS`.
    pub max_connections: usize,
}

impl From<&Config> for ServerSettings {
    fn from(config: &Config) -> Self {
        ServerSettings {
            header_read_timeout: config.http_header_read_timeout,
            idle_timeout: config.http_idle_timeout,
            max_connections: config.http_max_connections,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets
/// requests in flight finish, closes idle connections and returns once every
/// connection (but upgraded ones) is done. Handlers see the peer as
/// `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    // Every connection task holds a receiver: `closed()` on the sender resolves once
    // they have all ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // Past the cap, stop accepting: new connections wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, peer, permit, router.clone(), settings, stop_rx.clone()));
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
}

/// Per-connection accept errors are the peer's problem; running out of file
/// descriptors is ours: back off instead of spinning.
async fn accept_error(err: io::Error) {
    use io::ErrorKind::*;
    if matches!(err.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    router: Router,
    settings: ServerSettings,
    mut stop: watch::Receiver<bool>,
) {
    let clock = Arc::new(Deadline::new(settings));
    let io = TokioIo::new(Tracked { inner: stream, clock: clock.clone(), _permit: permit });
    let service = hyper::service::service_fn({
        let clock = clock.clone();
        move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = clock.request_started();
            let response = router.clone().oneshot(request.map(Body::new));
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Our own deadlines replace hyper's header timer, which would also end every
    // keep-alive connection idle for longer than the head deadline.
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, error = %err, "connection ended with an error");
                }
                return;
            }
            () = clock.expired() => {
                tracing::debug!(%peer, "closing a connection past its head or idle deadline");
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    // Nothing in flight (an idle connection, or one still sending a
                    // head): close now. Otherwise finish the request, then close.
                    if clock.deadline().is_some() {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// What the connection is waiting for.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The head of a request, until the deadline.
    Head { deadline: Instant },
    /// The next request on a kept-alive connection; closed at the deadline unless a
    /// byte arrives first.
    Idle { deadline: Instant },
    /// Requests are being served.
    Busy { in_flight: usize },
}

struct Deadline {
    settings: ServerSettings,
    phase: Mutex<Phase>,
    changed: Notify,
}

/// Marks a request in flight; dropping it ends the request.
struct Busy(Arc<Deadline>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut phase = self.0.phase.lock().expect("connection phase lock");
        if let Phase::Busy { in_flight } = *phase {
            *phase = if in_flight > 1 {
                Phase::Busy { in_flight: in_flight - 1 }
            } else {
                Phase::Idle { deadline: Instant::now() + self.0.settings.idle_timeout }
            };
        }
        drop(phase);
        self.0.changed.notify_waiters();
    }
}

impl Deadline {
    fn new(settings: ServerSettings) -> Deadline {
        Deadline {
            settings,
            phase: Mutex::new(Phase::Head { deadline: Instant::now() + settings.header_read_timeout }),
            changed: Notify::new(),
        }
    }

    fn request_started(self: &Arc<Self>) -> Busy {
        let mut phase = self.phase.lock().expect("connection phase lock");
        *phase = match *phase {
            Phase::Busy { in_flight } => Phase::Busy { in_flight: in_flight + 1 },
            _ => Phase::Busy { in_flight: 1 },
        };
        drop(phase);
        self.changed.notify_waiters();
        Busy(self.clone())
    }

    /// Bytes arrived: on an idle connection they start the next request's head.
    fn bytes_read(&self) {
        let mut phase = self.phase.lock().expect("connection phase lock");
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head { deadline: Instant::now() + self.settings.header_read_timeout };
            drop(phase);
            self.changed.notify_waiters();
        }
    }

    fn deadline(&self) -> Option<Instant> {
        match *self.phase.lock().expect("connection phase lock") {
            Phase::Head { deadline } | Phase::Idle { deadline } => Some(deadline),
            Phase::Busy { .. } => None,
        }
    }

    /// Resolves once the current deadline passes.
    async fn expired(&self) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before reading the phase, so no change is missed.
            changed.as_mut().enable();
            match self.deadline() {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// The connection's socket, reporting reads to its deadline clock and holding its
/// connection slot for as long as it is open (through an upgrade too).
struct Tracked {
    inner: TcpStream,
    clock: Arc<Deadline>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
