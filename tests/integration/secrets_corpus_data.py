"""The secrets of tests/integration/secrets_corpus.py (not recorded: its own bookkeeping would hold
them in clear). Every secret is assembled at run time from pieces, so no source text (stored in the
CPG tables) holds one whole.
"""

from __future__ import annotations

import base64


def _j(*parts: str) -> str:
    return "".join(parts)


# label -> (value, the part that must never be stored, the kind redact-check reports)
CORPUS: dict[str, tuple[str, str, str]] = {}


def _add(label: str, value: str, raw: str, kind: str) -> None:
    assert raw in value
    CORPUS[label] = (value, raw, kind)


_add("aws-key", _j("AKIA", "IOSFODNN7", "EXAMPLE"), _j("AKIA", "IOSFODNN7", "EXAMPLE"), "aws-key")
_add("aws-secret", _j("aws=", "wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY"),
     _j("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY"), "aws-secret")
_add("github-token", _j("ghp_", "a1B2c3D4e5F6g7H8i9J0", "k1L2m3N4o5P6q7R8"),
     _j("a1B2c3D4e5F6g7H8i9J0", "k1L2m3N4o5P6q7R8"), "github-token")
_add("gitlab-token", _j("glpat-", "Ab3dEf6hIj", "9kLm2nOp5q"), _j("Ab3dEf6hIj", "9kLm2nOp5q"), "gitlab-token")
_add("slack-token", _j("xoxb-", "123456789012-", "AbCdEfGhIjKlMnOp"), _j("123456789012-", "AbCdEfGhIjKlMnOp"),
     "slack-token")
_add("stripe-key", _j("sk_", "live_", "4eC39HqLyjWDarjtT1zdp7dc"), _j("4eC39HqLyj", "WDarjtT1zdp7dc"), "stripe-key")
_add("openai-key", _j("sk-", "proj-", "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6"), _j("Z9y8X7w6V5u4", "T3s2R1q0P9o8N7m6"),
     "openai-key")
_add("google-api-key", _j("AIza", "SyD-9tSrke72PouQ", "MnMX7c3bZ2-Jq4cAB1x"),
     _j("SyD-9tSrke72PouQ", "MnMX7c3bZ2-Jq4cAB1x"), "google-api-key")
_add("jwt", _j("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", ".", "eyJzdWIiOiIxMjM0NTY3ODkwIn0", ".",
               "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
     _j("dozjgNryP4J3jVmNHl0w5N", "_XgL0n3I9PlFUP0THsR8U"), "jwt")
_add("bearer", _j("Bear", "er ", "c2VjcmV0LXRva2Vu", "LXZhbHVlMTIz"), _j("c2VjcmV0LXRva2Vu", "LXZhbHVlMTIz"), "bearer")
_add("basic-auth", "Basic " + base64.b64encode(_j("admin", ":", "hunter2basic").encode()).decode(),
     base64.b64encode(_j("admin", ":", "hunter2basic").encode()).decode(), "basic-auth")
_add("private-key", _j("-----BEGIN ", "RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7kZ", "q1w2e3r4t5y6\n-----END ",
                       "RSA PRIVATE KEY-----"), _j("MIIEpAIBAAKCAQEA7kZ", "q1w2e3r4t5y6"), "private-key")
_add("card-number", _j("4111 1111 ", "1111 1111"), _j("4111 1111 ", "1111 1111"), "card-number")
_add("url-password", _j("postgres://admin:", "S3cret", "Pass9", "@db.internal:5432/app"), _j("S3cret", "Pass9"),
     "password")
_add("dsn-password", _j("host=db user=app pass", "word=", "hunter", "2dsn dbname=app"), _j("hunter", "2dsn"),
     "password")
_add("authorization", _j("Authori", "zation: token ", "abcdef0123", "456789xyz"), _j("abcdef0123", "456789xyz"),
     "authorization")

VALUES = {label: value for label, (value, _raw, _kind) in CORPUS.items()}


