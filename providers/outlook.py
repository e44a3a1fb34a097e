"""Outlook and Microsoft 365 through Microsoft Graph v1.0: msal signs in, plain HTTP does the rest.

What maps to what:

- ``calendar.outlook``: ``GET /me/calendarView/delta`` over the sync window → `CalendarBatch`.
  Pages follow ``@odata.nextLink``; the cursor holds the final ``@odata.deltaLink`` plus the keys
  of recurring instances seen (a removal names only the Graph id). ``@removed`` → removed keys;
  an expired delta token (410) → a fresh full round with ``complete=True``. Addresses are
  lower-cased, as the iCalendar sources give them.
- ``mailbox.outlook``: drafts are Graph messages in Drafts. ``POST /me/messages`` creates one;
  a follow-up in the thank-you's thread is ``POST /me/messages/{id}/createReply`` on the sent
  thank-you, then ``PATCH``; ``PATCH`` updates, ``DELETE`` retracts (Graph moves it to Deleted
  Items), ``GET`` observes (our Message-ID elsewhere in Drafts is the draft saved again as a
  new item by an IMAP program; a draft gone unsent comes with the messages in Sent Items to
  its recipient since about its creation, ``$filter=sentDateTime ge``, as candidates for
  `mailbridge.drafts`); the version marker of a draft is its ``changeKey``, and ``versions``
  reads the change keys of Drafts in one listing (``$select=changeKey``). Mail is
  ``GET /me/mailFolders/{inbox,archive,sentitems}/messages/delta``
  → `MessageBatch`; the cursor is the three delta links. Full headers are fetched only for inbound
  mail from others (``$select=internetMessageHeaders``), together with what Graph knows that
  the headers do not show: an invitation, update, cancellation or response arrives as an
  eventMessage (its ``@odata.type``) with ``meetingMessageType``
  (https://learn.microsoft.com/en-us/graph/api/resources/eventmessage), since Exchange turns
  the text/calendar part into the item itself; attached parts are listed by
  ``$expand=attachments($select=name,contentType)``. Both become hints and part types for
  the classifier.

Every draft mailbridge creates carries the Outlook category ``mailbridge`` (the message's
``categories`` string collection, writable on create and update:
https://learn.microsoft.com/en-us/graph/api/resources/message and
https://learn.microsoft.com/en-us/graph/api/message-update), so the candidate can see and filter
them in Outlook. A name missing from the user's master category list still shows, uncoloured
(https://learn.microsoft.com/en-us/graph/api/resources/outlookcategory). Updates leave the
categories alone: the user may have added their own.

Every request asks for immutable ids (``Prefer: IdType="ImmutableId"``) so a draft keeps its id
when the user sends or deletes it. Scopes are Calendars.Read, Mail.ReadWrite and User.Read:
never Mail.Send, and this module has no code path that sends.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, formataddr
from typing import Annotated, Any
from urllib.parse import urlsplit

import msal
import requests

from mailbridge import domains, retry, secrets, signin
from mailbridge.adapters import (
    AmbiguousWrite,
    AuthError,
    CalendarSource,
    FolderMissing,
    Mailbox,
    Probe,
    Provider,
    ProviderConfig,
    ProviderError,
)
from mailbridge.config import FORBID, Number, Text, Texts, WebAddress, between, doc
from mailbridge.model import (
    Attendee,
    AttendeeKind,
    CalendarBatch,
    DraftMessage,
    Event,
    EventKey,
    EventStatus,
    Folder,
    Located,
    MailHeaders,
    MessageBatch,
    Observation,
    Person,
    Place,
    Presence,
    Response,
    SentCandidate,
    SentHint,
    Unreadable,
    Window,
)
from mailbridge.settings import AccountSettings

from .windowed import windowed

# --- settings: the account's outlook = {...} table, and calendar kind "outlook" ---------------


@dataclass(frozen=True)
class OutlookSettings:
    __pydantic_config__ = FORBID
    client_id: Annotated[Text, doc("your app registration in Microsoft Entra (public client)",
                                   "00000000-0000-0000-0000-000000000000")] = ""
    tenant: Annotated[Text, doc('"common", "organizations", "consumers" or a tenant id',
                                "common")] = "common"
    authority_url: Annotated[WebAddress, doc("the sign-in authority, for national clouds",
                                             "https://login.microsoftonline.com")
                             ] = "https://login.microsoftonline.com"
    graph_url: Annotated[WebAddress, doc("the Graph root, for national clouds",
                                         "https://graph.microsoft.com/v1.0")
                         ] = "https://graph.microsoft.com/v1.0"
    timeout: Annotated[Number, between(1, 600), doc("seconds, every request", 30)] = 30.0


@dataclass(frozen=True)
class OutlookCalendarSettings:
    __pydantic_config__ = FORBID
    calendars: Annotated[Texts, doc("calendars to read; default: your calendar", ["Calendar"])
                         ] = ()


CONFIG = ProviderConfig(
    table="outlook", settings=OutlookSettings, used_by=("mailbox.outlook", "calendar.outlook"),
    calendars={"outlook": OutlookCalendarSettings}, default_calendar="outlook")


SCOPES: tuple[str, ...] = ("Calendars.Read", "Mail.ReadWrite", "User.Read")
log = logging.getLogger("mailbridge")

# What the mapping functions raise for an item they cannot read (missing fields, wrong types).
UNREADABLE = (ValueError, KeyError, TypeError, AttributeError, OverflowError)

# Microsoft: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
SIGN_IN = signin.Service("Microsoft", (
    signin.Failure("AADSTS65001",
            "the app has no consent in this organisation (your administrator must approve it)",
            "ask an administrator to grant admin consent for the app (Entra admin center > "
            "App registrations > API permissions > Grant admin consent), then run {auth}"),
    signin.Failure("AADSTS90094",
            "your organisation lets only administrators approve apps",
            "ask an administrator to grant admin consent for the app (see docs/microsoft.md), "
            "then run {auth}"),
    signin.Failure("AADSTS65004", "you declined the permissions on the consent screen",
            "run {auth} and accept"),
    signin.Failure("AADSTS53003",
            "a Conditional Access policy of your organisation blocked the sign-in",
            "ask your administrator to allow the app (or this device or location); "
            "nothing in mailbridge can change this"),
    signin.Failure("AADSTS53000",
            "your organisation requires a managed device for this sign-in",
            "sign in from a compliant device, or ask your administrator to allow the app"),
    signin.Failure("AADSTS50020",
            "the account is not a member of the tenant the config names",
            "set outlook.tenant to your own organisation (or \"consumers\" for a personal "
            "Microsoft account), then run {auth}"),
    signin.Failure("AADSTS90072",
            "the account is not a member of the tenant the config names",
            "set outlook.tenant to your own organisation (or \"consumers\" for a personal "
            "Microsoft account), then run {auth}"),
    signin.Failure("AADSTS700016",
            "no app with this outlook.client_id exists in that tenant",
            "copy the Application (client) ID from the app's Overview page into "
            "outlook.client_id, and check outlook.tenant matches its supported account types"),
    signin.Failure("AADSTS50194",
            "the app accepts only accounts of its own organisation, so tenant \"common\" fails",
            "set outlook.tenant to your directory (tenant) ID, then run {auth}"),
    signin.Failure("AADSTS9002331",
            "the app accepts only personal Microsoft accounts",
            "set outlook.tenant = \"consumers\", or change the app's supported account types"),
    signin.Failure("AADSTS9002346",
            "the app accepts only personal Microsoft accounts",
            "set outlook.tenant = \"consumers\", or change the app's supported account types"),
    signin.Failure("AADSTS7000218",
            "the app registration does not allow public client flows (the device code)",
            "set Authentication > Allow public client flows to Yes in the app registration, "
            "then run {auth}"),
    signin.Failure("AADSTS70011", "Microsoft refused a permission mailbridge asks for",
            "add the delegated Microsoft Graph permissions Calendars.Read, Mail.ReadWrite and "
            "User.Read to the app (see docs/microsoft.md), then run {auth}"),
    signin.Failure("AADSTS70019", "the device code expired before the sign-in was finished",
            "run {auth} again and enter the code within 15 minutes"),
    signin.Failure("AADSTS700082", "the saved sign-in expired after 90 days without use",
            "run {auth}"),
    signin.Failure("AADSTS50173", "the saved sign-in was revoked (the password changed)",
            "run {auth}"),
    signin.Failure("AADSTS50076", "your organisation now requires multi-factor sign-in",
            "run {auth}"),
    signin.Failure("AADSTS50079", "your organisation now requires multi-factor sign-in",
            "run {auth}"),
    signin.Failure("AADSTS70000", "Microsoft no longer accepts the saved sign-in (it was revoked)",
            "run {auth}"),
    signin.Failure("invalid_grant", "Microsoft no longer accepts the saved sign-in",
            "run {auth}"),
    signin.Failure("interaction_required", "Microsoft wants you to sign in again", "run {auth}"),
    signin.Failure("insufficient", "the sign-in lacks a permission mailbridge needs",
            "add Calendars.Read, Mail.ReadWrite and User.Read to the app's API permissions "
            "and run {auth}"),
    signin.Failure("ErrorAccessDenied", "the sign-in lacks a permission mailbridge needs",
            "add Calendars.Read, Mail.ReadWrite and User.Read to the app's API permissions "
            "and run {auth}"),
    signin.Failure("invalid_client",
            "Microsoft does not accept this app (wrong outlook.client_id, or it is not a "
            "public client)",
            "check outlook.client_id and set Allow public client flows to Yes (see "
            "docs/microsoft.md)"),
    signin.Failure("unauthorized_client",
            "Microsoft does not accept this app (wrong outlook.client_id, or it is not a "
            "public client)",
            "check outlook.client_id and set Allow public client flows to Yes (see "
            "docs/microsoft.md)"),
))

CACHE_PURPOSE = "msal-cache"
PUBLIC_CLOUD_HOSTS = frozenset({"login.microsoftonline.com"})
CALENDAR = "outlook"  # EventKey.calendar: the user's primary calendar
IMMUTABLE = 'IdType="ImmutableId"'
MESSAGE_FIELDS = (
    "from,toRecipients,ccRecipients,subject,receivedDateTime,sentDateTime,internetMessageId,"
    "conversationId,bodyPreview,isDraft,inferenceClassification,hasAttachments"
)
# Read per inbound message from others: the headers, and the meeting type of an eventMessage
# (a property of the derived type, selected with its type cast).
HEADER_FIELDS = "internetMessageHeaders"
DETAIL_FIELDS = f"{HEADER_FIELDS},microsoft.graph.eventMessage/meetingMessageType"
DRAFT_FIELDS = ("isDraft,subject,toRecipients,ccRecipients,bccRecipients,body,internetMessageId,"
                "parentFolderId,changeKey")
# Mail is read in the inbox, in Archive (where Outlook's Archive button files it: a reply the
# user archived before the pass is still a reply) and in Sent Items.
MAIL_FOLDERS = {"inbox": Folder.INBOX, "archive": Folder.INBOX, "sentitems": Folder.SENT}
EXPIRED_SYNC_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})


class GraphError(ProviderError):
    """Graph answered with an error status we do not retry."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# --- sign-in ---------------------------------------------------------------------------------


