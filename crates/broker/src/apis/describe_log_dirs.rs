//! DescribeLogDirs (key 35): the broker's log directory (Runnel has one:
//! `log.dirs`), its total and usable bytes (v4+, from statvfs), and per
//! partition replica held here its size on disk and offset lag.
//!
//! As Kafka: null topics = every partition; a topic or partition this broker
//! has no replica of is left out (no error); topics with no partition left
//! are omitted. The offset lag is 0 on the leader; on a follower it is the
//! leader's high watermark as of the follower's last fetch minus its log
//! end (0 before its first fetch). Kafka reports max(HW - LEO, 0) of the
//! local log, which is always 0 for a current log; the follower's lag
//! behind the leader is what an operator asks this for. No log is ever a
//! future log (AlterReplicaLogDirs does not exist here).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeLogDirsRequest) -> Reply<DescribeLogDirsResponse> {
    if !Authz::new(broker, ctx).cluster(operation::DESCRIBE) {
        // Kafka: no directories, and the error where the version has a field for it (v3+).
        let response = DescribeLogDirsResponse::default();
        if ctx.version < 3 {
            return Reply::Now(response);
        }
        let code = kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
        return Reply::Now(response.with_error_code(code));
    }
    // None: every partition; otherwise topic -> requested partitions.
    let wanted: Option<HashMap<String, BTreeSet<i32>>> = req.topics.map(|topics| {
        let mut wanted: HashMap<String, BTreeSet<i32>> = HashMap::new();
        for t in topics {
            wanted.entry(t.topic.0.to_string()).or_default().extend(t.partitions);
        }
        wanted
    });
    let broker = broker.clone();
    // Sizes and statvfs touch the disk: off the async threads.
    let result = tokio::task::spawn_blocking(move || describe_log_dir(&broker, wanted.as_ref()))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "describing the log directory failed");
            DescribeLogDirsResult::default().with_error_code(ResponseError::UnknownServerError.code())
        });
    Reply::Now(DescribeLogDirsResponse::default().with_results(vec![result]))
}

fn describe_log_dir(broker: &Broker, wanted: Option<&HashMap<String, BTreeSet<i32>>>) -> DescribeLogDirsResult {
    let dir = &broker.config.data_dir;
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let result = DescribeLogDirsResult::default().with_log_dir(StrBytes::from_string(absolute.display().to_string()));
    let (total_bytes, usable_bytes) = match disk_space(&absolute) {
        Ok(space) => space,
        Err(e) => {
            tracing::warn!(dir = %absolute.display(), error = %e, "DescribeLogDirs: statvfs of the log directory failed");
            return result.with_error_code(ResponseError::KafkaStorageError.code());
        }
    };
    let node_id = broker.config.node_id;
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for topic in broker.replicas.topics() {
        if !broker.cluster.is_listed(&topic) {
            continue;
        }
        let requested = match wanted {
            None => None,
            Some(wanted) => match wanted.get(&*topic.name) {
                Some(partitions) => Some(partitions),
                None => continue,
            },
        };
        for partition in topic.partitions() {
            if requested.is_some_and(|r| !r.contains(&partition.index)) {
                continue;
            }
            // Every broker keeps a log for every partition of a cluster topic;
            // only the assigned replicas' count, as only they exist in Kafka.
            if !broker.cluster.partition_view(&topic, &partition).replicas.contains(&node_id) {
                continue;
            }
            let size = partition.with_log(|log| log.size_bytes());
            topics.entry(topic.name.to_string()).or_default().push(
                DescribeLogDirsPartition::default()
                    .with_partition_index(partition.index)
                    .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                    .with_offset_lag(partition.offset_lag())
                    .with_is_future_key(false),
            );
        }
    }
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            DescribeLogDirsTopic::default().with_name(TopicName(StrBytes::from_string(name))).with_partitions(partitions)
        })
        .collect();
    result.with_topics(topics).with_total_bytes(total_bytes).with_usable_bytes(usable_bytes)
}

/// Total and usable (available to unprivileged users) bytes of the file
/// system holding `dir`, as Java's FileStore getTotalSpace / getUsableSpace.
fn disk_space(dir: &Path) -> std::io::Result<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the log directory path holds a NUL byte"))?;
    // SAFETY: statvfs writes only into `stat`, a plain C struct we own, and
    // reads the NUL-terminated path that outlives the call.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fragment = stat.f_frsize as u64;
    let bytes = |blocks: u64| i64::try_from(blocks.saturating_mul(fragment)).unwrap_or(i64::MAX);
    Ok((bytes(stat.f_blocks as u64), bytes(stat.f_bavail as u64)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn disk_space_of_a_real_directory_is_positive_and_usable_at_most_total() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (total, usable) = super::disk_space(dir.path()).expect("statvfs");
        assert!(total > 0 && usable >= 0 && usable <= total, "total {total}, usable {usable}");
        assert!(super::disk_space(&dir.path().join("missing")).is_err());
    }
}
