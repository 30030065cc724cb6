"""The official Java client (kafka-clients 4.3.0) on Runnel's secured
listeners, with its own security settings unchanged: SASL_SSL with
SCRAM-SHA-512, mutual TLS with PEM key stores, and OAUTHBEARER with a token
file (tests/java/SecureClients.java). Wrong credentials fail with the Java
client's AuthenticationException while the broker keeps serving."""
import uuid

from confluent_kafka.admin import AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

from test_java import run_java_program
from test_oauthbearer import IdentityProvider, validating_settings
from test_security import free_port, make_listeners_broker, pki, tls_settings  # noqa: F401  (fixtures)


def write_properties(path, settings):
    with open(path, "w") as f:
        for key, value in settings.items():
            f.write(f"{key}={value}\n")
    return str(path)


def create_topic(port):
    topic = "java-sec-" + uuid.uuid4().hex[:6]
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    return topic, admin


def run_secure_clients(tmp_path, port, topic, settings, *extra, jvm_args=()):
    props = write_properties(tmp_path / f"client-{uuid.uuid4().hex[:6]}.properties", settings)
    return run_java_program(tmp_path, "SecureClients", f"127.0.0.1:{port}", topic, 50, props, *extra, jvm_args=jvm_args)


def test_java_client_over_sasl_ssl_with_scram_sha_512(make_listeners_broker, pki, tmp_path):
    """SASL_SSL + SCRAM-SHA-512, the Java client trusting the broker's CA
    from a PEM trust store (ssl.truststore.type=PEM): admin, produce and a
    consumer group work; a wrong password is a SaslAuthenticationException."""
    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SASL_SSL", p2)], dict(tls_settings(pki), **{
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-512"}))
    topic, admin = create_topic(p1)
    upsert = UserScramCredentialUpsertion("java-app", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"java-secret")
    admin.alter_user_scram_credentials([upsert])["java-app"].result(30)

    def settings(password):
        return {"security.protocol": "SASL_SSL", "ssl.truststore.type": "PEM", "ssl.truststore.location": pki["ca"],
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
                                    f'username="java-app" password="{password}";'}

    code, out = run_secure_clients(tmp_path, p2, topic, settings("java-secret"))
    assert code == 0 and "PASS 50 records over SASL_SSL" in out, out[-4000:]
    code, out = run_secure_clients(tmp_path, p2, topic, settings("wrong"), "expect-auth-failure")
    assert code == 0 and "REFUSED SaslAuthenticationException" in out, out[-4000:]


def test_java_client_with_mutual_tls(make_listeners_broker, pki, tmp_path):
    """ssl.client.auth=required: the Java client presents a certificate from
    a PEM key store (ssl.keystore.type=PEM) and is served; with a certificate
    from a CA the broker does not trust it gets an SslAuthenticationException."""
    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SSL", p2)], tls_settings(pki, client_auth="required"))
    topic, _admin = create_topic(p1)

    def settings(cert):
        keystore = tmp_path / f"keystore-{uuid.uuid4().hex[:6]}.pem"
        with open(keystore, "w") as f:
            f.write(open(cert[1]).read() + open(cert[0]).read())
        return {"security.protocol": "SSL", "ssl.truststore.type": "PEM", "ssl.truststore.location": pki["ca"],
                "ssl.keystore.type": "PEM", "ssl.keystore.location": str(keystore)}

    code, out = run_secure_clients(tmp_path, p2, topic, settings(pki["client"]))
    assert code == 0 and "PASS 50 records over SSL" in out, out[-4000:]
    code, out = run_secure_clients(tmp_path, p2, topic, settings(pki["rogue"]), "expect-auth-failure")
    assert code == 0 and "REFUSED SslAuthenticationException" in out, out[-4000:]


def test_java_client_with_oauthbearer_token_file(make_listeners_broker, tmp_path):
    """OAUTHBEARER as a Java user sets it up: OAuthBearerLoginCallbackHandler
    reading a JWT from a file: URL (the identity provider's token), the
    broker validating it against the JWKS. A token for another audience is a
    SaslAuthenticationException."""
    idp = IdentityProvider(str(tmp_path))
    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], validating_settings(idp))
    topic, _admin = create_topic(p1)

    def run(token, *extra):
        token_file = tmp_path / f"token-{uuid.uuid4().hex[:6]}.jwt"
        token_file.write_text(token)
        url = f"file://{token_file}"
        settings = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "OAUTHBEARER",
                    "sasl.login.callback.handler.class":
                        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler",
                    "sasl.oauthbearer.token.endpoint.url": url,
                    "sasl.jaas.config": "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;"}
        # Kafka 4 clients read only the URLs this system property allows.
        return run_secure_clients(tmp_path, p2, topic, settings, *extra,
                                  jvm_args=[f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={url}"])

    code, out = run(idp.token("svc-java"))
    assert code == 0 and "PASS 50 records over SASL_PLAINTEXT" in out, out[-4000:]
    code, out = run(idp.token("svc-java", aud="another-service"), "expect-auth-failure")
    assert code == 0 and "REFUSED SaslAuthenticationException" in out, out[-4000:]
    assert "invalid_token" in out, out[-4000:]
