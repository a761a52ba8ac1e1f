//! The HTTP/1.1 server loop: every connection has a deadline, their number is capped, and a
//! connection closed after an early answer (a 413 before the body was read) lingers so the client
//! reads the answer instead of a reset.
//!
//! `axum::serve` has no header-read or idle timeout, so a client sending half a header held its
//! connection (and a file descriptor) forever. Here each connection is in one phase:
//!
//! - waiting for a request header: it must be complete `header_read_timeout` after the connection
//!   opened, or after the first byte of the next request on a kept-alive connection;
//! - idle between requests, or busy (body, handler, response): closed once nothing has moved
//!   either way for `idle_timeout` (a slow body, a client that stops reading its response).
//!
//! The phases are tracked in the connection's I/O wrapper (it sees every byte) and enforced by a
//! watchdog beside the connection; hyper's own header timer would also cut idle keep-alive
//! connections at the header deadline.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

/// Timeouts of every connection (from the `http` config section).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Bytes a lingering close reads and discards at most, and for how long.
const LINGER_BYTES: usize = 4 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(5);
/// Closes lingering, and refusals being answered, at most at once (each holds a descriptor).
const MAX_LINGERING: usize = 256;

/// The open connections of all listeners of one process.
pub struct Connections {
    open: Arc<Semaphore>,
    max: usize,
    lingering: Arc<Semaphore>,
    pub timeouts: Timeouts,
}

impl Connections {
    pub fn new(max: usize, timeouts: Timeouts) -> Arc<Self> {
        Arc::new(Self {
            open: Arc::new(Semaphore::new(max)),
            max,
            lingering: Arc::new(Semaphore::new(MAX_LINGERING)),
            timeouts,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.open.available_permits()
    }
}

/// Serves `router` on `listener` until `stop` turns true, then lets open connections finish
/// their requests (each still bound by its deadlines) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors (EMFILE) or memory: wait rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match connections.open.clone().try_acquire_owned() {
            Ok(permit) => {
                tasks.spawn(serve_connection(stream, peer, router.clone(), connections.clone(), stop.clone(), permit));
            }
            Err(_) => refuse(stream, &connections),
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Above `max_connections`: a short 503 and a lingering close, or a plain close when too many
/// refusals are already under way.
fn refuse(stream: TcpStream, connections: &Connections) {
    let Ok(permit) = connections.lingering.clone().try_acquire_owned() else {
        return;
    };
    tracing::debug!("connection refused: http.max_connections reached");
    tokio::spawn(async move {
        let stream = stream;
        const BODY: &str = "{\"error\":\"temporarily_unavailable\",\"error_description\":\"too many connections\"}";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
            BODY.len()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), write_all(&stream, answer.as_bytes())).await;
        linger(stream, 64 * 1024, Duration::from_secs(1)).await;
        drop(permit);
    });
}

/// Sends FIN, then reads and discards what the client still sends (bounded), so closing does not
/// turn into a reset that destroys the answer before the client read it.
async fn linger(mut stream: TcpStream, max_bytes: usize, max_time: Duration) {
    let _ = std::future::poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx)).await;
    let _ = tokio::time::timeout(max_time, async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut left = max_bytes;
        while left > 0 {
            if stream.readable().await.is_err() {
                break;
            }
            match stream.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => left = left.saturating_sub(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
    })
    .await;
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    connections: Arc<Connections>,
    mut stop: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let deadline = Arc::new(Deadline::new());
    let io = TimedStream::new(stream, connections.timeouts, deadline.clone(), connections.lingering.clone(), permit);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.oneshot(req.map(Body::new)).await.unwrap_or_else(|e| match e {})) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = deadline.expired() => {
                // Dropping the connection closes the socket; no lingering for a client that stalled.
                deadline.killed.store(true, Ordering::Relaxed);
                tracing::debug!(%peer, "connection closed: timed out");
                break;
            }
        }
    }
}

/// When the connection must next show progress, in milliseconds since `start`.
struct Deadline {
    start: Instant,
    at_ms: AtomicU64,
    killed: AtomicBool,
}

