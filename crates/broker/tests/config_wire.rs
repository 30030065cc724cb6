//! CreateTopics and DescribeConfigs answers, field by field on the wire, where
//! Kafka 4.x's differ from what the kafka-protocol crate's defaults would send.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use runnel_broker::{BrokerConfig, RunningBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOPIC: &str = "configs";
const CONFIG_TYPE_INT: i8 = 3;
const CONFIG_TYPE_LONG: i8 = 5;
const SOURCE_DEFAULT: i8 = 5;

async fn start_broker(dir: &std::path::Path) -> RunningBroker {
    let mut config = BrokerConfig::default();
    config.set("listeners", "127.0.0.1:0").expect("listeners");
    config.data_dir = dir.to_path_buf();
    runnel_broker::start(config).await.expect("broker starts")
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// One request over TCP, its answer decoded at the same version.
async fn request<R: Request>(stream: &mut TcpStream, correlation_id: i32, version: i16, req: &R) -> R::Response {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("config-wire-test")));
    let mut body = BytesMut::new();
    header.encode(&mut body, R::header_version(version)).expect("request header encodes");
    req.encode(&mut body, version).expect("request encodes");
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).await.expect("send");
    let mut len = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(15), stream.read_exact(&mut len)).await.expect("answer in time").expect("answer");
    let mut buf = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    stream.read_exact(&mut buf).await.expect("whole answer");
    let mut response = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut response, R::Response::header_version(version)).expect("response header");
    assert_eq!(header.correlation_id, correlation_id);
    let decoded = R::Response::decode(&mut response, version).expect("response decodes");
    assert!(!response.has_remaining(), "bytes left after the response");
    decoded
}

#[tokio::test]
async fn success_messages_are_null_and_config_types_and_synonyms_match_kafka() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start_broker(dir.path()).await;
    let mut stream = TcpStream::connect(broker.local_addr).await.expect("connect");

    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(TopicName(s(TOPIC)))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let created = request(&mut stream, 1, 7, &create).await;
    let topic = &created.topics[0];
    assert_eq!(topic.error_code, 0);
    assert_eq!(topic.error_message, None, "CreateTopics success carries a message");

    let describe = DescribeConfigsRequest::default().with_include_synonyms(true).with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s(TOPIC)).with_configuration_keys(None),
        describe_configs_request::DescribeConfigsResource::default().with_resource_type(4).with_resource_name(s("1")).with_configuration_keys(None),
    ]);
    let described = request(&mut stream, 2, 4, &describe).await;
    for result in &described.results {
        assert_eq!(result.error_code, 0, "{}", result.resource_name.as_str());
        assert_eq!(result.error_message, None, "DescribeConfigs success carries a message for {}", result.resource_name.as_str());
    }
    let config = |result: usize, name: &str| {
        described.results[result].configs.iter().find(|c| c.name.as_str() == name).unwrap_or_else(|| panic!("{name} is not described")).clone()
    };

    // Broker configs carry their type, as Kafka's do.
    assert_eq!(config(1, "num.partitions").config_type, CONFIG_TYPE_INT);
    assert_eq!(config(1, "log.retention.ms").config_type, CONFIG_TYPE_LONG);

    // log.retention.ms has no default in Kafka: the default synonym is the hours one.
    let retention = config(0, "retention.ms");
    let defaults: Vec<(&str, Option<&str>)> = retention
        .synonyms
        .iter()
        .filter(|syn| syn.source == SOURCE_DEFAULT)
        .map(|syn| (syn.name.as_str(), syn.value.as_ref().map(|v| v.as_str())))
        .collect();
    assert_eq!(defaults, vec![("log.retention.hours", Some("168"))]);

    // An empty (not null) key list asks for every config, as in Kafka.
    let describe_empty = DescribeConfigsRequest::default().with_resources(vec![describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s(TOPIC))
        .with_configuration_keys(Some(vec![]))]);
    let all = request(&mut stream, 3, 4, &describe_empty).await;
    assert_eq!(all.results[0].error_code, 0);
    assert_eq!(all.results[0].configs.len(), described.results[0].configs.len(), "an empty key list answered a different set of configs");
    assert!(all.results[0].configs.iter().any(|c| c.name.as_str() == "retention.ms"));
    broker.shutdown().await;
}
