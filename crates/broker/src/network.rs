//! The network layer: accepts connections and turns a byte stream into
//! request frames and response frames back, in order.
//!
//! Each connection has a reader and a writer. The reader bounds and reads a
//! frame, hands it to [`crate::apis::handle_request`], which does the part of
//! the work that must happen in request order (e.g. appending a produce) and
//! returns the rest as a future (e.g. waiting for fsync or for fetch data).
//! The writer awaits those futures strictly in order, so responses leave in
//! request order while slow requests don't stop the reader: pipelined
//! `acks=all` produces on one connection share fsyncs. Fetched records go
//! from the log file to the socket with sendfile ([`crate::frame`]).
//!
//! Every client listener has its own accept loop; a connection knows the
//! listener it came in on ([`ListenerSecurity`]), so answers that name
//! brokers use that listener's advertised addresses.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use runnel_storage::ReadPlan;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::apis::{handle_request, PendingResponse};
use crate::frame::{FramePart, ResponseFrame};
use crate::security::{ListenerSecurity, ANONYMOUS};
use crate::Broker;

/// Requests accepted on one connection before their responses are written;
/// past this the reader waits (backpressure on a client that never reads).
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 512;
/// Buffer growth step while a frame arrives, so an untrusted length is never
/// allocated before its bytes have actually been received.
const READ_CHUNK: usize = 64 * 1024;

/// What a connection is while it lives: where it came from, on which
/// listener, and who it is (the principal).
#[derive(Debug, Clone)]
pub struct ConnectionState {
    pub peer: SocketAddr,
    pub listener: Arc<ListenerSecurity>,
    /// Kafka's principal, `User:ANONYMOUS` until authenticated.
    pub principal: Arc<str>,
    pub sasl: SaslProgress,
    /// SCRAM: the exchange between the client's first and final message.
    pub scram: Option<Box<crate::security::scram::ScramExchange>>,
    /// OAUTHBEARER: why the token was refused, once the error challenge is
    /// sent and the client's 0x01 acknowledgement is awaited.
    pub oauthbearer_failure: Option<String>,
    /// Muted while its client is throttled by a quota (no request is read).
    pub throttle: crate::quota::SharedGate,
    /// KIP-368: when the authenticated SASL session ends, and a re-authentication in progress.
    pub session: SaslSession,
}

/// An authenticated SASL session's lifetime (`connections.max.reauth.ms`)
/// and re-authentication on the same connection (KIP-368), as Kafka's
/// `KafkaChannel` and `SaslServerAuthenticator` do it.
#[derive(Debug, Clone, Default)]
pub struct SaslSession {
    /// The mechanism the connection authenticated with.
    pub mechanism: Option<crate::security::sasl::Mechanism>,
    /// Past this, any request but a SaslHandshake that begins a
    /// re-authentication closes the connection. None: the session never ends.
    pub expires_at: Option<std::time::Instant>,
    /// When the last re-authentication began: at most one a second.
    pub last_reauthentication: Option<std::time::Instant>,
    /// During a re-authentication: the principal it must keep (mechanism: `mechanism`).
    pub reauthenticating_as: Option<Arc<str>>,
}

impl SaslSession {
    /// Kafka re-authenticates only sessions that end, and not twice within a second.
    pub fn may_begin_reauthentication(&self, now: std::time::Instant) -> bool {
        self.expires_at.is_some() && self.last_reauthentication.is_none_or(|last| now.duration_since(last) >= std::time::Duration::from_secs(1))
    }

    pub fn expired(&self, now: std::time::Instant) -> bool {
        self.expires_at.is_some_and(|at| now > at)
    }
}

/// Where a connection is in SASL authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslProgress {
    /// The listener has no SASL.
    NotRequired,
    /// Only ApiVersions and SaslHandshake are served.
    AwaitingHandshake,
    /// The mechanism is chosen; SaslAuthenticate carries the tokens.
    AwaitingToken { mechanism: crate::security::sasl::Mechanism, handshake_version: i16 },
    Authenticated,
    /// Authentication failed: the connection closes once its answers are out.
    Failed,
}

