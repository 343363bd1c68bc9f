"""Kafka client security: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and TLS settings, shared by
the exporter (``execscope run --exporter kafka`` and every process it records) and the collector
(``execscope collect``), and the one clear error a refused login or an untrusted certificate gives.

Each setting is named after librdkafka's property (``.`` written ``_``) and comes from, highest
first: a command-line flag of ``execscope run`` and ``execscope collect`` (``--kafka-`` and the name
with ``-`` for ``_``), an environment variable (``EXECSCOPE_KAFKA_`` and the name in capitals), the
``[kafka]`` table of the processors file (``--processors FILE``, the name as is)::

    security_protocol                      --kafka-security-protocol    EXECSCOPE_KAFKA_SECURITY_PROTOCOL
    sasl_mechanism                         --kafka-sasl-mechanism       EXECSCOPE_KAFKA_SASL_MECHANISM
    sasl_username                          --kafka-sasl-username        EXECSCOPE_KAFKA_SASL_USERNAME
    sasl_password                          (no flag)                    EXECSCOPE_KAFKA_SASL_PASSWORD
    sasl_password_file                     --kafka-sasl-password-file   EXECSCOPE_KAFKA_SASL_PASSWORD_FILE
    ssl_ca_location                        --kafka-ssl-ca-location      EXECSCOPE_KAFKA_SSL_CA_LOCATION
    ssl_certificate_location               --kafka-ssl-certificate-location   (env and file likewise)
    ssl_key_location                       --kafka-ssl-key-location
    ssl_key_password                       (no flag)
    ssl_endpoint_identification_algorithm  --kafka-ssl-endpoint-identification-algorithm

``security_protocol`` is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; left out, it is SASL_SSL when a
SASL mechanism is given, SSL when a TLS file is given, else PLAINTEXT. ``ssl_ca_location`` is a PEM
file of the CA certificates to trust (default: the system's); ``ssl_endpoint_identification_algorithm``
is ``https`` (default: the certificate must name the host) or ``none``. Passwords are never taken
from a flag (other users see command lines); they are never printed, logged or put in a span:
:class:`KafkaSecurity` leaves them out of its ``repr`` and :meth:`KafkaSecurity.describe`.

A refused login or an untrusted certificate is a configuration error, not an outage: kafka-python
only logs its reason and reports "Unable to bootstrap" when its wait ends, so :class:`FailureWatch`
keeps the last failure our client's I/O thread logged and :func:`explain` turns it into one sentence.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

ENV_PREFIX = "EXECSCOPE_KAFKA_"
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ENDPOINT_IDENTIFICATION = ("https", "none")
SECRET_SETTINGS = ("sasl_password", "ssl_key_password")  # never from a flag, never shown
FILE_SETTINGS = ("sasl_password_file", "ssl_ca_location", "ssl_certificate_location", "ssl_key_location")


class KafkaSettingsError(ValueError):
    """A Kafka security setting is invalid (unknown value, missing companion, unreadable file)."""


class KafkaAccessError(RuntimeError):
    """The broker could be reached but refused us: wrong credentials, an untrusted certificate, a TLS
    handshake with a listener that does not speak TLS. Retrying does not help."""


class KafkaConnectError(RuntimeError):
    """No connection within the wait, the last attempt's TLS handshake having failed for a reason
    that may pass (the broker closed the connection: restarting, overloaded, or not a TLS listener)."""


def env_name(setting: str) -> str:
    """The environment variable of ``setting`` (``sasl_mechanism`` -> ``EXECSCOPE_KAFKA_SASL_MECHANISM``)."""
    return ENV_PREFIX + setting.upper()


def flag_name(setting: str) -> str:
    """The command-line flag of ``setting`` (``sasl_mechanism`` -> ``--kafka-sasl-mechanism``)."""
    return "--kafka-" + setting.replace("_", "-")


@dataclass(frozen=True)
class KafkaSecurity:
    """Resolved, validated settings (see the module doc). Build with :meth:`resolve`."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    sasl_password_file: str = ""
    ssl_ca_location: str = ""
    ssl_certificate_location: str = ""
    ssl_key_location: str = ""
    ssl_key_password: str = field(default="", repr=False)
    ssl_endpoint_identification_algorithm: str = "https"

    @classmethod
    def settings(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def resolve(cls, flags: Mapping[str, str | None] | None = None, env: Mapping[str, str] | None = None,
                file: Mapping[str, Any] | None = None, file_name: str = "the processors file") -> KafkaSecurity:
        """Settings from ``flags`` (setting name -> value or None), then ``env`` (default
        ``os.environ``), then ``file`` (the ``[kafka]`` table); raises :class:`KafkaSettingsError`
        naming where a bad value came from. Reads the password file."""
        env = os.environ if env is None else env
        known = cls.settings()
        unknown = sorted(set(file or {}) - set(known))
        if unknown:
            raise KafkaSettingsError(f"{file_name} [kafka]: unknown settings {unknown} (known: {', '.join(known)})")
        values: dict[str, str] = {}
        where: dict[str, str] = {}
        for name in known:
            flag = (flags or {}).get(name)
            if flag not in (None, "") and name not in SECRET_SETTINGS:
                values[name], where[name] = str(flag), flag_name(name)
            elif env.get(env_name(name), "") != "":
                values[name], where[name] = env[env_name(name)], env_name(name)
            elif file and file.get(name) not in (None, ""):
                if not isinstance(file[name], str):
                    raise KafkaSettingsError(f"{file_name} [kafka] {name}: expected a string, got {file[name]!r}")
                values[name], where[name] = file[name], f"{file_name} [kafka] {name}"
        return cls._validated(values, where)

    @classmethod
    def _validated(cls, values: dict[str, str], where: dict[str, str]) -> KafkaSecurity:
        def bad(name: str, problem: str) -> KafkaSettingsError:
            shown = "" if name in SECRET_SETTINGS else f"={values[name]}"
            return KafkaSettingsError(f"{where[name]}{shown}: {problem}")

        for name, choices in (("security_protocol", PROTOCOLS), ("sasl_mechanism", MECHANISMS)):
            if name in values:
                values[name] = values[name].strip().upper().replace("_", "-" if name == "sasl_mechanism" else "_")
                if values[name] not in choices:
                    raise bad(name, f"unknown value (one of {', '.join(choices)})")
        if "ssl_endpoint_identification_algorithm" in values:
            value = values["ssl_endpoint_identification_algorithm"].strip().lower()
            if value not in ENDPOINT_IDENTIFICATION:
                raise bad("ssl_endpoint_identification_algorithm", "unknown value (https or none)")
            values["ssl_endpoint_identification_algorithm"] = value
        tls_files = [n for n in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location") if n in values]
        if "security_protocol" not in values:
            values["security_protocol"] = ("SASL_SSL" if "sasl_mechanism" in values
                                           else "SSL" if tls_files else "PLAINTEXT")
        protocol = values["security_protocol"]
        sasl = protocol.startswith("SASL_")
        tls = protocol.endswith("SSL")
        if sasl:
            if "sasl_mechanism" not in values:
                raise KafkaSettingsError(f"security protocol {protocol} needs a SASL mechanism "
                                         f"({flag_name('sasl_mechanism')} or {env_name('sasl_mechanism')}: "
                                         f"{', '.join(MECHANISMS)})")
            if "sasl_username" not in values:
                raise KafkaSettingsError(f"SASL {values['sasl_mechanism']} needs a user name "
                                         f"({flag_name('sasl_username')} or {env_name('sasl_username')})")
            if "sasl_password" not in values and "sasl_password_file" not in values:
                raise KafkaSettingsError(f"SASL {values['sasl_mechanism']} needs a password "
                                         f"({env_name('sasl_password')}, or a file: {flag_name('sasl_password_file')} "
                                         f"or {env_name('sasl_password_file')})")
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file"):
                if name in values:
                    raise bad(name, f"SASL settings need security protocol SASL_SSL or SASL_PLAINTEXT "
                                    f"(it is {protocol})")
        if not tls:
            for name in (*tls_files, "ssl_key_password"):
                if name in values:
                    raise bad(name, f"TLS settings need security protocol SSL or SASL_SSL (it is {protocol})")
        if "ssl_key_location" in values and "ssl_certificate_location" not in values:
            raise bad("ssl_key_location",
                      f"a client key needs its certificate ({flag_name('ssl_certificate_location')})")
        for name in FILE_SETTINGS:
            if name in values:
                values[name] = os.path.abspath(os.path.expanduser(values[name]))
                if not os.path.isfile(values[name]) or not os.access(values[name], os.R_OK):
                    raise bad(name, "no readable file there")
        if "sasl_password_file" in values and "sasl_password" not in values:
            try:
                with open(values["sasl_password_file"], encoding="utf-8") as f:
                    values["sasl_password"] = f.read().rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise bad("sasl_password_file", f"cannot be read: {exc}") from None
            if not values["sasl_password"]:
                raise bad("sasl_password_file", "the file is empty")
        return cls(**values)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol.endswith("SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def client_config(self) -> dict[str, Any]:
        """Keyword arguments of kafka-python's producers and consumers."""
        config: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            config.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        if self.uses_tls:
            config["ssl_check_hostname"] = self.ssl_endpoint_identification_algorithm == "https"
            for key, name in (("ssl_cafile", "ssl_ca_location"), ("ssl_certfile", "ssl_certificate_location"),
                              ("ssl_keyfile", "ssl_key_location"), ("ssl_password", "ssl_key_password")):
                if getattr(self, name):
                    config[key] = getattr(self, name)
        return config

    def environment(self) -> dict[str, str]:
        """The environment variables that give a child process these settings. A password read from a
        file travels as the file's path."""
        env: dict[str, str] = {}
        for name in self.settings():
            value = getattr(self, name)
            if name == "sasl_password" and self.sasl_password_file:
                continue
            if value and not (name == "ssl_endpoint_identification_algorithm" and value == "https"):
                env[env_name(name)] = value
        if self.security_protocol == "PLAINTEXT":
            env.pop(env_name("security_protocol"), None)
        return env

    def describe(self) -> str:
        """A short description without secrets, e.g. ``SASL_SSL (SCRAM-SHA-256 as 'alice')``."""
        if self.uses_sasl:
            return f"{self.security_protocol} ({self.sasl_mechanism} as {self.sasl_username!r})"
        return self.security_protocol


def environment_names() -> list[str]:
    """Every environment variable :meth:`KafkaSecurity.resolve` reads."""
    return [env_name(name) for name in KafkaSecurity.settings()]


class FailureWatch(logging.Handler):
    """Keeps the last access failure (see :func:`access_failure`) kafka-python logged while creating
    the client ``client_id`` (its reasons for failing to connect are only logged): records of the
    thread that attached the watch (a client bootstraps on the thread creating it) or of the client's
    I/O thread. Attach with :meth:`attach` on the creating thread, detach with :meth:`detach`."""

    LOGGER = "kafka"

    def __init__(self, client_id: str) -> None:
        super().__init__(logging.WARNING)
        self.thread_name = f"kafka-io-{client_id}"
        self.thread_id = threading.get_ident()
        self._lock_last = threading.Lock()
        self._access: BaseException | None = None
        self._handshake: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self.thread_id and record.threadName != self.thread_name:
            return
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, BaseException):
                with self._lock_last:
                    if access_failure(arg):
                        self._access = arg
                    elif handshake_failure(arg):
                        self._handshake = arg

    def access_failure(self) -> BaseException | None:
        """The last failure of the access kind (credentials, certificate) logged, if any."""
        with self._lock_last:
            return self._access

    def handshake_failure(self) -> BaseException | None:
        """The last other TLS handshake failure logged, if any."""
        with self._lock_last:
            return self._handshake

    def attach(self) -> FailureWatch:
        """Listen (a program that silences kafka-python's logger leaves only its "Unable to bootstrap")."""
        logging.getLogger(self.LOGGER).addHandler(self)
        return self

    def detach(self) -> None:
        logging.getLogger(self.LOGGER).removeHandler(self)


def handshake_failure(exc: BaseException) -> bool:
    """True for a failed TLS handshake (kafka-python wraps it as ``Handshake failed: ...``)."""
    from kafka import errors

    return isinstance(exc, errors.KafkaConnectionError) and "Handshake failed" in str(exc)


def access_failure(exc: BaseException) -> bool:
    """True for a failure that retrying cannot fix: the broker refused the login, its certificate is
    not trusted, it answered TLS with something else, or the TLS files cannot be used. A handshake
    the broker broke off (closing the connection: it may be restarting) is not one."""
    import ssl

    from kafka import errors

    if isinstance(exc, (errors.SaslAuthenticationFailedError, errors.UnsupportedSaslMechanismError,
                        errors.IllegalSaslStateError)):
        return True
    if isinstance(exc, ssl.SSLError):  # raised bare only while loading the CA, certificate or key
        return not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError))
    text = str(exc)
    return handshake_failure(exc) and any(mark in text for mark in (
        "CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "WRONG_VERSION_NUMBER", "wrong version number"))


def explain(exc: BaseException, bootstrap: str, security: KafkaSecurity) -> str | None:
    """One sentence for an access or TLS handshake failure (see :func:`access_failure`,
    :func:`handshake_failure`), None for anything else."""
    from kafka import errors

    if not access_failure(exc) and not handshake_failure(exc):
        return None
    if isinstance(exc, errors.SaslAuthenticationFailedError):
        reason = str(exc.args[0] if exc.args else exc)
        while reason.startswith("SaslAuthenticationFailedError: "):
            reason = reason[len("SaslAuthenticationFailedError: "):]
        return (f"Kafka {bootstrap} refused the login of SASL user {security.sasl_username!r} with "
                f"{security.sasl_mechanism} ({reason}); check the user name, the password "
                f"({env_name('sasl_password')} or {flag_name('sasl_password_file')}) and the mechanism")
    if isinstance(exc, (errors.UnsupportedSaslMechanismError, errors.IllegalSaslStateError)):
        return f"Kafka {bootstrap}: {exc}"
    text = str(exc)
    text = text.split("Handshake failed: ", 1)[-1]
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        trusted = security.ssl_ca_location or "the system's CA certificates"
        if "mismatch" in text:
            return (f"Kafka {bootstrap}: the broker's TLS certificate does not name that host ({text}); "
                    f"connect by a name the certificate has, or set "
                    f"{env_name('ssl_endpoint_identification_algorithm')}=none")
        return (f"Kafka {bootstrap}: the broker's TLS certificate is not trusted ({text}); trusted now: {trusted}; "
                f"give the CA certificate that signed it with {flag_name('ssl_ca_location')} or "
                f"{env_name('ssl_ca_location')}")
    return (f"Kafka {bootstrap}: the TLS handshake failed ({text}); is that address a listener of security protocol "
            f"{security.security_protocol}?")


class SecretMask(logging.Filter):
    """Masks secrets in kafka-python's log records: at DEBUG it logs every request it sends, and a
    SASL PLAIN request holds the password in clear. Rewrites a record holding one (its text, or the
    text's ``bytes`` repr form) with ``<redacted>``; never drops a record."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if secret:
            self.secrets.add(secret)
            self.secrets.add(repr(secret.encode())[2:-1])  # as in b'...' dumps

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            return True
        masked = text
        for secret in self.secrets:
            masked = masked.replace(secret, "<redacted>")
        if masked is not text and masked != text:
            record.msg, record.args = masked, None
        return True


_MASK = SecretMask()


def mask_secrets_in_logs(security: KafkaSecurity) -> None:
    """Install :data:`_MASK` (with ``security``'s passwords) on every ``kafka`` logger there is (a
    logger's filters act on what it logs, whatever the handler). Idempotent."""
    for secret in (security.sasl_password, security.ssl_key_password):
        _MASK.add(secret)
    if not _MASK.secrets:
        return
    import kafka  # noqa: F401  (its modules create their loggers on import)

    names = [n for n in list(logging.Logger.manager.loggerDict) if n == "kafka" or n.startswith("kafka.")]
    for name in names:
        logger = logging.getLogger(name)
        if _MASK not in logger.filters:
            logger.addFilter(_MASK)


T = TypeVar("T")


def connect(factory: Callable[..., T], bootstrap: str, security: KafkaSecurity, client_id: str,
            client_config: Mapping[str, Any] | None = None, timeout_s: float = 30.0, attempt_s: float = 2.0) -> T:
    """``factory(bootstrap_servers=bootstrap, client_id=client_id, **security, **client_config)`` (a
    kafka-python client, which bootstraps in its constructor), tried in attempts of ``attempt_s``
    (doubling) until ``timeout_s`` (or ``client_config["bootstrap_timeout_ms"]``): raises
    :class:`KafkaAccessError` (one clear sentence) as soon as an attempt failed for an access reason;
    at the deadline :class:`KafkaConnectError` when the last TLS handshake failed, else the client's
    own error."""
    mask_secrets_in_logs(security)
    config = {k: v for k, v in (client_config or {}).items() if k != "client_id"}
    if "bootstrap_timeout_ms" in config:
        timeout_s = config.pop("bootstrap_timeout_ms") / 1000
    watch = FailureWatch(client_id).attach()
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            attempt_ms = int(max(0.5, min(attempt_s, deadline - time.monotonic())) * 1000)
            try:
                return factory(bootstrap_servers=bootstrap, client_id=client_id, bootstrap_timeout_ms=attempt_ms,
                               **security.client_config(), **config)
            except Exception as exc:
                failure = watch.access_failure() or (exc if access_failure(exc) else None)
                message = explain(failure, bootstrap, security) if failure is not None else None
                if message:
                    raise KafkaAccessError(message) from None
                if time.monotonic() >= deadline:
                    handshake = watch.handshake_failure()
                    message = explain(handshake, bootstrap, security) if handshake is not None else None
                    if message:
                        raise KafkaConnectError(message) from exc
                    raise
            attempt_s *= 2
    finally:
        watch.detach()
