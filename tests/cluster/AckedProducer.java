// One writer of the fault workload (tests/cluster/workload.py): the official
// Java client, idempotent, acks=all. Sends "<writer>:<seq>" to partition
// seq % partitions at a bounded rate until the stop file appears or the time
// limit passes, and logs to a file:
//   S <seq>                      before the record is handed to the client
//   A <partition> <offset> <seq> when it is acknowledged
//   F <seq> <error>              when it failed for good
//   END sent=<n> acked=<n> failed=<n>
// Usage: AckedProducer BOOTSTRAP TOPIC WRITER PARTITIONS RATE MAX_SECONDS STOP_FILE LOG_FILE
import java.io.BufferedWriter;
import java.io.FileWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class AckedProducer {
    public static void main(String[] args) throws Exception {
        if (args.length != 8) {
            System.err.println("usage: AckedProducer BOOTSTRAP TOPIC WRITER PARTITIONS RATE MAX_SECONDS STOP_FILE LOG_FILE");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], writer = args[2];
        int partitions = Integer.parseInt(args[3]);
        double rate = Double.parseDouble(args[4]);
        long maxMillis = (long) (Double.parseDouble(args[5]) * 1000);
        String stopFile = args[6];
        BufferedWriter log = new BufferedWriter(new FileWriter(args[7]));

        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        // One request in flight: with five, a batch whose request failed during
        // kill -9 of every node was written after later batches once the client
        // bumped its epoch (seen against Kafka 4.3.1): the client's ordering hole,
        // not the broker's, and this test is about the broker.
        props.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "1");
        props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "120000");
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        AtomicLong acked = new AtomicLong(), failed = new AtomicLong();
        long sent = 0;
        long start = System.currentTimeMillis();
        long intervalNanos = (long) (1e9 / rate);
        long next = System.nanoTime();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            while (System.currentTimeMillis() - start < maxMillis && !Files.exists(Paths.get(stopFile))) {
                final long seq = sent;
                int partition = (int) (seq % partitions);
                synchronized (log) {
                    log.write("S " + seq + "\n");
                    log.flush(); // the record may reach the log even if this process dies
                }
                producer.send(new ProducerRecord<>(topic, partition, null, writer + ":" + seq), (metadata, error) -> {
                    synchronized (log) {
                        try {
                            if (error == null) {
                                acked.incrementAndGet();
                                log.write("A " + metadata.partition() + " " + metadata.offset() + " " + seq + "\n");
                            } else {
                                failed.incrementAndGet();
                                log.write("F " + seq + " " + error.getClass().getSimpleName() + "\n");
                            }
                        } catch (IOException e) {
                            throw new RuntimeException("cannot write the producer log", e);
                        }
                    }
                });
                sent++;
                next += intervalNanos;
                long sleep = next - System.nanoTime();
                if (sleep > 0) {
                    Thread.sleep(sleep / 1_000_000, (int) (sleep % 1_000_000));
                } else if (-sleep > 1_000_000_000L) {
                    next = System.nanoTime(); // blocked (buffer full): do not burst afterwards
                }
            }
            producer.flush();
            producer.close(Duration.ofSeconds(60));
        }
        synchronized (log) {
            log.write("END sent=" + sent + " acked=" + acked.get() + " failed=" + failed.get() + "\n");
            log.close();
        }
    }
}
