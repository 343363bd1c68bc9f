"""A program holding each kind of secret in every position a recording stores a value in.

Recorded by tests/integration/test_secrets.py (``execscope run --include secrets_corpus``); the
secrets come from secrets_corpus_data (not recorded). No name here looks like a secret's (that
would hide the value by name), except ``login``'s, which shows name redaction.

Positions, one function each (their node ids tell the position): ``take_arg`` (argument),
``hold_local`` (local variable), ``nested`` (a dict inside a dict), ``Holder.__init__`` (object
attribute), ``listed`` (list element), ``give`` (return value), ``fail`` (exception message, stack
trace, status), ``fetch`` (inside a URL), ``send`` (an HTTP header, by a name that is no secret's);
and ``other_sdk`` makes an OpenTelemetry span of its own (as an HTTP client instrumentation would),
with the secret in its name, an attribute and its status.
"""

from __future__ import annotations

import sys

from opentelemetry import trace
from secrets_corpus_data import VALUES

POSITIONS = ("take_arg", "hold_local", "nested", "Holder.__init__", "listed", "give", "fail", "fetch", "send")


class Holder:
    def __init__(self, value):
        self.value = value


def take_arg(value):
    return len(value)


def hold_local(label):
    local = VALUES[label]
    return len(local)


def nested(config):
    return len(config)


def listed(items):
    return len(items)


def give(label):
    return VALUES[label]


def fail(label):
    raise ValueError("upstream refused " + VALUES[label])


def fetch(url):
    return url.count("/")


def send(headers):
    return len(headers)


def other_sdk(value):
    tracer = trace.get_tracer("corpus.http.client")
    with tracer.start_as_current_span("GET https://svc.example.com/hook?v=" + value,
                                      attributes={"http.url": "https://svc.example.com/hook?v=" + value}) as span:
        span.set_status(trace.Status(trace.StatusCode.ERROR, "refused " + value))


def login(user, password):  # by name: always redacted, patterns or not
    return {"user": user, "password": password, "Authorization": "Bearer " + password}


def run_one(label):
    value = VALUES[label]
    take_arg(value)
    hold_local(label)
    nested({"service": {"endpoint": [value]}})
    Holder(value)
    listed(["first", value, "last"])
    give(label)
    try:
        fail(label)
    except ValueError:
        pass
    fetch("https://svc.example.com/hook?v=" + value)
    send([("X-Debug", value), ("Accept", "*/*")])
    other_sdk(value)
    return label


def main():
    for label in VALUES:
        run_one(label)
    login("bob", "-".join(("name", "only", "s3cr3t")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
