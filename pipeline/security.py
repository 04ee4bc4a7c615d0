"""Kafka client security (SASL PLAIN/SCRAM, TLS) from settings, for Faust and for kafka-python clients.

Guarantees: one validated description (``KafkaSecurity``) per process, built once from ``Settings``; the same
protocol, mechanism, user and CA go to Faust (``faust_credentials``) and to every kafka-python client
(``client_config``); the password is a ``SecretStr`` until the moment a client is built, so it never shows
in reprs, logs or error messages. An incomplete configuration (SASL without a user, a password file that
cannot be read) raises ``SecurityConfigError`` at start-up, naming the setting to fix.

Not covered: OAUTHBEARER and GSSAPI (Kerberos); TLS key passwords (keep the key file unencrypted on a
secret volume instead); rotating credentials without a restart.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline.settings import Settings

SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})


class SecurityConfigError(ValueError):
    """The Kafka security settings are incomplete or unreadable (the message names the setting)."""


@dataclass(frozen=True)
class KafkaSecurity:
    """What every Kafka client of this process needs to connect (see the module docstring)."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @property
    def sasl(self) -> bool:
        return self.protocol in SASL_PROTOCOLS

    @property
    def tls(self) -> bool:
        return self.protocol in TLS_PROTOCOLS

    def describe(self) -> str:
        """A one-line summary safe for logs (never the password)."""
        parts = [self.protocol]
        if self.sasl:
            parts.append(f"{self.mechanism} as {self.username!r}")
        if self.tls:
            parts.append(f"CA {self.cafile or 'system'}" + (", client certificate" if self.certfile else ""))
        return ", ".join(parts)


def kafka_security(settings: Settings) -> KafkaSecurity:
    """Validate the security settings; reads the password file if one is named."""
    protocol = settings.kafka_security_protocol
    tls = protocol in TLS_PROTOCOLS
    cafile, certfile, keyfile = (
        (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile) if tls else (None,) * 3
    )
    if certfile is not None and keyfile is None:
        raise SecurityConfigError("OMNISTREAM_KAFKA_SSL_CERTFILE needs OMNISTREAM_KAFKA_SSL_KEYFILE")
    if protocol not in SASL_PROTOCOLS:
        return KafkaSecurity(protocol, cafile=cafile, certfile=certfile, keyfile=keyfile)
    if not settings.kafka_sasl_username:
        raise SecurityConfigError(f"OMNISTREAM_KAFKA_SASL_USERNAME is required with {protocol}")
    password = settings.kafka_sasl_password
    if settings.kafka_sasl_password_file is not None:
        password = SecretStr(_read_secret(settings.kafka_sasl_password_file))
    if password is None or not password.get_secret_value():
        raise SecurityConfigError(
            f"{protocol} needs a password: set OMNISTREAM_KAFKA_SASL_PASSWORD or OMNISTREAM_KAFKA_SASL_PASSWORD_FILE"
        )
    return KafkaSecurity(
        protocol, settings.kafka_sasl_mechanism, settings.kafka_sasl_username, password, cafile, certfile, keyfile
    )


