//! Requests one broker sends another over the inter-broker listener (the
//! transaction coordinator's WriteTxnMarkers, a partition leader's
//! AddPartitionsToTxn): connections kept per broker in an idle pool, so
//! concurrent requests do not wait for each other, one request at a time on
//! each, framed with kafka-protocol's request header; the answer's length is
//! bounded and the whole exchange has a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::replica_manager::ReplicaManager;
use crate::security::connector::BrokerConnection;

/// The largest answer accepted; a longer one drops the connection.
const RESPONSE_MAX_BYTES: i32 = 16 << 20;
const CORRELATION_ID: i32 = 1;

/// A client for requests to other brokers, at the addresses the replica
/// manager knows them by (their inter-broker endpoints), connected and logged
/// in as the inter-broker listener asks (`BrokerConnector`).
pub struct InterBrokerClient {
    replicas: Weak<ReplicaManager>,
    client_id: String,
    idle: Mutex<HashMap<i32, Vec<BrokerConnection>>>,
}

impl InterBrokerClient {
    pub fn new(replicas: &Arc<ReplicaManager>, client_id: String) -> InterBrokerClient {
        InterBrokerClient { replicas: Arc::downgrade(replicas), client_id, idle: Mutex::new(HashMap::new()) }
    }

    /// Sends `request` at `version` to broker `node` and waits up to `timeout`
    /// for its answer. Err: no usable answer (no address, connection or login
    /// failure, timeout, or an answer that does not decode).
    pub async fn call<R: Request>(&self, node: i32, version: i16, request: &R, timeout: Duration) -> Result<R::Response, String> {
        let frame = frame(&self.client_id, CORRELATION_ID, version, request)?;
        let deadline = tokio::time::Instant::now() + timeout;
        // A connection whose SASL session ends before the deadline is not used again.
        let pooled = {
            let mut idle = self.idle.lock();
            let pool = idle.entry(node).or_default();
            pool.retain(|c| c.usable_for(timeout));
            pool.pop()
        };
        if let Some(mut connection) = pooled {
            // The other broker may have closed an idle connection: a write or a
            // first read failing on one is retried once on a new connection.
            match tokio::time::timeout_at(deadline, exchange::<R, _>(&mut connection.stream, version, CORRELATION_ID, &frame, RESPONSE_MAX_BYTES)).await {
                Ok(Ok(response)) => {
                    self.idle.lock().entry(node).or_default().push(connection);
                    return Ok(response);
                }
                Ok(Err(Failure::Stale(why))) => tracing::debug!(node, why = %why, "an idle inter-broker connection failed; reconnecting"),
                Ok(Err(Failure::Other(why))) => return Err(why),
                Err(_) => return Err(format!("broker {node} did not answer API {} in time", R::KEY)),
            }
        }
        let replicas = self.replicas.upgrade().ok_or("shutting down")?;
        let (address, host) = replicas.broker_endpoint(node).ok_or_else(|| format!("no address known for broker {node}"))?;
        let connector = replicas.broker_connector();
        drop(replicas);
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut connection =
            connector.connect(address, &host, &self.client_id, remaining).await.map_err(|e| format!("broker {node}: {e}"))?;
        let response = tokio::time::timeout_at(deadline, exchange::<R, _>(&mut connection.stream, version, CORRELATION_ID, &frame, RESPONSE_MAX_BYTES))
            .await
            .map_err(|_| format!("broker {node} did not answer API {} in time", R::KEY))?
            .map_err(Failure::into_message)?;
        // Only a connection that answered in order goes back to the pool.
        self.idle.lock().entry(node).or_default().push(connection);
        Ok(response)
    }
}

/// A request's frame: length, kafka-protocol's request header, the body.
pub(crate) fn frame<R: Request>(client_id: &str, correlation_id: i32, version: i16, request: &R) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut body = BytesMut::new();
    header.encode(&mut body, R::header_version(version)).map_err(|e| format!("encode header: {e}"))?;
    request.encode(&mut body, version).map_err(|e| format!("encode API {} v{version}: {e}", R::KEY))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(i32::try_from(body.len()).map_err(|_| "request too large".to_string())?);
    frame.extend_from_slice(&body);
    Ok(frame.freeze())
}

pub(crate) enum Failure {
    /// Nothing was read back: the connection may just have been closed while idle.
    Stale(String),
    Other(String),
}

impl Failure {
    pub(crate) fn into_message(self) -> String {
        match self {
            Failure::Stale(why) | Failure::Other(why) => why,
        }
    }
}

/// Frames and sends one request on `stream` and reads its answer (no deadline: the caller's).
pub(crate) async fn call_on<R: Request, S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
    correlation_id: i32,
    version: i16,
    request: &R,
    max_bytes: i32,
) -> Result<R::Response, Failure> {
    let frame = frame(client_id, correlation_id, version, request).map_err(Failure::Other)?;
    exchange::<R, S>(stream, version, correlation_id, &frame, max_bytes).await
}

/// Sends a framed request and reads its answer, of at most `max_bytes`.
pub(crate) async fn exchange<R: Request, S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    version: i16,
    correlation_id: i32,
    frame: &[u8],
    max_bytes: i32,
) -> Result<R::Response, Failure> {
    stream.write_all(frame).await.map_err(|e| Failure::Stale(format!("send: {e}")))?;
    stream.flush().await.map_err(|e| Failure::Stale(format!("send: {e}")))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| Failure::Stale(format!("read: {e}")))?;
    let len = i32::from_be_bytes(len);
    if !(0..=max_bytes).contains(&len) {
        return Err(Failure::Other(format!("answer of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.map_err(|e| Failure::Other(format!("read: {e}")))?;
    let mut answer = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version)).map_err(|e| Failure::Other(format!("decode header: {e}")))?;
    if header.correlation_id != correlation_id {
        return Err(Failure::Other(format!("answer for correlation id {} instead of {correlation_id}", header.correlation_id)));
    }
    let response = R::Response::decode(&mut answer, version).map_err(|e| Failure::Other(format!("decode the answer to API {}: {e}", R::KEY)))?;
    if answer.has_remaining() {
        return Err(Failure::Other(format!("{} bytes after the answer to API {}", answer.remaining(), R::KEY)));
    }
    Ok(response)
}
