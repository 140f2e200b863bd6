//! Accepting connections with limits, so idle or slow clients cannot use up
//! the server: at most so many connections in all and per client address, a
//! deadline for a request's headers (which also ends a keep-alive connection
//! left idle that long), and a deadline for every write a client does not
//! take (a reader that stops reading loses its connection, and the response
//! it held, instead of holding them forever).
//!
//! axum's own `serve` configures none of these; this is the same hyper
//! connection loop with them set, and TLS (rustls) when the server is given
//! a certificate: `gen3 drs-pull` only speaks HTTPS.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

/// The limits on connections (`commons serve` flags).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_client: usize,
    /// Longest wait for a request's headers, the first or the next.
    pub header_timeout: Duration,
    /// Longest a client may leave a response's bytes untaken.
    pub write_timeout: Duration,
    /// How long a shutdown waits for requests in flight.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_per_client: 256,
            header_timeout: Duration::from_secs(30),
            // A slow but steady reader may see no room in its socket for a
            // while after a fast start (Linux wakes writers only when a third
            // of the send buffer is free): five minutes is generous for that.
            write_timeout: Duration::from_secs(300),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

/// Open connections, in all and per client address.
#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
struct Admission {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("connection count poisoned");
        open.total -= 1;
        if let Some(n) = open.per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.per_client.remove(&self.client);
            }
        }
    }
}

fn admit(open: &Arc<Mutex<Open>>, client: IpAddr, limits: ConnectionLimits) -> Option<Admission> {
    let mut counts = open.lock().expect("connection count poisoned");
    let mine = counts.per_client.get(&client).copied().unwrap_or(0);
    if counts.total >= limits.max_connections || mine >= limits.max_per_client {
        return None;
    }
    counts.total += 1;
    *counts.per_client.entry(client).or_default() += 1;
    Some(Admission {
        open: open.clone(),
        client,
    })
}

/// The TLS settings of `--tls-cert` and `--tls-key` (PEM files): HTTP/1.1
/// over TLS 1.2 or 1.3, on the binary's one crypto provider.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let private_key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, private_key)
    .context("the certificate and the key do not go together")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serve `app` on `listener` (over TLS when `tls` is given) until `shutdown`
/// completes, then let the open connections finish their requests.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    limits: ConnectionLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let open = Arc::new(Mutex::new(Open::default()));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(admission) = admit(&open, peer.ip(), limits) else {
            tracing::debug!(client = %peer.ip(), "connection refused: too many open");
            continue;
        };
        // Streamed replies go out in several writes; with Nagle's algorithm the
        // last one waited for the client's delayed ACK (40 ms per GraphQL list).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(request)
            });
        // HTTP/1 only: Gen3's clients speak it, and sniffing for HTTP/2 would
        // wait on a silent client before any header deadline starts.
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let io = WriteDeadline::new(stream, limits.write_timeout);
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _admission = admission;
            let ended = match acceptor {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(io), service))
                        .await
                }
                Some(acceptor) => {
                    // The handshake has the headers' deadline too.
                    let handshake =
                        tokio::time::timeout(limits.header_timeout, acceptor.accept(io)).await;
                    let Ok(Ok(stream)) = handshake else {
                        tracing::debug!(client = %peer.ip(), "TLS handshake failed");
                        return;
                    };
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = ended {
                tracing::trace!(error = %e, "connection ended");
            }
        });
    }
    drop(listener);
    // Requests in flight may finish; long streams do not hold the exit for ever.
    tracing::info!(
        timeout_seconds = limits.shutdown_timeout.as_secs(),
        "shutting down: no new connections; waiting for requests in flight"
    );
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown timeout; closing them");
    }
}

/// A stream whose writes fail once the peer has taken nothing for `limit`.
struct WriteDeadline {
    stream: TcpStream,
    limit: Duration,
    /// Armed while a write waits on the peer.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WriteDeadline {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        Self {
            stream,
            limit,
            stalled: None,
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client took nothing of the response for too long",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for WriteDeadline {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteDeadline {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch(cx, result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
