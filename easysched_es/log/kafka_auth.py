"""Why a client could not talk to a broker that answers: SASL wanted, not offered, or refused.

A kafka-python client without credentials on a SASL listener sees only closed connections (the
broker drops a connection whose first request is not a SASL handshake) and then times out as if
the broker were down. On that failure path we ask the broker directly: one SaslHandshake request
(api key 17, v1) on a fresh socket. A SASL listener answers with the mechanisms it enables; a
PLAINTEXT listener answers ILLEGAL_SASL_STATE with none. With PLAIN credentials we also
authenticate once (SaslAuthenticate, api key 36), so a wrong password is named as such.
That tells a person what to fix.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["auth_problem", "sasl_mechanisms"]

_SASL_HANDSHAKE, _SASL_AUTHENTICATE = 17, 36
_NONE, _UNSUPPORTED_MECHANISM = 0, 33
_SECURITY_HELP = ("set EASYSCHED_KAFKA_CONFIG to a file with security_protocol, sasl_mechanism, "
                  "sasl_plain_username and sasl_plain_password (README: Security settings)")


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _ask(sock: socket.socket, api_key: int, version: int, correlation: int, body: bytes) -> bytes:
    """Send one request (header v1, client id "easysched"); the response body after its correlation id."""
    request = struct.pack(">hhih", api_key, version, correlation, 9) + b"easysched" + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", _recv(sock, 4))
    answer = _recv(sock, min(size, 1 << 16))
    if struct.unpack_from(">i", answer)[0] != correlation:
        raise ValueError("not a Kafka answer")
    return answer[4:]


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _handshake(sock: socket.socket, mechanism: str) -> tuple[int, list[str]]:
    answer = _ask(sock, _SASL_HANDSHAKE, 1, 1, _string(mechanism))
    error, count = struct.unpack_from(">hi", answer)
    mechanisms, pos = [], 6
    for _ in range(max(count, 0)):
        (length,) = struct.unpack_from(">h", answer, pos)
        mechanisms.append(answer[pos + 2:pos + 2 + length].decode("utf-8", "replace"))
        pos += 2 + length
    return error, mechanisms


def _plain_refusal(sock: socket.socket, username: str, password: str) -> str | None:
    """After a PLAIN handshake: authenticate (SaslAuthenticate v0); the broker's refusal, else None."""
    token = b"\0" + username.encode() + b"\0" + password.encode()
    answer = _ask(sock, _SASL_AUTHENTICATE, 0, 2, struct.pack(">i", len(token)) + token)
    error, length = struct.unpack_from(">hh", answer)
    if error == _NONE:
        return None
    message = answer[4:4 + length].decode("utf-8", "replace") if length > 0 else ""
    return message or f"error code {error}"


def _probe(address: str, timeout: float, user: tuple[str, str] | None) -> tuple[list[str], str | None] | None:
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout) as sock:
            error, mechanisms = _handshake(sock, "PLAIN")
            if error not in (_NONE, _UNSUPPORTED_MECHANISM):
                return [], None  # ILLEGAL_SASL_STATE: a listener without SASL
            refusal = _plain_refusal(sock, *user) if user is not None and error == _NONE else None
            return mechanisms, refusal
    except (OSError, ValueError, struct.error):
        return None


def sasl_mechanisms(address: str, timeout: float = 2.0) -> list[str] | None:
    """The SASL mechanisms the listener at `host:port` enables; [] if it is not a SASL listener.

    None when it cannot be asked (unreachable, silent, not Kafka).
    """
    found = _probe(address, timeout, None)
    return None if found is None else found[0]


def auth_problem(bootstrap: str, client: Mapping[str, Any], timeout: float = 2.0) -> str | None:
    """One line naming a security mismatch between this client and the broker, or None.

    Called only after a failure, so the extra round trip costs nothing on the good path.
    """
    address = bootstrap.split(",")[0]
    mechanism = str(client.get("sasl_mechanism", "PLAIN")).upper()
    user = None
    if mechanism == "PLAIN" and client.get("sasl_plain_username") is not None:
        user = (str(client["sasl_plain_username"]), str(client.get("sasl_plain_password") or ""))
    found = _probe(address, timeout, user)
    if found is None:
        return None
    mechanisms, refusal = found
    protocol = str(client.get("security_protocol", "PLAINTEXT")).upper()
    wants_sasl = protocol.startswith("SASL")
    if mechanisms and not wants_sasl:
        return (f"Kafka at {address} wants SASL authentication ({', '.join(mechanisms)}) and this client "
                f"has no credentials: {_SECURITY_HELP}")
    if not mechanisms and wants_sasl:
        return (f"Kafka at {address} does not take SASL (a PLAINTEXT listener) but this client's settings "
                f"ask for security_protocol={protocol}: check EASYSCHED_KAFKA_CONFIG and the address")
    if mechanisms and mechanism not in mechanisms:
        return (f"Kafka at {address} takes SASL {', '.join(mechanisms)}, not sasl_mechanism={mechanism}: "
                "check EASYSCHED_KAFKA_CONFIG")
    if refusal is not None and user is not None:
        return (f"Kafka at {address} refused the credentials of user {user[0]} ({refusal}): "
                "check sasl_plain_username and sasl_plain_password in EASYSCHED_KAFKA_CONFIG")
    return None
