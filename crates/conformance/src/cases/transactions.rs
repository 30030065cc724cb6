//! Transactions (KIP-98): the coordinator's answers on its error paths and
//! through a commit, as a client drives them.

use anyhow::{Context, Result};
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{case, Case};
use crate::ctx::{Ctx, Rule};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn init_request(txn: &str, timeout_ms: i32) -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(txn))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// FindCoordinator for the id (Kafka creates `__transaction_state` on first
/// use), then InitProducerId: (producer id, epoch).
fn init(ctx: &mut Ctx, txn: &str) -> Result<(i64, i16)> {
    let find = FindCoordinatorRequest::default().with_key_type(1).with_coordinator_keys(vec![s(txn)]);
    ctx.send_until_ready(&find, 30, |r| r.coordinators.first().map_or(0, |c| c.error_code))?;
    let response = ctx.send_until_ready(&init_request(txn, 60_000), 30, |r| r.error_code)?;
    anyhow::ensure!(response.error_code == 0, "init producer id failed with {}", response.error_code);
    Ok((response.producer_id.0, response.producer_epoch))
}

fn add_partitions(txn: &str, producer_id: i64, epoch: i16, topic: &str, partitions: Vec<i32>) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(txn)))
        .with_v3_and_below_producer_id(ProducerId(producer_id))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default().with_name(TopicName(s(topic))).with_partitions(partitions)])
}

fn end_txn(txn: &str, producer_id: i64, epoch: i16, commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(txn)))
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

fn describe(txn: &str) -> DescribeTransactionsRequest {
    DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(txn))])
}

pub fn cases() -> Vec<Case> {
    vec![
        case("txn.init_timeout_too_large", |ctx| {
            let txn = ctx.name("txn-timeout");
            let warm = ctx.name("txn-warm");
            init(ctx, &warm)?;
            ctx.probe_v("probe", &init_request(&txn, 900_001), 4)?;
            Ok(())
        }),
        case("txn.init_empty_id", |ctx| {
            let warm = ctx.name("txn-warm");
            init(ctx, &warm)?;
            ctx.probe_v("probe", &init_request("", 60_000), 4)?;
            Ok(())
        }),
        case("txn.add_partitions_unknown_id", |ctx| {
            let txn = ctx.name("txn-unknown");
            let warm = ctx.name("txn-warm");
            init(ctx, &warm)?;
            ctx.probe_v("probe", &add_partitions(&txn, 1, 0, &txn, vec![0]), 3)?;
            Ok(())
        }),
        case("txn.add_partitions_unknown_topic", |ctx| {
            let txn = ctx.name("txn-apt");
            let topic = ctx.name("txn-apt-topic");
            ctx.create_topic(&topic, 1, &[])?;
            let (producer_id, epoch) = init(ctx, &txn)?;
            let mut request = add_partitions(&txn, producer_id, epoch, &topic, vec![0]);
            let missing = ctx.name("txn-missing");
            request.v3_and_below_topics.push(AddPartitionsToTxnTopic::default().with_name(TopicName(s(&missing))).with_partitions(vec![0]));
            ctx.rule("*.name", Rule::Presence);
            ctx.probe_v("probe", &request, 3)?;
            Ok(())
        }),
        case("txn.end_txn_errors", |ctx| {
            let txn = ctx.name("txn-end");
            let (producer_id, epoch) = init(ctx, &txn)?;
            // Empty state: nothing to end.
            ctx.probe_v("empty_state", &end_txn(&txn, producer_id, epoch, true), 3)?;
            ctx.probe_v("wrong_epoch", &end_txn(&txn, producer_id, epoch + 1, true), 3)?;
            ctx.probe_v("wrong_epoch_v1", &end_txn(&txn, producer_id, epoch + 1, true), 1)?;
            ctx.probe_v("wrong_producer", &end_txn(&txn, producer_id + 1, epoch, true), 3)?;
            let unknown = ctx.name("txn-none");
            ctx.probe_v("unknown_id", &end_txn(&unknown, producer_id, epoch, true), 3)?;
            Ok(())
        }),
        case("txn.commit_flow", |ctx| {
            let txn = ctx.name("txn-flow");
            let topic = ctx.name("txn-flow-topic");
            ctx.create_topic(&topic, 2, &[])?;
            let (producer_id, epoch) = init(ctx, &txn)?;
            ctx.rule("*.transaction_start_time_ms", Rule::Presence);
            ctx.probe_v("add", &add_partitions(&txn, producer_id, epoch, &topic, vec![0, 1]), 3)?;
            ctx.rule("*.topic", Rule::Presence);
            ctx.probe("ongoing", &describe(&txn))?;
            ctx.probe_v("add_again", &add_partitions(&txn, producer_id, epoch, &topic, vec![1]), 3)?;
            let group = ctx.name("txn-group");
            let offsets = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&txn)))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s(&group)));
            ctx.probe_v("add_offsets", &offsets, 3)?;
            ctx.probe_v("commit", &end_txn(&txn, producer_id, epoch, true), 3)?;
            ctx.probe("complete", &describe(&txn))?;
            ctx.probe_v("commit_retry", &end_txn(&txn, producer_id, epoch, true), 3)?;
            ctx.probe_v("abort_after_commit", &end_txn(&txn, producer_id, epoch, false), 3)?;
            // A second InitProducerId bumps the epoch; the old one is fenced.
            let bumped = ctx.send_v(&init_request(&txn, 60_000), 4).context("second init")?;
            ctx.record("bumped_epoch", &(bumped.error_code, bumped.producer_epoch - epoch))?;
            ctx.probe_v("fenced_add", &add_partitions(&txn, producer_id, epoch, &topic, vec![0]), 3)?;
            ctx.probe_v("fenced_add_v1", &add_partitions(&txn, producer_id, epoch, &topic, vec![0]), 1)?;
            Ok(())
        }),
        case("txn.describe_unknown", |ctx| {
            let warm = ctx.name("txn-warm");
            init(ctx, &warm)?;
            let unknown = ctx.name("txn-none");
            ctx.probe("probe", &describe(&unknown))?;
            Ok(())
        }),
    ]
}