impl SaslProgress {
    /// May requests other than ApiVersions and the SASL ones be served?
    pub fn allows_requests(self) -> bool {
        matches!(self, SaslProgress::NotRequired | SaslProgress::Authenticated)
    }
}

impl ConnectionState {
    pub fn new(peer: SocketAddr, listener: Arc<ListenerSecurity>) -> ConnectionState {
        let sasl = if listener.sasl.is_some() { SaslProgress::AwaitingHandshake } else { SaslProgress::NotRequired };
        ConnectionState { peer, listener, principal: Arc::from(ANONYMOUS), sasl, scram: None, oauthbearer_failure: None, throttle: Default::default(), session: SaslSession::default() }
    }
}

/// Accepts one listener's connections until shutdown.
pub async fn serve(
    broker: Arc<Broker>,
    listener: TcpListener,
    security: Arc<ListenerSecurity>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let quotas = broker.connection_quotas.clone();
    let listener_name = security.name.to_ascii_lowercase();
    loop {
        // At `max.connections` the listener stops accepting (Kafka's acceptor waits
        // for a slot): new connections wait in the kernel's accept queue.
        tokio::select! {
            _ = quotas.wait_for_slot(&listener_name) => {}
            _ = shutdown.changed() => return,
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let permit = match quotas.admit(&listener_name, peer.ip()) {
                        Ok(permit) => permit,
                        Err(refused) => {
                            tracing::info!(%peer, listener = %security.name, "rejected connection: {refused} (max.connections.per.ip)");
                            drop(stream);
                            continue;
                        }
                    };
                    // KIP-612: over its address's connection_creation_rate the connection
                    // is held (nothing read), then closed, as Kafka's acceptor does.
                    if !quotas.is_protected(&listener_name) {
                        let hold = broker.quotas.record_ip_connection(&broker.cluster.image().client_quotas, peer.ip(), std::time::Instant::now());
                        if !hold.is_zero() {
                            drop(permit);
                            tracing::debug!(%peer, listener = %security.name, hold_ms = hold.as_millis() as u64, "connection over its address's connection_creation_rate: closed after the throttle");
                            tokio::spawn(async move {
                                tokio::time::sleep(hold).await;
                                drop(stream);
                            });
                            continue;
                        }
                    }
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    let connection = ConnectionState::new(peer, security.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(e) = handle_connection(broker, stream, connection).await {
                            tracing::debug!(%peer, error = %e, "connection closed");
                        }
                    });
                    // Above `max.connection.creation.rate` the next accept waits (KIP-612).
                    let pause = quotas.record_creation(&listener_name);
                    if !pause.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(listener = %security.name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame length {0} is outside 0..={1} (socket.request.max.bytes)")]
    BadFrameLength(i32, usize),
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn handle_connection(broker: Arc<Broker>, stream: TcpStream, mut connection: ConnectionState) -> Result<(), ConnectionError> {
    let peer = connection.peer;
    let Some(acceptor) = connection.listener.tls.as_ref().map(|tls| tls.acceptor()) else {
        let (reader, writer) = stream.into_split();
        return run_connection(broker, reader, ConnectionWriter::Plain(writer), connection).await;
    };
    // A failed handshake ends this connection alone, with a line naming the peer.
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::warn!(%peer, listener = %connection.listener.name, error = %e, "TLS handshake failed; closing the connection");
            return Ok(());
        }
        Err(_) => {
            tracing::warn!(%peer, listener = %connection.listener.name, "TLS handshake not finished in {TLS_HANDSHAKE_TIMEOUT:?}; closing the connection");
            return Ok(());
        }
    };
    if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|certs| certs.first()) {
        let listener = &connection.listener;
        let principal = crate::security::tls::subject_dn(cert).and_then(|dn| match &listener.principal_mapper {
            Some(mapper) => mapper.name(&dn).map_err(|e| format!("ssl.principal.mapping.rules: {e}")),
            None => Ok(dn),
        });
        match principal.map(|name| format!("User:{name}")) {
            Ok(principal) => {
                tracing::info!(%peer, listener = %connection.listener.name, %principal, "TLS client authenticated by certificate");
                connection.principal = Arc::from(principal.as_str());
            }
            Err(e) => {
                tracing::warn!(%peer, listener = %connection.listener.name, error = %e, "closing the connection");
                return Ok(());
            }
        }
    }
    let (reader, writer) = tokio::io::split(tls);
    run_connection(broker, reader, ConnectionWriter::Tls(Box::new(writer)), connection).await
}

