"""Kafka security settings -> Faust credentials and kafka-python client config; secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.auth import SASLCredentials, SSLCredentials

from pipeline.security import (
    SecurityConfigError,
    client_config,
    faust_credentials,
    kafka_security,
)
from pipeline.settings import load_settings

PASSWORD = "pa55-Not-For-Logs"


def test_plaintext_is_the_default_and_needs_nothing() -> None:
    sec = kafka_security(load_settings())
    assert client_config(sec) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(sec) is None


def test_scram_goes_to_faust_and_kafka_python_alike() -> None:
    s = load_settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
                      kafka_sasl_username="svc", kafka_sasl_password=PASSWORD)  # fmt: skip
    sec = kafka_security(s)
    cfg = client_config(sec)
    assert cfg == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                   "sasl_plain_username": "svc", "sasl_plain_password": PASSWORD}  # fmt: skip
    creds = faust_credentials(sec)
    assert isinstance(creds, SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("svc", PASSWORD, "SCRAM-SHA-256")
    for text in (repr(s), str(s), repr(sec), sec.describe(), repr(creds)):
        assert PASSWORD not in text


def test_password_file_is_read_and_stripped(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text(PASSWORD + "\n")
    s = load_settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN", kafka_sasl_username="svc",
                      kafka_sasl_password_file=f)  # fmt: skip
    sec = kafka_security(s)
    assert sec.password is not None and sec.password.get_secret_value() == PASSWORD
    assert client_config(sec)["ssl_check_hostname"] is True
    assert isinstance(faust_credentials(sec), SASLCredentials)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "OMNISTREAM_KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}, "OMNISTREAM_KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u",
          "kafka_sasl_password_file": Path("/nonexistent/pw")}, "cannot read"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": Path("/c.pem")}, "OMNISTREAM_KAFKA_SSL_KEYFILE"),
    ],
)  # fmt: skip
def test_incomplete_settings_name_what_to_fix(overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(SecurityConfigError, match=needle):
        kafka_security(load_settings(**overrides))


def test_tls_only_gives_an_ssl_context_verifying_the_brokers() -> None:
    import ssl

    sec = kafka_security(load_settings(kafka_security_protocol="SSL"))
    creds = faust_credentials(sec)
    assert isinstance(creds, SSLCredentials)
    assert creds.context.verify_mode == ssl.CERT_REQUIRED and creds.context.check_hostname
    assert client_config(sec) == {"security_protocol": "SSL", "ssl_check_hostname": True}


def test_refusal_catcher_tells_a_dropped_sasl_login_from_a_refusal() -> None:
    import logging

    import kafka.errors as kafka_errors

    from pipeline.security import _RefusalCatcher

    catcher = _RefusalCatcher((kafka_errors.SaslAuthenticationFailedError,))

    def log(exc: BaseException) -> None:
        catcher.emit(logging.LogRecord("kafka.net.manager", logging.WARNING, "", 0, "failed: %s", (exc,), None))

    log(kafka_errors.KafkaConnectionError("Connection refused"))
    assert not catcher.dropped and catcher.refusal is None  # nothing listening: not a login problem
    log(kafka_errors.KafkaConnectionError("socket disconnected"))
    assert catcher.dropped and catcher.refusal is None
    refusal = kafka_errors.SaslAuthenticationFailedError("invalid credentials")
    log(refusal)
    assert catcher.refusal is refusal
