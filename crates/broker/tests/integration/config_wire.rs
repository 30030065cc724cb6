//! CreateTopics and DescribeConfigs answers, field by field on the wire, where
//! Kafka 4.x's differ from what the kafka-protocol crate's defaults would send.


use crate::common::{s, start_broker, Client};
use kafka_protocol::messages::*;

const TOPIC: &str = "configs";
const CONFIG_TYPE_INT: i8 = 3;
const CONFIG_TYPE_LONG: i8 = 5;
const SOURCE_DEFAULT: i8 = 5;

#[tokio::test]
async fn success_messages_are_null_and_config_types_and_synonyms_match_kafka() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;

    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(TopicName(s(TOPIC)))
        .with_num_partitions(1)
        .with_replication_factor(1)]);
    let created = client.request(7, &create).await;
    let topic = &created.topics[0];
    assert_eq!(topic.error_code, 0);
    assert_eq!(topic.error_message, None, "CreateTopics success carries a message");

    let describe = DescribeConfigsRequest::default().with_include_synonyms(true).with_resources(vec![
        describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s(TOPIC)).with_configuration_keys(None),
        describe_configs_request::DescribeConfigsResource::default().with_resource_type(4).with_resource_name(s("1")).with_configuration_keys(None),
    ]);
    let described = client.request(4, &describe).await;
    for result in &described.results {
        assert_eq!(result.error_code, 0, "{}", result.resource_name.as_str());
        // Kafka 4.3 sends "" here (unlike CreateTopics' null), as the conformance suite shows.
        assert_eq!(result.error_message.as_deref(), Some(""), "DescribeConfigs success message for {}", result.resource_name.as_str());
    }
    let config = |result: usize, name: &str| {
        described.results[result].configs.iter().find(|c| c.name.as_str() == name).unwrap_or_else(|| panic!("{name} is not described")).clone()
    };

    // Broker configs carry their type, as Kafka's do.
    assert_eq!(config(1, "num.partitions").config_type, CONFIG_TYPE_INT);
    assert_eq!(config(1, "log.retention.ms").config_type, CONFIG_TYPE_LONG);

    // log.retention.ms has no default in Kafka (log.retention.hours carries it), and Kafka
    // lists synonyms only from the broker config itself on: none here (the conformance suite shows it).
    let retention = config(0, "retention.ms");
    assert!(retention.synonyms.is_empty(), "retention.ms synonyms: {:?}", retention.synonyms);
    assert_eq!(retention.config_source, SOURCE_DEFAULT);
    let broker_retention = config(1, "log.retention.ms");
    assert_eq!(broker_retention.value, None, "Kafka reports an unset log.retention.ms as null");
    let segment_bytes = config(0, "segment.bytes");
    let defaults: Vec<(&str, Option<&str>)> = segment_bytes
        .synonyms
        .iter()
        .filter(|syn| syn.source == SOURCE_DEFAULT)
        .map(|syn| (syn.name.as_str(), syn.value.as_ref().map(|v| v.as_str())))
        .collect();
    assert_eq!(defaults, vec![("log.segment.bytes", Some("1073741824"))]);

    // An empty (not null) key list asks for every config, as in Kafka.
    let describe_empty = DescribeConfigsRequest::default().with_resources(vec![describe_configs_request::DescribeConfigsResource::default()
        .with_resource_type(2)
        .with_resource_name(s(TOPIC))
        .with_configuration_keys(Some(vec![]))]);
    let all = client.request(4, &describe_empty).await;
    assert_eq!(all.results[0].error_code, 0);
    assert_eq!(all.results[0].configs.len(), described.results[0].configs.len(), "an empty key list answered a different set of configs");
    assert!(all.results[0].configs.iter().any(|c| c.name.as_str() == "retention.ms"));
    broker.shutdown().await;
}
