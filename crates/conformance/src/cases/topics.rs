//! CreateTopics, DeleteTopics, Metadata, CreatePartitions, DeleteRecords,
//! DescribeCluster, DescribeTopicPartitions.

use kafka_protocol::messages::*;
#[allow(unused_imports)]
use crate::msg::*;
use uuid::Uuid;

use super::{case, Case};
use crate::ctx::{metadata_request, s, Ctx, Rule};

fn topic_name(name: &str) -> TopicName {
    TopicName(s(name))
}

/// A CreateTopics probe for one topic named exactly `raw` (invalid names are not suffixed).
fn create_probe(ctx: &mut Ctx, raw: &str, partitions: i32, replication: i16, configs: &[(&str, &str)], validate_only: bool) -> anyhow::Result<()> {
    let mut request = Ctx::create_topics_request(raw, partitions, configs).with_validate_only(validate_only);
    request.topics[0].replication_factor = replication;
    // Config values and sources in the answer (v5+) are compared by name in
    // create_topics.answer_lists_configs; here their positions would be.
    ctx.rule("probe.topics[*].configs[*", Rule::Ignore);
    ctx.probe("probe", &request)?;
    Ok(())
}

fn delete_records_request(topic: &str, partition: i32, offset: i64) -> DeleteRecordsRequest {
    DeleteRecordsRequest::default().with_timeout_ms(30_000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(topic_name(topic))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(partition).with_offset(offset)])])
}

fn create_partitions_request(topic: &str, count: i32, validate_only: bool) -> CreatePartitionsRequest {
    CreatePartitionsRequest::default()
        .with_timeout_ms(30_000)
        .with_validate_only(validate_only)
        .with_topics(vec![CreatePartitionsTopic::default().with_name(topic_name(topic)).with_count(count).with_assignments(None)])
}