CATEGORY = "mailbridge"  # the mark on every draft mailbridge creates


def _settings(account: AccountSettings) -> OutlookSettings:
    outlook = account.settings_of(OutlookSettings)
    if outlook is None or not outlook.client_id:
        raise AuthError(
            f"account {account.name!r}: outlook.client_id is not set; register an app in "
            "Microsoft Entra (public client, device code flow) and put its id in the config"
        )
    return outlook


# Every account's requests share two connection pools per process (one thread each where
# urllib3 watches its idle connections): the sign-in's, with msal's own minimal retry, and
# Graph's, with none (a POST is never repeated blindly; `_Graph.call` decides). A pass runs on
# at most the daemon's few workers, so a small pool per host is enough.
POOL_SIZE = 16
_POOLS_LOCK = threading.Lock()


def _pooled(max_retries: int) -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=POOL_SIZE, max_retries=max_retries)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@functools.cache
def _sign_in_session() -> requests.Session:
    return _pooled(max_retries=1)  # what msal gives each app it makes a session for


@functools.cache
def _graph_session() -> requests.Session:
    return _pooled(max_retries=0)


def _shared(pool: Callable[[], requests.Session]) -> requests.Session:
    with _POOLS_LOCK:
        return pool()


class _SharedDiscovery:
    """The sign-in HTTP client msal is given: the authority's discovery documents (OIDC
    metadata, instance discovery) are fetched once per HTTP client, and every account's app
    shares the one client (`_sign_in_session`), so once per process rather than once per
    account (a thousand accounts on one tenant: one request). msal keeps them a day in each
    app of its own; here they are kept as long."""

    KEEP = 24 * 3600.0  # seconds, as msal's own cache of these documents
    _found: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, Any]]] = (
        weakref.WeakKeyDictionary())
    _lock = threading.Lock()

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, url: str, **kwargs: Any) -> Any:
        if not ("/.well-known/openid-configuration" in url or "/discovery/instance" in url):
            return self.client.get(url, **kwargs)
        key = f"{url} {sorted((kwargs.get('params') or {}).items())}"
        # One fetch at a time: accounts starting together wait for the first one's answer.
        with self._lock:
            found = self._found.setdefault(self.client, {})
            at, response = found.get(key, (0.0, None))
            if response is None or time.monotonic() - at >= self.KEEP:
                response = self.client.get(url, **kwargs)
                if 200 <= response.status_code < 300:  # a failure is asked again next time
                    found[key] = (time.monotonic(), response)
        return response

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.client.post(url, **kwargs)

    def close(self) -> None:  # the client is shared: no app may close it for the others
        pass


