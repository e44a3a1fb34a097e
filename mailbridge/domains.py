"""Facts about addresses and domains: the user's own address, registrable domain, free mail,
robots, lists, ATS, loopback hosts.

Pure and offline: the public suffix list comes bundled with `publicsuffixlist`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache

from publicsuffixlist import PublicSuffixList

# Personal mailbox providers. An interviewer is written to at their work address only, and a
# reply from one of these domains never matches an employer as a whole domain.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    """
    gmail.com googlemail.com outlook.com hotmail.com hotmail.co.uk live.com msn.com
    yahoo.com yahoo.co.uk yahoo.fr yahoo.de yahoo.co.in yahoo.co.jp ymail.com rocketmail.com
    aol.com icloud.com me.com mac.com proton.me protonmail.com protonmail.ch pm.me
    gmx.com gmx.de gmx.net gmx.at web.de mail.com zoho.com zohomail.com yandex.ru yandex.com
    mail.ru fastmail.com fastmail.fm hey.com tutanota.com tuta.io qq.com 163.com 126.com
    comcast.net verizon.net att.net sbcglobal.net btinternet.com orange.fr free.fr laposte.net
    libero.it t-online.de seznam.cz naver.com hanmail.net rediffmail.com
    """.split()
)

# Applicant-tracking and scheduling systems: they send invitations and relay recruiters' mail.
ATS_DOMAINS: frozenset[str] = frozenset(
    """
    greenhouse.io greenhouse-mail.io lever.co hire.lever.co ashbyhq.com workday.com
    myworkday.com smartrecruiters.com icims.com jobvite.com goodtime.io gem.com modernloop.io
    prelude.co bamboohr.com recruitee.com workable.com teamtailor.com personio.de personio.com
    calendly.com breezy.hr jazzhr.com applytojob.com successfactors.com taleo.net
    paradox.ai hirevue.com codility.com hackerrank.com coderpad.io karat.com
    """.split()
)

# Local parts that are machines, not people.
_ROBOT_LOCAL = re.compile(
    r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|donotreply|notifications?|notify|"
    r"calendar([-_.]notification)?|mailer[-_.]daemon|postmaster|bounces?|scheduler|scheduling|"
    r"invites?|invitations?|automated|auto[-_.]?confirm|system|daemon)([-+_.].*)?$",
    re.IGNORECASE,
)

# Local parts of shared inboxes and distribution lists.
_GROUP_LOCAL = re.compile(
    r"^(team|jobs|careers|recruiting|recruitment|talent|hr|hiring|people|all|everyone|staff|"
    r"info|hello|contact|admin|office|interviews?|talent[-_.]acquisition)([-+_.].*)?$",
    re.IGNORECASE,
)

# Calendar resources (rooms, equipment) by their address.
_RESOURCE = re.compile(
    r"(@resource\.calendar\.google\.com$|@group\.calendar\.google\.com$|^(room|conf|rm)[-_.])",
    re.IGNORECASE,
)


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def domain_of(address: str) -> str:
    """The domain part of an address, lower-cased; "" when there is none."""
    _, at, domain = address.strip().rpartition("@")
    return domain.lower().rstrip(".") if at else ""


def local_part(address: str) -> str:
    local, at, _ = address.strip().rpartition("@")
    return local if at else address.strip()


@lru_cache(maxsize=4096)
def registrable_domain(address_or_domain: str) -> str:
    """The registrable domain ("eTLD+1"): jane@mail.acme.co.uk -> acme.co.uk."""
    domain = domain_of(address_or_domain) if "@" in address_or_domain else address_or_domain
    domain = domain.lower().strip().rstrip(".")
    if not domain:
        return ""
    return _psl().privatesuffix(domain) or domain


def is_free_mail(address_or_domain: str) -> bool:
    domain = domain_of(address_or_domain) if "@" in address_or_domain else address_or_domain
    domain = domain.lower()
    return domain in FREE_MAIL_DOMAINS or registrable_domain(domain) in FREE_MAIL_DOMAINS


def is_ats(address_or_domain: str) -> bool:
    domain = domain_of(address_or_domain) if "@" in address_or_domain else address_or_domain
    return registrable_domain(domain) in ATS_DOMAINS or domain.lower() in ATS_DOMAINS


def is_robot(address: str) -> bool:
    return bool(_ROBOT_LOCAL.match(local_part(address)))


def is_group(address: str) -> bool:
    return bool(_GROUP_LOCAL.match(local_part(address)))


def is_resource(address: str) -> bool:
    return bool(_RESOURCE.search(address.strip()))


def same_organisation(address: str, domains: tuple[str, ...] | list[str]) -> bool:
    """Whether ``address`` belongs to one of ``domains`` (compared as registrable domains)."""
    own = registrable_domain(address)
    return bool(own) and any(registrable_domain(d) == own for d in domains)


def address_key(address: str) -> str:
    """An address as compared to tell who it is: without angle brackets or spaces, lower-cased,
    without a +tag ("Me+Jobs@Example.com" and "me@example.com" are the same mailbox); ""
    when there is no address."""
    address = address.strip().strip("<>").strip().lower()
    local, at, domain = address.rpartition("@")
    if not at:
        return address
    return f"{local.split('+', 1)[0] or local}@{domain.rstrip('.')}"


def own_keys(own_addresses: Iterable[str]) -> frozenset[str]:
    """The keys of the user's addresses (the account's address and its aliases)."""
    return frozenset(key for key in (address_key(a) for a in own_addresses) if key)


def is_own_address(address: str, own_addresses: Iterable[str]) -> bool:
    """Whether ``address`` is one of the user's own (aliases, +tags and case included)."""
    key = address_key(address)
    return bool(key) and key in own_keys(own_addresses)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine: localhost and any name under .localhost (RFC 6761),
    and every loopback address (127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6)."""
    host = host.strip().strip("[]").lower().rstrip(".")
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        found = ipaddress.ip_address(host.split("%", 1)[0])  # fe80::1%eth0: drop the zone
    except ValueError:
        return False
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped.is_loopback
    return found.is_loopback
