//! `runnel topic create|list|describe|alter-config|delete`.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::{client_config, parse_key_value, ClientArgs, BROKER_TIMEOUT};

#[derive(clap::Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        #[arg(long, short = 'r', default_value_t = 1)]
        replication_factor: i32,
        /// Topic config KEY=VALUE (repeatable), e.g. retention.ms=86400000.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// List topics (internal ones with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Show partitions, offsets and configs of a topic.
    Describe { name: String },
    /// Set topic configs (the given set replaces the topic's overrides).
    AlterConfig {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Delete topics.
    Delete {
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

pub async fn run(args: &ClientArgs, cmd: TopicCommand) -> Result<()> {
    match cmd {
        TopicCommand::Create { name, partitions, replication_factor, config } => {
            let pairs: Vec<(String, String)> = config.iter().map(|c| parse_key_value(c)).collect::<Result<_>>()?;
            let mut topic = NewTopic::new(&name, partitions, TopicReplication::Fixed(replication_factor));
            for (k, v) in &pairs {
                topic = topic.set(k, v);
            }
            let results = admin(args)?.create_topics(&[topic], &options()).await.context("creating topic")?;
            for result in results {
                if let Err((topic, code)) = result {
                    bail!("topic {topic:?} was not created: {code}");
                }
            }
            println!("created topic {name} ({partitions} partition{})", if partitions == 1 { "" } else { "s" });
        }
        TopicCommand::List { all } => {
            let consumer: BaseConsumer = client_config(args)?.create().context("creating client")?;
            let metadata = consumer
                .fetch_metadata(None, BROKER_TIMEOUT)
                .map_err(|e| anyhow!("cannot reach the broker at {}: {e}", args.brokers))?;
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
        TopicCommand::AlterConfig { name, set } => {
            let pairs: Vec<(String, String)> = set.iter().map(|c| parse_key_value(c)).collect::<Result<_>>()?;
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&name));
            for (k, v) in &pairs {
                alter = alter.set(k, v);
            }
            let results = admin(args)?.alter_configs(&[alter], &options()).await.context("altering configs")?;
            for result in results {
                if let Err((_, code)) = result {
                    bail!("configs of {name:?} were not changed: {code}");
                }
            }
            println!("altered configs of {name}");
        }
        TopicCommand::Delete { names } => {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let results = admin(args)?.delete_topics(&refs, &options()).await.context("deleting topics")?;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(topic) => println!("deleted topic {topic}"),
                    Err((topic, code)) => {
                        eprintln!("error: topic {topic:?} was not deleted: {code}");
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
