//! `runnel topic create|list|describe|alter|alter-config|delete-records|elect-leaders|delete`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, IncrementalAlterConfigsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::{client_config, parse_key_value, wire, ClientArgs, BROKER_TIMEOUT};

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Name of the topic.
        name: String,
        /// Number of partitions (default: the broker's num.partitions).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's default.replication.factor).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// Topic config KEY=VALUE (repeatable), e.g. retention.ms=86400000.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// List topics with their partition counts.
    List {
        /// Also list internal topics (__consumer_offsets).
        #[arg(long)]
        all: bool,
    },
    /// Show partitions, offsets and configs of a topic.
    Describe {
        /// Name of the topic.
        name: String,
    },
    /// Change a topic: raise its partition count (partitions are never removed).
    Alter {
        /// Name of the topic.
        name: String,
        /// The new, higher, total number of partitions.
        #[arg(long, short = 'p')]
        partitions: i32,
    },
    /// Change topic configs one by one (IncrementalAlterConfigs); configs not named keep their values.
    AlterConfig {
        /// Name of the topic.
        name: String,
        /// Set KEY to VALUE (repeatable).
        #[arg(long = "config", short = 'c', visible_alias = "set", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Remove the topic's override of KEY, back to the broker default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// Add comma-separated VALUE(s) to list config KEY (repeatable).
        #[arg(long = "append", value_name = "KEY=VALUE")]
        append: Vec<String>,
        /// Remove comma-separated VALUE(s) from list config KEY (repeatable).
        #[arg(long = "subtract", value_name = "KEY=VALUE")]
        subtract: Vec<String>,
    },
    /// Delete records before an offset (the partitions' log start moves there).
    DeleteRecords {
        /// Name of the topic.
        name: String,
        /// Only this partition (repeatable; default: every partition).
        #[arg(long = "partition", short = 'p')]
        partitions: Vec<i32>,
        /// Delete every record below this offset; -1 means up to the end (high watermark).
        #[arg(long = "before", value_name = "OFFSET", allow_negative_numbers = true)]
        before: i64,
    },
    /// Elect leaders (ElectLeaders): give leadership back to the preferred replicas, or elect one where none leads (--election unclean).
    ElectLeaders {
        /// Topics to elect for (default: every partition of every topic).
        names: Vec<String>,
        /// Only this partition of the topics (repeatable; default: all their partitions).
        #[arg(long = "partition", short = 'p')]
        partitions: Vec<i32>,
        /// Which election: preferred (default) or unclean.
        #[arg(long, value_enum, default_value = "preferred")]
        election: crate::cluster::Election,
    },
    /// Delete topics.
    Delete {
        /// Names of the topics.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn admin(args: &ClientArgs) -> Result<AdminClient<DefaultClientContext>> {
    client_config(args)?.create().context("creating the admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(BROKER_TIMEOUT)).operation_timeout(Some(BROKER_TIMEOUT))
}

fn unreachable(args: &ClientArgs, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot reach the broker at {}: {e}", args.brokers)
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Partition ids of `topic`, or an error naming it when it does not exist.
pub fn partitions_of(args: &ClientArgs, client: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let metadata = client.fetch_metadata(Some(topic), BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
    let t = metadata.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty());
    Ok(t.ok_or_else(|| anyhow!("topic {topic:?} does not exist"))?.partitions().iter().map(|p| p.id()).collect())
}

const TIMEOUT_MS: i32 = BROKER_TIMEOUT.as_millis() as i32;

pub async fn run(args: &ClientArgs, cmd: TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create { name, partitions, replication_factor, config } => {
            let pairs: Vec<(String, String)> = config.iter().map(|c| parse_key_value(c)).collect::<Result<_>>()?;
            let mut connection = wire::Connection::open(&args.brokers).await.map_err(|e| unreachable(args, e))?;
            // -1 asks the broker for its defaults (KIP-464, CreateTopics v4+).
            let topic = CreatableTopic::default()
                .with_name(TopicName(str_bytes(&name)))
                .with_num_partitions(partitions.unwrap_or(-1))
                .with_replication_factor(replication_factor.unwrap_or(-1))
                .with_configs(
                    pairs.iter().map(|(k, v)| CreatableTopicConfig::default().with_name(str_bytes(k)).with_value(Some(str_bytes(v)))).collect(),
                );
            let request = CreateTopicsRequest::default().with_topics(vec![topic]).with_timeout_ms(TIMEOUT_MS);
            let version = connection.version_of::<CreateTopicsRequest>()?;
            if version < 4 && (partitions.is_none() || replication_factor.is_none()) {
                bail!("this broker cannot apply its default partition count: give --partitions and --replication-factor");
            }
            let response = connection.send_at(&request, version).await.map_err(|e| unreachable(args, e))?;
            let result = response.topics.first().ok_or_else(|| anyhow!("the broker sent no result for topic {name:?}"))?;
            if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
                bail!("topic {name:?} was not created: {e}");
            }
            // v5+ answers with the partition count the broker chose.
            let count = if version >= 5 { result.num_partitions } else { partitions.unwrap_or(-1) };
            println!("created topic {name} ({count} partition{})", if count == 1 { "" } else { "s" });
        }
        TopicCommand::List { all } => {
            let consumer: BaseConsumer = client_config(args)?.create().context("creating client")?;
            let metadata = consumer.fetch_metadata(None, BROKER_TIMEOUT).map_err(|e| unreachable(args, e))?;
            let mut topics: Vec<(String, usize)> = metadata
                .topics()
                .iter()
                .filter(|t| all || !t.name().starts_with("__"))
                .map(|t| (t.name().to_string(), t.partitions().len()))
                .collect();
            topics.sort();
            for (name, partitions) in topics {
                println!("{name}\t{partitions}");
            }
        }
        TopicCommand::Describe { name } => describe(args, &name).await?,
        TopicCommand::Alter { name, partitions } => {
            let request = CreatePartitionsRequest::default()
                .with_topics(vec![CreatePartitionsTopic::default().with_name(TopicName(str_bytes(&name))).with_count(partitions)])
                .with_timeout_ms(TIMEOUT_MS);
            let response = wire::exchange(&args.brokers, &request).await.map_err(|e| unreachable(args, e))?;
            let result = response.results.first().ok_or_else(|| anyhow!("the broker sent no result for topic {name:?}"))?;
            if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
                bail!("partitions of {name:?} were not changed: {e}");
            }
            println!("topic {name} now has {partitions} partitions");
        }
        TopicCommand::AlterConfig { name, config, delete, append, subtract } => {
            let mut ops: Vec<AlterableConfig> = Vec::new();
            let mut add = |pairs: &[String], op: i8| -> Result<()> {
                for pair in pairs {
                    let (k, v) = parse_key_value(pair)?;
                    ops.push(AlterableConfig::default().with_name(str_bytes(&k)).with_config_operation(op).with_value(Some(str_bytes(&v))));
                }
                Ok(())
            };
            add(&config, CONFIG_SET)?;
            add(&append, CONFIG_APPEND)?;
            add(&subtract, CONFIG_SUBTRACT)?;
            for k in &delete {
                ops.push(AlterableConfig::default().with_name(str_bytes(k)).with_config_operation(CONFIG_DELETE).with_value(None));
            }
            if ops.is_empty() {
                bail!("nothing to change: give --config, --delete, --append or --subtract");
            }
            let request = IncrementalAlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(&name))
                .with_configs(ops)]);
            let response = wire::exchange(&args.brokers, &request).await.map_err(|e| unreachable(args, e))?;
            let result = response.responses.first().ok_or_else(|| anyhow!("the broker sent no result for topic {name:?}"))?;
            if let Some(e) = wire::error_of(result.error_code, result.error_message.as_ref()) {
                bail!("configs of {name:?} were not changed: {e}");
            }
            println!("altered configs of {name}");
        }
        TopicCommand::DeleteRecords { name, partitions, before } => {
            if before < -1 {
                bail!("--before must be an offset >= 0, or -1 for the end of the partition");
            }
            let client: BaseConsumer = client_config(args)?.create().context("creating client")?;
            let partitions = if partitions.is_empty() { partitions_of(args, &client, &name)? } else { partitions };
            let mut list = TopicPartitionList::new();
            for p in &partitions {
                let offset = if before == -1 { Offset::End } else { Offset::Offset(before) };
                list.add_partition_offset(&name, *p, offset).context("listing partitions")?;
            }
            // librdkafka sends each partition's request to its leader.
            let result = admin(args)?.delete_records(&list, &options()).await.map_err(|e| anyhow!("deleting records of {name:?}: {e}"))?;
            let mut failed = false;
            for e in result.elements() {
                match (e.error(), e.offset()) {
                    (Err(err), _) => {
                        eprintln!("error: {}:{}: {err}", e.topic(), e.partition());
                        failed = true;
                    }
                    (Ok(()), Offset::Offset(low)) => println!("{}\t{}\tlog start {low}", e.topic(), e.partition()),
                    (Ok(()), other) => println!("{}\t{}\tlog start {other:?}", e.topic(), e.partition()),
                }
            }
            if failed {
                bail!("records of some partitions were not deleted");
            }
        }
        TopicCommand::ElectLeaders { names, partitions, election } => {
            crate::cluster::elect_leaders(args, &names, &partitions, election).await?;
        }
        TopicCommand::Delete { names } => {
            let mut connection = wire::Connection::open(&args.brokers).await.map_err(|e| unreachable(args, e))?;
            // v6 names topics in `topics` (by name or id); older versions in `topic_names`.
            let version = connection.version_of::<DeleteTopicsRequest>()?;
            let mut request = DeleteTopicsRequest::default().with_timeout_ms(TIMEOUT_MS);
            if version >= 6 {
                request.topics = names.iter().map(|n| DeleteTopicState::default().with_name(Some(TopicName(str_bytes(n))))).collect();
            } else {
                request.topic_names = names.iter().map(|n| TopicName(str_bytes(n))).collect();
            }
            let response = connection.send_at(&request, version).await.map_err(|e| unreachable(args, e))?;
            let mut failed = false;
            for result in &response.responses {
                let topic = result.name.as_ref().map(|n| n.0.to_string()).unwrap_or_else(|| result.topic_id.to_string());
                match wire::error_of(result.error_code, result.error_message.as_ref()) {
                    None => println!("deleted topic {topic}"),
                    Some(e) => {
                        eprintln!("error: topic {topic:?} was not deleted: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("some topics were not deleted");
            }
        }
    }
    Ok(())
}

const RESOURCE_TOPIC: i8 = 2;
const CONFIG_SET: i8 = 0;
const CONFIG_DELETE: i8 = 1;
const CONFIG_APPEND: i8 = 2;
const CONFIG_SUBTRACT: i8 = 3;

async fn describe(args: &ClientArgs, name: &str) -> Result<()> {
    let consumer: BaseConsumer = client_config(args)?.create().context("creating client")?;
    let metadata = consumer
        .fetch_metadata(Some(name), BROKER_TIMEOUT)
        .map_err(|e| anyhow!("cannot reach the broker at {}: {e}", args.brokers))?;
    let topic = metadata.topics().first().ok_or_else(|| anyhow!("no metadata for topic {name:?}"))?;
    if let Some(err) = topic.error() {
        bail!("topic {name:?}: {}", rdkafka::types::RDKafkaErrorCode::from(err));
    }
    println!("topic\t{name}");
    println!("partitions\t{}", topic.partitions().len());
    println!("partition\tleader\treplicas\tisr\tlow\thigh");
    for p in topic.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(name, p.id(), BROKER_TIMEOUT)
            .map_err(|e| anyhow!("offsets of {name}/{}: {e}", p.id()))?;
        println!("{}\t{}\t{:?}\t{:?}\t{low}\t{high}", p.id(), p.leader(), p.replicas(), p.isr());
    }
    let resources = admin(args)?
        .describe_configs(&[ResourceSpecifier::Topic(name)], &options())
        .await
        .context("describing configs")?;
    println!("configs:");
    for resource in resources {
        let resource = resource.map_err(|e| anyhow!("configs of {name:?}: {e}"))?;
        let entries: BTreeMap<String, (Option<String>, bool)> = resource
            .entries
            .iter()
            .map(|e| (e.name.clone(), (e.value.clone(), e.is_default)))
            .collect();
        for (k, (v, is_default)) in entries {
            let marker = if is_default { "" } else { "\t(set on topic)" };
            println!("  {k}={}{marker}", v.unwrap_or_default());
        }
    }
    Ok(())
}
