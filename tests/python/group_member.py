"""One consumer-group member as its own process, so tests can stop it
cleanly (SIGTERM: close and leave) or kill it (SIGKILL: no goodbye).

It commits every record synchronously before reporting it: "P <partition>
<offset> <value>" is written before the commit, "R ..." after it succeeded,
so R means "processed and committed" (a member killed between the two may
have committed a record it never reported as R), and "F ..." after it
failed (e.g. STALE_MEMBER_EPOCH while a rebalance bumps the epoch): the
record was processed, and a later commit on the partition may pass it.
"A <p,p,...>" lines report the member's current assignment whenever it
changes, "B assign|revoke <p,...>" lines every rebalance
callback (confluent only), each preceded by "T <monotonic seconds>
assign|revoke <p,...>" written inside the callback, so that ownership
intervals of different members (processes) can be compared. Usage:

    group_member.py CLIENT BOOTSTRAP TOPIC GROUP OUTPUT [key=value ...]

CLIENT is "confluent" or "kafka-python"; key=value pairs are client settings.
MEMBER_DEBUG in the environment turns on client debug logs on stderr (for
confluent its value is librdkafka's `debug` list, e.g. cgrp,topic,consumer).
"""
import os
import signal
import sys
import time

stopping = False


def on_sigterm(_signum, _frame):
    global stopping
    stopping = True


def run_confluent(bootstrap, topic, group, out, settings):
    from confluent_kafka import Consumer, KafkaException

    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }
    if settings.get("group.protocol") != "consumer":
        conf["session.timeout.ms"] = 6000
        conf["heartbeat.interval.ms"] = 500
    conf.update(settings)
    if os.environ.get("MEMBER_DEBUG"):
        conf["debug"] = os.environ["MEMBER_DEBUG"]
    consumer = Consumer(conf)

    def rebalance_event(kind):
        def report(_consumer, partitions):
            listed = ",".join(str(tp.partition) for tp in partitions)
            # CLOCK_MONOTONIC is system-wide: comparable across the members' processes.
            out.write(f"T {time.monotonic():.6f} {kind} {listed}\n")
            out.write(f"B {kind} " + listed + "\n")
            out.flush()

        return report

    consumer.subscribe([topic], on_assign=rebalance_event("assign"), on_revoke=rebalance_event("revoke"))
    shown = None
    try:
        while not stopping:
            msg = consumer.poll(0.1)
            current = sorted(tp.partition for tp in consumer.assignment())
            if current != shown:
                shown = current
                out.write("A " + ",".join(map(str, current)) + "\n")
                out.flush()
            if msg is None or msg.error():
                continue
            out.write(f"P {msg.partition()} {msg.offset()} {msg.value().decode()}\n")
            out.flush()
            try:
                result = consumer.commit(message=msg, asynchronous=False)
                committed = not any(tp.error is not None for tp in result or [])
            except KafkaException:
                committed = False
            if not committed:
                out.write(f"F {msg.partition()} {msg.offset()} {msg.value().decode()}\n")
                out.flush()
                continue
            out.write(f"R {msg.partition()} {msg.offset()} {msg.value().decode()}\n")
            out.flush()
    finally:
        consumer.close()


def run_kafka_python(bootstrap, topic, group, out, settings):
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    conf = dict(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    conf.update({k: int(v) if v.isdigit() else v for k, v in settings.items()})
    consumer = KafkaConsumer(topic, **conf)
    shown = None
    try:
        while not stopping:
            batches = consumer.poll(timeout_ms=100, max_records=50)
            current = sorted(tp.partition for tp in consumer.assignment())
            if current != shown:
                shown = current
                out.write("A " + ",".join(map(str, current)) + "\n")
                out.flush()
            for tp, records in batches.items():
                for record in records:
                    out.write(f"P {record.partition} {record.offset} {record.value.decode()}\n")
                    out.flush()
                    try:
                        consumer.commit({tp: OffsetAndMetadata(record.offset + 1, "", -1)})
                    except KafkaError:
                        out.write(f"F {record.partition} {record.offset} {record.value.decode()}\n")
                        out.flush()
                        break  # partition likely moved: the rest is redelivered elsewhere
                    out.write(f"R {record.partition} {record.offset} {record.value.decode()}\n")
                    out.flush()
    finally:
        consumer.close()


def main():
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if os.environ.get("MEMBER_DEBUG"):
        logging.getLogger("kafka.coordinator").setLevel(logging.DEBUG)
    client, bootstrap, topic, group, output = sys.argv[1:6]
    settings = dict(arg.split("=", 1) for arg in sys.argv[6:])
    signal.signal(signal.SIGTERM, on_sigterm)
    with open(output, "a") as out:
        out.write("S\n")
        out.flush()
        if client == "confluent":
            run_confluent(bootstrap, topic, group, out, settings)
        else:
            run_kafka_python(bootstrap, topic, group, out, settings)
        out.write("E\n")


if __name__ == "__main__":
    main()
