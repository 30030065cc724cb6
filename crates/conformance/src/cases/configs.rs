//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs.

use kafka_protocol::messages::*;
#[allow(unused_imports)]
use crate::msg::*;

use super::topics::first_broker;
use super::{case, Case};
use crate::ctx::{s, Ctx, Rule};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const GROUP: i8 = 32;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn describe(resource_type: i8, name: &str, keys: Option<&[&str]>, synonyms: bool) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default().with_include_synonyms(synonyms).with_resources(vec![DescribeConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(s(name))
        .with_configuration_keys(keys.map(|keys| keys.iter().map(|k| s(k)).collect()))])
}

fn incremental(resource_type: i8, name: &str, ops: &[(&str, i8, Option<&str>)], validate_only: bool) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default().with_validate_only(validate_only).with_resources(vec![
        kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(
                ops.iter()
                    .map(|(key, op, value)| {
                        kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s(key))
                            .with_config_operation(*op)
                            .with_value(value.map(s))
                    })
                    .collect(),
            ),
    ])
}

fn alter(resource_type: i8, name: &str, configs: &[(&str, &str)], validate_only: bool) -> AlterConfigsRequest {
    AlterConfigsRequest::default().with_validate_only(validate_only).with_resources(vec![
        kafka_protocol::messages::alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(s(name))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        kafka_protocol::messages::alter_configs_request::AlterableConfig::default()
                            .with_name(s(k))
                            .with_value(Some(s(v)))
                    })
                    .collect(),
            ),
    ])
}

/// Topic configs whose value and source are compared one by one.
const TOPIC_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "file.delete.delay.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "min.insync.replicas",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
    "segment.index.bytes",
    "min.cleanable.dirty.ratio",
    "unclean.leader.election.enable",
];

/// Broker configs a client may reasonably ask about.
const BROKER_KEYS: &[&str] = &[
    "num.partitions",
    "auto.create.topics.enable",
    "message.max.bytes",
    "log.retention.hours",
    "log.retention.ms",
    "log.segment.bytes",
    "default.replication.factor",
    "offsets.retention.minutes",
    "group.initial.rebalance.delay.ms",
    "log.cleanup.policy",
    "min.insync.replicas",
];

/// DescribeConfigs of a topic after a setup step, narrowed to `key`.
fn describe_topic_key(ctx: &mut Ctx, topic: &str, key: &str, synonyms: bool) -> anyhow::Result<()> {
    ctx.probe("describe", &describe(TOPIC, topic, Some(&[key]), synonyms))?;
    Ok(())
}

/// DescribeConfigs after an alter: Kafka's controller has committed the
/// change when it answers, but the broker applies it from the metadata log a
/// moment later, so give it that moment before describing.
fn describe_after_alter(ctx: &mut Ctx, topic: &str, key: &str, synonyms: bool) -> anyhow::Result<()> {
    std::thread::sleep(std::time::Duration::from_millis(500));
    describe_topic_key(ctx, topic, key, synonyms)
}

