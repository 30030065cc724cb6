//! The request parts kafka-protocol keeps in per-message modules, in one place.

pub use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
pub use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig};
pub use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
pub use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
pub use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
pub use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
pub use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
pub use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
pub use kafka_protocol::messages::leave_group_request::MemberIdentity;
pub use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
pub use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
pub use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
pub use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
pub use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics};
pub use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
pub use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