impl Deadline {
    fn new() -> Self {
        Self { start: Instant::now(), at_ms: AtomicU64::new(u64::MAX), killed: AtomicBool::new(false) }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn set_in(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.at_ms.store(self.now_ms().saturating_add(ms), Ordering::Relaxed);
    }

    /// Resolves once the deadline passed without being moved.
    async fn expired(&self) {
        loop {
            let at = self.at_ms.load(Ordering::Relaxed);
            let now = self.now_ms();
            if now >= at {
                return;
            }
            tokio::time::sleep(Duration::from_millis(at - now)).await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (a new connection, or idle after a response).
    Waiting { fresh: bool },
    /// Reading a request header; `crlf` tracks the blank line that ends it.
    Header { crlf: u8 },
    /// Body, handler, response.
    Busy,
}

/// The connection's socket, moving its deadline as bytes flow.
struct TimedStream {
    inner: Option<TcpStream>,
    timeouts: Timeouts,
    deadline: Arc<Deadline>,
    phase: Phase,
    answered: bool,
    lingering: Arc<Semaphore>,
    _permit: OwnedSemaphorePermit,
}

impl TimedStream {
    fn new(
        inner: TcpStream,
        timeouts: Timeouts,
        deadline: Arc<Deadline>,
        lingering: Arc<Semaphore>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        deadline.set_in(timeouts.header_read);
        Self {
            inner: Some(inner),
            timeouts,
            deadline,
            phase: Phase::Waiting { fresh: true },
            answered: false,
            lingering,
            _permit: permit,
        }
    }

    fn on_read(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut crlf = match self.phase {
            Phase::Waiting { fresh } => {
                // A new connection's header deadline runs from the accept; a kept-alive one's from now.
                if !fresh {
                    self.deadline.set_in(self.timeouts.header_read);
                }
                0
            }
            Phase::Header { crlf } => crlf,
            Phase::Busy => {
                self.deadline.set_in(self.timeouts.idle);
                return;
            }
        };
        // The header ends at an empty line: "\n\n" or "\n\r\n" (httparse accepts bare LF).
        for &b in bytes {
            crlf = match (crlf, b) {
                (_, b'\n') if crlf >= 1 => {
                    self.phase = Phase::Busy;
                    self.deadline.set_in(self.timeouts.idle);
                    return;
                }
                (_, b'\n') => 1,
                (1, b'\r') => 2,
                _ => 0,
            };
        }
        self.phase = Phase::Header { crlf };
    }

    fn on_write(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.answered = true;
        // An interim "100 Continue" leaves the request running; anything else is the response.
        if self.phase == Phase::Busy && !bytes.starts_with(b"HTTP/1.1 100 ") {
            self.phase = Phase::Waiting { fresh: false };
        }
        if !matches!(self.phase, Phase::Header { .. }) {
            self.deadline.set_in(self.timeouts.idle);
        }
    }
}

impl Drop for TimedStream {
    fn drop(&mut self) {
        let Some(stream) = self.inner.take() else { return };
        // A connection that answered and is closed by us (not timed out) lingers: the client may
        // still be sending a body we did not read, and a close with unread data sends a reset.
        if !self.answered || self.deadline.killed.load(Ordering::Relaxed) {
            return;
        }
        let (Ok(handle), Ok(permit)) =
            (tokio::runtime::Handle::try_current(), self.lingering.clone().try_acquire_owned())
        else {
            return;
        };
        handle.spawn(async move {
            linger(stream, LINGER_BYTES, LINGER_TIME).await;
            drop(permit);
        });
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection already closed")
}

impl AsyncRead for TimedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Err(closed())) };
        let before = buf.filled().len();
        let r = Pin::new(inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            this.on_read(buf.filled().get(before..).unwrap_or_default());
        }
        r
    }
}

impl AsyncWrite for TimedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Err(closed())) };
        let r = Pin::new(inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.on_write(buf.get(..n).unwrap_or_default());
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(cx),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(cx),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Err(closed())) };
        let r = Pin::new(inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            // Only the start matters (the interim-response check); the first slice holds it.
            let first = bufs.iter().find(|b| !b.is_empty()).map(|b| &b[..n.min(b.len())]).unwrap_or_default();
            if n > 0 {
                this.on_write(first);
            }
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.is_write_vectored())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (TimedStream, TcpStream, Arc<Deadline>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let deadline = Arc::new(Deadline::new());
        let timeouts = Timeouts { header_read: Duration::from_secs(10), idle: Duration::from_secs(100) };
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let s = TimedStream::new(server, timeouts, deadline.clone(), Arc::new(Semaphore::new(1)), permit);
        (s, client, deadline)
    }

    #[tokio::test]
    async fn phases_follow_the_bytes() {
        let (mut s, _client, d) = pair().await;
        let header_deadline = d.at_ms.load(Ordering::Relaxed);
        assert!((9_000..=10_100).contains(&header_deadline));
        // Dribbling header bytes does not move the header deadline.
        s.on_read(b"GET / HTTP/1.1\r\nHost: x\r\n");
        s.on_read(b"X-A: b\r");
        assert_eq!(d.at_ms.load(Ordering::Relaxed), header_deadline);
        assert!(matches!(s.phase, Phase::Header { .. }));
        s.on_read(b"\n\r");
        s.on_read(b"\nbody");
        assert_eq!(s.phase, Phase::Busy);
        assert!(d.at_ms.load(Ordering::Relaxed) >= 99_000);
        s.on_write(b"HTTP/1.1 100 Continue\r\n\r\n");
        assert_eq!(s.phase, Phase::Busy);
        s.on_write(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(s.phase, Phase::Waiting { fresh: false });
        // The next request on the kept-alive connection gets a fresh header deadline.
        s.on_read(b"P");
        assert!(d.at_ms.load(Ordering::Relaxed) <= 10_100);
        s.on_read(b"OST / HTTP/1.1\n\n");
        assert_eq!(s.phase, Phase::Busy);
    }
}
