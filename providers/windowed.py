"""A calendar cursor kept together with the span of time it covers.

A sync token or delta link only reports what changed since it was made. An event that lay
beyond the window when the cursor was made, and has not changed since, is never reported by
it, however far the window moves: the interview booked weeks ahead is missed unless someone
edits it. (Graph's calendarView delta link even keeps the dates of its first request.) So each
source stores its cursor with the span its last full listing covered, and a sync whose window
reaches past that span starts over with a full listing of a new span. The new span reaches
`MARGIN` past the window's end, so as the window slides that happens about once per `MARGIN`,
not at every pass; the events in the margin are simply reported a little early.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from mailbridge.model import CalendarBatch, Window

MARGIN = timedelta(days=1)


def windowed(
    read: Callable[[str | None, Window], CalendarBatch], cursor: str | None, window: Window
) -> CalendarBatch:
    """``read(cursor, span)`` with the source's own cursor while it covers ``window``.

    Otherwise ``read(None, span)``: a full listing of a span reaching `MARGIN` past
    ``window``. The batch's cursor is the source's cursor wrapped with its span.
    """
    covered, inner = _load(cursor)
    if (
        covered is None
        or inner is None
        or window.start < covered.start
        or window.end > covered.end
    ):
        covered, inner = Window(window.start, window.end + MARGIN), None
    batch = read(inner, covered)
    return replace(batch, cursor=_dump(covered, batch.cursor))


def _load(cursor: str | None) -> tuple[Window | None, str | None]:
    """The covered span and the source's cursor; (None, None) for another shape.

    A cursor from before spans were kept has no span: it is read once more in full.
    """
    try:
        state = json.loads(cursor) if cursor else None
        if not isinstance(state, dict) or not isinstance(state.get("cursor"), str):
            return None, None
        start, end = (datetime.fromisoformat(state["covers"][i]) for i in (0, 1))
    except (ValueError, KeyError, IndexError, TypeError):
        return None, None
    return Window(start, end), state["cursor"]


def _dump(covered: Window, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return json.dumps(
        {"covers": [covered.start.isoformat(), covered.end.isoformat()], "cursor": cursor},
        sort_keys=True,
    )
