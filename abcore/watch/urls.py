"""Where a webhook may point: the checks that keep the watcher from reaching internal services.

A webhook URL is an ``http://`` or ``https://`` URL of at most 2000 characters, without spaces or
control characters (CR/LF), without user info (``user:password@``), with a port from 1 to 65535 and a
host that is a name or an IP address written canonically (``127.1``, ``0x7f000001``, ``2130706433`` and
``0177.0.0.1`` are refused). Its address must be public: loopback, private, link-local, unspecified,
multicast, reserved and other non-global addresses are refused (also as IPv4-mapped IPv6 addresses),
unless ``$ABCORE_WEBHOOK_ALLOW`` (:class:`UrlPolicy`) lists the host name or a network holding the address.

:func:`check_webhook_url` runs these checks when a webhook is added; a host name is resolved and every
address it resolves to must pass. When the watcher sends, :func:`checked_addresses` resolves the host
again and the connection goes to one of the addresses it checked (a name that changed its answer in
between cannot lead elsewhere).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, urlsplit

from abcore.config import HOST_NAME, redact_url
from abcore.experiments.errors import ExperimentError

__all__ = ["MAX_URL_LENGTH", "UrlPolicy", "address_problem", "check_webhook_url", "checked_addresses",
           "origin", "parse_webhook_url", "resolve_host"]

MAX_URL_LENGTH = 2000
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class UrlPolicy:
    """The allow-list (``$ABCORE_WEBHOOK_ALLOW``): host names and IP networks (as text) a webhook may
    reach although their addresses are not public."""

    allow: tuple[str, ...] = ()
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(init=False, repr=False)
    _names: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        networks, names = [], set()
        for entry in self.allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry.lower().rstrip("."))
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_names", frozenset(names))

    def allows_name(self, host: str) -> bool:
        """True when the host name itself is on the allow-list (any address it resolves to is accepted)."""
        return host.lower().rstrip(".") in self._names

    def allows_address(self, address: IPAddress) -> bool:
        """True when a network on the allow-list holds ``address``."""
        return any(address.version == net.version and address in net for net in self._networks)


def address_problem(address: IPAddress) -> str:
    """Why the watcher must not post to ``address`` (``"loopback"``, ``"private"``, ...), "" when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_problem(address.ipv4_mapped)
    for problem, hit in (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
                         ("link-local", address.is_link_local), ("multicast", address.is_multicast),
                         ("private", address.is_private), ("reserved", address.is_reserved)):
        if hit:
            return problem
    return "" if address.is_global else "not public"


def parse_webhook_url(url: str) -> SplitResult:
    """The parts of a well-formed webhook URL; :class:`ExperimentError` saying what is wrong otherwise
    (scheme, length, spaces or control characters, user info, port, a non-canonical numeric host)."""
    if not isinstance(url, str) or not url:
        raise ExperimentError("A webhook needs an http:// or https:// URL.")
    shown = redact_url(url)
    if len(url) > MAX_URL_LENGTH:
        raise ExperimentError(f"A webhook URL has at most {MAX_URL_LENGTH} characters; {shown} has {len(url)}.")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ExperimentError("A webhook URL must not contain spaces, line breaks or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ExperimentError(f"The webhook URL {shown} has an invalid host or port (ports are 1 to 65535).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ExperimentError(f"A webhook needs an http:// or https:// URL with a host; got {shown}.")
    if "@" in parts.netloc:
        raise ExperimentError("A webhook URL must not carry a user name or password before its host (user@host).")
    if port == 0:
        raise ExperimentError(f"The webhook URL {shown} has port 0; ports are 1 to 65535.")
    literal_address(parts.hostname)  # refuses a malformed or non-canonical numeric host
    return parts


def literal_address(host: str) -> IPAddress | None:
    """The IP address a host written as an address stands for; None for a host name.

    Raises :class:`ExperimentError` for an address written in a non-canonical form (``127.1``, ``0x7f000001``,
    ``2130706433``, ``0177.0.0.1``, a trailing dot) and for a host that is not a valid name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise ExperimentError(f"The webhook host [{host}] is not a valid IPv6 address.") from None
    labels = host.rstrip(".").split(".")
    if all(_NUMERIC_LABEL.match(label) for label in labels):
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            address = None
        if address is None or str(address) != host:
            raise ExperimentError(f"The webhook host {host} is a numeric address in a non-canonical form; "
                                  "write an IPv4 address as four decimal numbers (203.0.113.7).")
        return address
    if not HOST_NAME.match(host):
        raise ExperimentError(f"The webhook host {host!r} is not a valid host name (letters, digits, '-', '.'; "
                              "write an international name in its xn-- form).")
    return None


def resolve_host(host: str, port: int, timeout: float) -> list[str]:
    """The addresses ``host`` resolves to (the system resolver), waiting at most ``timeout`` seconds.

    Raises OSError (``socket.gaierror``, or TimeoutError when the resolver is slower than ``timeout``)."""
    result: dict[str, Any] = {}

    def lookup() -> None:
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            result["error"] = exc

    worker = threading.Thread(target=lookup, name="abcore-webhook-resolve", daemon=True)
    worker.start()
    worker.join(max(timeout, 0.0))
    if "error" in result:
        raise result["error"]
    if "infos" not in result:
        raise TimeoutError(f"name lookup of {host} took more than {timeout:g} s")
    return list(dict.fromkeys(str(info[4][0]) for info in result["infos"]))


def _refuse(host: str, address: IPAddress, problem: str) -> ExperimentError:
    what = host if host == str(address) else f"{host} ({address})"
    return ExperimentError(f"The webhook host {what} is a {problem} address: the watcher does not post to "
                           "internal addresses unless $ABCORE_WEBHOOK_ALLOW lists them.")


def checked_addresses(host: str, port: int, policy: UrlPolicy, *, timeout: float) -> list[str]:
    """The addresses the watcher may connect to for ``host``: every address it resolves to, each public or
    allowed by ``policy`` (any address for a host name on the allow-list).

    :class:`ExperimentError` when any one of them is not (a name resolving to a public and a private
    address is refused as a whole); OSError when the name does not resolve."""
    literal = literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve_host(host, port, timeout)]
        if not addresses:
            raise socket.gaierror(f"{host} resolves to no address")
    if literal is None and policy.allows_name(host):
        return [str(a) for a in addresses]
    for address in addresses:
        problem = address_problem(address)
        if problem and not policy.allows_address(address):
            raise _refuse(host, address, problem)
    return [str(a) for a in addresses]


def check_webhook_url(url: str, policy: UrlPolicy, *, timeout: float = 5.0) -> str:
    """Check a webhook URL before it is stored: well-formed (:func:`parse_webhook_url`) and, unless allowed,
    not pointing at an internal address (a host name: every address it resolves to now). Returns the URL.

    A name that does not resolve now is accepted: it is checked again each time the watcher sends."""
    parts = parse_webhook_url(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with contextlib.suppress(OSError):  # unresolvable now: the check at send time decides
        checked_addresses(str(parts.hostname), port, policy, timeout=timeout)
    return url


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, the port made explicit: two URLs with the same origin are the same
    receiver."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, (parts.hostname or "").rstrip("."), port