pub fn cases() -> Vec<Case> {
    let mut cases = vec![
        case("create_topics.ok", |ctx| {
            let name = ctx.name("ct-ok");
            create_probe(ctx, &name, 1, 1, &[], false)
        }),
        case("create_topics.three_partitions", |ctx| {
            let name = ctx.name("ct-three");
            create_probe(ctx, &name, 3, 1, &[], false)?;
            ctx.wait_topic(&name, 3)?;
            ctx.probe("metadata", &metadata_request(&[&name], false))?;
            Ok(())
        }),
        case("create_topics.default_partitions_and_replication", |ctx| {
            let name = ctx.name("ct-default");
            create_probe(ctx, &name, -1, -1, &[], false)
        }),
        case("create_topics.validate_only", |ctx| {
            let name = ctx.name("ct-validate");
            create_probe(ctx, &name, 2, 1, &[], true)?;
            ctx.probe("metadata_after", &metadata_request(&[&name], false))?;
            Ok(())
        }),
        case("create_topics.validate_only_zero_partitions", |ctx| {
            let name = ctx.name("ct-validate-zero");
            create_probe(ctx, &name, 0, 1, &[], true)
        }),
        case("create_topics.already_exists", |ctx| {
            let name = ctx.name("ct-exists");
            ctx.create_topic(&name, 1, &[])?;
            create_probe(ctx, &name, 1, 1, &[], false)
        }),
        case("create_topics.already_exists_validate_only", |ctx| {
            let name = ctx.name("ct-exists-vo");
            ctx.create_topic(&name, 1, &[])?;
            create_probe(ctx, &name, 1, 1, &[], true)
        }),
        case("create_topics.zero_partitions", |ctx| {
            let name = ctx.name("ct-zero");
            create_probe(ctx, &name, 0, 1, &[], false)
        }),
        case("create_topics.negative_partitions", |ctx| {
            let name = ctx.name("ct-neg");
            create_probe(ctx, &name, -5, 1, &[], false)
        }),
        case("create_topics.replication_factor_too_large", |ctx| {
            let name = ctx.name("ct-rf3");
            create_probe(ctx, &name, 1, 3, &[], false)
        }),
        case("create_topics.replication_factor_zero", |ctx| {
            let name = ctx.name("ct-rf0");
            create_probe(ctx, &name, 1, 0, &[], false)
        }),
        case("create_topics.collides_with_existing", |ctx| {
            // '.' and '_' collide in metric names, so Kafka refuses the second.
            let dotted = ctx.name("ct.collide");
            ctx.create_topic(&dotted, 1, &[])?;
            let underscored = dotted.replace('.', "_");
            create_probe(ctx, &underscored, 1, 1, &[], false)
        }),
        case("create_topics.duplicate_in_request", |ctx| {
            let name = ctx.name("ct-dup");
            let mut request = Ctx::create_topics_request(&name, 1, &[]);
            let copy = request.topics[0].clone();
            request.topics.push(copy);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("create_topics.unknown_config", |ctx| {
            let name = ctx.name("ct-unknown-config");
            create_probe(ctx, &name, 1, 1, &[("no.such.config", "1")], false)
        }),
        case("create_topics.manual_assignment", |ctx| {
            let name = ctx.name("ct-assign");
            let mut request = Ctx::create_topics_request(&name, -1, &[]);
            request.topics[0].replication_factor = -1;
            let node = first_broker(ctx)?;
            request.topics[0].assignments = vec![CreatableReplicaAssignment::default()
                .with_partition_index(0)
                .with_broker_ids(vec![BrokerId(node)])];
            ctx.rule("probe.topics[*].configs[*", Rule::Ignore);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("create_topics.assignment_unknown_broker", |ctx| {
            let name = ctx.name("ct-assign-bad");
            let mut request = Ctx::create_topics_request(&name, -1, &[]);
            request.topics[0].replication_factor = -1;
            request.topics[0].assignments =
                vec![CreatableReplicaAssignment::default().with_partition_index(0).with_broker_ids(vec![BrokerId(4242)])];
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("create_topics.v4_no_configs_in_answer", |ctx| {
            let name = ctx.name("ct-v4");
            let request = Ctx::create_topics_request(&name, 1, &[]);
            ctx.probe_v("probe", &request, 4)?;
            Ok(())
        }),
        case("delete_topics.ok", |ctx| {
            let name = ctx.name("dt-ok");
            ctx.create_topic(&name, 1, &[])?;
            let request = DeleteTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topic_names(vec![topic_name(&name)])
                .with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(&name)))]);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("delete_topics.unknown", |ctx| {
            let name = ctx.name("dt-unknown");
            let request = DeleteTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topic_names(vec![topic_name(&name)])
                .with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(&name)))]);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("delete_topics.unknown_topic_id", |ctx| {
            let request = DeleteTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0))]);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("delete_topics.by_topic_id", |ctx| {
            let name = ctx.name("dt-by-id");
            ctx.create_topic(&name, 1, &[])?;
            let id = ctx.topic_id(&name);
            let request = DeleteTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![DeleteTopicState::default().with_name(None).with_topic_id(id)]);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("delete_topics.twice", |ctx| {
            let name = ctx.name("dt-twice");
            ctx.create_topic(&name, 1, &[])?;
            ctx.delete_topic(&name)?;
            let request = DeleteTopicsRequest::default()
                .with_timeout_ms(30_000)
                .with_topics(vec![DeleteTopicState::default().with_name(Some(topic_name(&name)))]);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("metadata.unknown_topic_no_auto_create", |ctx| {
            let name = ctx.name("md-unknown");
            ctx.probe("probe", &metadata_request(&[&name], false))?;
            Ok(())
        }),
        case("metadata.auto_create", |ctx| {
            let name = ctx.name("md-auto");
            // The first answer may or may not have a leader yet; compare the settled state.
            ctx.send(&metadata_request(&[&name], true))?;
            ctx.wait_topic(&name, 1)?;
            ctx.probe("probe", &metadata_request(&[&name], true))?;
            Ok(())
        }),
        case("metadata.auto_create_invalid_name", |ctx| {
            ctx.probe("probe", &metadata_request(&["bad name!"], true))?;
            Ok(())
        }),
        case("metadata.three_partitions", |ctx| {
            let name = ctx.name("md-three");
            ctx.create_topic(&name, 3, &[])?;
            ctx.probe("probe", &metadata_request(&[&name], false))?;
            Ok(())
        }),
        case("metadata.empty_topic_list", |ctx| {
            ctx.probe("probe", &MetadataRequest::default().with_topics(Some(vec![])))?;
            Ok(())
        }),
        case("metadata.by_topic_id", |ctx| {
            let name = ctx.name("md-by-id");
            ctx.create_topic(&name, 1, &[])?;
            let id = ctx.topic_id(&name);
            let request =
                MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default().with_name(None).with_topic_id(id)]));
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("metadata.unknown_topic_id", |ctx| {
            let request = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(None)
                .with_topic_id(Uuid::from_u128(0xfeed))]));
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("metadata.deleted_topic", |ctx| {
            let name = ctx.name("md-deleted");
            ctx.create_topic(&name, 1, &[])?;
            ctx.delete_topic(&name)?;
            ctx.probe("probe", &metadata_request(&[&name], false))?;
            Ok(())
        }),
        case("metadata.v4_topic_authorized_operations", |ctx| {
            let name = ctx.name("md-ops");
            ctx.create_topic(&name, 1, &[])?;
            let request = metadata_request(&[&name], false).with_include_topic_authorized_operations(true);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("create_partitions.increase", |ctx| {
            let name = ctx.name("cp-inc");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &create_partitions_request(&name, 3, false))?;
            ctx.wait_topic(&name, 3)?;
            ctx.probe("metadata", &metadata_request(&[&name], false))?;
            Ok(())
        }),
        case("create_partitions.same_count", |ctx| {
            let name = ctx.name("cp-same");
            ctx.create_topic(&name, 2, &[])?;
            ctx.probe("probe", &create_partitions_request(&name, 2, false))?;
            Ok(())
        }),
        case("create_partitions.decrease", |ctx| {
            let name = ctx.name("cp-dec");
            ctx.create_topic(&name, 3, &[])?;
            ctx.probe("probe", &create_partitions_request(&name, 1, false))?;
            Ok(())
        }),
        case("create_partitions.validate_only", |ctx| {
            let name = ctx.name("cp-vo");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &create_partitions_request(&name, 4, true))?;
            ctx.probe("metadata", &metadata_request(&[&name], false))?;
            Ok(())
        }),
        case("create_partitions.unknown_topic", |ctx| {
            let name = ctx.name("cp-unknown");
            ctx.probe("probe", &create_partitions_request(&name, 4, false))?;
            Ok(())
        }),
        case("create_partitions.duplicate_topic", |ctx| {
            let name = ctx.name("cp-dup");
            ctx.create_topic(&name, 1, &[])?;
            let mut request = create_partitions_request(&name, 2, false);
            let copy = request.topics[0].clone();
            request.topics.push(copy);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("delete_records.ok", |ctx| {
            let name = ctx.name("dr-ok");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 5)?;
            ctx.probe("probe", &delete_records_request(&name, 0, 3))?;
            Ok(())
        }),
        case("delete_records.to_high_watermark", |ctx| {
            let name = ctx.name("dr-hw");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 5)?;
            ctx.probe("probe", &delete_records_request(&name, 0, -1))?;
            Ok(())
        }),
        case("delete_records.beyond_high_watermark", |ctx| {
            let name = ctx.name("dr-beyond");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 5)?;
            ctx.probe("probe", &delete_records_request(&name, 0, 6))?;
            Ok(())
        }),
        case("delete_records.below_log_start", |ctx| {
            let name = ctx.name("dr-below");
            ctx.create_topic(&name, 1, &[])?;
            ctx.produce(&name, 0, 5)?;
            ctx.send(&delete_records_request(&name, 0, 4))?;
            ctx.probe("probe", &delete_records_request(&name, 0, 2))?;
            Ok(())
        }),
        case("delete_records.negative_offset", |ctx| {
            let name = ctx.name("dr-neg");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &delete_records_request(&name, 0, -7))?;
            Ok(())
        }),
        case("delete_records.unknown_topic", |ctx| {
            let name = ctx.name("dr-unknown");
            ctx.probe("probe", &delete_records_request(&name, 0, 0))?;
            Ok(())
        }),
        case("delete_records.unknown_partition", |ctx| {
            let name = ctx.name("dr-unknown-part");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &delete_records_request(&name, 7, 0))?;
            Ok(())
        }),
        case("delete_records.empty_partition", |ctx| {
            let name = ctx.name("dr-empty");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &delete_records_request(&name, 0, 0))?;
            Ok(())
        }),
        case("describe_cluster.default", |ctx| {
            ctx.probe("probe", &DescribeClusterRequest::default())?;
            Ok(())
        }),
        case("describe_cluster.with_authorized_operations", |ctx| {
            ctx.probe("probe", &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true))?;
            Ok(())
        }),
        case("describe_topic_partitions.existing", |ctx| {
            let name = ctx.name("dtp");
            ctx.create_topic(&name, 2, &[])?;
            let request = DescribeTopicPartitionsRequest::default()
                .with_topics(vec![TopicRequest::default().with_name(topic_name(&name))])
                .with_response_partition_limit(2000);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
    ];
    // The internal topic both brokers have (the suite warms their group
    // coordinators up). No DeleteTopics probe: it would really delete it.
    let offsets = "__consumer_offsets";
    cases.push(case("internal_topic.metadata", move |ctx| {
        let response = ctx.send(&metadata_request(&[offsets], false))?;
        let topic = response.topics.first().ok_or_else(|| anyhow::anyhow!("no topic in Metadata"))?;
        ctx.record("error_code", &topic.error_code)?;
        ctx.record("is_internal", &topic.is_internal)?;
        ctx.record("partitions", &topic.partitions.len())?;
        Ok(())
    }));
    cases.push(case("internal_topic.create", move |ctx| create_probe(ctx, offsets, 1, 1, &[], false)));
    cases.push(case("internal_topic.create_partitions_validate_only", move |ctx| {
        ctx.probe("probe", &create_partitions_request(offsets, 100, true))?;
        Ok(())
    }));
    cases.push(case("internal_topic.delete_records", move |ctx| {
        ctx.probe("probe", &delete_records_request(offsets, 0, 0))?;
        Ok(())
    }));
    cases.push(case("internal_topic.produce", move |ctx| {
        let request = ctx.produce_request(offsets, 0, crate::ctx::batch(1, 0), -1);
        ctx.probe_v("probe", &request, 12)?;
        Ok(())
    }));
    cases.push(case("describe_cluster.controllers_endpoint_type", |ctx| {
        ctx.probe("probe", &DescribeClusterRequest::default().with_endpoint_type(2))?;
        Ok(())
    }));
    cases.push(case("metadata.duplicate_topic_in_request", |ctx| {
        let name = ctx.name("md-dup");
        ctx.create_topic(&name, 1, &[])?;
        ctx.probe("probe", &metadata_request(&[&name, &name], false))?;
        Ok(())
    }));
    cases.push(case("create_topics.null_config_value", |ctx| {
        let name = ctx.name("ct-null-config");
        let mut request = Ctx::create_topics_request(&name, 1, &[("retention.ms", "1")]);
        request.topics[0].configs[0].value = None;
        ctx.rule("probe.topics[*].configs[*", Rule::Ignore);
        ctx.probe("probe", &request)?;
        Ok(())
    }));
    // Kafka's topic name rules: [a-zA-Z0-9._-], at most 249 characters, not "." or "..".
    let long = "a".repeat(250);
    let invalid_names: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("dot", ".".into()),
        ("dotdot", "..".into()),
        ("slash", "a/b".into()),
        ("space", "a b".into()),
        ("colon", "a:b".into()),
        ("non_ascii", "t\u{fc}".into()),
        ("too_long_250", long),
    ];
    for (label, name) in invalid_names {
        cases.push(case(format!("create_topics.invalid_name.{label}"), move |ctx| create_probe(ctx, &name, 1, 1, &[], false)));
    }
    cases.push(case("create_topics.name_249_chars", |ctx| {
        let base = ctx.name("x");
        let name = format!("{base}{}", "a".repeat(249 - base.len()));
        create_probe(ctx, &name, 1, 1, &[], false)
    }));
    cases
}

/// Some broker's node id from Metadata.
pub fn first_broker(ctx: &mut Ctx) -> anyhow::Result<i32> {
    let response = ctx.send(&MetadataRequest::default().with_topics(Some(vec![])))?;
    response.brokers.first().map(|b| b.node_id.0).ok_or_else(|| anyhow::anyhow!("no brokers in Metadata"))
}
