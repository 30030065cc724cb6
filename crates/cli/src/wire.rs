//! A minimal Kafka request/response exchange over TCP, for the admin requests
//! where librdkafka lacks the API (ListGroups with group types,
//! ConsumerGroupDescribe) or drops the broker's error message (CreateTopics,
//! DeleteTopics, CreatePartitions, IncrementalAlterConfigs). Frames are built
//! and parsed by kafka-protocol; the version is negotiated with ApiVersions,
//! so any Kafka-compatible broker can answer.

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiVersionsRequest, FindCoordinatorRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BROKER_TIMEOUT;

/// Responses larger than this are refused rather than allocated.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// One connection to one broker, with the API versions it supports.
pub struct Connection {
    addr: String,
    stream: TcpStream,
    correlation_id: i32,
    /// (api key, min, max) as the broker advertised them.
    api_versions: Vec<(i16, i16, i16)>,
}

impl Connection {
    /// Connects to the first reachable bootstrap broker.
    pub async fn open(brokers: &str) -> Result<Connection> {
        let mut last_error = anyhow!("no broker address given");
        for addr in brokers.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match tokio::time::timeout(BROKER_TIMEOUT, Connection::open_one(addr)).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(e)) => last_error = e,
                Err(_) => last_error = anyhow!("{addr} did not answer within {BROKER_TIMEOUT:?}"),
            }
        }
        Err(last_error)
    }

    async fn open_one(addr: &str) -> Result<Connection> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        let mut connection = Connection { addr: addr.to_string(), stream, correlation_id: 0, api_versions: Vec::new() };
        // v0 is understood by every broker and lists every API's version range.
        let versions = connection.send_at(&ApiVersionsRequest::default(), 0).await?;
        if let Some(e) = ResponseError::try_from_code(versions.error_code) {
            bail!("{addr} refused ApiVersions: {e}");
        }
        connection.api_versions = versions.api_keys.iter().map(|k| (k.api_key, k.min_version, k.max_version)).collect();
        Ok(connection)
    }

    /// The highest version of `R` both sides support.
    pub fn version_of<R: Request>(&self) -> Result<i16> {
        let (_, min, max) = self
            .api_versions
            .iter()
            .find(|(key, _, _)| *key == R::KEY)
            .ok_or_else(|| anyhow!("the broker at {} does not support API key {}", self.addr, R::KEY))?;
        let version = (*max).min(R::VERSIONS.max);
        if version < (*min).max(R::VERSIONS.min) {
            bail!("the broker at {} supports API key {} only in versions {min}..={max}", self.addr, R::KEY);
        }
        Ok(version)
    }

    /// Sends `request` at the highest common version; returns the response and that version.
    pub async fn send<R>(&mut self, request: &R) -> Result<(R::Response, i16)>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
    {
        let version = self.version_of::<R>()?;
        Ok((self.send_at(request, version).await?, version))
    }

    pub async fn send_at<R>(&mut self, request: &R, version: i16) -> Result<R::Response>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
    {
        let addr = self.addr.clone();
        tokio::time::timeout(BROKER_TIMEOUT, self.round_trip(request, version))
            .await
            .map_err(|_| anyhow!("{addr} did not answer within {BROKER_TIMEOUT:?}"))?
    }

    async fn round_trip<R>(&mut self, request: &R, version: i16) -> Result<R::Response>
    where
        R: Request + Encodable + HeaderVersion,
        R::Response: Decodable + HeaderVersion,
    {
        let addr = &self.addr;
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("runnel-cli")));
        let mut body = BytesMut::new();
        header.encode(&mut body, R::header_version(version)).context("encoding the request header")?;
        request.encode(&mut body, version).context("encoding the request")?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        self.stream.write_all(&frame).await.with_context(|| format!("sending to {addr}"))?;
        let size = self.stream.read_i32().await.with_context(|| format!("reading from {addr}"))?;
        if size < 0 || size as usize > MAX_RESPONSE_BYTES {
            bail!("{addr} sent a response of {size} bytes");
        }
        let mut buf = vec![0u8; size as usize];
        self.stream.read_exact(&mut buf).await.with_context(|| format!("reading from {addr}"))?;
        let mut buf = Bytes::from(buf);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version)).context("decoding the response header")?;
        if header.correlation_id != self.correlation_id {
            bail!("{addr} answered correlation id {} to request {}", header.correlation_id, self.correlation_id);
        }
        R::Response::decode(&mut buf, version).context("decoding the response")
    }

    /// A connection to the coordinator of consumer group `group`.
    pub async fn group_coordinator(brokers: &str, group: &str) -> Result<Connection> {
        Connection::coordinator(brokers, 0, group).await
    }

    /// A connection to the coordinator of `group` (key type 0: a group, 1: a transactional id).
    pub async fn coordinator(brokers: &str, key_type: i8, group: &str) -> Result<Connection> {
        let mut bootstrap = Connection::open(brokers).await?;
        let version = bootstrap.version_of::<FindCoordinatorRequest>()?;
        if key_type != 0 && version < 1 {
            bail!("the broker's FindCoordinator v{version} has no key types");
        }
        let mut request = FindCoordinatorRequest::default().with_key_type(key_type);
        if version >= 4 {
            request = request.with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        } else {
            request = request.with_key(StrBytes::from_string(group.to_string()));
        }
        let response = bootstrap.send_at(&request, version).await?;
        let (code, message, host, port) = match response.coordinators.first() {
            Some(c) if version >= 4 => (c.error_code, c.error_message.clone(), c.host.to_string(), c.port),
            _ => (response.error_code, response.error_message.clone(), response.host.to_string(), response.port),
        };
        if let Some(e) = ResponseError::try_from_code(code) {
            let what = if key_type == 1 { "transactional id" } else { "group" };
            bail!("finding the coordinator of {what} {group:?}: {}", broker_error(e, message.as_deref()));
        }
        let addr = format!("{host}:{port}");
        if addr == bootstrap.addr {
            return Ok(bootstrap);
        }
        Connection::open_one(&addr).await
    }
}

/// Sends one request to the first reachable bootstrap broker and decodes its answer.
pub async fn exchange<R>(brokers: &str, request: &R) -> Result<R::Response>
where
    R: Request + Encodable + HeaderVersion,
    R::Response: Decodable + HeaderVersion,
{
    Ok(Connection::open(brokers).await?.send(request).await?.0)
}

/// The broker's error message when it sent one, else the error code's description.
pub fn broker_error(code: ResponseError, message: Option<&str>) -> String {
    match message.map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => format!("{m} ({code:?})"),
        None => format!("{code}"),
    }
}

/// `broker_error` for a raw error code; None when the code means success.
pub fn error_of(code: i16, message: Option<&StrBytes>) -> Option<String> {
    ResponseError::try_from_code(code).map(|e| broker_error(e, message.map(|m| &**m)))
}