def _app(
    account: AccountSettings, cache: msal.SerializableTokenCache, http_client: Any
) -> msal.PublicClientApplication:
    conf = _settings(account)
    authority = f"{conf.authority_url.rstrip('/')}/{conf.tenant}"
    public = urlsplit(conf.authority_url).hostname in PUBLIC_CLOUD_HOSTS
    try:
        return msal.PublicClientApplication(
            conf.client_id,
            authority=authority,
            token_cache=cache,
            http_client=_SharedDiscovery(http_client or _shared(_sign_in_session)),
            # Instance discovery asks the public cloud about the authority; other clouds
            # (and test authorities) are trusted as configured.
            instance_discovery=None if public else False,
        )
    except (ValueError, requests.RequestException) as exc:
        raise ProviderError(
            f"account {account.name!r}: cannot reach the sign-in authority {authority}: {exc}"
        ) from None


def authenticate(
    account: AccountSettings,
    *,
    no_browser: bool = False,
    http_client: Any = None,
    say: Callable[[str], None] = print,
) -> str:
    """`mailbridge auth NAME`: the device-code flow, which never needs a local browser."""
    del no_browser  # the device code is entered on any device, so both modes are the same
    cache = msal.SerializableTokenCache()
    app = _app(account, cache, http_client)
    try:
        flow = app.initiate_device_flow(scopes=list(SCOPES))
        if "user_code" not in flow:
            raise AuthError(signin.explain(SIGN_IN, account.name, _error_text(flow)))
        say(flow["message"])
        result = app.acquire_token_by_device_flow(flow)
    except requests.RequestException as exc:
        raise ProviderError(
            f"account {account.name!r}: cannot reach Microsoft's sign-in service: {exc}"
        ) from None
    if "access_token" not in result:
        raise AuthError(signin.explain(SIGN_IN, account.name, _error_text(result)))
    secrets.store(account, CACHE_PURPOSE, cache.serialize())
    who = (result.get("id_token_claims") or {}).get("preferred_username") or account.address
    return f"account {account.name!r}: signed in to Microsoft 365 as {who}"


def _error_text(answer: Mapping[str, Any]) -> str:
    """The error code and description of an msal answer, as one text for signin.explain."""
    return f"{answer.get('error') or 'no device code'}: {answer.get('error_description') or ''}"


def forget(account: AccountSettings) -> str:
    """`mailbridge auth --revoke NAME`: drop the token cache; say where to remove access."""
    secrets.forget(account, CACHE_PURPOSE)
    return (
        "Microsoft may still list the app as allowed: remove it at https://myapps.microsoft.com "
        "(work or school account: your profile > Apps) or at "
        "https://account.live.com/consent/Manage (personal account)"
    )


def problems(account: AccountSettings) -> list[str]:
    """`check`: what is wrong with the Microsoft settings, found without a network."""
    if account.provider != "outlook" and account.calendar.kind != "outlook":
        return []
    try:
        _settings(account)
    except AuthError as exc:
        return [str(exc).removeprefix(f"account {account.name!r}: ")]
    return []


