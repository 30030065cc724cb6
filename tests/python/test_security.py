"""Listeners and their security (issue 13), checked with real clients over
TCP on loopback: several listeners at once with Kafka's names, each client
told the brokers' addresses on the listener it connected to; TLS listeners
(certificates made here with the `openssl` command) with and without client
certificates.

Every broker here listens on 127.0.0.1 only.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runnel_broker import Broker, free_port  # noqa: E402

FAST_GROUPS = {"group.initial.rebalance.delay.ms": "0"}


class ListenersBroker(Broker):
    """A broker whose `--listen` is a whole Kafka `listeners` list; `self.port`
    (what start() waits for) is the first listener's port."""

    def __init__(self, listeners, settings=None):
        super().__init__(dict(FAST_GROUPS, **(settings or {})), port=listeners[0][1])
        self.listeners = listeners

    def command(self):
        cmd = super().command()
        at = cmd.index("--listen")
        cmd[at + 1] = ",".join(f"{name}://127.0.0.1:{port}" for name, port in self.listeners)
        return cmd


@pytest.fixture
def make_listeners_broker():
    made = []

    def make(listeners, settings=None):
        b = ListenersBroker(listeners, settings).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.cleanup()


def produce_and_consume(conf, topic, count=20):
    """Produces `count` records through `conf`, then reads them back in a
    consumer group (which needs FindCoordinator's answer to be reachable)."""
    producer = Producer(dict(conf, **{"acks": "all"}))
    for i in range(count):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert producer.flush(30) == 0
    consumer = Consumer(dict(conf, **{"group.id": "g-" + uuid.uuid4().hex[:8], "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(got) < count and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    assert got == [b"v%d" % i for i in range(count)]


def produce_steadily(conf, topic, seconds):
    """Produces a record every 0.2 s for `seconds` over one producer: every
    record must be delivered and the client must report no error (a session
    that ends without renewal would show as either)."""
    errors, delivered = [], []
    producer = Producer(dict(conf, **{"acks": "all", "error_cb": errors.append}))
    deadline = time.time() + seconds
    while time.time() < deadline:
        producer.produce(topic, b"v", on_delivery=lambda err, msg: delivered.append(err))
        producer.poll(0.2)
    assert producer.flush(30) == 0
    assert delivered and all(err is None for err in delivered), [e for e in delivered if e]
    assert not errors, errors


def test_each_listener_advertises_its_own_address(make_listeners_broker):
    """Three PLAINTEXT-protocol listeners under Kafka's names; Metadata over
    each names the broker by that listener's advertised address (its own port,
    and a host name for two of them), and a group works through each one."""
    p1, p2, p3 = free_port(), free_port(), free_port()
    broker = make_listeners_broker(
        [("PLAINTEXT", p1), ("INTERNAL", p2), ("EXTERNAL", p3)],
        {
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{p1},INTERNAL://localhost:{p2},EXTERNAL://localhost:{p3}",
        },
    )
    expected = {p1: ("127.0.0.1", p1), p2: ("localhost", p2), p3: ("localhost", p3)}
    for port, (host, advertised_port) in expected.items():
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        brokers = admin.list_topics(timeout=20).brokers
        assert [(b.host, b.port) for b in brokers.values()] == [(host, advertised_port)], port
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{p2}"})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    # The client follows the advertised address (localhost:p2, localhost:p3: the listeners themselves).
    produce_and_consume({"bootstrap.servers": f"127.0.0.1:{p2}", "broker.address.family": "v4"}, topic)
    produce_and_consume({"bootstrap.servers": f"127.0.0.1:{p3}", "broker.address.family": "v4"}, topic + "-b")
    log = broker.log()
    for name, port in (("PLAINTEXT", p1), ("INTERNAL", p2), ("EXTERNAL", p3)):
        assert f"{name}://127.0.0.1:{port}" in log, f"the start log names listener {name}"


def test_kafka_python_follows_the_listener_it_connected_to(make_listeners_broker):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    p1, p2 = free_port(), free_port()
    make_listeners_broker(
        [("PLAINTEXT", p1), ("CLIENT", p2)],
        {
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CLIENT:PLAINTEXT",
        },
    )
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{p2}", request_timeout_ms=20000)
    described = admin.describe_cluster()
    assert [(b["host"], b["port"]) for b in described["brokers"]] == [("127.0.0.1", p2)]
    admin.close()
    topic = "t-" + uuid.uuid4().hex[:8]
    producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{p2}", acks="all")
    for i in range(10):
        producer.send(topic, b"v%d" % i).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=f"127.0.0.1:{p2}", group_id="g-" + uuid.uuid4().hex[:8],
        auto_offset_reset="earliest", consumer_timeout_ms=15000,
    )
    got = [m.value for m in consumer]
    consumer.close()
    assert got == [b"v%d" % i for i in range(10)]


# ---------------------------------------------------------------- TLS

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_ca(directory, name):
    """A self-signed CA: (cert path, key path)."""
    key, cert = os.path.join(directory, f"{name}.key"), os.path.join(directory, f"{name}.pem")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
            "-subj", f"/CN={name}", cwd=directory)
    return cert, key


def make_signed(directory, name, subject, ca, san=None):
    """A key and a certificate signed by `ca`: (cert path, key path)."""
    key, csr, cert = (os.path.join(directory, f"{name}.{ext}") for ext in ("key", "csr", "pem"))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject, cwd=directory)
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        if san:
            f.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-out", cert,
            "-days", "2", "-extfile", ext, cwd=directory)
    return cert, key


