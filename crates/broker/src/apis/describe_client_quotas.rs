//! DescribeClientQuotas (key 48, v0-1, KIP-546): the quota entities of this
//! broker's cluster metadata image that match the filter, with their keys, as
//! Kafka's `ClientQuotasImage.describe` answers (`runnel_controller::quota::describe`).
//! DESCRIBE_CONFIGS on the cluster is required (CLUSTER_AUTHORIZATION_FAILED).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::acl::operation;
use runnel_controller::quota::{describe, FilterComponent};

use super::{Authz, Reply, RequestContext};
use crate::Broker;

fn refused(code: i16, message: String) -> Reply<DescribeClientQuotasResponse> {
    Reply::Now(DescribeClientQuotasResponse::default().with_error_code(code).with_error_message(Some(StrBytes::from_string(message))).with_entries(None))
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeClientQuotasRequest) -> Reply<DescribeClientQuotasResponse> {
    if !Authz::new(broker, ctx).cluster(operation::DESCRIBE_CONFIGS) {
        return refused(ResponseError::ClusterAuthorizationFailed.code(), "Cluster authorization failed.".into());
    }
    let components: Vec<FilterComponent> = req
        .components
        .iter()
        .map(|c| FilterComponent { entity_type: c.entity_type.to_string(), match_type: c.match_type, name: c._match.as_ref().map(|m| m.to_string()) })
        .collect();
    let image = broker.cluster.image();
    let found = match describe(&image.client_quotas, &components, req.strict) {
        Ok(found) => found,
        Err((code, message)) => return refused(code, message),
    };
    let entries = found
        .into_iter()
        .map(|(entity, keys)| {
            EntryData::default()
                .with_entity(
                    entity
                        .iter()
                        .map(|(t, n)| {
                            EntityData::default()
                                .with_entity_type(StrBytes::from_string(t.clone()))
                                .with_entity_name(n.clone().map(StrBytes::from_string))
                        })
                        .collect(),
                )
                .with_values(
                    keys.iter().map(|(key, value)| ValueData::default().with_key(StrBytes::from_string(key.clone())).with_value(value.0)).collect(),
                )
        })
        .collect();
    Reply::Now(DescribeClientQuotasResponse::default().with_entries(Some(entries)))
}
