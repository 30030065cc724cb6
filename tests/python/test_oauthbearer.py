"""SASL/OAUTHBEARER with JWTs the test signs itself: a JWKS file made here,
the broker configured as Kafka's is (`OAuthBearerValidatorCallbackHandler`,
`sasl.oauthbearer.jwks.endpoint.url`, expected audience and issuer), and the
real clients' own OAUTHBEARER support (librdkafka's `oauth_cb`, kafka-python's
token provider, librdkafka's unsecured JWT for Kafka's unsecured default)."""
import json
import os
import time
import uuid

import jwt
import pytest
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType)
from cryptography.hazmat.primitives.asymmetric import rsa

from test_acls import STANDARD_AUTHORIZER
from test_security import free_port, make_listeners_broker, produce_steadily  # noqa: F401  (a fixture)

ISSUER = "https://idp.runnel.test"
AUDIENCE = "runnel"


class IdentityProvider:
    """Signs tokens with an RSA key published in a JWKS file, as an OAuth
    server would; `rogue` is a key the JWKS does not hold."""

    def __init__(self, directory):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid="idp-1", use="sig", alg="RS256")
        self.jwks = os.path.join(directory, "jwks.json")
        with open(self.jwks, "w") as f:
            json.dump({"keys": [public]}, f)

    def token(self, sub, lifetime=300, aud=AUDIENCE, iss=ISSUER, kid="idp-1", key=None):
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + lifetime, "iss": iss, "aud": aud, "scope": "kafka"}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})


def validating_settings(idp, listener="sasl_plaintext"):
    prefix = f"listener.name.{listener}."
    return {
        prefix + "sasl.enabled.mechanisms": "OAUTHBEARER",
        prefix + "oauthbearer.sasl.server.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
        prefix + "oauthbearer.sasl.oauthbearer.jwks.endpoint.url": "file://" + idp.jwks,
        "sasl.oauthbearer.expected.audience": AUDIENCE,
        "sasl.oauthbearer.expected.issuer": ISSUER,
    }


def oauth_conf(port, make_token, claimed_lifetime=None):
    """librdkafka asks `oauth_cb` for a token (and again before it expires).
    `claimed_lifetime`: tell librdkafka another expiry than the token's (it
    refuses to send a token it knows has expired)."""
    def oauth_cb(_config):
        token = make_token()
        if claimed_lifetime is not None:
            return token, time.time() + claimed_lifetime
        return token, jwt.decode(token, options={"verify_signature": False})["exp"]
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "oauth_cb": oauth_cb}