def make_expired(directory, name, subject_cn, ca):
    """A client certificate from `ca` whose validity ended yesterday (openssl 3.0's
    x509 cannot backdate one; the `cryptography` package can): (cert path, key path)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(open(ca[0], "rb").read())
    ca_key = serialization.load_pem_private_key(open(ca[1], "rb").read(), password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki():
    """A CA, the broker's certificate for 127.0.0.1/localhost, a client
    certificate from the same CA, and one from a CA the broker does not trust."""
    directory = tempfile.mkdtemp(prefix="runnel-pki-")
    ca = make_ca(directory, "ca")
    server = make_signed(directory, "server", "/CN=runnel-broker", ca, san="IP:127.0.0.1,DNS:localhost")
    keystore = os.path.join(directory, "server-keystore.pem")
    with open(keystore, "w") as out:
        for part in (server[1], server[0]):
            out.write(open(part).read())
    client = make_signed(directory, "client", "/O=Example/OU=payments/CN=billing-app", ca)
    rogue_ca = make_ca(directory, "rogue-ca")
    rogue = make_signed(directory, "rogue", "/CN=intruder", rogue_ca)
    expired = make_expired(directory, "expired", "lapsed-app", ca)
    yield {"dir": directory, "ca": ca[0], "keystore": keystore, "server": server, "client": client, "rogue": rogue,
           "expired": expired}
    shutil.rmtree(directory, ignore_errors=True)


def tls_settings(pki, client_auth="none"):
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": pki["keystore"],
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": pki["ca"],
        "ssl.client.auth": client_auth,
    }


def ssl_conf(port, pki, cert=None):
    conf = {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SSL", "ssl.ca.location": pki["ca"]}
    if cert:
        conf.update({"ssl.certificate.location": cert[0], "ssl.key.location": cert[1]})
    return conf


def test_ssl_listener_beside_plaintext_with_confluent_kafka(make_listeners_broker, pki):
    """produce, a consumer group and admin over SSL (the broker's certificate
    verified by the client against the CA); the plaintext listener beside it
    keeps working, and both see the same records."""
    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SSL", p2)], tls_settings(pki))
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = AdminClient(ssl_conf(p2, pki))
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    assert [(b.host, b.port) for b in admin.list_topics(timeout=20).brokers.values()] == [("127.0.0.1", p2)]
    produce_and_consume(ssl_conf(p2, pki), topic, count=200)
    # The same records over plaintext (the fetch's zero-copy path) and over TLS (read and encrypted).
    produce_and_consume({"bootstrap.servers": f"127.0.0.1:{p1}"}, topic + "-plain")
    consumer = Consumer(dict(ssl_conf(p2, pki), **{"group.id": "g-" + uuid.uuid4().hex[:8], "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic + "-plain"])
    got = []
    deadline = time.time() + 30
    while len(got) < 20 and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.close()
    assert sorted(got) == sorted(b"v%d" % i for i in range(20))
    assert "TLS handshake failed" not in broker.log()


def test_ssl_with_kafka_python(make_listeners_broker, pki):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka.admin import NewTopic as KNewTopic

    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SSL", p2)], tls_settings(pki))
    common = dict(bootstrap_servers=f"127.0.0.1:{p2}", security_protocol="SSL", ssl_cafile=pki["ca"])
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(request_timeout_ms=20000, **common)
    admin.create_topics([KNewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(acks="all", **common)
    for i in range(50):
        producer.send(topic, b"v%d" % i).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id="g-" + uuid.uuid4().hex[:8], auto_offset_reset="earliest",
                             consumer_timeout_ms=15000, **common)
    got = [m.value for m in consumer]
    consumer.close()
    assert got == [b"v%d" % i for i in range(50)]


def test_mtls_principal_and_untrusted_certificate(make_listeners_broker, pki):
    """ssl.client.auth=required: a client with a certificate from the trusted
    CA works and its principal (the subject DN, as Kafka prints it) is
    logged; a client without a certificate, one with a certificate from an
    untrusted CA and one whose certificate has expired (the broker logs it as
    expired) fail with the client's SSL error while the trusted producer
    keeps producing; no private key ever appears in the log."""
    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SSL", p2)], tls_settings(pki, client_auth="required"))
    topic = "t-" + uuid.uuid4().hex[:8]
    good = Producer(dict(ssl_conf(p2, pki, pki["client"]), acks="all"))
    good.produce(topic, b"first")
    assert good.flush(30) == 0
    principal = "User:CN=billing-app,OU=payments,O=Example"
    assert principal in broker.log()

    for cert in (None, pki["rogue"], pki["expired"]):
        errors = []
        bad = Producer(dict(ssl_conf(p2, pki, cert), **{"error_cb": errors.append, "message.timeout.ms": 4000}))
        bad.produce(topic, b"never")
        bad.flush(8)
        assert errors, f"a client with certificate {cert} must see an error"
        assert any(e.code() in (KafkaError._SSL, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN) for e in errors), errors
        # The trusted producer is unaffected.
        good.produce(topic, b"after")
        assert good.flush(30) == 0
    log = broker.log()
    assert "TLS handshake failed" in log and "127.0.0.1:" in log
    assert "certificate expired" in log, "the expired certificate's refusal is logged as such"
    assert "User:CN=lapsed-app" not in log and "User:CN=intruder" not in log
    key_body = open(pki["server"][1]).read().splitlines()[1]
    assert key_body not in log


def test_ssl_principal_mapping_rules_name_the_acl_principal(make_listeners_broker, pki):
    """ssl.principal.mapping.rules as Kafka reads them: the billing client's
    DN `CN=billing-app,OU=payments,O=Example` becomes `User:BILLING-APP@PAYMENTS`
    (a RULE with a back reference, upper-cased), and that is the principal
    the ACLs see: it may write only once an ACL names it. A DN no rule
    matches (OU=marketing, with no DEFAULT rule) is refused: the client sees
    a transport error, the broker logs why, other clients carry on. A rule
    Runnel cannot read stops the broker at start, naming the setting."""
    from test_acls import STANDARD_AUTHORIZER

    ads = make_signed(pki["dir"], "ads", "/O=Example/OU=marketing/CN=ads-app", (pki["ca"], pki["ca"][:-4] + ".key"))
    p1, p2 = free_port(), free_port()
    settings = dict(tls_settings(pki, client_auth="required"), **{
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+),OU=(payments),O=.*$/$1@$2/U",
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "super.users": "User:ANONYMOUS",
    })
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SSL", p2)], settings)
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{p1}"})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)

    def produce_error(cert):
        outcome, errors = [], []
        producer = Producer(dict(ssl_conf(p2, pki, cert), **{
            "acks": "all", "message.timeout.ms": 6000, "error_cb": errors.append}))
        producer.produce(topic, b"v", on_delivery=lambda err, msg: outcome.append(err))
        producer.flush(12)
        return (outcome[0].code() if outcome and outcome[0] else None), errors

    code, _ = produce_error(pki["client"])
    assert code == KafkaError.TOPIC_AUTHORIZATION_FAILED, code
    assert "User:BILLING-APP@PAYMENTS" in broker.log()
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    binding = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:BILLING-APP@PAYMENTS", "*",
                         AclOperation.WRITE, AclPermissionType.ALLOW)
    for future in admin.create_acls([binding]).values():
        future.result(30)
    code, _ = produce_error(pki["client"])
    assert code is None, code

    code, errors = produce_error(ads)
    assert code is not None and errors, "a DN no rule maps must not be served"
    assert "No rules apply to CN=ads-app,OU=marketing,O=Example" in broker.log()
    assert produce_error(pki["client"])[0] is None

    bad = ListenersBroker([("SSL", free_port())], dict(settings, **{
        "ssl.principal.mapping.rules": "RULE:^CN=(.*)$/$1/L/U"}))
    with pytest.raises(RuntimeError) as refused:
        bad.start(timeout=10)
    bad.cleanup()
    assert "ssl.principal.mapping.rules" in str(refused.value) and "unmatched substring" in str(refused.value)



def keytool(*args, cwd):
    subprocess.run(["keytool", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_java_key_stores_and_an_encrypted_pem_key(make_listeners_broker, pki, tmp_path):
    """A broker's existing Java stores work unchanged: a PKCS12 key store with
    a JKS trust store, then a JKS key store whose key has its own password
    (ssl.key.password) with a PKCS12 trust store, then a PEM key store whose
    key is encrypted; each serves confluent-kafka over mutual TLS, a client
    certificate from another CA is refused, and a wrong password stops
    `runnel serve` with the setting and file named and no password printed."""
    d = str(tmp_path)
    server_cert, server_key = pki["server"]
    openssl("pkcs12", "-export", "-in", server_cert, "-inkey", server_key, "-name", "broker",
            "-passout", "pass:openssl-export", "-out", "export.p12", cwd=d)
    # keytool writes the stores, as a Java shop's would be.
    keytool("-importkeystore", "-srckeystore", "export.p12", "-srcstoretype", "PKCS12", "-srcstorepass", "openssl-export",
            "-destkeystore", "broker.p12", "-deststoretype", "PKCS12", "-deststorepass", "p12-store-pw", "-noprompt", cwd=d)
    keytool("-importkeystore", "-srckeystore", "export.p12", "-srcstoretype", "PKCS12", "-srcstorepass", "openssl-export",
            "-destkeystore", "broker.jks", "-deststoretype", "JKS", "-deststorepass", "jks-store-pw",
            "-destkeypass", "jks-key-pw", "-noprompt", cwd=d)
    for store_type, name in (("JKS", "trust.jks"), ("PKCS12", "trust.p12")):
        keytool("-importcert", "-alias", "ca", "-file", pki["ca"], "-keystore", name, "-storetype", store_type,
                "-storepass", "trust-pw", "-noprompt", cwd=d)
    openssl("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", server_key, "-passout", "pass:pem-key-pw",
            "-out", "encrypted.key", cwd=d)
    with open(os.path.join(d, "encrypted-keystore.pem"), "w") as out:
        out.write(open(os.path.join(d, "encrypted.key")).read() + open(server_cert).read())

    stores = {
        "pkcs12 key store, jks trust store": {
            "ssl.keystore.type": "PKCS12", "ssl.keystore.location": os.path.join(d, "broker.p12"),
            "ssl.keystore.password": "p12-store-pw",
            "ssl.truststore.type": "JKS", "ssl.truststore.location": os.path.join(d, "trust.jks"),
            "ssl.truststore.password": "trust-pw"},
        "jks key store, pkcs12 trust store": {
            "ssl.keystore.type": "JKS", "ssl.keystore.location": os.path.join(d, "broker.jks"),
            "ssl.keystore.password": "jks-store-pw", "ssl.key.password": "jks-key-pw",
            "ssl.truststore.type": "PKCS12", "ssl.truststore.location": os.path.join(d, "trust.p12"),
            "ssl.truststore.password": "trust-pw"},
        "encrypted pem key": {
            "ssl.keystore.type": "PEM", "ssl.keystore.location": os.path.join(d, "encrypted-keystore.pem"),
            "ssl.key.password": "pem-key-pw",
            "ssl.truststore.type": "PEM", "ssl.truststore.location": pki["ca"]},
    }
    for what, settings in stores.items():
        port = free_port()
        broker = make_listeners_broker([("SSL", port)], dict(settings, **{"ssl.client.auth": "required"}))
        topic = "t-" + uuid.uuid4().hex[:8]
        produce_and_consume(ssl_conf(port, pki, cert=pki["client"]), topic, count=30)
        errors = []
        rogue = Producer(dict(ssl_conf(port, pki, cert=pki["rogue"]), **{
            "message.timeout.ms": 5000, "error_cb": lambda e: errors.append(e)}))
        rogue.produce(topic, b"x")
        rogue.flush(10)
        assert errors, f"{what}: a client certificate from an untrusted CA must be refused"
        for password in ("p12-store-pw", "jks-store-pw", "jks-key-pw", "trust-pw", "pem-key-pw"):
            assert password not in broker.log(), f"{what}: a password in the log"
        broker.stop()

    wrong = [
        ("ssl.keystore.password", "not-the-p12-pw", stores["pkcs12 key store, jks trust store"], "broker.p12"),
        ("ssl.key.password", "not-the-key-pw", stores["jks key store, pkcs12 trust store"], "broker.jks"),
        ("ssl.truststore.password", "not-the-trust-pw", stores["pkcs12 key store, jks trust store"], "trust.jks"),
        ("ssl.key.password", "not-the-pem-pw", stores["encrypted pem key"], "encrypted-keystore.pem"),
    ]
    for key, value, settings, file in wrong:
        bad = ListenersBroker([("SSL", free_port())], dict(settings, **{key: value, "ssl.client.auth": "required"}))
        with pytest.raises(RuntimeError) as refused:
            bad.start(timeout=10)
        bad.cleanup()
        message = str(refused.value)
        assert file in message and value not in message, message


def test_renewed_certificates_are_used_without_a_restart(make_listeners_broker, pki, tmp_path):
    """Certificate reload: the broker's key store file is replaced by a
    renewed certificate and new connections are served with it while an open
    connection keeps working; a trust store that gains a CA admits that CA's
    client certificates; a broken rewrite is logged and the last good
    certificates stay in use."""
    import shutil as sh
    import socket
    import ssl
    import struct

    from kafka.protocol.api import RequestHeader
    from kafka.protocol.api_versions import ApiVersionsRequest_v0
    from raw_requests import _read_exactly

    ca = (pki["ca"], pki["ca"][:-4] + ".key")
    renewed = make_signed(str(tmp_path), "renewed", "/CN=runnel-broker-renewed", ca, san="IP:127.0.0.1,DNS:localhost")
    keystore, truststore = tmp_path / "keystore.pem", tmp_path / "truststore.pem"
    sh.copy(pki["keystore"], keystore)
    sh.copy(pki["ca"], truststore)
    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SSL", p2)], dict(tls_settings(pki, client_auth="required"), **{
        "ssl.keystore.location": str(keystore), "ssl.truststore.location": str(truststore)}))
    client_cert = pki["client"]

    def tls_connect():
        context = ssl.create_default_context(cafile=pki["ca"])
        context.load_cert_chain(client_cert[0], client_cert[1])
        return context.wrap_socket(socket.create_connection(("127.0.0.1", p2), timeout=10), server_hostname="127.0.0.1")

    def served_cn(sock):
        return dict(field[0] for field in sock.getpeercert()["subject"])["commonName"]

    def api_versions(sock):
        req = ApiVersionsRequest_v0()
        header = RequestHeader(req, correlation_id=7, client_id="reload-test")
        body = header.encode() + req.encode()
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        return ApiVersionsRequest_v0.RESPONSE_TYPE.decode(_read_exactly(sock, size)[4:]).error_code

    def until(condition, what, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            time.sleep(0.3)
        raise AssertionError(what)

    open_connection = tls_connect()
    assert served_cn(open_connection) == "runnel-broker" and api_versions(open_connection) == 0
    with open(keystore, "w") as f:
        f.write(open(renewed[1]).read() + open(renewed[0]).read())

    def renewed_is_served():
        with tls_connect() as sock:
            return served_cn(sock) == "runnel-broker-renewed"
    until(renewed_is_served, "the renewed certificate was not served")
    assert api_versions(open_connection) == 0, "an open connection keeps working"
    open_connection.close()
    topic = "t-" + uuid.uuid4().hex[:8]
    produce_and_consume(ssl_conf(p2, pki, client_cert), topic)
    assert "TLS key store or trust store changed on disk" in broker.log()

    # The rogue CA's client is refused until the trust store holds that CA.
    rogue_ca = os.path.join(pki["dir"], "rogue-ca.pem")
    client_cert = pki["rogue"]

    def rogue_admitted():
        # TLS 1.3 reports a refused client certificate at the first read, hence a request.
        try:
            with tls_connect() as sock:
                return api_versions(sock) == 0
        except (OSError, EOFError, struct.error):
            return False
    assert not rogue_admitted(), "an untrusted client certificate was served"
    with open(truststore, "w") as f:
        f.write(open(pki["ca"]).read() + open(rogue_ca).read())
    until(rogue_admitted, "a client of the CA added to the trust store was not admitted")

    # A broken rewrite: logged, and the renewed certificate is still served.
    client_cert = pki["client"]
    with open(keystore, "w") as f:
        f.write("not a key store\n")

    def broken_rewrite_reported():
        # The files are looked at when a connection arrives.
        with tls_connect() as sock:
            assert served_cn(sock) == "runnel-broker-renewed" and api_versions(sock) == 0
        return "cannot be used; keeping the certificates loaded before" in broker.log()
    until(broken_rewrite_reported, "the broken key store was not reported")


# ---------------------------------------------------------------- SASL

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";')


def sasl_plain_settings(listener="sasl_plaintext"):
    return {
        f"listener.name.{listener}.sasl.enabled.mechanisms": "PLAIN",
        f"listener.name.{listener}.plain.sasl.jaas.config": PLAIN_JAAS,
    }


def plain_conf(port, user, password):
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": user, "sasl.password": password}


def test_sasl_plaintext_plain_with_confluent_kafka(make_listeners_broker):
    """SASL_PLAINTEXT with PLAIN users from Kafka's JAAS config: produce, a
    group and admin work for alice; a wrong password and an unknown user fail
    with SASL_AUTHENTICATION_FAILED while alice keeps producing; the
    plaintext listener still works; no password is in the broker log."""
    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], dict(sasl_plain_settings(), **{
        "connection.failed.authentication.delay.ms": "300"}))
    topic = "t-" + uuid.uuid4().hex[:8]
    alice = plain_conf(p2, "alice", "alice-secret")
    admin = AdminClient(alice)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    produce_and_consume(alice, topic)
    assert "principal=User:alice" in broker.log()

    steady = Producer(dict(alice, acks="all"))
    for user, password in (("alice", "wrong-password"), ("mallory", "alice-secret")):
        errors = []
        started = time.time()
        bad = Producer(dict(plain_conf(p2, user, password), **{"error_cb": errors.append, "message.timeout.ms": 4000}))
        bad.produce(topic, b"never")
        bad.flush(8)
        auth_errors = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        assert auth_errors, errors
        assert "Invalid username or password" in auth_errors[0].str(), auth_errors[0].str()
        assert time.time() - started >= 0.3, "connection.failed.authentication.delay.ms delays the answer"
        steady.produce(topic, b"steady")
        assert steady.flush(30) == 0
    produce_and_consume({"bootstrap.servers": f"127.0.0.1:{p1}"}, topic + "-plain")
    log = broker.log()
    assert "SASL authentication failed" in log
    for secret in ("alice-secret", "admin-secret", "wrong-password"):
        assert secret not in log, f"{secret} in the broker log"


def test_sasl_before_authentication_only_handshake_is_served(make_listeners_broker):
    """A client that skips authentication on a SASL listener: ApiVersions is
    answered, Metadata closes the connection (Kafka's ILLEGAL_SASL_STATE),
    and the plaintext listener answers Metadata as before."""
    import socket
    import struct

    from kafka.protocol.api import RequestHeader
    from kafka.protocol.api_versions import ApiVersionsRequest_v0
    from kafka.protocol.metadata import MetadataRequest_v1
    from raw_requests import _read_exactly, request

    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], sasl_plain_settings())
    with socket.create_connection(("127.0.0.1", p2), timeout=10) as sock:
        for correlation_id, req in ((1, ApiVersionsRequest_v0()), (2, MetadataRequest_v1(topics=None))):
            header = RequestHeader(req, correlation_id=correlation_id, client_id="runnel-test")
            body = header.encode() + req.encode()
            sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        versions = ApiVersionsRequest_v0.RESPONSE_TYPE.decode(_read_exactly(sock, size)[4:])
        assert versions.error_code == 0
        assert {17, 36} <= {k[0] for k in versions.api_versions}, "SaslHandshake and SaslAuthenticate are advertised"
        assert sock.recv(4) == b"", "Metadata before authentication closes the connection"
    assert "before SASL authentication completed" in broker.log()
    assert request(f"127.0.0.1:{p1}", MetadataRequest_v1(topics=None)).brokers


class RawSaslConnection:
    """One raw connection to a SASL_PLAINTEXT listener, speaking SaslHandshake
    v1 and SaslAuthenticate v1 (KIP-368's versions) with PLAIN."""

    def __init__(self, port):
        import socket
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.correlation_id = 0

    def call(self, req):
        import struct

        from kafka.protocol.api import RequestHeader
        from raw_requests import _read_exactly
        self.correlation_id += 1
        # kafka-python's encode() holds its object weakly: keep the header alive.
        header = RequestHeader(req, correlation_id=self.correlation_id, client_id="runnel-test")
        body = header.encode() + req.encode()
        self.sock.sendall(struct.pack(">i", len(body)) + body)
        head = self.sock.recv(4)
        if len(head) < 4:
            return None  # closed
        size = struct.unpack(">i", head)[0]
        return req.RESPONSE_TYPE.decode(_read_exactly(self.sock, size)[4:])

    def authenticate(self, user, password):
        from kafka.protocol.admin import SaslAuthenticateRequest_v1
        from kafka.protocol.sasl_handshake import SaslHandshakeRequest_v1
        handshake = self.call(SaslHandshakeRequest_v1(mechanism="PLAIN"))
        if handshake is None or handshake.error_code != 0:
            return handshake
        token = b"\0" + user.encode() + b"\0" + password.encode()
        return self.call(SaslAuthenticateRequest_v1(sasl_auth_bytes=token))

    def metadata(self):
        from kafka.protocol.metadata import MetadataRequest_v1
        return self.call(MetadataRequest_v1(topics=None))

    def close(self):
        self.sock.close()


def test_sasl_sessions_end_after_connections_max_reauth_ms_unless_renewed(make_listeners_broker):
    """KIP-368 as Kafka's broker does it. With `connections.max.reauth.ms`
    (here per listener and mechanism, 2 s) SaslAuthenticate v1 tells the
    client its session lifetime; a connection used after it without
    re-authenticating is closed; re-authenticating on the same connection
    (SaslHandshake + SaslAuthenticate again) renews it, but only as the same
    principal. confluent-kafka (librdkafka re-authenticates by itself)
    produces for 7 s over one connection without an error. Without the
    setting the lifetime is 0 and a second handshake is ILLEGAL_SASL_STATE."""
    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], dict(
        sasl_plain_settings(), **{"listener.name.sasl_plaintext.plain.connections.max.reauth.ms": "2000"}))

    expired = RawSaslConnection(p2)
    answer = expired.authenticate("alice", "alice-secret")
    assert answer.error_code == 0 and answer.session_lifetime_ms == 2000, answer
    assert expired.metadata().brokers
    time.sleep(2.5)
    assert expired.metadata() is None, "a request after the session ended closes the connection"
    expired.close()
    assert "without re-authentication" in broker.log()

    renewed = RawSaslConnection(p2)
    assert renewed.authenticate("alice", "alice-secret").session_lifetime_ms == 2000
    for _ in range(3):
        time.sleep(1.5)
        answer = renewed.authenticate("alice", "alice-secret")
        assert answer.error_code == 0 and answer.session_lifetime_ms == 2000, answer
        assert renewed.metadata().brokers, "the renewed session is served"
    assert broker.log().count("SASL re-authentication succeeded") >= 3
    time.sleep(1.1)
    answer = renewed.authenticate("admin", "admin-secret")
    assert answer.error_code == 58, answer  # SASL_AUTHENTICATION_FAILED
    assert answer.error_message == "Cannot change principals during re-authentication from User.alice: User.admin"
    assert renewed.metadata() is None, "a failed re-authentication closes the connection"
    renewed.close()

    topic = "t-" + uuid.uuid4().hex[:8]
    admin = AdminClient(plain_conf(p2, "alice", "alice-secret"))
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    reauthenticated, ended = (broker.log().count(line) for line in ("SASL re-authentication succeeded", "without re-authentication"))
    produce_steadily(plain_conf(p2, "alice", "alice-secret"), topic, seconds=7)
    log = broker.log()
    assert log.count("SASL re-authentication succeeded") >= reauthenticated + 2, "librdkafka renewed its sessions"
    assert log.count("without re-authentication") == ended, "no connection of the producer was closed"

    plain = make_listeners_broker([("PLAINTEXT", free_port()), ("SASL_PLAINTEXT", free_port())], sasl_plain_settings())
    forever = RawSaslConnection(plain.listeners[1][1])
    assert forever.authenticate("alice", "alice-secret").session_lifetime_ms == 0
    from kafka.protocol.sasl_handshake import SaslHandshakeRequest_v1
    assert forever.call(SaslHandshakeRequest_v1(mechanism="PLAIN")).error_code == 34  # ILLEGAL_SASL_STATE
    forever.close()


