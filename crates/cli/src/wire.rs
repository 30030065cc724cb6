//! A minimal Kafka request/response exchange over TCP, for the few admin
//! requests librdkafka does not expose (ListGroups with group types,
//! ConsumerGroupDescribe). Frames are built and parsed by kafka-protocol.

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::BROKER_TIMEOUT;

/// Responses larger than this are refused rather than allocated.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Sends one request to the first reachable bootstrap broker and decodes its answer.
pub async fn exchange<R>(brokers: &str, request: &R, version: i16) -> Result<R::Response>
where
    R: Request + Encodable + HeaderVersion,
    R::Response: Decodable + HeaderVersion,
{
    let mut last_error = anyhow!("no broker address given");
    for addr in brokers.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        match tokio::time::timeout(BROKER_TIMEOUT, exchange_with(addr, request, version)).await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(e)) => last_error = e,
            Err(_) => last_error = anyhow!("{addr} did not answer within {BROKER_TIMEOUT:?}"),
        }
    }
    Err(last_error)
}

async fn exchange_with<R>(addr: &str, request: &R, version: i16) -> Result<R::Response>
where
    R: Request + Encodable + HeaderVersion,
    R::Response: Decodable + HeaderVersion,
{
    let mut stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("runnel-cli")));
    let mut body = BytesMut::new();
    header.encode(&mut body, R::header_version(version)).context("encoding the request header")?;
    request.encode(&mut body, version).context("encoding the request")?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    stream.write_all(&frame).await.with_context(|| format!("sending to {addr}"))?;
    let size = stream.read_i32().await.with_context(|| format!("reading from {addr}"))?;
    if size < 0 || size as usize > MAX_RESPONSE_BYTES {
        bail!("{addr} sent a response of {size} bytes");
    }
    let mut buf = vec![0u8; size as usize];
    stream.read_exact(&mut buf).await.with_context(|| format!("reading from {addr}"))?;
    let mut buf = Bytes::from(buf);
    ResponseHeader::decode(&mut buf, R::Response::header_version(version)).context("decoding the response header")?;
    R::Response::decode(&mut buf, version).context("decoding the response")
}
