"""Kafka SASL/TLS settings: where each comes from, what is refused and how, and that passwords are
never shown (execscope.instrumentation.export.kafka_security). The real broker's side is in
tests/integration/test_kafka_security.py."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import errors

from execscope.instrumentation.export.kafka_security import (
    KafkaSecurity,
    KafkaSettingsError,
    SecretMask,
    access_failure,
    env_name,
    environment_names,
    explain,
    flag_name,
)

SECRET = "s3cr3t-pa55"


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")  # only its readability is checked here
    return path


def test_names_follow_librdkafka() -> None:
    assert env_name("sasl_mechanism") == "EXECSCOPE_KAFKA_SASL_MECHANISM"
    assert flag_name("ssl_ca_location") == "--kafka-ssl-ca-location"
    assert env_name("ssl_endpoint_identification_algorithm") in environment_names()
    assert len(environment_names()) == len(KafkaSecurity.settings()) == 10


def test_nothing_set_is_plaintext() -> None:
    security = KafkaSecurity.resolve({}, env={})
    assert security == KafkaSecurity()
    assert security.client_config() == {"security_protocol": "PLAINTEXT"}
    assert security.environment() == {}


def test_flags_win_over_environment_over_file(tmp_path: Path, ca: Path) -> None:
    env = {"EXECSCOPE_KAFKA_SASL_MECHANISM": "scram-sha-256", "EXECSCOPE_KAFKA_SASL_USERNAME": "from-env",
           "EXECSCOPE_KAFKA_SASL_PASSWORD": SECRET}
    file = {"sasl_mechanism": "PLAIN", "sasl_username": "from-file", "ssl_ca_location": str(ca),
            "sasl_password": "file-password"}
    security = KafkaSecurity.resolve({"sasl_username": "from-flag", "sasl_mechanism": None}, env=env, file=file)
    assert security.security_protocol == "SASL_SSL"  # implied by the mechanism
    assert security.sasl_mechanism == "SCRAM-SHA-256"  # the environment's, normalised
    assert security.sasl_username == "from-flag"
    assert security.sasl_password == SECRET
    assert security.ssl_ca_location == str(ca)
    assert security.client_config() == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "from-flag",
        "sasl_plain_password": SECRET, "ssl_check_hostname": True, "ssl_cafile": str(ca)}


def test_a_password_is_never_taken_from_a_flag() -> None:
    with pytest.raises(KafkaSettingsError, match="needs a password"):
        KafkaSecurity.resolve({"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": SECRET}, env={})


def test_passwords_stay_out_of_repr_describe_and_errors() -> None:
    env = {"EXECSCOPE_KAFKA_SASL_PASSWORD": SECRET}
    security = KafkaSecurity.resolve({"sasl_mechanism": "PLAIN", "sasl_username": "alice"}, env=env)
    assert SECRET not in repr(security) and SECRET not in security.describe()
    assert security.describe() == "SASL_SSL (PLAIN as 'alice')"
    with pytest.raises(KafkaSettingsError) as info:
        KafkaSecurity.resolve({}, env={"EXECSCOPE_KAFKA_SSL_KEY_PASSWORD": SECRET})  # TLS off: refused
    assert SECRET not in str(info.value) and "EXECSCOPE_KAFKA_SSL_KEY_PASSWORD" in str(info.value)


def test_password_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text(SECRET + "\n")
    security = KafkaSecurity.resolve({"sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u",
                                      "sasl_password_file": str(path)}, env={})
    assert security.sasl_password == SECRET
    # a child process gets the file's path, never the password itself
    child = security.environment()
    assert child == {"EXECSCOPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "EXECSCOPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                     "EXECSCOPE_KAFKA_SASL_USERNAME": "u", "EXECSCOPE_KAFKA_SASL_PASSWORD_FILE": str(path)}
    assert KafkaSecurity.resolve({}, env=child) == security
    path.write_text("")
    with pytest.raises(KafkaSettingsError, match="--kafka-sasl-password-file.*empty"):
        KafkaSecurity.resolve({"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password_file": str(path)},
                              env={})


@pytest.mark.parametrize(("flags", "env", "file", "message"), [
    ({"sasl_mechanism": "GSSAPI"}, {}, None, r"--kafka-sasl-mechanism=GSSAPI: unknown value \(one of PLAIN"),
    ({}, {"EXECSCOPE_KAFKA_SECURITY_PROTOCOL": "TLS"}, None, "EXECSCOPE_KAFKA_SECURITY_PROTOCOL=TLS: unknown value"),
    ({"security_protocol": "SASL_SSL"}, {}, None, "SASL_SSL needs a SASL mechanism"),
    ({"sasl_mechanism": "PLAIN"}, {}, None, "needs a user name"),
    ({"security_protocol": "SSL", "sasl_username": "u"}, {}, None, "SASL settings need security protocol SASL_SSL"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u",
      "ssl_ca_location": "/etc/hostname"}, {"EXECSCOPE_KAFKA_SASL_PASSWORD": "x"}, None,
     "TLS settings need security protocol SSL or SASL_SSL"),
    ({"ssl_ca_location": "/nonexistent/ca.pem"}, {}, None, "--kafka-ssl-ca-location=/nonexistent/ca.pem: no readable"),
    ({"ssl_key_location": "/etc/hostname"}, {}, None, "a client key needs its certificate"),
    ({"ssl_endpoint_identification_algorithm": "dns"}, {}, None, "https or none"),
    ({}, {}, {"sasl_mechanisms": "PLAIN"}, r"processors.toml \[kafka\]: unknown settings \['sasl_mechanisms'\]"),
    ({}, {}, {"ssl_ca_location": 3}, "expected a string"),
])
def test_bad_settings_say_where_they_came_from(flags: dict, env: dict, file: dict | None, message: str) -> None:
    with pytest.raises(KafkaSettingsError, match=message):
        KafkaSecurity.resolve(flags, env=env, file=file, file_name="processors.toml")


def test_tls_without_hostname_check_and_client_certificate(tmp_path: Path, ca: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("c")
    key.write_text("k")
    security = KafkaSecurity.resolve({"ssl_ca_location": str(ca), "ssl_certificate_location": str(cert),
                                      "ssl_key_location": str(key), "ssl_endpoint_identification_algorithm": "NONE"},
                                     env={"EXECSCOPE_KAFKA_SSL_KEY_PASSWORD": SECRET})
    assert security.security_protocol == "SSL"  # implied by the TLS files
    assert security.client_config() == {"security_protocol": "SSL", "ssl_check_hostname": False, "ssl_cafile": str(ca),
                                        "ssl_certfile": str(cert), "ssl_keyfile": str(key), "ssl_password": SECRET}
    assert KafkaSecurity.resolve({}, env=security.environment()) == security


def test_access_failures_are_told_apart_from_outages() -> None:
    security = KafkaSecurity(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="bob",
                             sasl_password=SECRET)
    refused = errors.SaslAuthenticationFailedError(
        "SaslAuthenticationFailedError: Authentication failed during authentication due to invalid credentials")
    text = explain(refused, "b:9093", security)
    assert text is not None and text.startswith("Kafka b:9093 refused the login of SASL user 'bob' with SCRAM-SHA-256")
    assert "(Authentication failed during authentication due to invalid credentials)" in text and SECRET not in text
    untrusted = errors.KafkaConnectionError("Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                            "failed: self-signed certificate in certificate chain (_ssl.c:1006)")
    text = explain(untrusted, "b:9093", security)
    assert text is not None and "TLS certificate is not trusted" in text and "the system's CA certificates" in text
    mismatch = errors.KafkaConnectionError("Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                           "failed: IP address mismatch, certificate is not valid for '10.0.0.1'.")
    text = explain(mismatch, "10.0.0.1:9093", security)
    assert text is not None and "does not name that host" in text
    not_tls = errors.KafkaConnectionError("Handshake failed: [SSL: WRONG_VERSION_NUMBER] wrong version number")
    text = explain(not_tls, "b:9092", security)
    assert text is not None and "is that address a listener of security protocol SASL_SSL" in text
    assert access_failure(not_tls)
    closed = errors.KafkaConnectionError("Handshake failed: [SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in "
                                         "violation of protocol (_ssl.c:1006)")  # a restarting broker, say
    assert not access_failure(closed) and "the TLS handshake failed" in (explain(closed, "b:9093", security) or "")
    assert access_failure(ssl.SSLError(9, "[X509: NO_CERTIFICATE_OR_CRL_FOUND] no certificate or crl found"))
    assert not access_failure(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    for outage in (errors.KafkaConnectionError("socket disconnected"), errors.KafkaTimeoutError("Unable to bootstrap"),
                   ConnectionRefusedError(111, "refused")):
        assert not access_failure(outage) and explain(outage, "b:9093", security) is None


def test_cli_refuses_bad_settings_before_the_program_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = subprocess.run(
        [sys.executable, "-m", "execscope", "run", "--exporter", "kafka", "--kafka", "127.0.0.1:1", "--include", "x",
         "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "u", "--",
         sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert "SASL PLAIN needs a password (EXECSCOPE_KAFKA_SASL_PASSWORD" in proc.stderr
    assert not marker.exists()
    config = tmp_path / "p.toml"
    config.write_text('[kafka]\nsasl_mechanism = "PLAIN"\nsasl_username = "u"\nsasl_password = "x"\n'
                      'ssl_ca_location = "/nonexistent.pem"\n')
    proc = subprocess.run([sys.executable, "-m", "execscope", "collect", "--kafka", "127.0.0.1:1", "--processors",
                           str(config), "--store", f"chdb://{tmp_path / 'db'}"],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 2, proc.stderr
    assert f"{config} [kafka] ssl_ca_location=/nonexistent.pem: no readable file there" in proc.stderr


def test_log_records_holding_a_password_are_masked() -> None:
    import logging

    mask = SecretMask()
    mask.add("pa'ss\x01")
    record = logging.LogRecord("kafka.protocol.parser", logging.DEBUG, __file__, 1, "Sending %s", (
        b"user\x00user\x00pa'ss\x01",), None)
    assert mask.filter(record) and "pa'ss" not in record.getMessage()
    assert record.getMessage() == 'Sending b"user\\x00user\\x00<redacted>"'  # the bytes repr form
    plain = logging.LogRecord("kafka", logging.INFO, __file__, 1, "Connected %s", ("node-1",), None)
    assert mask.filter(plain) and plain.getMessage() == "Connected node-1" and plain.args == ("node-1",)