def client_config(security: KafkaSecurity) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaConsumer / KafkaProducer / KafkaAdminClient."""
    config: dict[str, Any] = {"security_protocol": security.protocol}
    if security.sasl:
        assert security.password is not None  # kafka_security guarantees it
        config |= {
            "sasl_mechanism": security.mechanism,
            "sasl_plain_username": security.username,
            "sasl_plain_password": security.password.get_secret_value(),
        }
    if security.tls:
        config |= {"ssl_check_hostname": True}
        if security.cafile:
            config["ssl_cafile"] = str(security.cafile)
        if security.certfile:
            config["ssl_certfile"] = str(security.certfile)
        if security.keyfile:
            config["ssl_keyfile"] = str(security.keyfile)
    return config


def settings_client_config(settings: Settings) -> dict[str, Any]:
    """``client_config(kafka_security(settings))``: what call sites holding only settings pass to clients."""
    return client_config(kafka_security(settings))


def faust_credentials(security: KafkaSecurity) -> Any:
    """Faust's ``broker_credentials`` (None for PLAINTEXT)."""
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(security) if security.tls else None
    if security.sasl:
        assert security.password is not None
        return SASLCredentials(
            username=security.username,
            password=security.password.get_secret_value(),
            mechanism=security.mechanism,
            ssl_context=context,
        )
    if context is not None:
        return SSLCredentials(context)
    return None


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """A TLS client context verifying the brokers (with the client certificate for mutual TLS)."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(security.cafile) if security.cafile else None
    )
    if security.certfile:
        context.load_cert_chain(str(security.certfile), str(security.keyfile) if security.keyfile else None)
    return context


class KafkaAuthError(RuntimeError):
    """The brokers refused this process's credentials (wrong user, password, mechanism or certificate)."""


def check_connection(bootstrap: str, security: KafkaSecurity, timeout_s: float = 15.0) -> None:
    """Connect once with ``security`` before starting: raises ``KafkaAuthError`` naming user and mechanism
    when the brokers refuse the credentials, ``ConnectionError`` when they do not answer at all.

    Why: Faust's consumer retries a refused login forever with a log line per attempt; one clear error at
    start-up is what an operator needs.
    """
    import kafka.errors as kafka_errors
    from kafka.admin import KafkaAdminClient

    refused = (
        kafka_errors.SaslAuthenticationFailedError,
        kafka_errors.UnsupportedSaslMechanismError,
        kafka_errors.IllegalSaslStateError,
    )
    timeout_ms = int(timeout_s * 1000)
    # kafka-python retries a refused login until its bootstrap timeout and then reports only "Unable to
    # bootstrap"; the refusal itself is only logged. Catch that log record to tell the two cases apart.
    seen = _RefusalCatcher(refused)
    net_log = logging.getLogger("kafka")
    net_log.addHandler(seen)
    try:
        client = KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            client_id="omnistream-preflight",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=max(timeout_ms, 3000),
            **client_config(security),
        )
    except refused as exc:
        raise KafkaAuthError(f"Kafka at {bootstrap} refused the credentials ({security.describe()}): {exc}") from exc
    except (kafka_errors.KafkaError, ssl.SSLError, OSError) as exc:
        if seen.refusal is not None:
            raise KafkaAuthError(
                f"Kafka at {bootstrap} refused the credentials ({security.describe()}): {seen.refusal}"
            ) from exc
        if security.sasl and seen.dropped:
            # The broker answers its error and closes the socket; kafka-python often sees the close first.
            raise KafkaAuthError(
                f"Kafka at {bootstrap} accepted the connection and then closed it during SASL authentication "
                f"({security.describe()}): check user name, password and mechanism"
            ) from exc
        raise ConnectionError(f"Kafka at {bootstrap} did not answer ({security.describe()}): {exc!r}") from exc
    finally:
        net_log.removeHandler(seen)
    client.close()


class _RefusalCatcher(logging.Handler):
    """Remembers the first authentication refusal kafka-python logs (as an argument of its log record)."""

    def __init__(self, refused: tuple[type[BaseException], ...]) -> None:
        from kafka.errors import KafkaConnectionError

        super().__init__(logging.WARNING)
        self._refused = refused
        self._connection_error = KafkaConnectionError
        self.refusal: BaseException | None = None
        self.dropped = False  # a connection was established and then closed by the broker

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, self._refused) and self.refusal is None:
                self.refusal = arg
            elif isinstance(arg, self._connection_error) and "disconnected" in str(arg):
                self.dropped = True


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise SecurityConfigError(f"cannot read OMNISTREAM_KAFKA_SASL_PASSWORD_FILE {path}: {exc.strerror}") from exc
