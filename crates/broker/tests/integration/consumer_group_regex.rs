//! KIP-848 regex subscriptions over TCP: the coordinator resolves a regex
//! against every topic, internal ones included, as Kafka's does (franz-go's
//! Test848RegexBrokerResolves relies on it).


use crate::common::{s, start_broker, topic_name, Client};
use kafka_protocol::messages::*;
use uuid::Uuid;

/// Topic name → id, auto-creating topics that do not exist yet.
async fn topic_ids(client: &mut Client, names: &[&str]) -> Vec<Uuid> {
    let req = MetadataRequest::default()
        .with_topics(Some(names.iter().map(|n| metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(n)))).collect()))
        .with_allow_auto_topic_creation(true);
    let resp = client.request(12, &req).await;
    names
        .iter()
        .map(|name| {
            let topic = resp.topics.iter().find(|t| t.name.as_ref().is_some_and(|t| t.0.as_str() == *name)).expect("topic in metadata");
            assert_eq!(topic.error_code, 0, "metadata of {name}");
            topic.topic_id
        })
        .collect()
}

#[tokio::test]
async fn a_regex_subscription_is_assigned_matching_internal_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let ids = topic_ids(&mut client, &["orders", "__consumer_offsets"]).await;
    let (orders, offsets) = (ids[0], ids[1]);

    let member_id = Uuid::new_v4().to_string();
    let mut req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("regex-internal")))
        .with_member_id(s(&member_id))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(60_000)
        .with_subscribed_topic_regex(Some(s("orders|__consumer_offsets")))
        .with_topic_partitions(Some(vec![]));
    // Heartbeat until an assignment arrives (Kafka may resolve the regex
    // asynchronously; Runnel answers the first time).
    let mut assigned = None;
    for _ in 0..20 {
        let resp = client.request(1, &req).await;
        assert_eq!(resp.error_code, 0, "heartbeat: {:?}", resp.error_message);
        if let Some(assignment) = resp.assignment {
            assigned = Some(assignment.topic_partitions);
            break;
        }
        req = req.with_member_epoch(resp.member_epoch).with_topic_partitions(None).with_subscribed_topic_regex(None);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let assigned = assigned.expect("an assignment within 20 heartbeats");
    let mut topics: Vec<Uuid> = assigned.iter().map(|t| t.topic_id).collect();
    topics.sort();
    let mut expected = vec![orders, offsets];
    expected.sort();
    assert_eq!(topics, expected, "both the regular and the internal topic are assigned");
}
