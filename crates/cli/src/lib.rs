//! Runnel's client commands — `topic`, `produce`, `consume`, `group`, `txn`, `cluster`, `partition`, `user`, `acl`, `quota` — in
//! the spirit of kcat and Kafka's own tools. They speak only the Kafka
//! protocol (librdkafka, plus kafka-protocol frames in `wire` where librdkafka
//! lacks an API or drops the broker's error message), so they work against
//! any Kafka-compatible broker.

mod acl;
mod cluster;
mod codec;
mod consume;
mod group;
mod partition;
mod produce;
mod quota;
mod topic;
mod txn;
mod user;
mod wire;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::config::ClientConfig;

pub use acl::AclCommand;
pub use cluster::ClusterCommand;
pub use consume::ConsumeArgs;
pub use group::GroupCommand;
pub use partition::PartitionCommand;
pub use produce::ProduceArgs;
pub use quota::QuotaCommand;
pub use topic::TopicCommand;
pub use txn::TxnCommand;
pub use user::UserCommand;

/// How long a command waits for the broker before giving up with an error.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Bootstrap broker(s), HOST:PORT[,HOST:PORT...].
    #[arg(long = "brokers", short = 'b', env = "RUNNEL_BROKERS", default_value = "127.0.0.1:9092", global = true)]
    pub brokers: String,
    /// Extra librdkafka client setting KEY=VALUE (repeatable), e.g. security.protocol=SSL.
    #[arg(long = "client-config", short = 'X', value_name = "KEY=VALUE", global = true)]
    pub client_config: Vec<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create, list, describe, alter and delete topics; delete records.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Produce records from stdin: one per line (KEY<SEP>VALUE with --key-separator), NUL-delimited, base64, hex or length-prefixed.
    Produce(ProduceArgs),
    /// Consume records and print them to stdout.
    Consume(ConsumeArgs),
    /// List, describe, delete consumer groups, show their lag, reset or delete their offsets.
    #[command(subcommand)]
    Group(GroupCommand),
    /// List and describe transactions (transactional producers' state on their coordinators).
    #[command(subcommand)]
    Txn(TxnCommand),
    /// Describe the cluster: brokers, the active controller, the metadata quorum.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Move partitions to other brokers and list the moves in progress.
    #[command(subcommand)]
    Partition(PartitionCommand),
    /// Manage users' SCRAM credentials (SCRAM-SHA-256/512; kept in the cluster metadata).
    #[command(subcommand)]
    User(UserCommand),
    /// Create, list and delete ACLs (kept in the cluster metadata; brokers enforce them with an authorizer configured).
    #[command(subcommand)]
    Acl(AclCommand),
    /// Set, list and delete client quotas (byte rates per user / client id; kept in the cluster metadata, enforced by throttling).
    #[command(subcommand)]
    Quota(QuotaCommand),
}

pub async fn run(args: &ClientArgs, cmd: ClientCommand) -> Result<()> {
    wire::configure_security(args);
    match cmd {
        ClientCommand::Topic(cmd) => topic::run(args, cmd).await,
        ClientCommand::Produce(p) => produce::run(args, p).await,
        ClientCommand::Consume(c) => consume::run(args, c).await,
        ClientCommand::Group(g) => group::run(args, g).await,
        ClientCommand::Txn(t) => txn::run(args, t).await,
        ClientCommand::Cluster(c) => cluster::run(args, c).await,
        ClientCommand::Partition(p) => partition::run(args, p).await,
        ClientCommand::User(u) => user::run(args, u).await,
        ClientCommand::Acl(a) => acl::run(args, a).await,
        ClientCommand::Quota(q) => quota::run(args, q).await,
    }
}

/// Splits `KEY=VALUE`.
pub fn parse_key_value(pair: &str) -> Result<(String, String)> {
    match pair.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => bail!("expected KEY=VALUE, got {pair:?}"),
    }
}

/// The librdkafka configuration every command starts from.
pub fn client_config(args: &ClientArgs) -> Result<ClientConfig> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &args.brokers);
    config.set("socket.timeout.ms", "10000");
    config.set("log_level", "3");
    for pair in &args.client_config {
        let (k, v) = parse_key_value(pair).context("--client-config")?;
        config.set(k, v);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        command: ClientCommand,
    }

    #[test]
    fn parses_the_documented_commands() {
        let cli = TestCli::parse_from(["runnel", "-b", "h:1", "topic", "create", "orders", "--partitions", "6", "--config", "retention.ms=1"]);
        assert_eq!(cli.client.brokers, "h:1");
        assert!(matches!(cli.command, ClientCommand::Topic(TopicCommand::Create { ref name, partitions: Some(6), .. }) if name == "orders"));
        let cli = TestCli::parse_from(["runnel", "produce", "t", "--key-separator", ":", "--acks", "1"]);
        assert!(matches!(cli.command, ClientCommand::Produce(ref p) if p.key_separator.as_deref() == Some(":")));
        let cli = TestCli::parse_from(["runnel", "consume", "t", "--from-beginning", "--group", "g", "--max-messages", "3"]);
        assert!(matches!(cli.command, ClientCommand::Consume(ref c) if c.from_beginning && c.max_messages == Some(3)));
        let cli = TestCli::parse_from(["runnel", "topic", "elect-leaders", "orders", "-p", "1", "--election", "unclean"]);
        assert!(matches!(cli.command, ClientCommand::Topic(TopicCommand::ElectLeaders { ref names, ref partitions, election: cluster::Election::Unclean })
            if names == &["orders"] && partitions == &[1]));
        let cli = TestCli::parse_from(["runnel", "cluster", "describe"]);
        assert!(matches!(cli.command, ClientCommand::Cluster(ClusterCommand::Describe)));
        let cli = TestCli::parse_from(["runnel", "partition", "reassign", "--topic", "orders", "--partition", "0", "--replicas", "2,3"]);
        assert!(matches!(cli.command, ClientCommand::Partition(PartitionCommand::Reassign { ref topic, partition: 0, ref replicas, cancel: false, .. })
            if topic == "orders" && replicas == &[2, 3]));
        let cli = TestCli::parse_from(["runnel", "partition", "reassign", "-t", "orders", "-p", "1", "--cancel"]);
        assert!(matches!(cli.command, ClientCommand::Partition(PartitionCommand::Reassign { cancel: true, ref replicas, .. }) if replicas.is_empty()));
        assert!(TestCli::try_parse_from(["runnel", "partition", "reassign", "-t", "orders", "-p", "1"]).is_err());
    }

    /// Every command and every argument says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_is_documented() {
        use clap::CommandFactory;
        fn check(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                if arg.get_help().is_none() && !matches!(arg.get_id().as_str(), "help" | "version") {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                let sub_path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(sub_path.clone());
                }
                check(sub, &sub_path, missing);
            }
        }
        let mut missing = Vec::new();
        check(&TestCli::command(), "runnel", &mut missing);
        assert!(missing.is_empty(), "undocumented: {missing:?}");
    }

    #[test]
    fn key_value_pairs() {
        assert_eq!(parse_key_value("a=b=c").unwrap(), ("a".to_string(), "b=c".to_string()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
