//! Listening sockets that close without dropping connections. When asked to close, a
//! [`ClosableListener`] first takes every connection the kernel has already accepted on its
//! behalf (the listen backlog), hands them on to be answered, and only then closes its
//! socket; later connections are refused by the kernel instead of being reset unanswered.
//! The server answers requests on those last connections with 503 and `Connection: close`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Answers are small and latency-bound: send each write at once. With Nagle's algorithm, an
/// HTTP/2 (gRPC) answer split over several writes waits on the client's delayed ACK, ~40 ms.
pub fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// Tells listeners to close, and tells whoever closes them when the last connections they
/// took have been answered. Cheap to clone.
#[derive(Clone, Default)]
pub struct ListenerGate {
    inner: Arc<GateState>,
}

#[derive(Default)]
struct GateState {
    closing: AtomicBool,
    close: Notify,
    /// Listeners still open.
    open: AtomicUsize,
    /// Connections taken from a backlog while closing, not yet finished.
    last_connections: AtomicUsize,
    changed: Notify,
}

impl ListenerGate {
    /// Ask every listener of this gate to take its backlog and close.
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.close.notify_waiters();
    }

    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Wait until every listener has closed its socket and every connection taken from a
    /// backlog meanwhile has been answered and closed.
    pub async fn closed(&self) {
        loop {
            let mut changed = std::pin::pin!(self.inner.changed.notified());
            changed.as_mut().enable();
            if self.inner.open.load(Ordering::Acquire) == 0
                && self.inner.last_connections.load(Ordering::Acquire) == 0
            {
                return;
            }
            changed.await;
        }
    }

    fn settle(&self, counter: &AtomicUsize) {
        counter.fetch_sub(1, Ordering::AcqRel);
        self.inner.changed.notify_waiters();
    }
}

/// A TCP listener that closes through its [`ListenerGate`]; see the module documentation.
pub struct ClosableListener {
    socket: Option<TcpListener>,
    local_addr: SocketAddr,
    gate: ListenerGate,
}

impl ClosableListener {
    pub fn new(socket: TcpListener, gate: ListenerGate) -> std::io::Result<Self> {
        let local_addr = socket.local_addr()?;
        gate.inner.open.fetch_add(1, Ordering::AcqRel);
        Ok(Self {
            socket: Some(socket),
            local_addr,
            gate,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next connection; once the gate closes, the backlog's, then none ever again.
    pub async fn accept(&mut self) -> (TrackedStream, SocketAddr) {
        loop {
            let Some(socket) = &self.socket else {
                return std::future::pending().await;
            };
            // Registered before the check, so a close in between is not missed.
            let gate = self.gate.clone();
            let mut close = std::pin::pin!(gate.inner.close.notified());
            close.as_mut().enable();
            let accepted = if self.gate.is_closing() {
                match socket.accept().now_or_never() {
                    Some(accepted) => accepted.map(|c| (c, true)),
                    None => {
                        self.close_socket();
                        continue;
                    }
                }
            } else {
                tokio::select! {
                    accepted = socket.accept() => accepted.map(|c| (c, false)),
                    _ = &mut close => continue,
                }
            };
            match accepted {
                Ok(((stream, peer), last)) => {
                    no_delay(&stream);
                    let gate = last.then(|| {
                        self.gate
                            .inner
                            .last_connections
                            .fetch_add(1, Ordering::AcqRel);
                        self.gate.clone()
                    });
                    return (TrackedStream { stream, gate }, peer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn close_socket(&mut self) {
        if self.socket.take().is_some() {
            self.gate.settle(&self.gate.inner.open);
        }
    }
}

impl Drop for ClosableListener {
    fn drop(&mut self) {
        self.close_socket();
    }
}

impl axum::serve::Listener for ClosableListener {
    type Io = TrackedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        ClosableListener::accept(self).await
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// A connection; one taken from the backlog while closing is counted until it is dropped.
pub struct TrackedStream {
    stream: TcpStream,
    gate: Option<ListenerGate>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if let Some(gate) = &self.gate {
            gate.settle(&gate.inner.last_connections);
        }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
