"""What "a target" means, once: Kong's target strings, kongsplit's ownership tags, and the
``DesiredTarget`` one Rollout wants in its upstream (pure: no I/O, no aiohttp).

Kong normalises a target before storing it and looks targets up by *exact* string
(docs/kong.md "Target strings", kong/db/dao/targets.lua format_target), so kongsplit must compute
the same string Kong will show,
or it would create duplicates (409) and never match what it reads back:

- a missing port becomes ``:8000``;
- IPv4 is re-printed as plain dotted decimal (``010.0.0.1`` → ``10.0.0.1``);
- IPv6 is bracketed, fully expanded, zero-padded and lower-case
  (``[::1]:80`` → ``[0000:0000:0000:0000:0000:0000:0000:0001]:80``);
- a hostname keeps its case.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_PORT = 8000

#: Every target (and upstream) kongsplit creates carries this tag.
MANAGED_TAG = "managed-by-kongsplit"
#: ``kongsplit-rollout:<namespace>.<name>`` names the Rollout a target belongs to.
ROLLOUT_TAG_PREFIX = "kongsplit-rollout:"

_IPV4_SHAPE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_HOST_CHARS = re.compile(r"^[A-Za-z0-9._-]+$")
_PORT = re.compile(r"^\d{1,5}$")


def _port(text: str, original: str) -> int:
    if not _PORT.match(text) or int(text) > 65535:
        raise ValueError(f"invalid target {original!r}: port must be a number from 0 to 65535")
    return int(text)


def _ipv4(text: str, original: str) -> str:
    octets = [int(part) for part in text.split(".")]
    if any(o > 255 for o in octets):
        raise ValueError(f"invalid target {original!r}: not a valid IPv4 address")
    return ".".join(str(o) for o in octets)


def _ipv6(text: str, original: str) -> str:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"invalid target {original!r}: not a valid IPv6 address") from None
    return f"[{address.exploded}]"


def _hostname(text: str, original: str) -> str:
    labels = text[:-1].split(".") if text.endswith(".") else text.split(".")
    if (
        not text
        or not _HOST_CHARS.match(text)
        or any(not label or label.endswith("-") for label in labels)
    ):
        raise ValueError(f"invalid target {original!r}: not a valid hostname or IP address")
    return text


# No memo: 2.4 µs a call, and a cache of every target would either grow with the cluster or,
# bounded, miss on every call once there are more targets than entries (bench/scale.py).
def normalize_target(s: str) -> str:
    """The string Kong stores for target ``s`` ("host[:port]").

    Raises ValueError (naming the target) where Kong would refuse it.
    """
    text = s.strip()
    if text.startswith("["):
        # [v6] or [v6]:port — brackets are required when a port is given.
        m = re.match(r"^\[([^\]]*)\](?::(.*))?$", text)
        if not m:
            raise ValueError(f"invalid target {s!r}: unbalanced brackets")
        host = _ipv6(m.group(1), s)
        port = _port(m.group(2), s) if m.group(2) is not None else DEFAULT_PORT
        return f"{host}:{port}"
    if text.count(":") > 1:  # a bare IPv6 address cannot carry a port
        return f"{_ipv6(text, s)}:{DEFAULT_PORT}"
    host_text, sep, port_text = text.partition(":")
    port = _port(port_text, s) if sep else DEFAULT_PORT
    if _IPV4_SHAPE.match(host_text):
        return f"{_ipv4(host_text, s)}:{port}"
    return f"{_hostname(host_text, s)}:{port}"


def rollout_tag(namespace: str, name: str) -> str:
    """The owner tag of one Rollout: ``kongsplit-rollout:<namespace>.<name>``."""
    return f"{ROLLOUT_TAG_PREFIX}{namespace}.{name}"


def owner_tags_for(namespace: str, name: str) -> tuple[str, str]:
    """The tags kongsplit puts on the targets of one Rollout."""
    return (MANAGED_TAG, rollout_tag(namespace, name))


def rollout_of(tags: Iterable[str] | None) -> tuple[str, str] | None:
    """``(namespace, name)`` from a target's tags, or None when no Rollout tag is present.

    Namespaces are DNS labels (no dots) while Rollout names may contain dots, so the first dot
    separates them.
    """
    for tag in tags or ():
        if tag.startswith(ROLLOUT_TAG_PREFIX):
            namespace, dot, name = tag[len(ROLLOUT_TAG_PREFIX) :].partition(".")
            if dot and namespace and name:
                return namespace, name
    return None


def owner_label(tags: Iterable[str] | None) -> str:
    """A target's owner as ``inspect`` shows it.

    ``kongsplit:<ns>/<name>`` for a Rollout's target, ``kongsplit`` when only managed-tagged,
    else ``foreign``.
    """
    tag_list = list(tags or ())
    owner = rollout_of(tag_list)
    if owner is not None:
        return f"kongsplit:{owner[0]}/{owner[1]}"
    return "kongsplit" if MANAGED_TAG in tag_list else "foreign"


ROLE_STABLE = "stable"
ROLE_CANARY = "canary"
ROLE_EXPERIMENT = "experiment"


@dataclass(frozen=True, slots=True)
class DesiredTarget:
    """A target one Rollout wants in its upstream, ``target`` normalised the Kong way."""

    target: str  # e.g. "10.96.0.12:80"
    weight: int  # 0..65535
    role: str = ROLE_STABLE  # ROLE_STABLE | ROLE_CANARY | ROLE_EXPERIMENT
    service: str = ""  # the Kubernetes Service it stands for ("" when not known)
    # The Service has no clusterIP yet (a manifest not applied): ``target`` is a placeholder,
    # "<clusterIP of ns/name>:port", that only the offline plan shows and nothing writes.
    address_pending: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.weight <= 65535:
            raise ValueError(f"target {self.target}: weight {self.weight} is outside 0..65535")


@dataclass(frozen=True, slots=True)
class DesiredUpstream:
    """Everything one Rollout wants in Kong: its upstream (and workspace) and the targets."""

    upstream: str
    workspace: str | None
    targets: tuple[DesiredTarget, ...]

    def weights(self) -> dict[str, int]:
        return {t.target: t.weight for t in self.targets}


def pending_target(namespace: str, service: str, port: int) -> str:
    """The placeholder target of a Service whose clusterIP the cluster has not allocated yet."""
    return f"<clusterIP of {namespace}/{service}>:{port}"