/// The sending half of a connection. Plain TCP keeps the zero-copy path for
/// log regions (sendfile); TLS must encrypt them, so they are read and written.
enum ConnectionWriter {
    Plain(OwnedWriteHalf),
    Tls(Box<tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>>>),
}

async fn run_connection(
    broker: Arc<Broker>,
    mut reader: impl AsyncRead + Unpin,
    writer: ConnectionWriter,
    mut connection: ConnectionState,
) -> Result<(), ConnectionError> {
    let peer = connection.peer;
    let (tx, rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT_PER_CONNECTION);
    let activity = Arc::new(Activity::new());
    let writer_task = tokio::spawn(write_responses(rx, writer, peer, activity.clone()));
    let max = broker.config.socket_request_max_bytes;
    let max_idle = u64::try_from(broker.config.connection_limits.connections_max_idle_ms).ok().map(std::time::Duration::from_millis);
    let result = async {
        loop {
            let frame_read = read_frame(&mut reader, max);
            tokio::pin!(frame_read);
            let read = loop {
                tokio::select! {
                    read = &mut frame_read => break read?,
                    // The writer stops early only when it closes the connection; stop reading then too.
                    _ = tx.closed() => return Ok(()),
                    _ = activity.idle_deadline(max_idle) => {
                        if activity.is_idle(max_idle) {
                            tracing::info!(%peer, listener = %connection.listener.name, "closing a connection idle for connections.max.idle.ms");
                            return Ok(());
                        }
                    }
                }
            };
            let Some(frame) = read else { return Ok(()) };
            // Only a whole request is activity: a client trickling bytes (slow loris) stays idle.
            activity.touch();
            if let Some(until) = connection.throttle.muted_until() {
                // A client over its quota (KIP-219): its next request waits out the throttle.
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = tx.closed() => return Ok(()),
                }
            }
            match handle_request(&broker, frame, &mut connection).await {
                Ok(Some(pending)) => {
                    activity.begin_request();
                    if tx.send(pending).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            if connection.sasl == SaslProgress::Failed {
                // The failure's (delayed) answer is queued; the writer sends it and closes.
                return Ok(());
            }
        }
    }
    .await;
    // The reason is logged before the socket closes, so whoever sees the close can find why.
    match &result {
        // A client going away mid-stream (reset, broken pipe) is ordinary.
        Err(ConnectionError::Io(e)) => tracing::debug!(%peer, error = %e, "closing connection"),
        Err(e) => tracing::info!(%peer, error = %e, "closing connection"),
        Ok(()) => {}
    }
    drop(tx);
    // Let already-accepted requests finish and their responses go out.
    let _ = writer_task.await;
    result
}

/// Writes the connection's responses in request order. A response that
/// cannot be encoded closes the connection: skipping it would give the next
/// answer to the wrong request (clients match answers by order and
/// correlation id), and leaving it out would hang its client.
async fn write_responses(mut rx: mpsc::Receiver<PendingResponse>, mut writer: ConnectionWriter, peer: SocketAddr, activity: Arc<Activity>) {
    while let Some(pending) = rx.recv().await {
        let frame = match pending.await {
            Ok(frame) => frame,
            Err(e) => {
                // Already logged at ERROR where it failed; this says what happens next.
                tracing::warn!(%peer, correlation_id = e.correlation_id, "closing the connection instead of skipping an answer");
                break;
            }
        };
        if let Err(e) = write_frame(&mut writer, frame).await {
            tracing::debug!(%peer, error = %e, "writing a response failed");
            return;
        }
        activity.end_request();
    }
    let _ = match &mut writer {
        ConnectionWriter::Plain(w) => w.shutdown().await,
        ConnectionWriter::Tls(w) => w.shutdown().await,
    };
}

/// Writes one response; on plain TCP log-file regions go from the page cache
/// to the socket (sendfile), on TLS they are read and encrypted.
async fn write_frame(writer: &mut ConnectionWriter, frame: ResponseFrame) -> std::io::Result<()> {
    match writer {
        ConnectionWriter::Plain(writer) => match frame {
            ResponseFrame::Bytes(bytes) => writer.write_all(&bytes).await,
            ResponseFrame::Spliced(parts) => {
                for part in parts {
                    match part {
                        FramePart::Bytes(bytes) => writer.write_all(&bytes).await?,
                        FramePart::File(plan) => send_file(writer.as_ref(), &plan).await?,
                    }
                }
                Ok(())
            }
        },
        ConnectionWriter::Tls(writer) => {
            match frame {
                ResponseFrame::Bytes(bytes) => writer.write_all(&bytes).await?,
                ResponseFrame::Spliced(parts) => {
                    for part in parts {
                        match part {
                            FramePart::Bytes(bytes) => writer.write_all(&bytes).await?,
                            FramePart::File(plan) => writer.write_all(&read_region(plan).await?).await?,
                        }
                    }
                }
            }
            // rustls holds encrypted records until flushed.
            writer.flush().await
        }
    }
}

/// Reads a planned log region off the async threads; a region that comes up
/// short (the file was truncated under us) is an error that closes the connection.
async fn read_region(plan: ReadPlan) -> std::io::Result<Bytes> {
    let len = plan.len;
    let bytes = tokio::task::spawn_blocking(move || plan.read()).await.map_err(std::io::Error::other)??;
    if bytes.len() != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("read {} of a planned {len}-byte log region", bytes.len())));
    }
    Ok(bytes)
}

