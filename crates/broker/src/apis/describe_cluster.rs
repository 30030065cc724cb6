//! DescribeCluster (key 60): the cluster id, the active controller and the live
//! brokers (with racks), from the committed cluster metadata.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::CLUSTER_NAME;

use super::{Authz, authorized_operations, Reply, RequestContext};
use crate::security::authorizer::{CLUSTER, CLUSTER_OPERATIONS};
use crate::Broker;

/// DescribeCluster endpoint types (KIP-919): a broker answers for brokers only.
const BROKERS_ENDPOINT_TYPE: i8 = 1;
const CONTROLLERS_ENDPOINT_TYPE: i8 = 2;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeClusterRequest) -> Reply<DescribeClusterResponse> {
    if req.endpoint_type != BROKERS_ENDPOINT_TYPE {
        // Kafka's answers: controllers are described by a controller's
        // listener; an unknown type is unsupported (v0: INVALID_REQUEST).
        let (code, message) = match req.endpoint_type {
            _ if ctx.version == 0 => (ResponseError::InvalidRequest, format!("Unsupported endpoint type {}", req.endpoint_type)),
            CONTROLLERS_ENDPOINT_TYPE => (
                ResponseError::MismatchedEndpointType,
                "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type CONTROLLER".to_string(),
            ),
            other => (ResponseError::UnsupportedEndpointType, format!("Unsupported endpoint type {other}")),
        };
        return Reply::Now(
            DescribeClusterResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(StrBytes::from_string(message)))
                .with_controller_id(BrokerId(-1))
                .with_cluster_authorized_operations(authorized_operations::OMITTED),
        );
    }
    let (live, controller_id) = super::metadata::brokers_and_controller(broker, &ctx.listener, false);
    let mut brokers: Vec<DescribeClusterBroker> = live
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.node_id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    if req.include_fenced_brokers {
        // v2 (KIP-1073): registered but fenced brokers too, marked as such.
        let image = broker.cluster.image();
        let listed: Vec<i32> = brokers.iter().map(|b| b.broker_id.0).collect();
        for fenced in image.brokers.values().filter(|b| b.fenced && !listed.contains(&b.node_id)) {
            let (host, port) = crate::cluster::endpoint_on(&fenced.endpoints, &ctx.listener).map_or((String::new(), -1), |e| (e.host.clone(), i32::from(e.port)));
            brokers.push(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(fenced.node_id))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port)
                    .with_rack(fenced.rack.clone().map(StrBytes::from_string))
                    .with_is_fenced(true),
            );
        }
        brokers.sort_by_key(|b| b.broker_id.0);
    }
    Reply::Now(
        DescribeClusterResponse::default()
            .with_endpoint_type(BROKERS_ENDPOINT_TYPE)
            .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
            .with_controller_id(controller_id)
            .with_brokers(brokers)
            // As Kafka, DescribeCluster itself needs no ACL; the bitfield tells what the caller may do.
            .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
                Authz::new(broker, ctx).operations(CLUSTER, CLUSTER_NAME, CLUSTER_OPERATIONS, authorized_operations::CLUSTER)
            } else {
                authorized_operations::OMITTED
            }),
    )
}
