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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::replica_manager::ReplicaManager;

/// The largest answer accepted; a longer one drops the connection.
const RESPONSE_MAX_BYTES: i32 = 16 << 20;
const CORRELATION_ID: i32 = 1;

/// A client for requests to other brokers, at the addresses the replica
/// manager knows them by (their inter-broker endpoints).
pub struct InterBrokerClient {
    replicas: Weak<ReplicaManager>,
    client_id: String,
    idle: Mutex<HashMap<i32, Vec<TcpStream>>>,
}

impl InterBrokerClient {
    pub fn new(replicas: &Arc<ReplicaManager>, client_id: String) -> InterBrokerClient {
        InterBrokerClient { replicas: Arc::downgrade(replicas), client_id, idle: Mutex::new(HashMap::new()) }
    }

    /// Sends `request` at `version` to broker `node` and waits up to `timeout`
    /// for its answer. Err: no usable answer (no address, connection failure,
    /// timeout, or an answer that does not decode).
    pub async fn call<R: Request>(&self, node: i32, version: i16, request: &R, timeout: Duration) -> Result<R::Response, String> {
        let frame = self.frame(version, request)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let pooled = self.idle.lock().get_mut(&node).and_then(Vec::pop);
        if let Some(mut stream) = pooled {
            // The other broker may have closed an idle connection: a write or a
            // first read failing on one is retried once on a new connection.
            match tokio::time::timeout_at(deadline, exchange::<R>(&mut stream, version, &frame)).await {
                Ok(Ok(response)) => {
                    self.idle.lock().entry(node).or_default().push(stream);
                    return Ok(response);
                }
                Ok(Err(Failure::Stale(why))) => tracing::debug!(node, why = %why, "an idle inter-broker connection failed; reconnecting"),
                Ok(Err(Failure::Other(why))) => return Err(why),
                Err(_) => return Err(format!("broker {node} did not answer API {} in time", R::KEY)),
            }
        }
        let replicas = self.replicas.upgrade().ok_or("shutting down")?;
        let address = replicas.broker_address(node).ok_or_else(|| format!("no address known for broker {node}"))?;
        drop(replicas);
        let mut stream = tokio::time::timeout_at(deadline, TcpStream::connect(address))
            .await
            .map_err(|_| format!("connecting to broker {node} at {address} timed out"))?
            .map_err(|e| format!("connect to broker {node} at {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let response = tokio::time::timeout_at(deadline, exchange::<R>(&mut stream, version, &frame))
            .await
            .map_err(|_| format!("broker {node} did not answer API {} in time", R::KEY))?
            .map_err(Failure::into_message)?;
        // Only a connection that answered in order goes back to the pool.
        self.idle.lock().entry(node).or_default().push(stream);
        Ok(response)
    }

    fn frame<R: Request>(&self, version: i16, request: &R) -> Result<Bytes, String> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(CORRELATION_ID)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).map_err(|e| format!("encode header: {e}"))?;
        request.encode(&mut body, version).map_err(|e| format!("encode API {} v{version}: {e}", R::KEY))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(i32::try_from(body.len()).map_err(|_| "request too large".to_string())?);
        frame.extend_from_slice(&body);
        Ok(frame.freeze())
    }
}

enum Failure {
    /// Nothing was read back: the connection may just have been closed while idle.
    Stale(String),
    Other(String),
}

impl Failure {
    fn into_message(self) -> String {
        match self {
            Failure::Stale(why) | Failure::Other(why) => why,
        }
    }
}

async fn exchange<R: Request>(stream: &mut TcpStream, version: i16, frame: &[u8]) -> Result<R::Response, Failure> {
    stream.write_all(frame).await.map_err(|e| Failure::Stale(format!("send: {e}")))?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.map_err(|e| Failure::Stale(format!("read: {e}")))?;
    let len = i32::from_be_bytes(len);
    if !(0..=RESPONSE_MAX_BYTES).contains(&len) {
        return Err(Failure::Other(format!("answer of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf).await.map_err(|e| Failure::Other(format!("read: {e}")))?;
    let mut answer = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version)).map_err(|e| Failure::Other(format!("decode header: {e}")))?;
    if header.correlation_id != CORRELATION_ID {
        return Err(Failure::Other(format!("answer for correlation id {}", header.correlation_id)));
    }
    let response = R::Response::decode(&mut answer, version).map_err(|e| Failure::Other(format!("decode the answer to API {}: {e}", R::KEY)))?;
    if answer.has_remaining() {
        return Err(Failure::Other(format!("{} bytes after the answer to API {}", answer.remaining(), R::KEY)));
    }
    Ok(response)
}
