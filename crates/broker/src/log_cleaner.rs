//! The background log cleaner (Kafka's `LogCleaner` thread with its
//! `LogCleanerManager`): one task for every compacted log of the broker,
//! `__consumer_offsets` included. Each round picks the dirtiest log — a log
//! with a record older than `max.compaction.lag.ms` first, else the highest
//! dirty ratio at or above its `min.cleanable.dirty.ratio` — and cleans it
//! (see `runnel_storage::cleaner`: the partition's lock is held only to
//! snapshot the segments and to swap the cleaned ones in). Nothing to clean:
//! it sleeps `log.cleaner.backoff.ms`.

use std::sync::Arc;
use std::time::Duration;

use runnel_storage::cleaner::Throttler;

use crate::config::LogCleanerConfig;
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;

/// Starts the cleaner (if `log.cleaner.enable`); it ends with the replica manager.
pub fn start(manager: &Arc<ReplicaManager>, config: LogCleanerConfig) {
    if !config.enable || config.threads == 0 {
        tracing::info!("the log cleaner is disabled: compacted topics are not compacted");
        return;
    }
    let manager = Arc::downgrade(manager);
    tokio::spawn(async move {
        loop {
            let Some(replicas) = manager.upgrade() else { return };
            let config_for_pass = config.clone();
            // Cleaning reads and writes files: keep it off the async workers.
            let cleaned = tokio::task::spawn_blocking(move || clean_dirtiest(&replicas, &config_for_pass, crate::now_ms()))
                .await
                .unwrap_or(false);
            if !cleaned {
                tokio::time::sleep(Duration::from_millis(config.backoff_ms.max(10))).await;
            }
        }
    });
}

/// One round: cleans the dirtiest cleanable log, if any. True if it cleaned one.
pub fn clean_dirtiest(replicas: &ReplicaManager, config: &LogCleanerConfig, now_ms: i64) -> bool {
    let mut best: Option<((bool, f64), Arc<Partition>)> = None;
    for topic in replicas.topics() {
        for partition in topic.partitions() {
            // Only what every replica has (the high watermark) and no open
            // transaction touches (the last stable offset) is cleaned: below
            // it every transaction is decided, so aborted records can go.
            let upper = partition.last_stable_offset();
            let candidate = partition.with_log(|log| {
                let min_ratio = log.config().min_cleanable_dirty_ratio;
                log.cleanable(now_ms, upper).map(|c| c.filter(|c| c.dirty_bytes > 0 && (c.overdue || c.dirty_ratio >= min_ratio)))
            });
            match candidate {
                Ok(Some(c)) => {
                    let rank = (c.overdue, c.dirty_ratio);
                    if best.as_ref().is_none_or(|(r, _)| rank.0 > r.0 || (rank.0 == r.0 && rank.1 > r.1)) {
                        best = Some((rank, partition.clone()));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "checking the log for cleaning failed"),
            }
        }
    }
    let Some((_, partition)) = best else { return false };
    let started = std::time::Instant::now();
    match clean_partition(&partition, config, now_ms) {
        Ok(Some(stats)) => {
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                aborted_records_removed = stats.aborted_records_removed, markers_removed = stats.markers_removed,
                topic = %partition.topic, partition = partition.index, bytes_read = stats.bytes_read, bytes_written = stats.bytes_written,
                records_read = stats.records_read, records_kept = stats.records_kept, tombstones_removed = stats.tombstones_removed,
                segments = stats.segments_replaced, cleaned_up_to = stats.cleaned_up_to, throttled_ms = stats.throttled.as_millis() as u64,
                "log cleaned"
            );
            true
        }
        Ok(None) => false,
        Err(e) => {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "cleaning the log failed; it stays as it was");
            false
        }
    }
}

/// Cleans one partition's log now (prepare under the lock, clean without it, swap under it).
pub fn clean_partition(
    partition: &Partition,
    config: &LogCleanerConfig,
    now_ms: i64,
) -> Result<Option<runnel_storage::CleanStats>, runnel_storage::StorageError> {
    let upper = partition.last_stable_offset();
    let Some(task) = partition.with_log(|log| log.prepare_cleaning(now_ms, upper))? else { return Ok(None) };
    let mut throttler = Throttler::new(config.storage.io_max_bytes_per_second);
    let Some(cleaned) = task.run(&config.storage, now_ms, &mut throttler)? else { return Ok(None) };
    let result = partition.with_log(|log| log.install_cleaned(cleaned));
    result.map(Some)
}
