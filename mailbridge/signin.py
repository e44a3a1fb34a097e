"""What each known sign-in failure means, and what the user does about it.

Google and the Microsoft identity platform answer a failed sign-in or token refresh with an
OAuth error code (RFC 6749 section 5.2: ``invalid_grant``, ``invalid_client``...) and, for
Microsoft, an ``AADSTSnnnnn`` code in the description. `explain` turns whatever text the
library gave us (an error dict, an exception's text) into one line for the user. Pure: a table
and a search, tested by a table (tests/test_signin.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    marker: str  # found (case-insensitively) in the error text
    what: str  # what happened, in the user's terms
    fix: str  # what to do; {auth} is the `mailbridge auth ACCOUNT` command


# Google: https://developers.google.com/identity/protocols/oauth2/native-app (errors) and
# https://developers.google.com/identity/protocols/oauth2#expiration (refresh-token expiry).
# Most specific first: the first marker found in the text wins.
GOOGLE: tuple[Failure, ...] = (
    Failure("admin_policy_enforced",
            "your Google Workspace administrator does not allow this app",
            "ask the administrator to trust the OAuth client (Admin console > Security > "
            "API controls), then run {auth}"),
    Failure("org_internal",
            "the OAuth client is limited to the users of the organisation that owns it",
            "sign in with an address of that organisation, or set the consent screen's "
            "audience to External (see docs/google.md), then run {auth}"),
    Failure("access_denied",
            "access was not granted (you pressed Cancel, or your address is not a test user "
            "of the consent screen)",
            "add your address under Google Auth Platform > Audience > Test users, then run "
            "{auth} and press Continue on every screen"),
    Failure("invalid_grant",
            "Google no longer accepts the saved sign-in: it was revoked (access removed, or the "
            "password changed) or it expired, which happens after 7 days while the consent "
            "screen is in Testing",
            "run {auth} (to stop the weekly expiry, publish the app: see docs/google.md)"),
    Failure("invalid_client",
            "Google does not know this OAuth client (deleted, or the wrong JSON file)",
            "download the Desktop client JSON again, point google.client_secrets at it, and "
            "run {auth}"),
    Failure("unauthorized_client",
            "this OAuth client may not use this sign-in (it is not a Desktop app client)",
            "create a client of type Desktop app (see docs/google.md) and run {auth}"),
    Failure("redirect_uri_mismatch",
            "Google refused the loopback address (the client is not a Desktop app client)",
            "create a client of type Desktop app (see docs/google.md) and run {auth}"),
    Failure("insufficient",  # "Request had insufficient authentication scopes"
            "the sign-in lacks a permission mailbridge needs (a box was left unticked on the "
            "consent screen, or the app predates a change of scopes)",
            "run {auth} and leave every permission ticked"),
    Failure("invalid_scope",
            "Google refused a permission mailbridge asks for",
            "enable the Gmail API and the Google Calendar API in the project (see "
            "docs/google.md), then run {auth}"),
    Failure("accessnotconfigured",
            "the Gmail or Calendar API is not enabled in the Google Cloud project",
            "enable it under APIs & Services > Library (see docs/google.md)"),
    Failure("has not been used in project",
            "the Gmail or Calendar API is not enabled in the Google Cloud project",
            "enable it under APIs & Services > Library (see docs/google.md)"),
)

# Microsoft: https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
MICROSOFT: tuple[Failure, ...] = (
    Failure("AADSTS65001",
            "the app has no consent in this organisation (your administrator must approve it)",
            "ask an administrator to grant admin consent for the app (Entra admin center > "
            "App registrations > API permissions > Grant admin consent), then run {auth}"),
    Failure("AADSTS90094",
            "your organisation lets only administrators approve apps",
            "ask an administrator to grant admin consent for the app (see docs/microsoft.md), "
            "then run {auth}"),
    Failure("AADSTS65004", "you declined the permissions on the consent screen",
            "run {auth} and accept"),
    Failure("AADSTS53003",
            "a Conditional Access policy of your organisation blocked the sign-in",
            "ask your administrator to allow the app (or this device or location); "
            "nothing in mailbridge can change this"),
    Failure("AADSTS53000",
            "your organisation requires a managed device for this sign-in",
            "sign in from a compliant device, or ask your administrator to allow the app"),
    Failure("AADSTS50020",
            "the account is not a member of the tenant the config names",
            "set outlook.tenant to your own organisation (or \"consumers\" for a personal "
            "Microsoft account), then run {auth}"),
    Failure("AADSTS90072",
            "the account is not a member of the tenant the config names",
            "set outlook.tenant to your own organisation (or \"consumers\" for a personal "
            "Microsoft account), then run {auth}"),
    Failure("AADSTS700016",
            "no app with this outlook.client_id exists in that tenant",
            "copy the Application (client) ID from the app's Overview page into "
            "outlook.client_id, and check outlook.tenant matches its supported account types"),
    Failure("AADSTS50194",
            "the app accepts only accounts of its own organisation, so tenant \"common\" fails",
            "set outlook.tenant to your directory (tenant) ID, then run {auth}"),
    Failure("AADSTS9002331",
            "the app accepts only personal Microsoft accounts",
            "set outlook.tenant = \"consumers\", or change the app's supported account types"),
    Failure("AADSTS9002346",
            "the app accepts only personal Microsoft accounts",
            "set outlook.tenant = \"consumers\", or change the app's supported account types"),
    Failure("AADSTS7000218",
            "the app registration does not allow public client flows (the device code)",
            "set Authentication > Allow public client flows to Yes in the app registration, "
            "then run {auth}"),
    Failure("AADSTS70011", "Microsoft refused a permission mailbridge asks for",
            "add the delegated Microsoft Graph permissions Calendars.Read, Mail.ReadWrite and "
            "User.Read to the app (see docs/microsoft.md), then run {auth}"),
    Failure("AADSTS70019", "the device code expired before the sign-in was finished",
            "run {auth} again and enter the code within 15 minutes"),
    Failure("AADSTS700082", "the saved sign-in expired after 90 days without use",
            "run {auth}"),
    Failure("AADSTS50173", "the saved sign-in was revoked (the password changed)",
            "run {auth}"),
    Failure("AADSTS50076", "your organisation now requires multi-factor sign-in",
            "run {auth}"),
    Failure("AADSTS50079", "your organisation now requires multi-factor sign-in",
            "run {auth}"),
    Failure("AADSTS70000", "Microsoft no longer accepts the saved sign-in (it was revoked)",
            "run {auth}"),
    Failure("invalid_grant", "Microsoft no longer accepts the saved sign-in",
            "run {auth}"),
    Failure("interaction_required", "Microsoft wants you to sign in again", "run {auth}"),
    Failure("insufficient", "the sign-in lacks a permission mailbridge needs",
            "add Calendars.Read, Mail.ReadWrite and User.Read to the app's API permissions "
            "and run {auth}"),
    Failure("ErrorAccessDenied", "the sign-in lacks a permission mailbridge needs",
            "add Calendars.Read, Mail.ReadWrite and User.Read to the app's API permissions "
            "and run {auth}"),
    Failure("invalid_client",
            "Microsoft does not accept this app (wrong outlook.client_id, or it is not a "
            "public client)",
            "check outlook.client_id and set Allow public client flows to Yes (see "
            "docs/microsoft.md)"),
    Failure("unauthorized_client",
            "Microsoft does not accept this app (wrong outlook.client_id, or it is not a "
            "public client)",
            "check outlook.client_id and set Allow public client flows to Yes (see "
            "docs/microsoft.md)"),
)

TABLES = {"google": GOOGLE, "microsoft": MICROSOFT}
SERVICE_NAMES = {"google": "Google", "microsoft": "Microsoft"}


def known(service: str, text: str) -> Failure | None:
    """The first failure of the table whose marker is in ``text``."""
    folded = text.casefold()
    for failure in TABLES[service]:
        if failure.marker.casefold() in folded:
            return failure
    return None


def explain(service: str, account: str, text: str) -> str:
    """One line: what went wrong and what to do. Unknown failures keep the service's words."""
    auth = f"`mailbridge auth {account}`"
    failure = known(service, text)
    name = SERVICE_NAMES[service]
    if failure is None:
        detail = " ".join(text.split())[:300] or "no reason given"
        return f"account {account!r}: {name} sign-in failed ({detail}); run {auth}"
    return f"account {account!r}: {failure.what}; {failure.fix.format(auth=auth)}"
