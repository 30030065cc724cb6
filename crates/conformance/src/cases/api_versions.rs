//! ApiVersions: the error/throttle fields, and per API the advertised range.

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};

use super::{case, Case};
use crate::ctx::{s, Rule, Side};

/// Runnel's advertised APIs, plus client-facing ones Kafka 4 has and Runnel
/// lacks (so their absence stays visible in the allowed list).
const APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::Metadata,
    ApiKey::ApiVersions,
    ApiKey::InitProducerId,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::ListGroups,
    ApiKey::DescribeGroups,
    ApiKey::DeleteGroups,
    ApiKey::OffsetDelete,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
    ApiKey::CreateTopics,
    ApiKey::DeleteTopics,
    ApiKey::CreatePartitions,
    ApiKey::DeleteRecords,
    ApiKey::DescribeConfigs,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::DescribeCluster,
    ApiKey::DescribeTopicPartitions,
    ApiKey::ListConfigResources,
    ApiKey::SaslHandshake,
    ApiKey::DescribeProducers,
    ApiKey::AddPartitionsToTxn,
];

pub fn cases() -> Vec<Case> {
    let mut cases = vec![
        case("api_versions.v3_header_fields", |ctx| {
            // The API list is compared per API below; features are Kafka's KRaft business.
            ctx.rule("probe.api_keys*", Rule::Ignore);
            ctx.rule("probe.supported_features*", Rule::Ignore);
            ctx.rule("probe.finalized_features*", Rule::Ignore);
            ctx.rule("probe.zk_migration_ready", Rule::Ignore);
            let request = ApiVersionsRequest::default()
                .with_client_software_name(s("runnel-conformance"))
                .with_client_software_version(s("1.0"));
            ctx.probe_v("probe", &request, 3)?;
            Ok(())
        }),
        case("api_versions.v0", |ctx| {
            ctx.rule("probe.api_keys*", Rule::Ignore);
            ctx.probe_v("probe", &ApiVersionsRequest::default(), 0)?;
            Ok(())
        }),
        case("api_versions.invalid_client_software_name", |ctx| {
            // KIP-511: names must match [a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?
            ctx.rule("probe.api_keys*", Rule::Ignore);
            ctx.rule("probe.supported_features*", Rule::Ignore);
            ctx.rule("probe.finalized_features*", Rule::Ignore);
            ctx.rule("probe.zk_migration_ready", Rule::Ignore);
            let request = ApiVersionsRequest::default()
                .with_client_software_name(s("bad name!"))
                .with_client_software_version(s("1.0"));
            ctx.probe_v("probe", &request, 3)?;
            Ok(())
        }),
    ];
    for &api in APIS {
        cases.push(case(format!("api_versions.range.{api:?}"), move |ctx| {
            let advertised =
                if ctx.side == Side::Kafka { &ctx.versions.kafka_advertised } else { &ctx.versions.runnel_advertised };
            let range = advertised.get(&(api as i16)).map(|(min, max)| format!("{min}..={max}"));
            ctx.record("advertised", &range)?;
            Ok(())
        }));
    }
    cases
}
