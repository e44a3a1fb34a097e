"""Telling the candidate: drafts ready, follow-up retracted, reminder.

One notice per interview (the engine groups them). Channels per account: desktop, an ntfy
topic, a JSON webhook. A failure to notify is logged and never blocks drafting.
"""

from __future__ import annotations

import logging

import requests

from mailbridge.engine import Notice
from mailbridge.settings import AccountSettings

log = logging.getLogger("mailbridge")
TIMEOUT = 10


def send(account: AccountSettings, notices: list[Notice]) -> None:
    for notice in notices:
        log.info("%s: notice: %s", account.name, notice.text)
        for channel in account.notify.channels:
            try:
                _CHANNELS[channel](account, notice)
            except Exception as exc:  # noqa: BLE001 - notifying never blocks drafting
                log.warning("%s: %s notification failed: %s", account.name, channel, exc)


def _ntfy(account: AccountSettings, notice: Notice) -> None:
    if not account.notify.ntfy_url:
        raise ValueError("notify.ntfy_url is not set")
    requests.post(
        account.notify.ntfy_url,
        data=notice.text.encode("utf-8"),
        headers={"Title": "mailbridge", "Tags": "envelope"},
        timeout=TIMEOUT,
    ).raise_for_status()


def _webhook(account: AccountSettings, notice: Notice) -> None:
    if not account.notify.webhook_url:
        raise ValueError("notify.webhook_url is not set")
    requests.post(
        account.notify.webhook_url,
        json={"account": account.name, "interview": notice.interview_id,
              "kind": notice.kind, "text": notice.text},
        timeout=TIMEOUT,
    ).raise_for_status()


def _desktop(account: AccountSettings, notice: Notice) -> None:
    raise RuntimeError("desktop notifications are not available in this build")


_CHANNELS = {"ntfy": _ntfy, "webhook": _webhook, "desktop": _desktop}
