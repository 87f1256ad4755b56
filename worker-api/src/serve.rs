//! The HTTP server: our own accept loop over hyper's HTTP/1 connection driver,
//! so that no client can hold a socket for longer than the edge allows.
//!
//! - **Headers**: once the first byte of a request arrives, its headers must be
//!   complete within `SPOTCHECK_HTTP_HEADER_TIMEOUT_SECS`, or the connection is
//!   closed (a client sending one byte a second is cut off).
//! - **Body**: once the headers are in, the whole body must arrive within
//!   `SPOTCHECK_HTTP_BODY_TIMEOUT_SECS`, or the request is answered `408
//!   request_timeout` and the connection closed ([`body_deadline`], behind
//!   each route's access guard).
//! - **Idle**: a connection with no request in progress is closed after
//!   `SPOTCHECK_HTTP_IDLE_TIMEOUT_SECS`.
//! - **Connections**: at most `SPOTCHECK_HTTP_MAX_CONNECTIONS` are served at
//!   once. Above that, new connections are not accepted: they wait in the
//!   kernel's listen backlog until one closes (and the timeouts above make sure
//!   one does), so a burst is queued instead of refused, and the process never
//!   runs out of file descriptors or memory for sockets. Requests on the
//!   connections already served are answered as usual meanwhile.
//!
//! hyper's own header timeout is not used: it also runs while a kept-alive
//! connection waits for its next request, which would make the idle timeout
//! the header timeout. Here the header clock starts at the first byte.
//!
//! Every connection task is spawned on the caller's [`TaskTracker`]. On `stop`
//! the loop stops accepting (the listener is dropped, so new connections are
//! refused), idle connections close at once and busy ones after their
//! response; the caller waits for the tracker within its grace period.

use crate::error::problem_response;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// The limits the server keeps (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// A connection with no request in progress.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Limits {
    /// The limits of `config`.
    pub fn of(config: &crate::Config) -> Self {
        Self {
            header_timeout: Duration::from_secs(config.edge.header_timeout_secs),
            idle_timeout: Duration::from_secs(config.edge.idle_timeout_secs),
            max_connections: config.edge.max_connections.max(1) as usize,
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, each connection a
/// task of `tracker`. Returns once it has stopped accepting.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // A slot first: above the cap, connections stay in the backlog.
        let slot = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        tracker.spawn(connection(
            stream,
            peer,
            app.clone(),
            limits,
            stop.clone(),
            slot,
        ));
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Drives one connection until it ends, times out, or drains after `stop`.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let open = metrics::gauge!("spotcheck_http_connections");
    open.increment(1.0);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(requests.clone());
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = stop.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = sleep_until(deadline) => {
                if let Some((at, reason)) = activity.deadline(&limits)
                    && at <= Instant::now()
                {
                    metrics::counter!("spotcheck_http_connections_closed_total", "reason" => reason)
                        .increment(1);
                    tracing::debug!(client.addr = %peer, reason, "closing a connection");
                    break;
                }
            }
        }
    }
    open.decrement(1.0);
}

async fn sleep_until(deadline: Option<(Instant, &'static str)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, as far as its timeouts are concerned.
struct Activity {
    phase: Mutex<Phase>,
    /// Woken when a deadline may have moved earlier.
    changed: Notify,
}

struct Phase {
    /// Requests whose response has not been sent in full.
    in_flight: usize,
    /// When the first byte of the next request's headers arrived.
    head_since: Option<Instant>,
    /// When the connection last had nothing in progress.
    idle_since: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase {
                in_flight: 0,
                head_since: None,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes arrived: between requests, they start the header clock.
    fn read(&self) {
        let mut phase = self.phase();
        if phase.in_flight == 0 && phase.head_since.is_none() {
            phase.head_since = Some(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// When the connection must close if nothing changes, and why.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, &'static str)> {
        let phase = self.phase();
        match (phase.head_since, phase.in_flight) {
            (Some(since), _) => Some((since + limits.header_timeout, "header_timeout")),
            (None, 0) => Some((phase.idle_since + limits.idle_timeout, "idle")),
            (None, _) => None,
        }
    }
}

/// One request in progress, from its complete headers to the end of its
/// response body (or until it is dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        let mut phase = activity.phase();
        phase.in_flight += 1;
        phase.head_since = None;
        drop(phase);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        phase.in_flight -= 1;
        if phase.in_flight == 0 {
            phase.idle_since = Instant::now();
            drop(phase);
            self.0.changed.notify_one();
        }
    }
}

/// A response body that keeps its request in flight until it is sent.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How long a request body may take to arrive, and how large it may be.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// From the end of the headers to the end of the body.
    pub timeout: Duration,
    /// Largest accepted body.
    pub max_bytes: usize,
}

impl BodyRules {
    /// The rules of `config`.
    pub fn of(config: &crate::Config) -> Self {
        Self {
            timeout: Duration::from_secs(config.edge.body_timeout_secs),
            max_bytes: config.max_body_bytes,
        }
    }
}

/// Middleware (behind each route's access guard): reads the whole request
/// body within its deadline before the handler runs; a body that is late is
/// answered `408 request_timeout` and the connection closed, one that is too
/// large `413 payload_too_large`. (Bodies are small JSON documents here, so
/// holding one in memory is what the handler would do anyway.) A request the
/// guard refuses, or one for no route, is answered without its body being
/// read; hyper then discards the body, under the header deadline, since no
/// request is in progress.
pub async fn body_deadline(
    State(rules): State<BodyRules>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let read = Limited::new(body, rules.max_bytes).collect();
    match tokio::time::timeout(rules.timeout, read).await {
        Ok(Ok(collected)) => {
            let body = Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => problem_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large".into(),
        ),
        Ok(Err(_)) => problem_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read".into(),
        ),
        Err(_) => {
            metrics::counter!("spotcheck_http_body_timeouts_total").increment(1);
            let mut response = problem_response(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} seconds",
                    rules.timeout.as_secs()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            max_connections: 8,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_clock_starts_at_the_first_byte_and_stops_with_the_request() {
        let activity = Arc::new(Activity::new());
        let opened = Instant::now();
        let (idle_at, why) = activity.deadline(&limits()).unwrap();
        assert_eq!((idle_at - opened, why), (Duration::from_secs(60), "idle"));
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.read();
        let (head_at, why) = activity.deadline(&limits()).unwrap();
        assert_eq!(
            (head_at - opened, why),
            (Duration::from_secs(32), "header_timeout")
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        activity.read();
        assert_eq!(
            activity.deadline(&limits()).unwrap().0,
            head_at,
            "more bytes of the same headers do not move the clock"
        );
        let request = InFlight::start(activity.clone());
        activity.read();
        assert_eq!(activity.deadline(&limits()), None, "a request in progress");
        tokio::time::advance(Duration::from_secs(5)).await;
        drop(request);
        let (idle_at, why) = activity.deadline(&limits()).unwrap();
        assert_eq!((idle_at - opened, why), (Duration::from_secs(96), "idle"));
    }
}