def probe(account: AccountSettings, **options: Any) -> list[Probe]:
    """`check --online`: sign in, then one cheap read of the calendar, Drafts, inbox and Sent."""
    retry = RetryPolicy(attempts=2, timeout=_settings(account).timeout)
    graph = graph_client(account, retry=retry, **options)
    try:
        try:
            graph.call("GET", "/me/mailFolders/inbox", params={"$select": "id"})
        except AuthError as exc:
            return [Probe("sign-in", False, str(exc))]
        except ProviderError as exc:
            if isinstance(exc, GraphError) and exc.code == "ErrorAccessDenied":
                found = [Probe("sign-in", True, "Microsoft accepted the saved sign-in")]
                return [*found, Probe("inbox", False, signin.explain(
                    SIGN_IN, account.name, exc.code))]
            return [Probe("sign-in", False, str(exc))]
        found = [Probe("sign-in", True, "Microsoft accepted the saved sign-in"),
                 Probe("inbox", True, "readable")]
        reads: list[tuple[str, str, dict[str, str]]] = []
        if account.provider == "outlook":
            reads += [("Drafts", "/me/mailFolders/drafts", {"$select": "id"}),
                      ("Sent", "/me/mailFolders/sentitems", {"$select": "id"})]
        if account.calendar.kind == "outlook":
            now = datetime.now(UTC)
            reads.append(("calendar", "/me/calendarView/delta", {
                "startDateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "endDateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")}))
        for what, path, params in reads:
            try:
                graph.call("GET", path, params=params)
            except ProviderError as exc:
                detail = str(exc)
                if isinstance(exc, GraphError) and exc.code == "ErrorAccessDenied":
                    detail = signin.explain(SIGN_IN, account.name, exc.code)
                found.append(Probe(what, False, detail))
            else:
                found.append(Probe(what, True, "readable"))
        return found
    finally:
        graph.close()


class _Tokens:
    """Access tokens from the msal cache in the account's token store, refreshed by msal."""

    @property
    def account(self) -> AccountSettings:
        return self._account

    def __init__(self, account: AccountSettings, http_client: Any = None) -> None:
        self._account = account
        self._http_client = http_client
        self._app: msal.PublicClientApplication | None = None
        self._cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()

    def auth_error(self, why: str) -> AuthError:
        name = self._account.name
        if signin.known(SIGN_IN, why):
            return AuthError(signin.explain(SIGN_IN, name, why))
        return AuthError(
            f"account {name!r}: the Microsoft 365 sign-in is no longer valid ({why}); "
            f"run `mailbridge auth {name}`"
        )

    def token(self, *, force_refresh: bool = False) -> str:
        with self._lock:
            if self._app is None:
                self._cache.deserialize(secrets.require(self._account, CACHE_PURPOSE))
                self._app = _app(self._account, self._cache, self._http_client)
            accounts = self._app.get_accounts()
            if not accounts:
                raise self.auth_error("no signed-in account in the token cache")
            try:
                result = self._app.acquire_token_silent_with_error(
                    list(SCOPES), account=accounts[0], force_refresh=force_refresh
                )
            except requests.RequestException as exc:
                raise ProviderError(
                    f"account {self._account.name!r}: token refresh failed: {exc}"
                ) from None
            if self._cache.has_state_changed:
                secrets.store(self._account, CACHE_PURPOSE, self._cache.serialize())
                self._cache.has_state_changed = False
            if not result:
                raise self.auth_error("the token cache cannot be refreshed")
            if "access_token" not in result:
                error = str(result.get("error", ""))
                if error in ("invalid_grant", "interaction_required", "invalid_client", "") or (
                    signin.known(SIGN_IN, _error_text(result))
                ):
                    raise self.auth_error(_error_text(result))
                raise ProviderError(f"account {self._account.name!r}: token refresh: {error}")
            return str(result["access_token"])


# --- HTTP with throttling ----------------------------------------------------------------------


RetryPolicy = retry.RetryPolicy  # the core policy; tests and benches build it from here
_SEMAPHORES: dict[str, threading.BoundedSemaphore] = {}
_SEMAPHORES_LOCK = threading.Lock()
MAX_CONCURRENT = 4  # Graph's mailbox limit on concurrent requests


def _semaphore(account: str) -> threading.BoundedSemaphore:
    with _SEMAPHORES_LOCK:
        return _SEMAPHORES.setdefault(account, threading.BoundedSemaphore(MAX_CONCURRENT))


class _Graph:
    """One account's Graph client: bearer token, immutable ids, bounded retries, ≤ 4 in flight."""

    def __init__(
        self,
        account: AccountSettings,
        *,
        tokens: _Tokens,
        session: requests.Session | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.account = account
        self.base = _settings(account).graph_url.rstrip("/")
        self._tokens = tokens
        self._own_session = session  # a caller's session is closed with the client
        self._session = session or _shared(_graph_session)
        self._retry = retry or RetryPolicy(timeout=_settings(account).timeout)
        self._slots = _semaphore(account.name)

    def call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        prefer: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        """The JSON answer ({} for 204); raises GraphError, ProviderError or AuthError.

        A request that is not ``idempotent`` (a POST that creates) is never repeated after a
        failure that may have come after Graph did the work: that raises AmbiguousWrite.
        """
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        refreshed = False
        for attempt in range(1, self._retry.attempts + 1):
            head = {
                "Authorization": "Bearer " + self._tokens.token(force_refresh=refreshed),
                "Prefer": ", ".join((IMMUTABLE, *prefer)),
                **(headers or {}),
            }
            try:
                with self._slots:
                    resp = self._session.request(
                        method,
                        url,
                        params=params,
                        json=body,
                        headers=head,
                        timeout=self._retry.timeout,
                    )
            except requests.RequestException as exc:
                if not idempotent:
                    raise AmbiguousWrite(
                        f"account {self.account.name!r}: Graph {method} got no answer ({exc})"
                    ) from None
                if attempt == self._retry.attempts:
                    raise ProviderError(f"account {self.account.name!r}: Graph: {exc}") from None
                self._retry.sleep(self._retry.backoff(attempt))
                continue
            if resp.status_code == 401 and not refreshed:
                refreshed = True  # a token revoked early: one forced refresh, then AuthError
                continue
            if retry.retryable(resp.status_code):
                if not idempotent and retry.ambiguous(resp.status_code):
                    raise AmbiguousWrite(
                        f"account {self.account.name!r}: Graph {method} answered "
                        f"{resp.status_code}; it may have been carried out"
                    )
                wait = self._retry.wait(attempt, retry.retry_after(resp.headers.get("Retry-After")))
                if wait is None:
                    break
                self._retry.sleep(wait)
                continue
            return self._answer(method, url, resp)
        raise ProviderError(
            f"account {self.account.name!r}: Microsoft Graph kept refusing {method} requests "
            "(throttled or unavailable); will try again on the next pass"
        )

    def _answer(self, method: str, url: str, resp: requests.Response) -> dict[str, Any]:
        if resp.status_code < 300:
            return resp.json() if resp.content else {}
        try:
            error = resp.json().get("error", {})
        except ValueError:
            error = {}
        code, message = str(error.get("code", "")), str(error.get("message", ""))
        if resp.status_code == 401:
            raise self._tokens.auth_error(f"Graph refused the token: {code or 401}")
        raise GraphError(
            resp.status_code,
            code,
            f"account {self.account.name!r}: Graph {method} {urlsplit(url).path} answered "
            f"{resp.status_code} {code}: {message}",
        )

    def pages(
        self, url: str, params: Mapping[str, str] | None = None, prefer: tuple[str, ...] = ()
    ) -> Iterator[dict[str, Any]]:
        """Each page of a delta round; the last one carries @odata.deltaLink."""
        next_url: str | None = url
        while next_url:
            page = self.call("GET", next_url, params=params, prefer=prefer)
            params = None  # the links carry every query option
            yield page
            next_url = page.get("@odata.nextLink")

    def close(self) -> None:
        if self._own_session is not None:
            self._own_session.close()


def _load_cursor(cursor: str | None) -> Any:
    """Our own cursor back, or None (a fresh full round) when it is not one of ours."""
    try:
        state = json.loads(cursor) if cursor else None
    except ValueError:
        return None
    return state if isinstance(state, dict) else None


def _expired(exc: GraphError) -> bool:
    return exc.status == 410 or exc.code.lower() in EXPIRED_SYNC_CODES


# --- calendar ------------------------------------------------------------------------------------


def _when(value: Mapping[str, str] | None) -> datetime | None:
    """A Graph dateTimeTimeZone asked for in UTC ("2024-05-01T15:00:00.0000000")."""
    if not value or not value.get("dateTime"):
        return None
    text = value["dateTime"].rstrip("Z")
    head, _, frac = text.partition(".")
    return datetime.fromisoformat(head + ("." + frac[:6] if frac else "")).replace(tzinfo=UTC)


_RESPONSES = {
    "accepted": Response.ACCEPTED,
    "organizer": Response.ACCEPTED,
    "declined": Response.DECLINED,
    "tentativelyAccepted": Response.TENTATIVE,
    "notResponded": Response.NEEDS_ACTION,
    "none": Response.UNKNOWN,
}


def _person(recipient: Mapping[str, Any] | None) -> Person | None:
    address = ((recipient or {}).get("emailAddress") or {}).get("address") or ""
    if not address:
        return None
    return Person(address, (recipient or {}).get("emailAddress", {}).get("name") or "")


def _lower(person: Person | None) -> Person | None:
    """An event's person with the address lower-cased, as the iCalendar sources give it."""
    return Person(person.email.lower(), person.name) if person is not None else None


def event_from_graph(item: Mapping[str, Any], own: tuple[str, ...]) -> tuple[Event, EventKey]:
    """A calendarView entry as an `Event`; instances are keyed by series and original start.

    Raises one of `UNREADABLE` for an entry it cannot read (missing id or times, wrong types);
    the calendar skips that entry and keeps the rest.
    """
    kind = item.get("type", "singleInstance")
    recurring = kind in ("occurrence", "exception")
    start, end = _when(item.get("start")), _when(item.get("end"))
    if start is None or end is None:
        raise ValueError("the event has no start or end")
    if recurring and item.get("seriesMasterId"):
        original = _when({"dateTime": item.get("originalStart", "")}) or start
        key = EventKey(CALENDAR, item["seriesMasterId"], original.isoformat())
    else:
        key = EventKey(CALENDAR, item["id"])
    organizer = _lower(_person(item.get("organizer")))
    # Graph reports the user's own answer apart from the attendee list (their entry there may
    # say "none"), and the organizer's as "none" in everybody's calendar (responseStatus
    # resource): an organizer attends their own meeting, as "organizer" already says.
    mine = (item.get("responseStatus") or {}).get("response", "")
    attendees = []
    for entry in item.get("attendees") or ():
        person = _lower(_person(entry))
        if person is None:
            continue
        is_self = domains.is_own_address(person.email, own)
        is_organizer = organizer is not None and person.email == organizer.email
        answer = (entry.get("status") or {}).get("response", "")
        if is_self and mine not in ("", "none"):
            answer = mine
        elif is_organizer and answer in ("", "none"):
            answer = "organizer"
        attendees.append(
            Attendee(
                person.email,
                person.name,
                AttendeeKind.RESOURCE if entry.get("type") == "resource" else AttendeeKind.PERSON,
                _RESPONSES.get(answer, Response.UNKNOWN),
                is_self=is_self,
                is_organizer=is_organizer,
            )
        )
    if own and not any(a.is_self for a in attendees):
        attendees.append(
            Attendee(
                own[0],
                "",
                AttendeeKind.PERSON,
                _RESPONSES.get(mine, Response.UNKNOWN),
                is_self=True,
                is_organizer=bool(item.get("isOrganizer")),
            )
        )
    event = Event(
        key=key,
        title=item.get("subject") or "",
        start=start,
        end=end,
        description=((item.get("body") or {}).get("content") or item.get("bodyPreview") or ""),
        location=(item.get("location") or {}).get("displayName") or "",
        all_day=bool(item.get("isAllDay")),
        status=EventStatus.CANCELLED if item.get("isCancelled") else EventStatus.CONFIRMED,
        organizer=organizer,
        attendees=tuple(attendees),
        recurring=recurring,
    )
    return event, key


class Microsoft(Provider):
    """What the Outlook mailbox and calendar share: one sign-in (device code), one probe."""

    config = CONFIG
    signs_in = True
    own_probe = True

    @classmethod
    def authenticate(cls, account: AccountSettings, *, no_browser: bool = False,
                     port: int | None = None) -> str:
        return authenticate(account, no_browser=no_browser)

    @classmethod
    def forget(cls, account: AccountSettings) -> str | None:
        return forget(account)

    @classmethod
    def stored(cls, account: AccountSettings) -> dict[str, str]:
        return {CACHE_PURPOSE: "not signed in to Microsoft"}

    @classmethod
    def problems(cls, account: AccountSettings) -> list[str]:
        return problems(account)

    @classmethod
    def probe(cls, account: AccountSettings) -> list[Probe]:
        return probe(account)


class OutlookCalendar(Microsoft, CalendarSource):
    @classmethod
    def open(cls, account: AccountSettings) -> OutlookCalendar:
        return open_calendar(account)  # the module's opener builds it

    def __init__(self, account: AccountSettings, graph: _Graph) -> None:
        self._account = account
        self._graph = graph

    def changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        # A delta link keeps the dates of its first request: see `windowed`.
        return windowed(self._changes, cursor, window)

    def _changes(self, cursor: str | None, window: Window) -> CalendarBatch:
        state = _load_cursor(cursor)
        if state:
            try:
                return self._round(state["delta"], None, dict(state["instances"]), False)
            except GraphError as exc:
                if not _expired(exc):
                    raise
        params = {
            "startDateTime": window.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": window.end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return self._round(self._graph.base + "/me/calendarView/delta", params, {}, True)

    def _round(
        self,
        url: str,
        params: dict[str, str] | None,
        instances: dict[str, list[str]],
        complete: bool,
    ) -> CalendarBatch:
        events: dict[EventKey, Event] = {}
        removed: list[EventKey] = []
        skipped: list[Unreadable] = []
        delta = ""
        prefer = ('outlook.timezone="UTC"', 'outlook.body-content-type="text"')
        for page in self._graph.pages(url, params, prefer):
            for item in page.get("value", ()):
                if "@removed" in item:
                    uid, instance = instances.pop(item["id"], (item["id"], ""))
                    key = EventKey(CALENDAR, uid, instance)
                    events.pop(key, None)
                    removed.append(key)
                    continue
                try:
                    event, key = event_from_graph(item, self._account.own_addresses)
                except UNREADABLE as exc:  # one unreadable event must not stop the calendar
                    log.warning("account %r: skipped an unreadable event (%s: %s)",
                                self._account.name, type(exc).__name__, str(exc)[:200])
                    uid = str(item.get("seriesMasterId") or item.get("id") or "") or None
                    skipped.append(Unreadable(f"event {str(uid)[:100]!r}",
                                              f"{type(exc).__name__}: {str(exc)[:200]}", uid=uid))
                    continue
                if key.instance:
                    instances[item["id"]] = [key.uid, key.instance]
                events[key] = event
            delta = page.get("@odata.deltaLink", delta)
        if not delta:
            raise ProviderError(
                f"account {self._account.name!r}: calendar delta ended without a link"
            )
        cursor = json.dumps({"delta": delta, "instances": instances}, sort_keys=True)
        return CalendarBatch(tuple(events.values()), tuple(removed), complete, cursor,
                             tuple(skipped))

    def close(self) -> None:
        self._graph.close()


# --- mailbox -------------------------------------------------------------------------------------


def _recipients(people: tuple[Person, ...] | list[Person]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": p.email, "name": p.name}} for p in people]


def _address(person: Person) -> str:
    """A header value for one person; an address with non-ASCII characters (RFC 6532, or one
    garbled on the way) is written as it is rather than losing the whole message."""
    try:
        return formataddr((person.name, person.email))
    except UnicodeEncodeError:
        return f"{person.name} <{person.email}>" if person.name else person.email


def _addresses(values: Any) -> str:
    return ", ".join(_address(p) for p in (_person(v) for v in values or ()) if p)


def _fields(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The message's RFC 5322 headers: what Graph returned, completed from its JSON fields."""
    fields = [(h["name"], h["value"]) for h in message.get("internetMessageHeaders") or ()]
    have = {name.lower() for name, _ in fields}
    sender = _person(message.get("from"))
    when = message.get("receivedDateTime") or message.get("sentDateTime")
    known = {
        "From": _address(sender) if sender else "",
        "To": _addresses(message.get("toRecipients")),
        "Cc": _addresses(message.get("ccRecipients")),
        "Subject": message.get("subject") or "",
        "Message-ID": message.get("internetMessageId") or "",
        "Date": format_datetime(datetime.fromisoformat(when.replace("Z", "+00:00")))
        if when
        else "",
    }
    fields += [(name, value) for name, value in known.items() if value and name.lower() not in have]
    return fields


def graph_part_types(message: Mapping[str, Any]) -> list[str]:
    """The content types Graph shows: the top-level Content-Type header and each attachment's."""
    top = [
        str(h.get("value", ""))
        for h in message.get("internetMessageHeaders") or ()
        if str(h.get("name", "")).lower() == "content-type"
    ][:1]
    attached = [str(a.get("contentType") or "") for a in message.get("attachments") or ()]
    return top + attached


def graph_hints(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What Graph says about the message itself: its derived type and its meeting type."""
    hints = []
    if message.get("@odata.type"):
        hints.append(("graph.type", str(message["@odata.type"])))
    if message.get("meetingMessageType"):
        hints.append(("graph.meetingMessageType", str(message["meetingMessageType"])))
    if message.get("inferenceClassification"):
        hints.append(("graph.inferenceClassification", str(message["inferenceClassification"])))
    return hints


def _when_sent(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"  # an OData string literal


class OutlookMailbox(Microsoft, Mailbox):
    moves_to_trash = True

    @classmethod
    def open(cls, account: AccountSettings) -> OutlookMailbox:
        return open_mailbox(account)  # the module's opener builds it

    def __init__(self, account: AccountSettings, graph: _Graph) -> None:
        self._account = account
        self._graph = graph
        self._change_keys: dict[str, str] = {}  # provider id -> changeKey when last observed
        self._drafts_folder: str | None = None
        self._trash_folder: str | None = None
        # Some mailboxes refuse the type cast in $select (400); @odata.type still says which
        # messages are eventMessages, so they are read without it from then on.
        self._detail_fields = DETAIL_FIELDS

    # mail

    def messages(self, cursor: str | None, since: datetime) -> MessageBatch:
        links: dict[str, str] = _load_cursor(cursor) or {}
        found: list[MailHeaders] = []
        for folder, kind in MAIL_FOLDERS.items():
            try:
                batch, links[folder] = self._folder_delta(folder, kind, links.get(folder), since)
            except GraphError as exc:
                if folder != "archive" or exc.status != 404:
                    raise
                # A mailbox without the Archive folder (never made): nothing filed there.
                links.pop(folder, None)
                continue
            found.extend(batch)
        return MessageBatch(tuple(found), json.dumps(links, sort_keys=True))

    def _folder_delta(
        self, folder: str, kind: Folder, link: str | None, since: datetime
    ) -> tuple[list[MailHeaders], str]:
        first = (
            self._graph.base + f"/me/mailFolders/{folder}/messages/delta",
            {
                "$select": MESSAGE_FIELDS,
                "$filter": f"receivedDateTime ge {since.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
            },
        )
        try:
            return self._delta_round(link or first[0], None if link else first[1], kind)
        except GraphError as exc:
            if not (link and _expired(exc)):
                raise
        return self._delta_round(*first, kind)

    def _delta_round(
        self, url: str, params: dict[str, str] | None, kind: Folder
    ) -> tuple[list[MailHeaders], str]:
        found, delta = [], ""
        for page in self._graph.pages(url, params):
            for item in page.get("value", ()):
                if "@removed" not in item and not item.get("isDraft"):
                    try:
                        found.append(self._headers(item, kind))
                    except UNREADABLE as exc:  # one unreadable message must not stop the rest
                        log.warning("account %r: skipped an unreadable message (%s: %s)",
                                    self._account.name, type(exc).__name__, str(exc)[:200])
            delta = page.get("@odata.deltaLink", delta)
        return found, delta

    def _headers(self, item: dict[str, Any], kind: Folder) -> MailHeaders:
        from mailbridge.mailparse import headers_from_fields

        sender = _person(item.get("from"))
        from_user = sender is not None and domains.is_own_address(
            sender.email, self._account.own_addresses
        )
        if kind is Folder.INBOX and not from_user:
            # Threading and auto-reply headers exist only in the full header set.
            extra = self._details(item)
            headers = extra.get("internetMessageHeaders") or []
            item = {**extra, **item, "internetMessageHeaders": headers}
        return headers_from_fields(
            _fields(item),
            folder=kind,
            provider_id=item["id"],
            excerpt=item.get("bodyPreview", ""),
            part_types=graph_part_types(item),
            hints=graph_hints(item),
        )

    def _details(self, item: dict[str, Any]) -> dict[str, Any]:
        """The headers, meeting type and attachment types of one message."""
        params = {"$select": self._detail_fields}
        if item.get("hasAttachments"):
            params["$expand"] = "attachments($select=name,contentType)"
        path = f"/me/messages/{item['id']}"
        try:
            return dict(self._graph.call("GET", path, params=params))
        except GraphError as exc:
            if exc.status != 400 or self._detail_fields == HEADER_FIELDS:
                raise
        log.info("account %r: this mailbox refuses meetingMessageType in $select; "
                 "meeting messages are known by their @odata.type", self._account.name)
        self._detail_fields = params["$select"] = HEADER_FIELDS
        return dict(self._graph.call("GET", path, params=params))

    # drafts

    def _body(self, draft: DraftMessage) -> dict[str, Any]:
        return {
            "subject": draft.subject,
            "body": {"contentType": "text", "content": draft.body},
            "toRecipients": _recipients([draft.to]),
        }

    def _kind_header(self, draft: DraftMessage) -> list[dict[str, str]]:
        return [{"name": "X-Mailbridge-Kind", "value": str(draft.kind)}]

    def create_draft(self, draft: DraftMessage) -> str:
        parent = self._sent_message(draft.in_reply_to) if draft.in_reply_to else None
        if parent is not None:
            # createReply threads the draft (conversation, In-Reply-To, References) as
            # Outlook itself would; our text, recipient and Message-ID go in the same call, so
            # there is no moment at which the draft exists without the id we find it by.
            reply = self._graph.call(
                "POST",
                f"/me/messages/{parent}/createReply",
                body={
                    "message": {
                        **self._body(draft),
                        "internetMessageId": draft.message_id,
                        "internetMessageHeaders": self._kind_header(draft),
                        "categories": [CATEGORY],
                    }
                },
                idempotent=False,
            )
            return str(reply["id"])
        created = self._graph.call(
            "POST",
            "/me/messages",
            body={
                **self._body(draft),
                "internetMessageId": draft.message_id,
                "internetMessageHeaders": self._kind_header(draft),
                "categories": [CATEGORY],
            },
            idempotent=False,
        )
        return str(created["id"])

    def _lookup(self, path: str, message_id: str) -> list[dict[str, Any]]:
        page = self._graph.call(
            "GET",
            path,
            params={
                "$filter": f"internetMessageId eq {_quote(message_id)}",
                "$select": "id,isDraft,parentFolderId",
            },
        )
        return list(page.get("value", ()))

    def _sent_message(self, message_id: str) -> str | None:
        found = self._lookup("/me/mailFolders/sentitems/messages", message_id)
        return str(found[0]["id"]) if found else None

    def find_draft(self, message_id: str) -> str | None:
        found = self._lookup("/me/messages", message_id)
        found.sort(key=lambda m: not m.get("isDraft"))  # a draft first, else the sent copy
        return str(found[0]["id"]) if found else None

    def locate(self, message_id: str) -> Located | None:
        drafts = self._drafts_id()  # FolderMissing while Drafts is gone
        found = self._lookup("/me/messages", message_id)
        if not found:
            return None
        places = []
        for item in found:
            if not item.get("isDraft"):
                places.append(Located(Place.SENT, str(item["id"])))
            elif item.get("parentFolderId") == drafts:
                places.append(Located(Place.DRAFTS, str(item["id"])))
            elif item.get("parentFolderId") == self._trash_id():
                places.append(Located(Place.TRASH, str(item["id"])))
            # An unsent draft the user moved to a folder of their own is in none of the three
            # places, as on every other mailbox: Trash would say they deleted it.
        return min(places, key=lambda p: list(Place).index(p.place), default=None)

    def _drafts_id(self) -> str:
        if self._drafts_folder is None:
            try:
                folder = self._graph.call("GET", "/me/mailFolders/drafts", params={"$select": "id"})
            except GraphError as exc:
                if exc.status == 404:
                    raise FolderMissing(
                        f"account {self._account.name!r}: the Drafts folder is missing"
                    ) from None
                raise
            self._drafts_folder = str(folder["id"])
        return self._drafts_folder

    def _trash_id(self) -> str:
        if self._trash_folder is None:
            folder = self._graph.call("GET", "/me/mailFolders/deleteditems",
                                      params={"$select": "id"})  # fmt: skip
            self._trash_folder = str(folder["id"])
        return self._trash_folder

    def observe(
        self, provider_id: str, message_id: str, hint: SentHint | None = None
    ) -> Observation:
        from mailbridge.compose import fingerprint

        drafts = self._drafts_id()
        msg = self._draft_item(provider_id)
        if msg is not None and not msg.get("isDraft"):
            return Observation(Presence.SENT, provider_id=provider_id)
        if msg is None or msg.get("parentFolderId") != drafts:
            # Gone, or in Deleted Items (or moved away) unsent. A program on Exchange's IMAP
            # saves a draft as a new item and removes the old: our Message-ID still in Drafts
            # is the draft, under a new id.
            copy = next((m for m in self._lookup("/me/mailFolders/drafts/messages", message_id)
                         if m.get("isDraft")), None)  # fmt: skip
            copy_id = str(copy["id"]) if copy is not None else ""
            msg = self._draft_item(copy_id) if copy_id else None
            if msg is None or msg.get("parentFolderId") != drafts:
                sent = self._sent_message(message_id)
                if sent is not None:
                    return Observation(Presence.SENT, provider_id=sent)
                return Observation(Presence.GONE, sent_candidates=self._sent_candidates(hint))
            provider_id = copy_id
        change_key = str(msg.get("changeKey", ""))
        self._change_keys[provider_id] = change_key
        def addresses(field: str) -> list[str]:
            return [p.email for p in (_person(r) for r in msg.get(field) or ()) if p]

        body = (msg.get("body") or {}).get("content") or ""
        digest = fingerprint(msg.get("subject") or "", addresses("toRecipients"), body,
                             addresses("ccRecipients"), addresses("bccRecipients"))
        return Observation(Presence.PRESENT, digest, provider_id, body, version=change_key)

    def _draft_item(self, provider_id: str) -> dict[str, Any] | None:
        """The item with the text body, or None when there is none under that id (404)."""
        try:
            return dict(self._graph.call(
                "GET",
                f"/me/messages/{provider_id}",
                params={"$select": DRAFT_FIELDS},
                prefer=('outlook.body-content-type="text"',),
            ))  # fmt: skip
        except GraphError as exc:
            if exc.status != 404:
                raise
            return None

    def versions(self, known: Mapping[str, str]) -> dict[str, str]:
        """The change key of every draft in Drafts, from one listing (paged by 1,000)."""
        found: dict[str, str] = {}
        params = {"$select": "id,changeKey", "$top": "1000"}
        for page in self._graph.pages(self._graph.base + "/me/mailFolders/drafts/messages",
                                      params):  # fmt: skip
            for item in page.get("value", ()):
                if item.get("id") in known and item.get("changeKey"):
                    found[str(item["id"])] = str(item["changeKey"])
        for provider_id, key in found.items():
            if key == known.get(provider_id):  # what the next write's If-Match checks against
                self._change_keys[provider_id] = key
        return found

    def _sent_candidates(self, hint: SentHint | None) -> tuple[SentCandidate, ...]:
        """Mail in Sent Items since about the draft's creation, for the core to compare."""
        if hint is None or not hint.recipient:
            return ()
        since = (hint.since - timedelta(days=1)).astimezone(UTC)
        page = self._graph.call("GET", "/me/mailFolders/sentitems/messages", params={
            "$filter": f"sentDateTime ge {since:%Y-%m-%dT%H:%M:%SZ}",
            "$select": "toRecipients,ccRecipients,subject,sentDateTime,internetMessageId",
            "$top": "50",
        })  # fmt: skip
        found = []
        for item in page.get("value", ()):
            people = [_person(r) for r in (*(item.get("toRecipients") or ()),
                                            *(item.get("ccRecipients") or ()))]  # fmt: skip
            found.append(SentCandidate(
                recipients=tuple(p.email for p in people if p),
                subject=item.get("subject") or "",
                date=_when_sent(item.get("sentDateTime")),
                message_id=item.get("internetMessageId") or "",
            ))
        return tuple(found)

    def _if_match(self, provider_id: str) -> dict[str, str]:
        # The changeKey seen by observe(): Graph refuses the write (412) if the user has
        # touched the draft since, and the next pass sees the edit.
        key = self._change_keys.get(provider_id)
        return {"If-Match": f'W/"{key}"'} if key else {}

    def update_draft(self, provider_id: str, draft: DraftMessage) -> str:
        try:
            updated = self._graph.call(
                "PATCH",
                f"/me/messages/{provider_id}",
                body=self._body(draft),
                headers=self._if_match(provider_id),
                # Repeating it after a lost answer would meet our own new changeKey (412):
                # the engine looks at the draft instead.
                idempotent=False,
            )
        except GraphError as exc:
            if exc.status == 412:
                raise ProviderError(
                    f"account {self._account.name!r}: the draft changed while we updated it"
                ) from None
            raise
        if provider_id in self._change_keys:  # our own write is not the user's edit
            self._change_keys[provider_id] = str(updated.get("changeKey", ""))
        return provider_id

    def retract(self, provider_id: str) -> None:
        try:
            self._graph.call(
                "DELETE", f"/me/messages/{provider_id}", headers=self._if_match(provider_id)
            )
        except GraphError as exc:
            if exc.status == 412:
                # A DELETE repeated after its answer was lost meets the item it already moved
                # to Deleted Items, under a new changeKey. Out of Drafts is all a retraction
                # wants; only a draft still there was changed by the user before we removed it.
                item = self._draft_item(provider_id)
                if item is not None and item.get("parentFolderId") == self._drafts_id():
                    raise ProviderError(
                        f"account {self._account.name!r}: the draft changed before we removed "
                        "it"
                    ) from None
            elif exc.status != 404:  # already gone: nothing left to take back
                raise
        self._change_keys.pop(provider_id, None)

    def close(self) -> None:
        self._graph.close()


# --- factories ---------------------------------------------------------------------------------


def graph_client(
    account: AccountSettings,
    *,
    http_client: Any = None,
    session: requests.Session | None = None,
    retry: RetryPolicy | None = None,
) -> _Graph:
    """The Graph client of one account; tests inject msal's http_client and a retry policy."""
    return _Graph(account, tokens=_tokens(account, http_client), session=session, retry=retry)


# The mailbox and the calendar of an account share one token cache (one msal app, one refresh
# when the access token expires; Graph's refresh tokens rotate, so two caches of one sign-in
# would race) for as long as either is open.
_TOKENS: weakref.WeakValueDictionary[tuple[str, int], _Tokens] = weakref.WeakValueDictionary()
_TOKENS_LOCK = threading.Lock()


def _tokens(account: AccountSettings, http_client: Any) -> _Tokens:
    key = (account.name, id(http_client))  # the entry keeps the client, so the id stays its own
    with _TOKENS_LOCK:
        found = _TOKENS.get(key)
        if found is None or found.account != account:  # a changed account signs in anew
            found = _TOKENS[key] = _Tokens(account, http_client)
        return found


def open_mailbox(account: AccountSettings, **options: Any) -> OutlookMailbox:
    return OutlookMailbox(account, graph_client(account, **options))


def open_calendar(account: AccountSettings, **options: Any) -> OutlookCalendar:
    return OutlookCalendar(account, graph_client(account, **options))
