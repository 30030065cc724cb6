import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java consumer uses incremental fetch sessions (KIP-227): it opens a
 * session, then names only the partitions whose position moved. This reads
 * a topic of 8 partitions while records arrive in rounds on a few of them at
 * a time, so most incremental answers leave most partitions out, and checks
 * that every record arrives exactly once and in order per partition.
 * Usage: FetchSessions BOOTSTRAP TOPIC ROUNDS
 */
public class FetchSessions {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int rounds = Integer.parseInt(args[2]);
        int partitions = 8;
        int perRound = 40;

        Properties adminProps = new Properties();
        adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(adminProps)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
        }

        Properties producerProps = new Properties();
        producerProps.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        producerProps.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        producerProps.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        Properties consumerProps = new Properties();
        consumerProps.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        consumerProps.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        consumerProps.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        consumerProps.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, "200");
        consumerProps.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        consumerProps.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());

        Map<Integer, List<Integer>> received = new HashMap<>();
        int expected = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps);
             KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps)) {
            List<TopicPartition> all = new ArrayList<>();
            for (int p = 0; p < partitions; p++) {
                all.add(new TopicPartition(topic, p));
            }
            consumer.assign(all);
            int total = 0;
            for (int round = 0; round < rounds; round++) {
                // Each round writes to two partitions; the others stay idle.
                int[] targets = {round % partitions, (round * 3 + 1) % partitions};
                for (int i = 0; i < perRound; i++) {
                    int p = targets[i % 2];
                    producer.send(new ProducerRecord<>(topic, p, null, p + ":" + (round * perRound + i)));
                }
                producer.flush();
                expected += perRound;
                long deadline = System.currentTimeMillis() + 20_000;
                while (total < expected && System.currentTimeMillis() < deadline) {
                    for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                        String[] parts = record.value().split(":");
                        if (Integer.parseInt(parts[0]) != record.partition()) {
                            fail("record " + record.value() + " read from partition " + record.partition());
                        }
                        received.computeIfAbsent(record.partition(), k -> new ArrayList<>()).add(Integer.parseInt(parts[1]));
                        total++;
                    }
                }
                if (total != expected) {
                    fail("after round " + round + ": " + total + " records read, expected " + expected);
                }
            }
            // Nothing more may arrive: no duplicates.
            for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(1000))) {
                fail("unexpected extra record " + record.value());
            }
        }
        for (Map.Entry<Integer, List<Integer>> e : received.entrySet()) {
            List<Integer> seq = e.getValue();
            for (int i = 1; i < seq.size(); i++) {
                if (seq.get(i) <= seq.get(i - 1)) {
                    fail("partition " + e.getKey() + " out of order: " + seq.get(i - 1) + " then " + seq.get(i));
                }
            }
        }
        System.out.println("PASS: " + expected + " records over " + rounds + " rounds, each once and in order");
    }

    private static void fail(String why) {
        System.out.println("FAIL: " + why);
        System.exit(1);
    }
}
