"""A third-party mailbox for the test that a provider is one module plus one entry point.

Drafts are JSON files in a folder. Its settings table is ``notebook = { folder = "..." }``; it
knows nothing of mailbridge's other providers, and mailbridge knows nothing of it but the
entry point ``mailbox.notebook`` (see test_provider_contract.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Self

from mailbridge.adapters import Mailbox, ProviderConfig, ProviderError
from mailbridge.compose import read_draft
from mailbridge.config import FORBID, LocalPath, Text, doc
from mailbridge.model import (
    DraftMessage,
    Located,
    MessageBatch,
    Observation,
    Place,
    Presence,
    SentHint,
)
from mailbridge.settings import AccountSettings


@dataclass(frozen=True)
class NotebookSettings:
    __pydantic_config__ = FORBID
    folder: Annotated[LocalPath, doc("where the drafts are kept", "~/notebook")]
    label: Annotated[Text, doc("written into every stored draft", "job hunt")] = "drafts"


class Notebook(Mailbox):
    config = ProviderConfig(table="notebook", settings=NotebookSettings,
                            used_by=("mailbox.notebook",), starter_calendar="file")

    @classmethod
    def open(cls, account: AccountSettings) -> Self:
        own = account.settings_of(NotebookSettings)
        if own is None:
            raise ProviderError(f"account {account.name!r}: notebook settings are missing")
        return cls(own)

    @classmethod
    def problems(cls, account: AccountSettings) -> list[str]:
        own = account.settings_of(NotebookSettings)
        if own and not Path(own.folder).is_dir():
            return [f"notebook.folder {own.folder} does not exist"]
        return []

    def __init__(self, settings: NotebookSettings) -> None:
        self.folder = Path(settings.folder)
        self.label = settings.label

    def _path(self, provider_id: str) -> Path:
        return self.folder / f"{provider_id}.json"

    def _write(self, provider_id: str, draft: DraftMessage) -> str:
        self._path(provider_id).write_text(json.dumps({
            "label": self.label, "message_id": draft.message_id, "to": draft.to.email,
            "kind": draft.kind.value, "raw": draft.raw.decode("utf-8", "replace")}))
        return provider_id

    def messages(self, cursor: str | None, since: datetime) -> MessageBatch:
        return MessageBatch((), cursor)

    def find_draft(self, message_id: str) -> str | None:
        for path in self.folder.glob("*.json"):
            if json.loads(path.read_text())["message_id"] == message_id:
                return path.stem
        return None

    def locate(self, message_id: str) -> Located | None:
        found = self.find_draft(message_id)  # a notebook has only drafts
        return Located(Place.DRAFTS, found) if found else None

    def create_draft(self, draft: DraftMessage) -> str:
        return self._write(str(len(list(self.folder.glob("*.json"))) + 1), draft)

    def observe(self, provider_id: str, message_id: str,
                hint: SentHint | None = None) -> Observation:
        path = self._path(provider_id)
        if not path.exists():
            return Observation(Presence.GONE)
        raw = json.loads(path.read_text())["raw"].encode()
        return Observation(Presence.PRESENT, content_hash=read_draft(raw)[0])

    def update_draft(self, provider_id: str, draft: DraftMessage) -> str:
        return self._write(provider_id, draft)

    def retract(self, provider_id: str) -> None:
        self._path(provider_id).unlink(missing_ok=True)

    def close(self) -> None:
        pass
