"""Security between the brokers of one cluster (issue 13): three real
`runnel serve` processes on loopback whose only client listener is SASL_SSL
and whose metadata quorum has its own CONTROLLER listener on TLS with client
certificates (`controller.listener.names`, `listener.security.protocol.map`
CONTROLLER:SSL, `listener.name.controller.ssl.client.auth=required`).

- Replication over SASL_SSL with PLAIN (`inter.broker.listener.name`,
  `sasl.mechanism.inter.broker.protocol`, the broker's own login as the
  `username`/`password` of the listener's JAAS config, Kafka's convention):
  acks=all with min.insync.replicas=3 succeeds only if both followers fetch
  over SASL_SSL; every replica stays in the ISR and the records read back.
  The controller listener refuses a TLS client without a certificate and
  closes a plain TCP client unanswered, while a peer's certificate is
  accepted.
- Replication with SCRAM-SHA-512, the broker's credential created through
  AlterUserScramCredentials after the nodes start: the followers with the
  right password join the ISR; a node logging in with a wrong password is
  kept out of it (and logs why) while acks=all with min.insync.replicas=2
  goes on with the other two.

No password reaches any broker log. Every broker listens on 127.0.0.1 only;
every wait is bounded.
"""
import contextlib
import os
import shutil
import socket
import ssl
import sys
import tempfile
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic, ScramMechanism

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runnel_broker import free_port  # noqa: E402
from test_acls import STANDARD_AUTHORIZER  # noqa: E402
from test_cluster import FAST_CLUSTER, partition_metadata, produce, wait_until  # noqa: E402
from test_scram import upsert  # noqa: E402
from test_security import ListenersBroker, make_ca, make_signed, openssl, tls_settings  # noqa: E402

SECRETS = ("broker-secret", "admin-secret", "alice-secret", "wrong-secret")

# username/password: this broker's own login to the other brokers; user_*: the users it accepts.
PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="broker" password="broker-secret" '
              'user_broker="broker-secret" user_admin="admin-secret" user_alice="alice-secret";')


def scram_jaas(password):
    return ('org.apache.kafka.common.security.scram.ScramLoginModule required '
            f'username="broker" password="{password}";')


# A quorum request as a plaintext controller listener would read it (a length-prefixed
# JSON frame, answered with {"HasMetadataLog": ...}): a TLS listener must not answer it.
QUORUM_PROBE = b'\x00\x00\x00\x10"HasMetadataLog"'


def make_broker_keystore(directory, name, ca, san="IP:127.0.0.1,DNS:localhost"):
    """A PEM key store (key, then certificate) signed by `ca`, for `san`
    (127.0.0.1 and localhost by default). Its certificate serves both ends of a broker-to-broker TLS
    connection, so it carries both extended key usages (a client certificate
    marked serverAuth only is refused by a verifying server)."""
    key, csr, cert = (os.path.join(directory, f"{name}.{ext}") for ext in ("key", "csr", "pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}", cwd=directory)
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                f"subjectAltName={san}\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-out", cert,
            "-days", "2", "-extfile", ext, cwd=directory)
    keystore = os.path.join(directory, f"{name}-keystore.pem")
    with open(keystore, "w") as out:
        for part in (key, cert):
            out.write(open(part).read())
    return {"keystore": keystore, "cert": cert, "key": key}


@pytest.fixture(scope="module")
def broker_pki():
    """A CA and one key store per node (CN=runnel-broker-<id>): the nodes trust
    each other through the CA, not through a shared certificate."""
    directory = tempfile.mkdtemp(prefix="runnel-ib-pki-")
    ca = make_ca(directory, "ca")
    nodes = {i: make_broker_keystore(directory, f"runnel-broker-{i}", ca) for i in (1, 2, 3)}
    # Certificates naming only localhost, while the brokers register 127.0.0.1.
    localhost_only = {i: make_broker_keystore(directory, f"broker-{i}-localhost", ca, san="DNS:localhost") for i in (1, 2, 3)}
    admin = make_signed(directory, "admin", "/CN=admin", ca)
    yield {"dir": directory, "ca": ca[0], "nodes": nodes, "localhost_only": localhost_only, "admin": admin}
    shutil.rmtree(directory, ignore_errors=True)


