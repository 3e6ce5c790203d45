"""Kong's own rules for the names kongsplit puts in Admin API paths. Pure.

A Rollout's annotations (and the config's ``kong.workspace``) name an upstream and a workspace;
both end up as path segments of Admin API requests (``/{workspace}/upstreams/{upstream}/...``).
They are checked here exactly as Kong 3.9.3 checks them, so kongsplit never sends Kong a name
Kong itself would refuse, and never a name that is not one path segment. The references are to
Kong's source (docs/kong.md "Upstream names", "Workspace names"):

- upstream names: ``validate_name`` in ``kong/db/schema/entities/upstreams.lua``, which is
  ``normalize_ip`` (``hostname_type``, ``normalize_ipv4``, ``normalize_ipv6``,
  ``check_hostname``) in ``kong/tools/ip.lua``: a host name, no IP address, no port;
- workspace names: ``typedefs.utf8_name`` (``validate_utf8_name`` in
  ``kong/db/schema/typedefs.lua``) with ``not_one_of = CORE_ENTITIES``
  (``kong/db/schema/entities/workspaces.lua``, ``kong/constants.lua``).

Kong sets no length limit on either; kongsplit refuses anything longer than ``MAX_NAME_BYTES``
(a DNS name's limit) before it is checked, cached or quoted in a message.
"""

from __future__ import annotations

import re

#: The longest upstream or workspace name kongsplit accepts, in bytes of UTF-8 (the longest DNS
#: name, RFC 1035). Kong has no limit; a name this long is already a mistake.
MAX_NAME_BYTES = 253

#: ``CORE_ENTITIES`` in ``kong/constants.lua``: a workspace may not be named as one.
CORE_ENTITIES = (
    "workspaces",
    "consumers",
    "certificates",
    "services",
    "routes",
    "snis",
    "upstreams",
    "targets",
    "plugins",
    "tags",
    "ca_certificates",
    "clustering_data_planes",
    "parameters",
    "vaults",
    "key_sets",
    "keys",
    "filter_chains",
)

# Lua's %d, %a and %w are ASCII in the C locale OpenResty runs with; each pattern is used with
# fullmatch (Lua's "$" is the very end, Python's "$" also matches before a final newline).
_IPV4_SHAPE = re.compile(r"[0-9.]+")  # hostname_type: "^[%d%.]+$" once colons are removed
_IPV4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})(?::([0-9]+))?")
_HOSTNAME_CHARS = re.compile(r"[0-9A-Za-z.\-_]+")  # check_hostname: "^[%d%a%-%.%_]+$"
_PORT_SUFFIX = re.compile(r":([0-9]+)\Z")  # check_hostname: ":(%d+)$"
_HEX_GROUP = re.compile(r"[0-9A-Fa-f]{1,4}")
# validate_utf8_name: "^[%w%.%-%_~\128-\244]+$" over the UTF-8 bytes; every byte of a valid
# UTF-8 encoding of a non-ASCII character lies in 128..244, so: ASCII alnum . - _ ~ or non-ASCII.
_UTF8_NAME = re.compile(r"[0-9A-Za-z.\-_~\u0080-\U0010FFFF]+")


def _penlight_split(text: str, sep: str) -> list[str]:
    """Penlight 1.14's ``stringx.split(s, sep)`` (Kong's ``kong.tools.string.split``): a
    trailing separator adds one empty part, and ``""`` or a lone separator gives one ``""``."""
    parts = text.split(sep)
    if parts[-1] == "":
        parts.pop()  # utils.split drops an empty last part ...
    if parts == [""]:
        parts = []  # ... and a single empty part means none
    if text.endswith(sep):
        parts.append("")  # stringx.split adds it back when the string ends with the separator
    return parts


def _ipv6_valid(text: str) -> bool:
    """``normalize_ipv6`` in kong/tools/ip.lua: does it return an address?"""
    m = re.fullmatch(r"(\[[^\]]*\])(.*)", text, re.DOTALL)
    if m:
        check, rest = m.group(1)[1:-1], m.group(2)
        if rest:
            port = re.fullmatch(r":([0-9]*)", rest)
            if port is None or not port.group(1) or int(port.group(1)) > 65535:
                return False
    else:
        check = text
    if check.startswith(":"):
        check = "0" + check
    if check.endswith(":"):
        check = check + "0"
    if "::" in check:
        count = check.count(":")
        check = check.replace("::", ":" + "0:" * (8 - count), 1)
    groups = check.split(":")
    return len(groups) == 8 and all(_HEX_GROUP.fullmatch(g) for g in groups)


def upstream_name_problem(name: str) -> str | None:
    """Why Kong refuses ``name`` as an upstream name, in Kong's words; None when it accepts it.

    ``validate_name`` (kong/db/schema/entities/upstreams.lua) over ``normalize_ip``
    (kong/tools/ip.lua): the kind is decided by ``hostname_type`` (more than one colon: IPv6;
    only digits and dots once colons are removed: IPv4; else a name), then that kind's parser
    must accept it, and it must be a name without a port.
    """
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    colons = name.count(":")
    if colons > 1:  # hostname_type → "ipv6"
        if _ipv6_valid(name):
            return "no ip addresses allowed"
        return "must be a valid hostname"
    if _IPV4_SHAPE.fullmatch(name.replace(":", "")):  # hostname_type → "ipv4"
        m = _IPV4.fullmatch(name)
        if m and all(int(octet) <= 255 for octet in m.groups()[:4]):
            if m.group(5) is not None and int(m.group(5)) > 65535:
                return "must be a valid hostname"
            return "no ip addresses allowed"
        return "must be a valid hostname"
    # check_hostname
    host, port = name, None
    suffix = _PORT_SUFFIX.search(name)
    if suffix:
        host, port = name[: suffix.start()], int(suffix.group(1))
        if port > 65535:
            return "must be a valid hostname"
    if not _HOSTNAME_CHARS.fullmatch(host):
        return "must be a valid hostname"
    segments = _penlight_split(host, ".")
    for index, segment in enumerate(segments, 1):
        if segment.endswith("-") or (segment == "" and index != len(segments)):
            return "must be a valid hostname"
    if port is not None:
        return "no port allowed"
    return None


def workspace_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a workspace kongsplit addresses, or None.

    Kong's rule (``validate_utf8_name`` in kong/db/schema/typedefs.lua, ``not_one_of``
    ``CORE_ENTITIES`` in kong/db/schema/entities/workspaces.lua): valid UTF-8, and only ASCII
    letters, digits, ``.``, ``-``, ``_``, ``~`` or non-ASCII characters. kongsplit adds one
    rule Kong's schema does not need: ``.`` and ``..`` are refused, since a URL path cannot
    carry them as a segment (RFC 3986 §5.2.4 removes dot segments: ``/../upstreams`` is the
    default workspace's ``/upstreams``).
    """
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "not valid UTF-8"
    if size > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    if not _UTF8_NAME.fullmatch(name):
        return "the only accepted ASCII characters are letters, digits, '.', '-', '_' and '~'"
    if name in (".", ".."):
        return "'.' and '..' cannot be a path segment of a URL"
    if name in CORE_ENTITIES:
        return f"'{name}' is the name of a Kong entity collection"
    return None
