"""What each known sign-in failure means, and what the user does about it.

Google and the Microsoft identity platform answer a failed sign-in or token refresh with an
OAuth error code (RFC 6749 section 5.2: ``invalid_grant``, ``invalid_client``...) and, for
Microsoft, an ``AADSTSnnnnn`` code in the description. `explain` turns whatever text the
library gave us (an error dict, an exception's text) into one line for the user. Pure: a table
and a search, tested by a table (tests/test_signin.py). Each provider brings its table
(``SIGN_IN`` in its module).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    marker: str  # found (case-insensitively) in the error text
    what: str  # what happened, in the user's terms
    fix: str  # what to do; {auth} is the `mailbridge auth ACCOUNT` command


@dataclass(frozen=True)
class Service:
    """A sign-in service as a provider declares it: its name and its known failures, most
    specific first (the first marker found in the text wins)."""

    name: str  # "Google", as the user knows it
    failures: tuple[Failure, ...]


def known(service: Service, text: str) -> Failure | None:
    """The first failure of the service's table whose marker is in ``text``."""
    folded = text.casefold()
    for failure in service.failures:
        if failure.marker.casefold() in folded:
            return failure
    return None


def explain(service: Service, account: str, text: str) -> str:
    """One line: what went wrong and what to do. Unknown failures keep the service's words."""
    auth = f"`mailbridge auth {account}`"
    failure = known(service, text)
    if failure is None:
        detail = " ".join(text.split())[:300] or "no reason given"
        return f"account {account!r}: {service.name} sign-in failed ({detail}); run {auth}"
    return f"account {account!r}: {failure.what}; {failure.fix.format(auth=auth)}"