def produce_one(conf, topic, timeout=8):
    """(delivery error code or None, client errors) of one record."""
    outcome, errors = [], []
    producer = Producer(dict(conf, **{"acks": "all", "message.timeout.ms": timeout * 1000, "error_cb": errors.append}))
    producer.produce(topic, b"v", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(timeout + 4)
    return (outcome[0].code() if outcome and outcome[0] else None), errors


def test_oauthbearer_tokens_are_validated_against_the_jwks(make_listeners_broker, tmp_path):
    """A token signed by the identity provider's key, for the expected
    audience and issuer, authenticates its `sub` as the principal the ACLs
    see: refused TOPIC_AUTHORIZATION_FAILED until an ACL names
    `User:svc-billing`, then produce, a consumer group and admin work.
    Tokens with the wrong audience or issuer, expired, signed by a key the
    JWKS does not hold, or naming an unknown kid each fail authentication
    (Kafka's `{"status":"invalid_token"}`), with the reason in the broker
    log, while the good client keeps working."""
    idp = IdentityProvider(str(tmp_path))
    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], dict(validating_settings(idp), **{
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "super.users": "User:ANONYMOUS",
        "group.initial.rebalance.delay.ms": "0",
    }))
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{p1}"})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)

    billing = oauth_conf(p2, lambda: idp.token("svc-billing"))
    code, errors = produce_one(billing, topic)
    assert code == KafkaError.TOPIC_AUTHORIZATION_FAILED, (code, errors)
    assert "principal=User:svc-billing" in broker.log()
    group = "billing-" + uuid.uuid4().hex[:6]
    bindings = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:svc-billing", "*", op,
                           AclPermissionType.ALLOW) for op in (AclOperation.WRITE, AclOperation.READ)]
    bindings.append(AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, "User:svc-billing", "*",
                               AclOperation.READ, AclPermissionType.ALLOW))
    for future in admin.create_acls(bindings).values():
        future.result(30)

    producer = Producer(dict(billing, acks="all"))
    for i in range(20):
        producer.produce(topic, value=b"v%d" % i)
    assert producer.flush(30) == 0
    consumer = Consumer(dict(billing, **{"group.id": group, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    got, deadline = [], time.time() + 60
    while len(got) < 20 and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            got.append(msg.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    assert got == [b"v%d" % i for i in range(20)]
    # Admin over OAUTHBEARER: the topic is visible to its reader.
    assert topic in AdminClient(billing).list_topics(timeout=20).topics

    refused = {
        "wrong audience": (idp.token("svc-billing", aud="another-service"), "expected audience"),
        "wrong issuer": (idp.token("svc-billing", iss="https://evil.test"), "expected issuer"),
        "expired": (idp.token("svc-billing", lifetime=-120), "expired"),
        "untrusted key": (idp.token("svc-billing", key=idp.rogue), "signature does not verify"),
        "unknown kid": (idp.token("svc-billing", kid="idp-9"), "no key with kid"),
    }
    for what, (token, reason) in refused.items():
        code, errors = produce_one(oauth_conf(p2, lambda token=token: token, claimed_lifetime=300), topic, timeout=5)
        assert code is not None, f"{what}: delivered"
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), (what, errors)
        assert any("invalid_token" in e.str() for e in errors), (what, [e.str() for e in errors])
        assert reason in broker.log(), f"{what}: the broker log does not say why ({reason!r})"
        assert produce_one(billing, topic)[0] is None, f"the good client after {what}"
    log = broker.log()
    for token, _ in refused.values():
        assert token not in log, "a token in the broker log"


def test_oauthbearer_with_kafka_python(make_listeners_broker, tmp_path):
    """kafka-python's OAUTHBEARER (a token provider): produce and consume
    with a good token; a token for another audience is refused."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError as KPError
    from kafka.sasl.oauth import AbstractTokenProvider

    class Provider(AbstractTokenProvider):
        def __init__(self, make):
            self.make = make

        def token(self):
            return self.make()

    idp = IdentityProvider(str(tmp_path))
    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], validating_settings(idp))
    topic = "t-" + uuid.uuid4().hex[:8]
    common = dict(bootstrap_servers=f"127.0.0.1:{p2}", security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER")
    producer = KafkaProducer(acks="all", sasl_oauth_token_provider=Provider(lambda: idp.token("svc-python")), **common)
    for i in range(10):
        producer.send(topic, b"p%d" % i).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id="g-" + uuid.uuid4().hex[:8], auto_offset_reset="earliest",
                             consumer_timeout_ms=15000,
                             sasl_oauth_token_provider=Provider(lambda: idp.token("svc-python")), **common)
    got = [m.value for m in consumer]
    consumer.close()
    assert got == [b"p%d" % i for i in range(10)]
    with pytest.raises(KPError):
        bad = KafkaProducer(max_block_ms=5000, sasl_oauth_token_provider=Provider(lambda: idp.token("svc-python", aud="x")),
                            **common)
        bad.send(topic, b"never").get(timeout=10)


def raw_session_lifetime_ms(port, token):
    """SaslHandshake v1 + SaslAuthenticate v1 with `token`: the session lifetime the broker gives."""
    from kafka.protocol.admin import SaslAuthenticateRequest_v1
    from kafka.protocol.sasl_handshake import SaslHandshakeRequest_v1

    from test_security import RawSaslConnection
    connection = RawSaslConnection(port)
    try:
        assert connection.call(SaslHandshakeRequest_v1(mechanism="OAUTHBEARER")).error_code == 0
        message = f"n,,\x01auth=Bearer {token}\x01\x01".encode()
        answer = connection.call(SaslAuthenticateRequest_v1(sasl_auth_bytes=message))
        assert answer.error_code == 0, answer
        return answer.session_lifetime_ms
    finally:
        connection.close()


def test_oauthbearer_sessions_end_with_their_tokens(make_listeners_broker, tmp_path):
    """As Kafka: an OAUTHBEARER session lasts until its token expires even
    without `connections.max.reauth.ms` (SaslAuthenticate v1 says how long),
    and no longer than `connections.max.reauth.ms` when that is shorter.
    librdkafka re-authenticates its sessions by itself: a producer with
    3-second sessions runs for 10 s with every record delivered and no
    connection closed for an ended session."""
    idp = IdentityProvider(str(tmp_path))
    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], validating_settings(idp))
    lifetime = raw_session_lifetime_ms(p2, idp.token("svc-raw", lifetime=100))
    assert 98_000 < lifetime <= 100_000, lifetime

    p3, p4 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p3), ("SASL_PLAINTEXT", p4)], dict(validating_settings(idp), **{
        "listener.name.sasl_plaintext.oauthbearer.connections.max.reauth.ms": "3000"}))
    assert raw_session_lifetime_ms(p4, idp.token("svc-raw", lifetime=100)) == 3000
    assert 0 < raw_session_lifetime_ms(p4, idp.token("svc-raw", lifetime=2)) <= 2_000, "the token ends first"
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{p3}"})  # kept alive until its answer
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    # Tokens far longer than the sessions: each re-authentication has a fresh session's worth
    # of token left (a 6-second token renewed late re-authenticates with its last second, and
    # the next attempt within a second is refused, by Kafka too).
    produce_steadily(oauth_conf(p4, lambda: idp.token("svc-steady", lifetime=120)), topic, seconds=10)
    log = broker.log()
    assert log.count("SASL re-authentication succeeded") >= 2, "the sessions were renewed"
    assert "without re-authentication" not in log


def test_oauthbearer_unsecured_default_serves_librdkafka_unsecured_tokens(make_listeners_broker):
    """Without a JWKS, OAUTHBEARER is Kafka's unsecured default (for
    development): librdkafka's built-in unsigned JWT (`principal=...`)
    authenticates, and the broker warns at start that tokens are unsigned. A
    validating handler without a JWKS refuses to start."""
    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], {
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "OAUTHBEARER"})
    assert "accepts unsigned tokens" in broker.log()
    topic = "t-" + uuid.uuid4().hex[:8]
    conf = {"bootstrap.servers": f"127.0.0.1:{p2}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER", "enable.sasl.oauthbearer.unsecure.jwt": True,
            "sasl.oauthbearer.config": "principal=dev-user"}
    assert produce_one(conf, topic)[0] is None
    assert "principal=User:dev-user" in broker.log()

    from test_security import ListenersBroker
    bad = ListenersBroker([("SASL_PLAINTEXT", free_port())], {
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"})
    with pytest.raises(RuntimeError) as refused:
        bad.start(timeout=10)
    bad.cleanup()
    assert "sasl.oauthbearer.jwks.endpoint.url" in str(refused.value)
