"""Credentials out of libvirt URIs, for messages and logs (pure: text in, text out).

A libvirt URI may carry a password in its userinfo
(``qemu+ssh://user:secret@host/system``) or in its query
(``qemu+tcp://host/system?password=secret``). :func:`redact_uri` masks exactly
those parts and keeps everything else as written, so an operator still sees which
connection failed. It takes any text, a malformed URI included, and never raises:
the URI is split by hand, not by ``urllib`` (which refuses an unclosed ``[`` and
rewrites ``qemu:///system`` as ``qemu:/system``).

Where a hand-typed URI is ambiguous (an ``@``, ``?`` or ``&`` inside an
unencoded password), more is masked rather than less.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote

MASK: Final = "***"
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

# The query parameters libvirt documents (docs/uri.rst) and that hold no secret:
# their values stay visible. Any other parameter's value is masked.
PLAIN_PARAMS: Final = frozenset({
    "name", "command", "socket", "netcat", "keyfile", "no_verify", "no_tty", "pkipath",
    "known_hosts", "known_hosts_verify", "sshauth", "tls_priority", "mode", "proxy", "root",
})  # fmt: skip


def redact_uri(uri: str) -> str:
    """``uri`` with its userinfo password and secret query values as ``***``."""
    shown, start = [], 0
    for begin, end in _secret_spans(uri):
        shown += [uri[start:begin], MASK]
        start = end
    shown.append(uri[start:])
    return "".join(shown)


def uri_secrets(uri: str) -> tuple[str, ...]:
    """The secrets :func:`redact_uri` masks, as written and percent-decoded."""
    found = {uri[begin:end] for begin, end in _secret_spans(uri)}
    found |= {unquote(secret) for secret in found}
    return tuple(sorted(found, key=len, reverse=True))


def redact_text(text: str, uri: str) -> str:
    """``text`` (a libvirt message, say) with ``uri`` shown redacted and each of its
    secrets masked wherever it stands alone (not inside a longer word)."""
    if not uri:
        return text
    text = text.replace(uri, redact_uri(uri))
    for secret in uri_secrets(uri):
        if secret:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", MASK, text)
    return text


def _secret_spans(uri: str) -> list[tuple[int, int]]:
    """Where the secrets are in ``uri``: sorted, merged ``(begin, end)`` index pairs."""
    spans = [span for span in (_password_span(uri), *_query_spans(uri)) if span]
    merged: list[tuple[int, int]] = []
    for begin, end in sorted(spans):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((begin, end))
    return merged


def _password_span(uri: str) -> tuple[int, int] | None:
    """The password: after the first ``:`` of the userinfo, up to the last ``@``.

    The userinfo starts after the scheme's ``://`` (at the start without one) and
    ends at the last ``@`` of the whole URI, so that no ``@``, ``/`` or ``?`` in a
    password typed unencoded can end it early."""
    scheme = _SCHEME_RE.match(uri)
    start = scheme.end() if scheme else 0
    at = uri.rfind("@", start)
    colon = uri.find(":", start, at) if at > start else -1
    if colon < 0 or colon + 1 == at:
        return None
    return colon + 1, at


def _query_spans(uri: str) -> list[tuple[int, int]]:
    """The values of the query's parameters that are not :data:`PLAIN_PARAMS`
    (a parameter without ``=`` is masked whole unless it is one of them). The query
    runs from the first ``?`` to the end: a ``#`` in a value does not end it."""
    question = uri.find("?")
    if question < 0:
        return []
    spans = []
    position = question + 1
    for param in uri[question + 1 :].split("&"):
        key, equals, value = param.partition("=")
        if unquote(key).strip().lower() not in PLAIN_PARAMS:
            begin = position + len(key) + len(equals) if equals else position
            if value or not equals:
                spans.append((begin, position + len(param)))
        position += len(param) + 1
    return [(begin, end) for begin, end in spans if end > begin]
