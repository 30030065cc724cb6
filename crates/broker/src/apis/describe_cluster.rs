//! DescribeCluster (key 60): the cluster id, controller and brokers.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{authorized_operations, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: DescribeClusterRequest) -> Reply<DescribeClusterResponse> {
    let node = BrokerId(broker.config.node_id);
    let this = DescribeClusterBroker::default()
        .with_broker_id(node)
        .with_host(StrBytes::from_string(broker.config.advertised_host.clone()))
        .with_port(broker.config.advertised_port);
    Reply::Now(
        DescribeClusterResponse::default()
            .with_endpoint_type(req.endpoint_type.max(1))
            .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
            .with_controller_id(node)
            .with_brokers(vec![this])
            .with_cluster_authorized_operations(authorized_operations::if_requested(
                req.include_cluster_authorized_operations,
                authorized_operations::CLUSTER,
            )),
    )
}
