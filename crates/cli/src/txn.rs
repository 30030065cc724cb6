//! `runnel txn`: transactions as their coordinators see them
//! (ListTransactions, DescribeTransactions over the Kafka protocol).

use anyhow::{bail, Context, Result};
use kafka_protocol::messages::{DescribeTransactionsRequest, ListTransactionsRequest, ProducerId, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use crate::wire::{self, Connection};
use crate::ClientArgs;

#[derive(clap::Subcommand, Debug)]
pub enum TxnCommand {
    /// List transactional ids: id, producer id, state.
    List {
        /// Only these states (Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort), repeatable.
        #[arg(long = "state")]
        states: Vec<String>,
        /// Only this producer id (repeatable).
        #[arg(long = "producer-id")]
        producer_ids: Vec<i64>,
        /// Only transactions open for at least this many milliseconds.
        #[arg(long = "min-duration-ms")]
        min_duration_ms: Option<i64>,
    },
    /// Describe transactional ids: state, producer id and epoch, timeout, start, partitions.
    Describe {
        /// The transactional ids to describe (one or more).
        #[arg(required = true)]
        transactional_ids: Vec<String>,
    },
}

pub async fn run(args: &ClientArgs, cmd: TxnCommand) -> Result<()> {
    match cmd {
        TxnCommand::List { states, producer_ids, min_duration_ms } => {
            let request = ListTransactionsRequest::default()
                .with_state_filters(states.iter().map(|s| StrBytes::from_string(s.clone())).collect())
                .with_producer_id_filters(producer_ids.iter().map(|p| ProducerId(*p)).collect())
                .with_duration_filter(min_duration_ms.unwrap_or(-1));
            let mut connection = Connection::open(&args.brokers).await?;
            if min_duration_ms.is_some() && connection.version_of::<ListTransactionsRequest>()? < 1 {
                bail!("the broker does not support --min-duration-ms (ListTransactions v1)");
            }
            let (response, _) = connection.send(&request).await.context("listing transactions")?;
            if let Some(e) = wire::error_of(response.error_code, None) {
                bail!("listing transactions: {e}");
            }
            for unknown in &response.unknown_state_filters {
                eprintln!("warning: unknown state {:?}", unknown.as_str());
            }
            let mut rows: Vec<(String, i64, String)> =
                response.transaction_states.iter().map(|t| (t.transactional_id.0.to_string(), t.producer_id.0, t.transaction_state.to_string())).collect();
            rows.sort();
            println!("transactional-id\tproducer-id\tstate");
            for (id, producer_id, state) in rows {
                println!("{id}\t{producer_id}\t{state}");
            }
            Ok(())
        }
        TxnCommand::Describe { transactional_ids } => {
            let mut failed = false;
            for id in &transactional_ids {
                if let Err(e) = describe(args, id).await {
                    eprintln!("error: transactional id {id:?}: {e:#}");
                    failed = true;
                }
            }
            if failed {
                bail!("some transactional ids could not be described");
            }
            Ok(())
        }
    }
}

async fn describe(args: &ClientArgs, id: &str) -> Result<()> {
    let mut connection = Connection::coordinator(&args.brokers, 1, id).await?;
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(StrBytes::from_string(id.to_string()))]);
    let (response, _) = connection.send(&request).await.context("describing the transaction")?;
    let Some(t) = response.transaction_states.first() else { bail!("the broker answered nothing") };
    if let Some(e) = wire::error_of(t.error_code, None) {
        bail!("{e}");
    }
    println!("transactional-id\t{id}");
    println!("state\t{}", t.transaction_state.as_str());
    println!("producer-id\t{}", t.producer_id.0);
    println!("producer-epoch\t{}", t.producer_epoch);
    println!("timeout-ms\t{}", t.transaction_timeout_ms);
    println!("start-time-ms\t{}", t.transaction_start_time_ms);
    let partitions: Vec<String> = t.topics.iter().flat_map(|d| d.partitions.iter().map(move |p| format!("{}:{p}", d.topic.0.as_str()))).collect();
    println!("partitions\t{}", partitions.join(","));
    Ok(())
}
