"""SASL/PLAIN for the local broker (`easysched kafka-local start --sasl USER:PASS`).

With SASL on, the client listener is `SASL_PLAINTEXT` with the PLAIN mechanism, its users in the
listener's JAAS config (`listener.name.sasl_plaintext.plain.sasl.jaas.config`); the broker also
talks to itself over that listener (`inter.broker.listener.name`) as the same user. The KRaft
controller listener stays PLAINTEXT: it is bound to 127.0.0.1 and only the broker itself uses it.

The password lives in two files of the data directory, both mode 0600: `server.properties` (the
broker needs it) and `client-sasl.json`, the kafka-python settings a client points
`EASYSCHED_KAFKA_CONFIG` at. The state file and `kafka-local status` name the mechanism and the
user, never the password.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CLIENT_CONFIG_FILE", "LISTENER", "MECHANISM", "SaslUser", "client_settings", "parse_credentials",
           "public_state", "sasl_properties", "write_client_config"]

LISTENER = "SASL_PLAINTEXT"
MECHANISM = "PLAIN"
CLIENT_CONFIG_FILE = "client-sasl.json"

# The user name becomes the JAAS option `user_<name>`: a word for Kafka's JAAS tokenizer.
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class SaslUser:
    """One PLAIN user of the local broker."""

    username: str
    password: str

    def __repr__(self) -> str:  # never the password, not even in a traceback
        return f"SaslUser({self.username!r}, password=***)"


def parse_credentials(text: str) -> SaslUser:
    """`USER:PASS` as a SaslUser; ValueError with the reason when it cannot be used.

    The password is everything after the first colon. Quotes, backslashes and control characters
    are refused: they would have to be escaped inside the JAAS config's quoted strings.
    """
    user, sep, password = text.partition(":")
    if not sep:
        raise ValueError("--sasl wants USER:PASS (a colon between the user name and the password)")
    if not _USER.fullmatch(user):
        raise ValueError(f"the SASL user name {user!r} must be 1-64 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    if not password:
        raise ValueError("the SASL password is empty")
    if len(password) > 256:
        raise ValueError("the SASL password is longer than 256 characters")
    if any(c in '"\\' or not c.isprintable() for c in password):
        raise ValueError("the SASL password must not hold quotes, backslashes or control characters")
    return SaslUser(user, password)


def sasl_properties(user: SaslUser, port: int, controller_port: int) -> dict[str, str]:
    """The `server.properties` entries that put the client listener behind SASL/PLAIN."""
    listener = f"{LISTENER}://127.0.0.1:{port}"
    controller = f"CONTROLLER://127.0.0.1:{controller_port}"
    jaas = (f'org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="{user.username}" password="{user.password}" '
            f'user_{user.username}="{user.password}";')
    return {
        "listeners": f"{listener},{controller}",
        "advertised.listeners": f"{listener},{controller}",
        "inter.broker.listener.name": LISTENER,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{LISTENER}:{LISTENER}",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.{LISTENER.lower()}.{MECHANISM.lower()}.sasl.jaas.config": jaas,
    }


def client_settings(user: SaslUser) -> dict[str, Any]:
    """kafka-python settings of a client of this broker (what `EASYSCHED_KAFKA_CONFIG` carries)."""
    return {"security_protocol": LISTENER, "sasl_mechanism": MECHANISM,
            "sasl_plain_username": user.username, "sasl_plain_password": user.password}


def write_client_config(data_dir: Path, user: SaslUser | None) -> Path | None:
    """Write (or, without SASL, remove) `client-sasl.json` in `data_dir`, readable by its owner only."""
    path = data_dir / CLIENT_CONFIG_FILE
    if user is None:
        path.unlink(missing_ok=True)
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(client_settings(user), fh, indent=1)
    os.chmod(path, 0o600)  # an older file may have had other bits
    return path


def public_state(user: SaslUser | None, data_dir: Path) -> dict[str, Any] | None:
    """What the state file and `status` say about SASL: mechanism, user, client config; no password."""
    if user is None:
        return None
    return {"mechanism": MECHANISM, "listener": LISTENER, "username": user.username,
            "client_config": str(data_dir / CLIENT_CONFIG_FILE)}
