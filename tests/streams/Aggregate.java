import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.TimeWindows;

/**
 * A Kafka Streams aggregation with processing.guarantee=exactly_once_v2, run
 * against Runnel by tests/python/test_streams.py, which kills it with
 * SIGKILL mid-stream and starts it again.
 *
 * Input: keys k0..kN, values decimal integers. Outputs (all String keys):
 *   OUT-counts   key -> number of records of the key (a KTable, changelog compacted)
 *   OUT-sums     key@windowStartMs -> sum of the values in the 10 s tumbling window
 *   OUT-buckets  value % 5 -> number of records (re-keyed: a repartition topic)
 * Each output's last committed value per key is the aggregate; under
 * exactly-once it equals the aggregate computed from the input directly.
 *
 * Usage: Aggregate BOOTSTRAP APPLICATION_ID INPUT OUTPUT_PREFIX STATE_DIR [GUARANTEE]
 * (GUARANTEE: exactly_once_v2 by default; at_least_once shows what the test
 * catches). Runs until killed; prints RUNNING once the application is running.
 */
public class Aggregate {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], applicationId = args[1], input = args[2], out = args[3], stateDir = args[4];
        String guarantee = args.length > 5 ? args[5] : StreamsConfig.EXACTLY_ONCE_V2;

        StreamsBuilder builder = new StreamsBuilder();
        KStream<String, String> records = builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()));

        records.groupByKey()
            .count(Materialized.as("counts"))
            .toStream()
            .mapValues(count -> Long.toString(count))
            .to(out + "-counts", Produced.with(Serdes.String(), Serdes.String()));

        records.mapValues(value -> Long.parseLong(value))
            .groupByKey(Grouped.with(Serdes.String(), Serdes.Long()))
            .windowedBy(TimeWindows.ofSizeWithNoGrace(Duration.ofSeconds(10)))
            .reduce(Long::sum, Materialized.as("sums"))
            .toStream()
            .map((window, sum) -> KeyValue.pair(window.key() + "@" + window.window().start(), Long.toString(sum)))
            .to(out + "-sums", Produced.with(Serdes.String(), Serdes.String()));

        records.selectKey((key, value) -> Long.toString(Long.parseLong(value) % 5))
            .groupByKey(Grouped.with("by-bucket", Serdes.String(), Serdes.String()))
            .count(Materialized.as("buckets"))
            .toStream()
            .mapValues(count -> Long.toString(count))
            .to(out + "-buckets", Produced.with(Serdes.String(), Serdes.String()));

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, applicationId);
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, guarantee);
        props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
        props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        props.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        props.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.StringSerde.class);
        // Every update reaches the outputs (no record cache), so the outputs
        // show the aggregates as they move, and a kill lands mid-transaction.
        props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
        // A restarted instance rejoins at once instead of waiting out the session of the killed one.
        props.put(StreamsConfig.consumerPrefix("session.timeout.ms"), 6000);
        props.put(StreamsConfig.consumerPrefix("heartbeat.interval.ms"), 1000);

        KafkaStreams streams = new KafkaStreams(builder.build(), props);
        CountDownLatch failed = new CountDownLatch(1);
        streams.setStateListener((now, before) -> {
            System.out.println("STATE " + before + " -> " + now);
            if (now == KafkaStreams.State.RUNNING) System.out.println("RUNNING");
            if (now == KafkaStreams.State.ERROR) failed.countDown();
        });
        streams.setUncaughtExceptionHandler(e -> {
            System.out.println("UNCAUGHT " + e);
            e.printStackTrace(System.out);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        streams.start();
        failed.await();
        System.out.println("FAILED: the application went to ERROR");
        streams.close(Duration.ofSeconds(5));
        System.exit(1);
    }
}