def test_sasl_plain_with_kafka_python(make_listeners_broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError as KPError

    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], sasl_plain_settings())
    common = dict(bootstrap_servers=f"127.0.0.1:{p2}", security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN")
    topic = "t-" + uuid.uuid4().hex[:8]
    producer = KafkaProducer(acks="all", sasl_plain_username="alice", sasl_plain_password="alice-secret", **common)
    for i in range(20):
        producer.send(topic, b"v%d" % i).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id="g-" + uuid.uuid4().hex[:8], auto_offset_reset="earliest",
                             consumer_timeout_ms=15000, sasl_plain_username="alice",
                             sasl_plain_password="alice-secret", **common)
    got = [m.value for m in consumer]
    consumer.close()
    assert got == [b"v%d" % i for i in range(20)]
    # A wrong password: kafka-python reports SaslAuthenticationFailedError and cannot send.
    with pytest.raises(KPError):
        bad = KafkaProducer(sasl_plain_username="alice", sasl_plain_password="nope", max_block_ms=5000, **common)
        bad.send(topic, b"never").get(timeout=10)


def test_cli_admin_commands_over_sasl_ssl(make_listeners_broker, pki):
    """`runnel`'s own admin requests (topic, user, acl: kafka-protocol frames,
    not librdkafka) on a broker whose only listener is SASL_SSL with ACLs on:
    librdkafka's `-X` settings give them TLS (the CA from ssl.ca.location,
    the host name checked) and a PLAIN or SCRAM login, as they give
    produce/consume theirs. A wrong password or a missing CA fails with the
    reason and changes nothing."""
    import subprocess
    from runnel_broker import RUNNEL

    port = free_port()
    settings = dict(tls_settings(pki), **{
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "listener.name.sasl_ssl.plain.sasl.jaas.config":
            'org.apache.kafka.common.security.plain.PlainLoginModule required user_admin="admin-secret";',
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:admin",
    })
    make_listeners_broker([("SASL_SSL", port)], settings)

    def run(*args, user="admin", password="admin-secret", mechanism="PLAIN", ca=True, stdin=None):
        x = ["-X", "security.protocol=SASL_SSL", "-X", f"sasl.mechanism={mechanism}",
             "-X", f"sasl.username={user}", "-X", f"sasl.password={password}"]
        if ca:
            x += ["-X", f"ssl.ca.location={pki['ca']}"]
        return subprocess.run([RUNNEL, "--brokers", f"127.0.0.1:{port}", *x, *args], input=stdin,
                              capture_output=True, text=True, timeout=60)

    def ok(*args, **kw):
        proc = run(*args, **kw)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    topic = "cli-secured-" + uuid.uuid4().hex[:8]
    assert f"created topic {topic}" in ok("topic", "create", topic, "--partitions", "2")
    ok("user", "scram", "set", "alice", "--mechanism", "SCRAM-SHA-512", "--password-stdin", stdin="alice-secret\n")
    assert "alice" in ok("user", "scram", "list")
    ok("acl", "create", "--allow-principal", "User:alice", "--operation", "write", "--operation", "read", "--topic", topic)
    ok("acl", "create", "--allow-principal", "User:alice", "--operation", "read", "--group", "cli-g")
    assert f"topic\t{topic}\tliteral\tUser:alice\t*\twrite\tallow" in ok("acl", "list", "--topic", topic)

    # alice, logging in with SCRAM, writes and reads through the same flags (librdkafka for the records).
    alice = {"user": "alice", "password": "alice-secret", "mechanism": "SCRAM-SHA-512"}
    ok("produce", topic, stdin="one\ntwo\n", **alice)
    out = ok("consume", topic, "--group", "cli-g", "--from-beginning", "--max-messages", "2", "--timeout-ms", "30000", **alice)
    assert sorted(out.split()) == ["one", "two"], out
    # Her admin request is authenticated, then refused by the ACLs (she may not create topics).
    refused = run("topic", "create", topic + "-x", **alice)
    assert refused.returncode != 0 and "authoriz" in refused.stderr.lower(), refused.stderr

    wrong = run("topic", "create", topic + "-y", password="not-the-password")
    assert wrong.returncode != 0 and "authentication failed" in wrong.stderr.lower(), wrong.stderr
    assert "not-the-password" not in wrong.stderr
    no_ca = run("topic", "create", topic + "-z", ca=False)
    assert no_ca.returncode != 0 and "trust store" in no_ca.stderr, no_ca.stderr
    listed = ok("topic", "list")
    assert topic in listed and topic + "-x" not in listed and topic + "-y" not in listed and topic + "-z" not in listed
