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

/// A client on the SASL_PLAINTEXT listener, logged in with PLAIN.
async fn plain_login(addr: std::net::SocketAddr, user: &str, password: &str) -> Client {
    let mut client = Client::connect(addr).await;
    let handshake = client.request(1, &SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))).await;
    assert_eq!(handshake.error_code, 0);
    let token = format!("\0{user}\0{password}");
    let auth = client.request(0, &SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(token))).await;
    assert_eq!(auth.error_code, 0, "{:?}", auth.error_message);
    client
}

fn acl(resource_type: i8, name: &str, operation: i8) -> create_acls_request::AclCreation {
    create_acls_request::AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_resource_pattern_type(3) // LITERAL
        .with_principal(s("User:ANONYMOUS"))
        .with_host(s("*"))
        .with_operation(operation)
        .with_permission_type(3) // ALLOW
}

/// Joins `group` with `regex` at `version` and heartbeats until an assignment arrives: its topic ids.
async fn regex_assignment(client: &mut Client, version: i16, group: &str, regex: &str) -> Vec<Uuid> {
    let mut req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(&Uuid::new_v4().to_string()))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(60_000)
        .with_subscribed_topic_regex(Some(s(regex)))
        .with_topic_partitions(Some(vec![]));
    for _ in 0..20 {
        let resp = client.request(version, &req).await;
        assert_eq!(resp.error_code, 0, "heartbeat v{version}: {:?}", resp.error_message);
        if let Some(assignment) = resp.assignment {
            let mut ids: Vec<Uuid> = assignment.topic_partitions.iter().map(|t| t.topic_id).collect();
            ids.sort();
            return ids;
        }
        req = req.with_member_epoch(resp.member_epoch).with_topic_partitions(None).with_subscribed_topic_regex(None);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no assignment within 20 heartbeats (v{version})");
}

/// KAFKA-18813: with an authorizer, User:ANONYMOUS's regex resolves only to
/// the topic it may describe (ConsumerGroupHeartbeat v1: v0 has no regex), and
/// at ConsumerGroupDescribe's lowest and highest versions (v0, v1) it cannot
/// describe a group whose assignment names a topic it may not.
#[tokio::test]
async fn with_an_authorizer_a_regex_resolves_to_describable_topics_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let jaas = "org.apache.kafka.common.security.plain.PlainLoginModule required user_admin=\"admin-secret\";";
    let broker = start_broker(
        dir.path(),
        &[
            ("listeners", "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"),
            ("listener.name.sasl_plaintext.sasl.enabled.mechanisms", "PLAIN"),
            ("listener.name.sasl_plaintext.plain.sasl.jaas.config", jaas),
            ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
            ("super.users", "User:admin"),
        ],
    )
    .await;
    let address = |name: &str| broker.listener_addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a).expect("listener");
    let mut admin = plain_login(address("SASL_PLAINTEXT"), "admin", "admin-secret").await;
    let ids = topic_ids(&mut admin, &["rx-open", "rx-secret"]).await;
    let (open, secret) = (ids[0], ids[1]);
    let creations = vec![
        acl(2, "rx-open", 8), // TOPIC DESCRIBE
        acl(3, "rx-g1", 3),   // GROUP READ
        acl(3, "rx-admins", 8), // GROUP DESCRIBE
    ];
    let created = admin.request(3, &CreateAclsRequest::default().with_creations(creations)).await;
    assert!(created.results.iter().all(|r| r.error_code == 0), "{:?}", created.results);
    // A group of admin's whose assignment holds both topics.
    let both = regex_assignment(&mut admin, 1, "rx-admins", "rx-.*").await;
    let mut expected = vec![open, secret];
    expected.sort();
    assert_eq!(both, expected, "a super user's regex gets every match");

    let mut anonymous = Client::connect(address("PLAINTEXT")).await;
    let assigned = regex_assignment(&mut anonymous, 1, "rx-g1", "rx-.*").await;
    assert_eq!(assigned, vec![open], "only the describable topic");
    for version in [0i16, 1] {
        let described = anonymous
            .request(version, &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("rx-g1")), GroupId(s("rx-admins"))]))
            .await;
        // Its own group (READ implies DESCRIBE) holds only the topic it may describe.
        assert_eq!(described.groups[0].error_code, 0, "v{version}: {:?}", described.groups[0].error_message);
        assert_eq!(described.groups[0].members.len(), 1, "v{version}");
        let admins = &described.groups[1];
        assert_eq!(admins.error_code, 29, "v{version}: TOPIC_AUTHORIZATION_FAILED");
        assert!(admins.members.is_empty(), "v{version}: no members shown");
        assert_eq!(admins.error_message.as_deref(), Some("The group has described topic(s) that the client is not authorized to describe."));
    }
    let described = admin.request(1, &ConsumerGroupDescribeRequest::default().with_group_ids(vec![GroupId(s("rx-admins"))])).await;
    assert_eq!(described.groups[0].error_code, 0);
    assert_eq!(described.groups[0].members.len(), 1);
}
