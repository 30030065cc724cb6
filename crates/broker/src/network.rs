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

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use runnel_storage::ReadPlan;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::apis::{handle_request, PendingResponse};
use crate::frame::{FramePart, ResponseFrame};
use crate::Broker;

/// Requests accepted on one connection before their responses are written;
/// past this the reader waits (backpressure on a client that never reads).
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 512;
/// Buffer growth step while a frame arrives, so an untrusted length is never
/// allocated before its bytes have actually been received.
const READ_CHUNK: usize = 64 * 1024;

pub async fn serve(broker: Arc<Broker>, listener: TcpListener, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let broker = broker.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle_connection(broker, stream, peer).await {
                            tracing::debug!(%peer, error = %e, "connection closed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
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

async fn handle_connection(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) -> Result<(), ConnectionError> {
    let (mut reader, writer) = stream.into_split();
    let (tx, rx) = mpsc::channel::<PendingResponse>(MAX_IN_FLIGHT_PER_CONNECTION);
    let writer_task = tokio::spawn(write_responses(rx, writer, peer));
    let max = broker.config.socket_request_max_bytes;
    let result = async {
        loop {
            // The writer stops early only when it closes the connection; stop reading then too.
            let read = tokio::select! {
                read = read_frame(&mut reader, max) => read?,
                _ = tx.closed() => return Ok(()),
            };
            let Some(frame) = read else { return Ok(()) };
            match handle_request(&broker, frame, peer).await {
                Ok(Some(pending)) => {
                    if tx.send(pending).await.is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
    }
    .await;
    drop(tx);
    // Let already-accepted requests finish and their responses go out.
    let _ = writer_task.await;
    match &result {
        // A client going away mid-stream (reset, broken pipe) is ordinary.
        Err(ConnectionError::Io(e)) => tracing::debug!(%peer, error = %e, "closing connection"),
        Err(e) => tracing::info!(%peer, error = %e, "closing connection"),
        Ok(()) => {}
    }
    result
}

/// Writes the connection's responses in request order. A response that
/// cannot be encoded closes the connection: skipping it would give the next
/// answer to the wrong request (clients match answers by order and
/// correlation id), and leaving it out would hang its client.
async fn write_responses(mut rx: mpsc::Receiver<PendingResponse>, mut writer: OwnedWriteHalf, peer: SocketAddr) {
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
    }
    let _ = writer.shutdown().await;
}

/// Writes one response; log-file regions go from the page cache to the socket.
async fn write_frame(writer: &mut OwnedWriteHalf, frame: ResponseFrame) -> std::io::Result<()> {
    match frame {
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
    }
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

/// Reads one size-prefixed frame. None on a clean end of stream between frames.
async fn read_frame(reader: &mut (impl AsyncReadExt + Unpin), max: usize) -> Result<Option<Bytes>, ConnectionError> {
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
        let writer = tokio::spawn(write_responses(rx, server_writer, peer));
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