pub fn cases() -> Vec<Case> {
    let mut cases = vec![
        case("describe_configs.topic_all_keys_count", |ctx| {
            let name = ctx.name("dc-all");
            ctx.create_topic(&name, 1, &[])?;
            let response = ctx.send(&describe(TOPIC, &name, None, false))?;
            let result = &response.results[0];
            ctx.record("error_code", &result.error_code)?;
            // Each topic config Kafka knows, whether the broker lists it.
            let mut names: Vec<String> = result.configs.iter().map(|c| c.name.to_string()).collect();
            names.sort();
            ctx.record("names", &names)?;
            Ok(())
        }),
        case("describe_configs.unknown_topic", |ctx| {
            let name = ctx.name("dc-unknown");
            ctx.probe("probe", &describe(TOPIC, &name, None, false))?;
            Ok(())
        }),
        case("describe_configs.invalid_topic_name", |ctx| {
            ctx.probe("probe", &describe(TOPIC, "bad name!", None, false))?;
            Ok(())
        }),
        case("describe_configs.unknown_key", |ctx| {
            let name = ctx.name("dc-unknown-key");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &describe(TOPIC, &name, Some(&["no.such.config"]), false))?;
            Ok(())
        }),
        case("describe_configs.topic_override_with_synonyms", |ctx| {
            let name = ctx.name("dc-override");
            ctx.create_topic(&name, 1, &[("retention.ms", "3600000")])?;
            describe_topic_key(ctx, &name, "retention.ms", true)
        }),
        case("describe_configs.topic_with_documentation", |ctx| {
            let name = ctx.name("dc-doc");
            ctx.create_topic(&name, 1, &[])?;
            // The wording is Kafka's; whether documentation is sent is compared.
            let request = describe(TOPIC, &name, Some(&["retention.ms"]), false).with_include_documentation(true);
            ctx.rule("*.documentation", Rule::Presence);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("describe_configs.broker_unknown_id", |ctx| {
            ctx.probe("probe", &describe(BROKER, "4242", None, false))?;
            Ok(())
        }),
        case("describe_configs.broker_invalid_name", |ctx| {
            ctx.probe("probe", &describe(BROKER, "not-a-number", None, false))?;
            Ok(())
        }),
        case("describe_configs.broker_default_resource", |ctx| {
            // An empty name is the cluster-wide default resource.
            ctx.probe("probe", &describe(BROKER, "", Some(&["num.partitions"]), false))?;
            Ok(())
        }),
        case("describe_configs.broker_logger", |ctx| {
            let node = first_broker(ctx)?.to_string();
            ctx.rule("probe.results[*].configs*", Rule::Ignore);
            ctx.probe("probe", &describe(BROKER_LOGGER, &node, None, false))?;
            Ok(())
        }),
        case("describe_configs.group", |ctx| {
            let group = ctx.name("dc-group");
            ctx.probe("probe", &describe(GROUP, &group, Some(&["consumer.session.timeout.ms"]), false))?;
            Ok(())
        }),
        case("describe_configs.unknown_resource_type", |ctx| {
            ctx.probe("probe", &describe(99, "x", None, false))?;
            Ok(())
        }),
        case("describe_configs.two_resources_one_unknown", |ctx| {
            let name = ctx.name("dc-two");
            ctx.create_topic(&name, 1, &[])?;
            let mut request = describe(TOPIC, &name, Some(&["retention.ms"]), false);
            let mut other = request.resources[0].clone();
            other.resource_name = s(&ctx.name("dc-two-missing"));
            request.resources.push(other);
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("alter_configs.topic_ok", |ctx| {
            let name = ctx.name("ac-ok");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &alter(TOPIC, &name, &[("retention.ms", "1000000")], false))?;
            describe_after_alter(ctx, &name, "retention.ms", false)
        }),
        case("alter_configs.topic_replaces_all", |ctx| {
            // AlterConfigs is not incremental: configs left out return to defaults.
            let name = ctx.name("ac-replace");
            ctx.create_topic(&name, 1, &[("segment.ms", "7200000")])?;
            ctx.probe("probe", &alter(TOPIC, &name, &[("retention.ms", "1000000")], false))?;
            describe_after_alter(ctx, &name, "segment.ms", false)
        }),
        case("alter_configs.topic_validate_only", |ctx| {
            let name = ctx.name("ac-vo");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &alter(TOPIC, &name, &[("retention.ms", "1000000")], true))?;
            describe_after_alter(ctx, &name, "retention.ms", false)
        }),
        case("alter_configs.topic_invalid_value", |ctx| {
            let name = ctx.name("ac-invalid");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &alter(TOPIC, &name, &[("retention.ms", "soon")], false))?;
            Ok(())
        }),
        case("alter_configs.topic_unknown_key", |ctx| {
            let name = ctx.name("ac-unknown-key");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &alter(TOPIC, &name, &[("no.such.config", "1")], false))?;
            Ok(())
        }),
        case("alter_configs.unknown_topic", |ctx| {
            let name = ctx.name("ac-unknown");
            ctx.probe("probe", &alter(TOPIC, &name, &[("retention.ms", "1000000")], false))?;
            Ok(())
        }),
        case("alter_configs.broker_dynamic", |ctx| {
            let node = first_broker(ctx)?.to_string();
            ctx.probe("probe", &alter(BROKER, &node, &[("log.cleaner.threads", "1")], true))?;
            Ok(())
        }),
        case("alter_configs.broker_read_only", |ctx| {
            let node = first_broker(ctx)?.to_string();
            ctx.probe("probe", &alter(BROKER, &node, &[("log.dirs", "/tmp/x")], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.set", |ctx| {
            let name = ctx.name("iac-set");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("retention.ms", SET, Some("1234567"))], false))?;
            describe_after_alter(ctx, &name, "retention.ms", true)
        }),
        case("incremental_alter_configs.delete_returns_default", |ctx| {
            let name = ctx.name("iac-delete");
            ctx.create_topic(&name, 1, &[("retention.ms", "3600000")])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("retention.ms", DELETE, None)], false))?;
            describe_after_alter(ctx, &name, "retention.ms", false)
        }),
        case("incremental_alter_configs.delete_unset", |ctx| {
            let name = ctx.name("iac-delete-unset");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("segment.ms", DELETE, None)], false))?;
            Ok(())
        }),
        case("incremental_alter_configs.append_cleanup_policy", |ctx| {
            let name = ctx.name("iac-append");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("cleanup.policy", APPEND, Some("compact"))], false))?;
            describe_after_alter(ctx, &name, "cleanup.policy", false)
        }),
        case("incremental_alter_configs.append_existing_value", |ctx| {
            let name = ctx.name("iac-append-dup");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("cleanup.policy", APPEND, Some("delete"))], false))?;
            describe_after_alter(ctx, &name, "cleanup.policy", false)
        }),
        case("incremental_alter_configs.subtract_to_empty", |ctx| {
            let name = ctx.name("iac-subtract");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("cleanup.policy", SUBTRACT, Some("delete"))], false))?;
            describe_after_alter(ctx, &name, "cleanup.policy", false)
        }),
        case("incremental_alter_configs.append_to_non_list", |ctx| {
            let name = ctx.name("iac-append-scalar");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("retention.ms", APPEND, Some("5"))], false))?;
            Ok(())
        }),
        case("incremental_alter_configs.invalid_operation", |ctx| {
            let name = ctx.name("iac-badop");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("retention.ms", 9, Some("5"))], false))?;
            Ok(())
        }),
        case("incremental_alter_configs.invalid_value", |ctx| {
            let name = ctx.name("iac-invalid");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("cleanup.policy", SET, Some("sometimes"))], false))?;
            Ok(())
        }),
        case("incremental_alter_configs.min_insync_zero", |ctx| {
            let name = ctx.name("iac-minisr");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("min.insync.replicas", SET, Some("0"))], false))?;
            Ok(())
        }),
        case("incremental_alter_configs.unknown_key", |ctx| {
            let name = ctx.name("iac-unknown-key");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("no.such.config", SET, Some("1"))], false))?;
            Ok(())
        }),
        case("incremental_alter_configs.validate_only", |ctx| {
            let name = ctx.name("iac-vo");
            ctx.create_topic(&name, 1, &[])?;
            ctx.probe("probe", &incremental(TOPIC, &name, &[("retention.ms", SET, Some("1234567"))], true))?;
            describe_after_alter(ctx, &name, "retention.ms", false)
        }),
        case("incremental_alter_configs.unknown_topic", |ctx| {
            let name = ctx.name("iac-unknown");
            ctx.probe("probe", &incremental(TOPIC, &name, &[("retention.ms", SET, Some("1"))], false))?;
            Ok(())
        }),
        case("incremental_alter_configs.same_key_twice", |ctx| {
            let name = ctx.name("iac-twice");
            ctx.create_topic(&name, 1, &[])?;
            let ops = [("retention.ms", SET, Some("1000")), ("retention.ms", SET, Some("2000"))];
            ctx.probe("probe", &incremental(TOPIC, &name, &ops, false))?;
            Ok(())
        }),
        case("incremental_alter_configs.broker_dynamic_validate_only", |ctx| {
            let node = first_broker(ctx)?.to_string();
            ctx.probe("probe", &incremental(BROKER, &node, &[("log.retention.ms", SET, Some("3600000"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.broker_read_only", |ctx| {
            let node = first_broker(ctx)?.to_string();
            ctx.probe("probe", &incremental(BROKER, &node, &[("log.dirs", SET, Some("/tmp/x"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.group_validate_only", |ctx| {
            let group = ctx.name("iac-group");
            ctx.probe("probe", &incremental(GROUP, &group, &[("consumer.session.timeout.ms", SET, Some("50000"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.group_invalid_value", |ctx| {
            let group = ctx.name("iac-group-bad");
            ctx.probe("probe", &incremental(GROUP, &group, &[("consumer.session.timeout.ms", SET, Some("1"))], true))?;
            Ok(())
        }),
    ];
    cases.extend(dynamic_config_cases());
    cases.extend(list_config_resources_cases());
    for &key in TOPIC_KEYS {
        cases.push(case(format!("describe_configs.topic_default.{key}"), move |ctx| {
            let name = ctx.name(&format!("dc-default-{}", key.replace('.', "-")));
            ctx.create_topic(&name, 1, &[])?;
            describe_after_alter(ctx, &name, key, true)
        }));
    }
    for &key in BROKER_KEYS {
        cases.push(case(format!("describe_configs.broker.{key}"), move |ctx| {
            let node = first_broker(ctx)?.to_string();
            // The suite's brokers both run with group.initial.rebalance.delay.ms=0.
            ctx.probe("probe", &describe(BROKER, &node, Some(&[key]), true))?;
            Ok(())
        }));
    }
    let invalid_topic_values: &[(&str, &str)] = &[
        ("retention.ms", "-5"),
        ("segment.bytes", "10"),
        ("cleanup.policy", "bogus"),
        ("message.timestamp.type", "WallClock"),
        ("compression.type", "brotli"),
        ("max.message.bytes", "-1"),
    ];
    for &(key, value) in invalid_topic_values {
        cases.push(case(format!("create_topics.invalid_config.{key}={value}"), move |ctx| {
            let name = ctx.name(&format!("ct-bad-{}", key.replace('.', "-")));
            ctx.probe("probe", &Ctx::create_topics_request(&name, 1, &[(key, value)]))?;
            Ok(())
        }));
    }
    cases.push(case("create_topics.answer_lists_configs", |ctx| {
        let name = ctx.name("ct-configs");
        let response = ctx.send(&Ctx::create_topics_request(&name, 1, &[("retention.ms", "3600000")]))?;
        // v5+: the created topic's configs; compare the ones both know by name.
        for config in response.topics[0].configs.iter().flatten() {
            if TOPIC_KEYS.contains(&config.name.as_str()) {
                ctx.record(&format!("config.{}", config.name), config)?;
            }
        }
        ctx.record("error_message", &response.topics[0].error_message)?;
        Ok(())
    }));
    cases
}

/// Runs `steps`, then `cleanup` whatever happened: a dynamic broker config
/// left set would change the answers of every later case.
fn with_cleanup(ctx: &mut Ctx, steps: impl FnOnce(&mut Ctx) -> anyhow::Result<()>, cleanup: impl FnOnce(&mut Ctx) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let outcome = steps(ctx);
    let cleaned = cleanup(ctx);
    // Kafka applies the change from its metadata log a moment after answering.
    std::thread::sleep(std::time::Duration::from_millis(500));
    outcome.and(cleaned)
}

/// Dynamic broker configs (KIP-226) and group configs (KIP-848).
fn dynamic_config_cases() -> Vec<Case> {
    vec![
        case("incremental_alter_configs.broker_default_set_describe_delete", |ctx| {
            let node = first_broker(ctx)?.to_string();
            let topic = ctx.name("iac-bdefault");
            ctx.create_topic(&topic, 1, &[])?;
            with_cleanup(
                ctx,
                |ctx| {
                    ctx.probe("set", &incremental(BROKER, "", &[("log.retention.ms", SET, Some("3600000"))], false))?;
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    ctx.probe("describe_default", &describe(BROKER, "", Some(&["log.retention.ms"]), true))?;
                    ctx.probe("describe_node", &describe(BROKER, &node, Some(&["log.retention.ms", "log.retention.hours"]), true))?;
                    describe_topic_key(ctx, &topic, "retention.ms", true)
                },
                |ctx| {
                    ctx.probe("delete", &incremental(BROKER, "", &[("log.retention.ms", DELETE, None)], false))?;
                    Ok(())
                },
            )?;
            ctx.probe("describe_after_delete", &describe(BROKER, &node, Some(&["log.retention.ms"]), true))?;
            Ok(())
        }),
        case("incremental_alter_configs.broker_node_set_describe_delete", |ctx| {
            let node = first_broker(ctx)?.to_string();
            let topic = ctx.name("iac-bnode");
            ctx.create_topic(&topic, 1, &[])?;
            with_cleanup(
                ctx,
                |ctx| {
                    ctx.probe("set", &incremental(BROKER, &node, &[("message.max.bytes", SET, Some("2000000"))], false))?;
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    ctx.probe("describe_node", &describe(BROKER, &node, Some(&["message.max.bytes"]), true))?;
                    describe_topic_key(ctx, &topic, "max.message.bytes", true)
                },
                |ctx| {
                    ctx.probe("delete", &incremental(BROKER, &node, &[("message.max.bytes", DELETE, None)], false))?;
                    Ok(())
                },
            )
        }),
        case("incremental_alter_configs.broker_invalid_value", |ctx| {
            let node = first_broker(ctx)?.to_string();
            ctx.probe("probe", &incremental(BROKER, &node, &[("log.retention.ms", SET, Some("soon"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.broker_invalid_cleanup_policy", |ctx| {
            ctx.probe("probe", &incremental(BROKER, "", &[("log.cleanup.policy", SET, Some("sometimes"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.broker_hours_not_dynamic", |ctx| {
            let node = first_broker(ctx)?.to_string();
            ctx.probe("probe", &incremental(BROKER, &node, &[("log.retention.hours", SET, Some("2"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.broker_unknown_id", |ctx| {
            ctx.probe("probe", &incremental(BROKER, "4242", &[("message.max.bytes", SET, Some("2000000"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.broker_not_a_number", |ctx| {
            ctx.probe("probe", &incremental(BROKER, "broker-one", &[("message.max.bytes", SET, Some("2000000"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.duplicate_resource", |ctx| {
            let name = ctx.name("iac-dup-resource");
            ctx.create_topic(&name, 1, &[])?;
            let mut request = incremental(TOPIC, &name, &[("retention.ms", SET, Some("1000"))], true);
            request.resources.push(request.resources[0].clone());
            ctx.probe("probe", &request)?;
            Ok(())
        }),
        case("alter_configs.broker_node_validate_only", |ctx| {
            // The node, not the cluster default "": AlterConfigs replaces the whole set, and
            // Kafka 4.x refuses to drop the cluster-wide min.insync.replicas its storage format wrote.
            let node = first_broker(ctx)?.to_string();
            ctx.probe("probe", &alter(BROKER, &node, &[("message.max.bytes", "2000000"), ("log.retention.ms", "3600000")], true))?;
            Ok(())
        }),
        case("alter_configs.broker_invalid_value", |ctx| {
            ctx.probe("probe", &alter(BROKER, "", &[("message.max.bytes", "big")], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.group_set_describe", |ctx| {
            let group = ctx.name("iac-group-set");
            ctx.probe("probe", &incremental(GROUP, &group, &[("consumer.session.timeout.ms", SET, Some("50000"))], false))?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            ctx.probe("describe", &describe(GROUP, &group, Some(&["consumer.session.timeout.ms", "consumer.heartbeat.interval.ms"]), true))?;
            ctx.probe("delete", &incremental(GROUP, &group, &[("consumer.session.timeout.ms", DELETE, None)], false))?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            ctx.probe("describe_after_delete", &describe(GROUP, &group, Some(&["consumer.session.timeout.ms"]), true))?;
            Ok(())
        }),
        case("incremental_alter_configs.group_unknown_key", |ctx| {
            let group = ctx.name("iac-group-unknown");
            ctx.probe("probe", &incremental(GROUP, &group, &[("no.such.config", SET, Some("1"))], true))?;
            Ok(())
        }),
        case("incremental_alter_configs.group_heartbeat_above_session", |ctx| {
            let group = ctx.name("iac-group-hb");
            let ops = [("consumer.session.timeout.ms", SET, Some("45000")), ("consumer.heartbeat.interval.ms", SET, Some("15000"))];
            ctx.probe("ok", &incremental(GROUP, &group, &ops, true))?;
            ctx.probe("too_high", &incremental(GROUP, &group, &[("consumer.heartbeat.interval.ms", SET, Some("16000"))], true))?;
            Ok(())
        }),
        case("alter_configs.group_ok", |ctx| {
            let group = ctx.name("ac-group");
            ctx.probe("probe", &alter(GROUP, &group, &[("consumer.heartbeat.interval.ms", "6000")], false))?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            ctx.probe("describe", &describe(GROUP, &group, Some(&["consumer.heartbeat.interval.ms"]), false))?;
            Ok(())
        }),
        case("describe_configs.group_empty_name", |ctx| {
            ctx.probe("probe", &describe(GROUP, "", None, false))?;
            Ok(())
        }),
    ]
}

/// ListConfigResources (KIP-1142). Both brokers hold other resources from
/// other cases, so presence of this case's own ones is compared, not lists.
fn list_config_resources_cases() -> Vec<Case> {
    fn list(types: &[i8]) -> ListConfigResourcesRequest {
        ListConfigResourcesRequest::default().with_resource_types(types.to_vec())
    }
    fn holds(response: &ListConfigResourcesResponse, resource_type: i8, name: &str) -> bool {
        response.config_resources.iter().any(|r| r.resource_type == resource_type && r.resource_name.as_str() == name)
    }
    vec![
        case("list_config_resources.v0_client_metrics", |ctx| {
            ctx.probe_v("probe", &ListConfigResourcesRequest::default(), 0)?;
            Ok(())
        }),
        case("list_config_resources.topic", |ctx| {
            let topic = ctx.name("lcr-topic");
            ctx.create_topic(&topic, 1, &[])?;
            let response = ctx.send_v(&list(&[TOPIC]), 1)?;
            ctx.record("error_code", &response.error_code)?;
            ctx.record("holds_topic", &holds(&response, TOPIC, &topic))?;
            ctx.record("only_topics", &response.config_resources.iter().all(|r| r.resource_type == TOPIC))?;
            Ok(())
        }),
        case("list_config_resources.broker", |ctx| {
            let node = first_broker(ctx)?.to_string();
            let response = ctx.send_v(&list(&[BROKER]), 1)?;
            ctx.record("error_code", &response.error_code)?;
            let names: Vec<String> = response.config_resources.iter().map(|r| format!("{}:{}", r.resource_type, if r.resource_name.as_str() == node { "<node>" } else { r.resource_name.as_str() })).collect();
            ctx.record("resources", &names)?;
            Ok(())
        }),
        case("list_config_resources.group_with_config", |ctx| {
            let group = ctx.name("lcr-group");
            ctx.send(&incremental(GROUP, &group, &[("consumer.session.timeout.ms", SET, Some("50000"))], false))?;
            std::thread::sleep(std::time::Duration::from_millis(500));
            let response = ctx.send_v(&list(&[GROUP]), 1)?;
            ctx.record("error_code", &response.error_code)?;
            ctx.record("holds_group", &holds(&response, GROUP, &group))?;
            Ok(())
        }),
        case("list_config_resources.all_types", |ctx| {
            let topic = ctx.name("lcr-all");
            ctx.create_topic(&topic, 1, &[])?;
            let response = ctx.send_v(&list(&[]), 1)?;
            ctx.record("error_code", &response.error_code)?;
            ctx.record("holds_topic", &holds(&response, TOPIC, &topic))?;
            let mut types: Vec<i8> = response.config_resources.iter().map(|r| r.resource_type).collect();
            types.sort_unstable();
            types.dedup();
            ctx.record("types", &types)?;
            Ok(())
        }),
        case("list_config_resources.unknown_type", |ctx| {
            ctx.probe_v("probe", &list(&[99]), 1)?;
            Ok(())
        }),
        case("list_config_resources.broker_logger", |ctx| {
            let response = ctx.send_v(&list(&[BROKER_LOGGER]), 1)?;
            ctx.record("error_code", &response.error_code)?;
            ctx.record("count", &response.config_resources.len())?;
            Ok(())
        }),
    ]
}
