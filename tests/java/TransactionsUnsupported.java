import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Until Runnel has transactions, a transactional Java producer must fail
 * fast with an error that says so, not block for max.block.ms looking for a
 * transaction coordinator. Usage: TransactionsUnsupported BOOTSTRAP
 */
public class TransactionsUnsupported {
    public static void main(String[] args) {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("transactional.id", "txn-unsupported-java");
        props.put("max.block.ms", "30000");
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        long started = System.currentTimeMillis();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            System.out.println("FAIL: initTransactions succeeded, but transactions are not implemented");
            System.exit(1);
        } catch (Exception e) {
            long elapsed = System.currentTimeMillis() - started;
            String message = String.valueOf(e.getMessage());
            if (elapsed > 15_000 || !message.contains("not supported")) {
                System.out.println("FAIL: after " + elapsed + " ms: " + e);
                System.exit(1);
            }
            System.out.println("PASS: failed after " + elapsed + " ms: " + e);
        }
    }
}