/// Sends a planned log region with sendfile(2). The frame's length prefix is
/// already out, so a region that comes up short (the file was truncated
/// under us) is an error that closes the connection.
#[cfg(target_os = "linux")]
async fn send_file(stream: &TcpStream, plan: &ReadPlan) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    let Some(file) = &plan.file else { return Ok(()) };
    let (socket, source) = (stream.as_raw_fd(), file.as_raw_fd());
    let mut position = plan.position;
    let mut left = plan.len;
    while left > 0 {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let mut offset = libc::off_t::try_from(position).map_err(std::io::Error::other)?;
            // SAFETY: both descriptors are open for the duration of the call
            // (the stream and the plan's file are borrowed) and `offset` is a
            // valid, exclusively borrowed off_t.
            let n = unsafe { libc::sendfile(socket, source, &mut offset, left) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("log file ended {left} bytes before the planned region's end"),
                ))
            }
            Ok(n) => {
                position += n as u64;
                left -= n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
async fn send_file(stream: &TcpStream, plan: &ReadPlan) -> std::io::Result<()> {
    let bytes = plan.read()?;
    let mut written = 0;
    while written < bytes.len() {
        stream.writable().await?;
        match stream.try_write(&bytes[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// When a connection last did something (completed a request or sent an
/// answer) and how many answers it owes: `connections.max.idle.ms` closes a
/// connection that owes none and did nothing for that long.
struct Activity {
    since: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
    owed: std::sync::atomic::AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity { since: std::time::Instant::now(), last_ms: Default::default(), owed: Default::default() }
    }

    fn touch(&self) {
        self.last_ms.store(self.since.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    fn begin_request(&self) {
        self.owed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn end_request(&self) {
        self.owed.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        self.touch();
    }

    fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_ms.load(std::sync::atomic::Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }

    fn is_idle(&self, max_idle: Option<std::time::Duration>) -> bool {
        max_idle.is_some_and(|max| self.owed.load(std::sync::atomic::Ordering::Relaxed) == 0 && self.idle_for() >= max)
    }

    /// Resolves when the connection could next be idle past `max_idle` (never without a limit).
    async fn idle_deadline(&self, max_idle: Option<std::time::Duration>) {
        let Some(max) = max_idle else { return std::future::pending().await };
        // Owing an answer (a long-polling fetch, an acks=all produce) is not idle: look again later.
        let wait = if self.owed.load(std::sync::atomic::Ordering::Relaxed) > 0 { max } else { max.saturating_sub(self.idle_for()) };
        tokio::time::sleep(wait.max(std::time::Duration::from_millis(10))).await
    }
}

/// Reads one size-prefixed frame. None on a clean end of stream between frames.
pub async fn read_frame(reader: &mut (impl AsyncReadExt + Unpin), max: usize) -> Result<Option<Bytes>, ConnectionError> {
    let mut len_buf = [0u8; 4];
    match reader.read_exact(&mut len_buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = i32::from_be_bytes(len_buf);
    if len < 0 || len as usize > max {
        return Err(ConnectionError::BadFrameLength(len, max));
    }
    let len = len as usize;
    let mut buf = BytesMut::with_capacity(len.min(READ_CHUNK));
    while buf.len() < len {
        let want = (len - buf.len()).min(READ_CHUNK);
        buf.reserve(want);
        let n = reader.read_buf(&mut (&mut buf).limit(want)).await?;
        if n == 0 {
            return Err(ConnectionError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("stream ended after {} of {len} frame bytes", buf.len()),
            )));
        }
    }
    Ok(Some(buf.freeze()))
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::apis::UnencodableResponse;
    use kafka_protocol::messages::ApiKey;

    fn ready(answer: Result<ResponseFrame, UnencodableResponse>) -> PendingResponse {
        Box::pin(std::future::ready(answer))
    }

    fn frame(body: &[u8]) -> ResponseFrame {
        let mut bytes = BytesMut::new();
        bytes.put_i32(body.len() as i32);
        bytes.extend_from_slice(body);
        ResponseFrame::Bytes(bytes.freeze())
    }

    /// An answer that cannot be encoded ends the connection right there: the
    /// answers before it arrive, none after it does (each would answer the
    /// wrong request), and the client sees the connection close instead of
    /// waiting forever.
    #[tokio::test]
    async fn an_unencodable_answer_closes_the_connection_in_sequence() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, peer) = listener.accept().await.expect("accept");
        let (_server_reader, server_writer) = server.into_split();
        let (tx, rx) = mpsc::channel::<PendingResponse>(8);
        let writer = tokio::spawn(write_responses(rx, ConnectionWriter::Plain(server_writer), peer, Arc::new(Activity::new())));
        tx.send(ready(Ok(frame(b"first")))).await.expect("queued");
        let failure = UnencodableResponse { api: ApiKey::ListOffsets, version: 2, correlation_id: 2, reason: "test".into() };
        tx.send(ready(Err(failure))).await.expect("queued");
        // Queued behind the failure: must never be sent.
        let _ = tx.send(ready(Ok(frame(b"third")))).await;
        let mut received = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), client.read_to_end(&mut received)).await;
        assert!(read.is_ok(), "the connection must be closed, not left open without an answer");
        assert_eq!(received, [&[0, 0, 0, 5][..], b"first"].concat());
        writer.await.expect("writer task");
        assert!(tx.is_closed(), "the reader side learns that the connection is over");
    }

    #[tokio::test]
    async fn frames_are_bounded_before_allocation() {
        let mut huge: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
        assert!(matches!(read_frame(&mut huge, 1024).await, Err(ConnectionError::BadFrameLength(..))));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xfe];
        assert!(matches!(read_frame(&mut negative, 1024).await, Err(ConnectionError::BadFrameLength(..))));
        let mut truncated: &[u8] = &[0, 0, 0, 10, 1, 2];
        assert!(matches!(read_frame(&mut truncated, 1024).await, Err(ConnectionError::Io(_))));
        let mut ok: &[u8] = &[0, 0, 0, 2, 9, 8, 0, 0];
        assert_eq!(read_frame(&mut ok, 1024).await.unwrap().unwrap().as_ref(), &[9, 8]);
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, 1024).await.unwrap().is_none());
    }
}
