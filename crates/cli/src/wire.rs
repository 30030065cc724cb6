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
use runnel_broker::security::connector::{BrokerConnector, BrokerIo, ClientSecurity};
use runnel_broker::config::SecurityProtocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{parse_key_value, ClientArgs, BROKER_TIMEOUT};

/// How the admin requests connect: set once from `-X` before any command runs.
/// An error (settings only librdkafka knows, e.g. OAUTHBEARER) is reported
/// when a command needs one of these connections, not before.
static CONNECTOR: std::sync::OnceLock<Result<BrokerConnector, String>> = std::sync::OnceLock::new();

/// Reads librdkafka's security settings from `-X` (`security.protocol`,
/// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`,
/// `ssl.certificate.location`, `ssl.key.location`, `ssl.key.password`,
/// `ssl.endpoint.identification.algorithm`), so the admin requests connect as
/// librdkafka does for produce and consume.
pub fn configure_security(args: &ClientArgs) {
    let _ = CONNECTOR.set(connector_of(args).map_err(|e| format!("{e:#}")));
}

/// Whether the admin requests can connect with the `-X` settings given.
pub fn can_connect() -> bool {
    !matches!(CONNECTOR.get(), Some(Err(_)))
}

fn connector_of(args: &ClientArgs) -> Result<BrokerConnector> {
    let mut security = ClientSecurity::default();
    let (mut mechanism, mut user, mut password) = (None, None, None);
    let mut certificate = None;
    let mut key = None;
    for pair in &args.client_config {
        let (k, v) = parse_key_value(pair)?;
        match k.as_str() {
            "security.protocol" => {
                security.protocol = Some(SecurityProtocol::parse(&v.to_ascii_uppercase()).ok_or_else(|| anyhow!("security.protocol={v} is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"))?)
            }
            "sasl.mechanism" | "sasl.mechanisms" => mechanism = Some(v),
            "sasl.username" => user = Some(v),
            "sasl.password" => password = Some(v),
            "ssl.ca.location" => {
                security.ssl.push(("ssl.truststore.type".into(), "PEM".into()));
                security.ssl.push(("ssl.truststore.location".into(), v));
            }
            "ssl.certificate.location" => certificate = Some(v),
            "ssl.key.location" => key = Some(v),
            "ssl.key.password" => security.ssl.push(("ssl.key.password".into(), v)),
            // librdkafka says `none` where Kafka says nothing.
            "ssl.endpoint.identification.algorithm" => {
                security.ssl.push((k.clone(), if v.eq_ignore_ascii_case("none") { String::new() } else { v }))
            }
            _ => {}
        }
    }
    match (certificate, key) {
        (Some(certificate), Some(key)) => {
            let read = |path: &str| std::fs::read_to_string(path).with_context(|| format!("reading {path}"));
            security.ssl.push(("ssl.keystore.type".into(), "PEM".into()));
            security.ssl.push(("ssl.keystore.certificate.chain".into(), read(&certificate)?));
            security.ssl.push(("ssl.keystore.key".into(), read(&key)?));
        }
        (None, None) => {}
        _ => bail!("give both ssl.certificate.location and ssl.key.location for a client certificate"),
    }
    if let Some(mechanism) = mechanism {
        security.sasl = Some((mechanism, user.unwrap_or_default(), password.unwrap_or_default()));
    }
    BrokerConnector::for_client(security).map_err(|e| anyhow!("{e}"))
}

/// Responses larger than this are refused rather than allocated.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// One connection to one broker, with the API versions it supports.
pub struct Connection {
    addr: String,
    stream: Box<dyn BrokerIo>,
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
        let plaintext;
        let connector = match CONNECTOR.get() {
            Some(Ok(connector)) => connector,
            Some(Err(e)) => bail!("the -X security settings cannot be used by this command's requests: {e}"),
            None => {
                plaintext = BrokerConnector::plaintext();
                &plaintext
            }
        };
        let stream = connector.connect_to(addr, "runnel-cli", BROKER_TIMEOUT).await.map_err(|e| anyhow!("connecting to {addr}: {e}"))?.stream;
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
        self.stream.flush().await.with_context(|| format!("sending to {addr}"))?;
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