def node_settings(node_id, voters, pki, mechanism, scram_password):
    settings = dict(FAST_CLUSTER, **tls_settings({"keystore": pki["nodes"][node_id]["keystore"], "ca": pki["ca"]}))
    settings.update({
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SSL",
        "controller.listener.names": "CONTROLLER",
        # The quorum's peers must show a certificate from the CA; SASL_SSL clients need none.
        "listener.name.controller.ssl.client.auth": "required",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.mechanism.inter.broker.protocol": mechanism,
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
        "authorizer.class.name": STANDARD_AUTHORIZER,
        # The inter-broker principal must be allowed to replicate (CLUSTER_ACTION), as in Kafka.
        "super.users": "User:broker;User:admin",
    })
    if mechanism.startswith("SCRAM"):
        settings["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] = scram_jaas(scram_password)
    return settings


def print_log_tails(nodes, lines=80):
    """For a failed test's report: the end of every node's log."""
    for i, node in enumerate(nodes, 1):
        print(f"----- node {i} log ({node.log_path}), last lines -----")
        print("\n".join(node.log().splitlines()[-lines:]))


@contextlib.contextmanager
def running_cluster(pki, mechanism, scram_passwords=None):
    """Three nodes, each with a SASL_SSL client listener and a CONTROLLER
    listener; yields them, prints their logs' tails if the body fails, and
    always removes them."""
    ports = {i: (free_port(), free_port()) for i in (1, 2, 3)}
    voters = ",".join(f"{i}@127.0.0.1:{controller}" for i, (_, controller) in ports.items())
    nodes = []
    try:
        for i, (client, controller) in ports.items():
            password = (scram_passwords or {}).get(i, "broker-secret")
            nodes.append(ListenersBroker([("SASL_SSL", client), ("CONTROLLER", controller)],
                                         node_settings(i, voters, pki, mechanism, password)))
        for node in nodes:
            node.start()  # waits for the client port only: a node serves once the quorum has formed
        yield nodes
    except BaseException:
        print_log_tails(nodes)
        raise
    finally:
        for node in nodes:
            node.cleanup()


def controller_port(node):
    return node.listeners[1][1]


def client_conf(nodes, pki, user="admin", password="admin-secret"):
    return {"bootstrap.servers": ",".join(f"127.0.0.1:{n.port}" for n in nodes),
            "security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": password, "ssl.ca.location": pki["ca"]}


def wait_for_three_brokers(admin):
    # The quorum forms over mTLS first, then each broker registers: bounded, generously.
    wait_until("three brokers registered", lambda: len(admin.list_topics(timeout=5).brokers) == 3, timeout=60)


def consume_all(conf, topic, count, timeout=60):
    """Reads `topic` from the start in a new group until `count` records (or the timeout)."""
    consumer = Consumer(dict(conf, **{"group.id": "g-" + uuid.uuid4().hex[:8], "auto.offset.reset": "earliest",
                                      "enable.auto.commit": False}))
    consumer.subscribe([topic])
    values = []
    try:
        deadline = time.time() + timeout
        while len(values) < count and time.time() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                values.append(msg.value().decode())
    finally:
        consumer.close()
    return values


def inter_broker_logins(nodes, mechanism):
    """Log lines where a node accepted another broker's SASL login with `mechanism`."""
    return [line for node in nodes for line in node.log().splitlines()
            if "SASL authentication succeeded" in line and "principal=User:broker" in line and mechanism in line]


def own_login_failures(node):
    """Lines where `node` says its SASL login to another broker failed. Node 3
    also serves logins (it leads some __consumer_offsets partitions), so its
    "SASL authentication succeeded" lines, and the listener's own refusals
    ("... failed; closing the connection"), do not count."""
    failure_words = ("fail", "invalid", "wrong", "denied")
    return [line for line in node.log().splitlines()
            if "authenticat" in line.lower() and any(word in line.lower() for word in failure_words)
            and "closing the connection" not in line]


def assert_no_secret_logged(nodes):
    for i, node in enumerate(nodes, 1):
        log = node.log()
        for secret in SECRETS:
            assert secret not in log, f"{secret} in node {i}'s log"


def refusal_without_client_certificate(port, pki):
    """Connects with TLS (the server verified against the CA, no client
    certificate): the handshake must fail, or the connection be refused or
    closed at the first read. Returns what happened."""
    context = ssl.create_default_context(cafile=pki["ca"])
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                # TLS 1.3: the client's handshake ends before the server has judged the
                # (missing) certificate; the refusal arrives with the first read.
                tls.sendall(QUORUM_PROBE)
                data = tls.recv(1024)
    except ssl.SSLCertVerificationError:
        raise  # the server's certificate failed, not the missing client one: not what is tested
    except TimeoutError:
        raise AssertionError(f"controller port {port}: a client without a certificate is still served after 10 s")
    except (ssl.SSLError, ConnectionError) as refused:
        return refused
    assert data == b"", f"controller port {port} answered a client without a certificate: {data!r}"
    return "closed"


def assert_peer_certificate_accepted(port, pki, keystore, served_cn):
    """A client showing a broker certificate from the CA completes the handshake,
    sees the node's own certificate and is held open (waiting for a request)."""
    context = ssl.create_default_context(cafile=pki["ca"])
    context.load_cert_chain(keystore["cert"], keystore["key"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = dict(field[0] for field in tls.getpeercert()["subject"])
            assert subject["commonName"] == served_cn, subject
            tls.settimeout(1.0)
            try:
                data = tls.recv(1024)
            except TimeoutError:
                return  # still open: the certificate was accepted
            raise AssertionError(f"controller port {port} closed a peer with a trusted certificate ({data!r})")


def assert_plaintext_closed_unanswered(port):
    """Non-TLS bytes to the controller port: the connection closes with at most
    a TLS alert record (content type 21), never a quorum answer."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(QUORUM_PROBE)
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(f"controller port {port} still open 10 s after non-TLS bytes (got {received!r})")
    assert received == b"" or received[:1] == b"\x15", f"controller port {port} answered plain TCP: {received!r}"


def test_brokers_replicate_over_sasl_ssl_and_the_quorum_over_mtls(broker_pki):
    with running_cluster(broker_pki, "PLAIN") as nodes:
        conf = client_conf(nodes, broker_pki)
        admin = AdminClient(conf)
        wait_for_three_brokers(admin)

        topic = "ib-plain-" + uuid.uuid4().hex[:8]
        # min.insync.replicas=3: an acks=all produce succeeds only once both followers have
        # fetched the records, over SASL_SSL (the cluster's only broker listener).
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3,
                                      config={"min.insync.replicas": "3"})])[topic].result(30)
        values = [f"plain-{i}" for i in range(200)]
        produce(Producer(dict(conf, **{"acks": "all", "linger.ms": 5, "message.timeout.ms": 60000})), topic, values)
        p = wait_until("all three replicas in the ISR", lambda: (
            lambda p: p if p and sorted(p.isrs) == [1, 2, 3] else None)(partition_metadata(admin, topic)[0]), timeout=20)
        assert sorted(p.replicas) == [1, 2, 3]
        assert consume_all(conf, topic, len(values)) == values

        # The followers logged in as User:broker with PLAIN (the leader's log says so).
        assert inter_broker_logins(nodes, "PLAIN"), "no node logged a broker's PLAIN login"

        # The quorum's listener: TLS with client certificates only.
        for i, node in enumerate(nodes, 1):
            port = controller_port(node)
            refusal_without_client_certificate(port, broker_pki)
            peer = broker_pki["nodes"][i % 3 + 1]  # another node's certificate, as its peer shows
            assert_peer_certificate_accepted(port, broker_pki, peer, f"runnel-broker-{i}")
            assert_plaintext_closed_unanswered(port)
        # The cluster still works after the probes.
        produce(Producer(dict(conf, acks="all")), topic, ["after-probes"])

        # A transaction over partitions led by all three nodes: its coordinator sends
        # WriteTxnMarkers (and the leaders AddPartitionsToTxn checks) to the other
        # brokers over SASL_SSL too; read_committed sees the records only after commit.
        txn_topic = "ib-txn-" + uuid.uuid4().hex[:8]
        admin.create_topics([NewTopic(txn_topic, num_partitions=3, replication_factor=3)])[txn_topic].result(30)
        leaders = wait_until("a leader for each partition", lambda: (
            lambda t: sorted(p.leader for p in t.partitions.values()) if t and len(t.partitions) == 3
            and all(p.leader >= 0 for p in t.partitions.values()) else None)(
            admin.list_topics(txn_topic, timeout=5).topics.get(txn_topic)), timeout=20)
        # Led by at least two nodes: some partition's leader is not the coordinator.
        assert len(set(leaders)) >= 2, leaders
        txn = Producer(dict(conf, **{"transactional.id": "ib-txn-" + uuid.uuid4().hex[:8]}))
        txn.init_transactions(60)
        txn.begin_transaction()
        txn_values = [f"txn-{i}" for i in range(30)]
        for i, value in enumerate(txn_values):
            txn.produce(txn_topic, value=value.encode(), partition=i % 3)
        txn.commit_transaction(60)
        committed = consume_all(dict(conf, **{"isolation.level": "read_committed"}), txn_topic, len(txn_values))
        assert sorted(committed) == sorted(txn_values)

        assert_no_secret_logged(nodes)


def test_scram_inter_broker_login_and_a_wrong_password_keeps_a_broker_out_of_the_isr(broker_pki):
    with running_cluster(broker_pki, "SCRAM-SHA-512", scram_passwords={3: "wrong-secret"}) as nodes:
        conf = client_conf(nodes, broker_pki)
        admin = AdminClient(conf)
        wait_for_three_brokers(admin)
        # The brokers' SCRAM credential lives in the cluster metadata, so it can only be
        # made once the cluster runs (admin logs in with PLAIN); the replica fetchers retry.
        upsert(admin, "broker", ScramMechanism.SCRAM_SHA_512, 8192, "broker-secret")

        topic = "ib-scram-" + uuid.uuid4().hex[:8]
        # Explicit replicas: node 1 leads, node 2 follows with the right password, node 3 with a wrong one.
        admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2, 3]],
                                      config={"min.insync.replicas": "2"})])[topic].result(30)
        values = [f"scram-{i}" for i in range(100)]
        # Delivered once node 3 leaves the ISR (replica.lag.time.max.ms=5000) and node 2 has fetched.
        produce(Producer(dict(conf, **{"acks": "all", "linger.ms": 5, "message.timeout.ms": 60000})), topic, values)
        p = wait_until("node 3 out of the ISR, nodes 1 and 2 in it", lambda: (
            lambda p: p if p and sorted(p.isrs) == [1, 2] else None)(partition_metadata(admin, topic)[0]), timeout=20)
        assert list(p.replicas) == [1, 2, 3] and p.leader in (1, 2), (p.replicas, p.leader)

        # Node 2 logged in as User:broker with SCRAM-SHA-512; node 3 says its own login failed.
        assert inter_broker_logins(nodes, "SCRAM-SHA-512"), "no node logged a broker's SCRAM-SHA-512 login"
        wait_until("node 3 logs that its login to the leader failed", lambda: own_login_failures(nodes[2]), timeout=10)
        assert_no_secret_logged(nodes)

        assert consume_all(conf, topic, len(values)) == values


def test_ssl_between_brokers_certificate_principals_and_host_name_checks(broker_pki):
    """Brokers on an SSL listener with client certificates
    (`security.inter.broker.protocol=SSL`): each follower shows its own
    certificate, whose subject is its principal (`User:CN=broker-N-localhost`,
    a super user), and checks the leader's certificate against the host it
    registered (127.0.0.1). The certificates name only localhost: replication
    is refused, and the followers say why, until
    `ssl.endpoint.identification.algorithm` is emptied on that listener."""
    ports = {i: (free_port(), free_port()) for i in (1, 2, 3)}
    voters = ",".join(f"{i}@127.0.0.1:{controller}" for i, (_, controller) in ports.items())
    principals = ";".join(f"User:CN=broker-{i}-localhost" for i in (1, 2, 3))
    nodes = []
    try:
        for i, (client, controller) in ports.items():
            settings = dict(FAST_CLUSTER, **{
                "node.id": str(i),
                "controller.quorum.voters": voters,
                "listener.security.protocol.map": "SSL:SSL,CONTROLLER:SSL",
                "controller.listener.names": "CONTROLLER",
                "security.inter.broker.protocol": "SSL",
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": broker_pki["ca"],
                "ssl.keystore.type": "PEM",
                "listener.name.controller.ssl.keystore.location": broker_pki["nodes"][i]["keystore"],
                "listener.name.ssl.ssl.keystore.location": broker_pki["localhost_only"][i]["keystore"],
                "listener.name.ssl.ssl.client.auth": "required",
                "authorizer.class.name": STANDARD_AUTHORIZER,
                "super.users": principals + ";User:CN=admin",
            })
            nodes.append(ListenersBroker([("SSL", client), ("CONTROLLER", controller)], settings))
        for node in nodes:
            node.start()
        conf = {"bootstrap.servers": ",".join(f"127.0.0.1:{n.port}" for n in nodes), "security.protocol": "SSL",
                "ssl.ca.location": broker_pki["ca"], "ssl.certificate.location": broker_pki["admin"][0],
                "ssl.key.location": broker_pki["admin"][1],
                # The clients connect to 127.0.0.1 too; the brokers' own check is what is tested.
                "ssl.endpoint.identification.algorithm": "none"}
        admin = AdminClient(conf)
        wait_for_three_brokers(admin)
        topic = "ib-ssl-" + uuid.uuid4().hex[:8]
        admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1, 2, 3]])])[topic].result(30)

        def refusals():
            return [line for node in nodes for line in node.log().splitlines()
                    if "replica fetcher cannot connect" in line and "not valid for name" in line.lower()]
        wait_until("the followers report the leader's certificate as not naming 127.0.0.1", refusals, timeout=20)
        wait_until("the followers out of the ISR", lambda: (
            lambda p: p if p and list(p.isrs) == [1] else None)(partition_metadata(admin, topic)[0]), timeout=20)

        # Only the chain is checked from now on (the listener's setting, on every node).
        for node in nodes:
            node.stop()
        for node in nodes:
            node.settings["listener.name.ssl.ssl.endpoint.identification.algorithm"] = ""
            node.start()
        admin = AdminClient(conf)
        wait_for_three_brokers(admin)
        values = [f"ssl-{i}" for i in range(50)]
        produce(Producer(dict(conf, **{"acks": "all", "message.timeout.ms": 60000})), topic, values)
        wait_until("all three replicas back in the ISR", lambda: (
            lambda p: p if p and sorted(p.isrs) == [1, 2, 3] else None)(partition_metadata(admin, topic)[0]), timeout=30)
        assert consume_all(conf, topic, len(values)) == values
    except BaseException:
        print_log_tails(nodes)
        raise
    finally:
        for node in nodes:
            node.cleanup()
