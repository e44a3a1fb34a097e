"""Where credentials come from: a token store the user chose, or a command the user names.

Secrets never live in the TOML file, the ledger, logs or audit entries.

Every account keeps what `mailbridge auth` obtains (refresh tokens, the msal cache, passwords
typed in) in one token store, chosen with the account's ``token_store`` setting:

- ``keyring`` (default): the OS keyring (Secret Service, macOS Keychain, Windows Credential
  Locker), entries under the service ``mailbridge`` and the user name ``ACCOUNT/PURPOSE``
  (purpose: ``imap``, ``caldav``, ``google-refresh-token``, ``msal-cache``, ...). A keyring that
  only writes a plain file (keyrings.alt), or none at all, is refused unless the user picked that
  backend themselves (``PYTHON_KEYRING_BACKEND`` or keyring's own config file).
- ``command``: ``token_store_command`` receives the secret on its standard input and
  ``token_command`` prints it back (``pass insert -m`` / ``pass show``, ``secret-tool
  store`` / ``lookup``); both name ``{purpose}`` (and may name ``{account}``).
- ``file``: one file per secret in ``STATE_DIR/tokens``, mode 0600, its name saying it is plain
  text. For machines where nothing better exists; the user chooses it knowingly.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import keyring
import keyring.backend
import keyring.errors

from mailbridge.adapters import AuthError
from mailbridge.settings import AccountSettings, TokenStoreSettings

SERVICE = "mailbridge"
PLAINTEXT_SUFFIX = ".plaintext-secret"


# Keys that hold a secret are refused wherever they appear: secrets go to the token store.
_SECRET_NAMES = frozenset({"password", "passwd", "pass", "token", "secret", "client_secret",
                           "refresh_token", "access_token", "api_key", "apikey", "app_password"})
_SECRET_SUFFIXES = ("_password", "_secret", "_token", "_api_key")
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "token", "apikey", "accesskey",
                 "privatekey", "credential", "bearer")  # also in camelCase or run together
_SECRET_WORDS = frozenset({"pass", "pwd", "pw", "auth", "cookie"})
# A key ending in one of these names where a secret comes from, or an address: not a secret.
_POINTER_WORDS = frozenset("command cmd uri url endpoint file path".split())


URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s@:]*:[^/?#\s@]*@", re.IGNORECASE)

Key = tuple[str, ...]


@functools.lru_cache(maxsize=4096)  # the same few keys in every account of a long config
def is_secret_key(key: str, declared: frozenset[str] = frozenset()) -> bool:
    """Whether a config key's name says it holds a secret (password, apiKey, auth_token, ...);
    the keys a schema ``declared`` never do."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    words = [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]
    if not words or words[-1] in _POINTER_WORDS or key in declared:
        return False
    joined = "_".join(words)
    if joined in _SECRET_NAMES or joined.endswith(_SECRET_SUFFIXES):
        return True
    return any(part in "".join(words) for part in _SECRET_PARTS) or any(
        word in _SECRET_WORDS or word.removesuffix("s") in _SECRET_WORDS for word in words)


def written_in(document: object, names: frozenset[str],
               declared: Callable[[Mapping[str, object]], frozenset[str]],
               key: Key = ()) -> Iterator[tuple[Key, str, str]]:
    """The secrets written in a config document, as (key, problem, fix): secret-named keys at
    any depth, and user:password@ in any URL-like text. ``names`` are the keys the schemas ask
    for (never secrets); inside an account, ``declared`` gives that account's."""
    if isinstance(document, dict):
        if key[:1] == ("accounts",) and len(key) == 2:
            names = declared(document)
        for name, inner in document.items():
            if is_secret_key(name, names):
                yield ((*key, name), "secrets are not allowed in the config file",
                       _secret_hint((*key, name)))
            else:
                yield from written_in(inner, names, declared, (*key, name))
    elif isinstance(document, list):
        for inner in document:
            yield from written_in(inner, names, declared, key)
    elif isinstance(document, str) and URL_PASSWORD.search(document) and key:
        yield (key, "this address carries a password (user:password@host); secrets are not "
               "allowed in the config file",
               _secret_hint(key) + " (keep only the host part in the address)")


def _secret_hint(key: Key) -> str:
    account = key[1] if len(key) > 2 and key[0] == "accounts" else "NAME"
    return (f"remove {key[-1]} from the file; store the secret in the keyring with "
            f"`mailbridge auth {account}`, or set password_command to a command that prints it")


def _entry(account: str, purpose: str) -> str:
    return f"{account}/{purpose}"


def _run(command: list[str], *, what: str, setting: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"{what}: {setting} could not run: {type(exc).__name__}") from None
    if done.returncode != 0:
        # Neither stdout nor stderr is repeated: a failing command may well have printed the
        # secret (or part of it) before failing. The user can run it by hand to see why.
        raise AuthError(
            f"{what}: {setting} exited with status {done.returncode}; "
            "run the command in a terminal to see why"
        )
    return done.stdout


def run_command(command: str, *, what: str, setting: str = "password_command") -> str:
    """The first line printed by ``command`` (as pass, gpg, op and secret-tool print it).

    ``setting`` names the config key the command came from, for the error message.
    """
    try:
        argv = shlex.split(command)
    except ValueError:
        raise AuthError(f"{what}: {setting} is not a valid command line (check its quotes)") \
            from None
    lines = _run(argv, what=what, setting=setting).splitlines()
    if not lines or not lines[0].strip():
        raise AuthError(f"{what}: {setting} printed nothing")
    return lines[0]


def command_problems(account: AccountSettings, commands: dict[str, str | None]) -> list[str]:
    """Runs each configured command (setting name -> command line) as a pass would, for
    `mailbridge check`: what fails, never what it printed."""
    what = f"account {account.name!r}"
    found = []
    for setting, command in commands.items():
        if command:
            try:
                run_command(command, what=what, setting=setting)
            except AuthError as exc:
                found.append(str(exc).removeprefix(f"{what}: "))
    return found


# --- the OS keyring ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyringState:
    """The keyring backend keyring would use, and why mailbridge will not (None: usable)."""

    name: str
    problem: str | None


def _backend_name(backend: keyring.backend.KeyringBackend) -> str:
    inner = getattr(backend, "backends", None)
    if inner is not None:  # the chainer: name what it chains
        return " + ".join(_backend_name(b) for b in inner) or "no backend"
    return f"{type(backend).__module__}.{type(backend).__name__}"


def _chosen_by_user() -> bool:
    """Whether the user picked the backend (environment or keyringrc.cfg), not keyring."""
    if os.environ.get("PYTHON_KEYRING_BACKEND", "").strip():
        return True
    try:
        return keyring.core.load_config() is not None
    except Exception:  # noqa: BLE001 - a broken keyringrc is not a choice
        return False


def keyring_state() -> KeyringState:
    backend = keyring.get_keyring()
    name = _backend_name(backend)
    # A chain writes to its first (highest-priority) backend: that one decides.
    chained = getattr(backend, "backends", None)
    first = _backend_name(chained[0]) if chained else name
    hint = 'set token_store = "command" or "file" for the account (see docs/tokens.md)'
    if first in ("no backend", "keyring.backends.fail.Keyring") or backend.priority <= 0:
        return KeyringState(name, f"there is no keyring service on this machine; {hint}")
    plain = first.startswith("keyrings.alt") or "plaintext" in first.lower()
    if plain and not _chosen_by_user():
        return KeyringState(
            name,
            f"the only keyring here is {name}, which is not a real keyring (it keeps secrets "
            f"in a file); {hint}, or choose that backend yourself with PYTHON_KEYRING_BACKEND",
        )
    return KeyringState(name, None)


# --- one account's token store --------------------------------------------------------------


@dataclass(frozen=True)
class TokenStore:
    """Where one account's credentials are kept (see the module docstring)."""

    account: str
    settings: TokenStoreSettings

    @property
    def kind(self) -> str:
        return self.settings.kind

    def describe(self) -> str:
        """A short phrase naming the backend, for `auth` and `check` (never the secret)."""
        if self.kind == "command":
            program = shlex.split(self.settings.store_command or "")[:1] or ["?"]
            return f"the command store ({program[0]}, token_command/token_store_command)"
        if self.kind == "file":
            return f"a plain-text file, mode 0600, in {self._dir()}"
        return f"the keyring ({keyring_state().name})"

    def problem(self) -> str | None:
        """Why the store cannot be used, found without reading a secret; None when it can."""
        if self.kind == "keyring":
            return keyring_state().problem
        if self.kind == "command" and not (
            self.settings.store_command and self.settings.lookup_command
        ):
            return ('token_store = "command" needs both token_store_command and '
                        "token_command")
        if self.kind == "file" and self.settings.directory is None:
            return 'token_store = "file" needs a state directory'
        return None

    def _what(self) -> str:
        return f"account {self.account!r}"

    def _fail_if_unusable(self) -> None:
        problem = self.problem()
        if problem:
            raise AuthError(f"{self._what()}: {problem}")

    def _command(self, template: str, purpose: str) -> list[str]:
        # Substituted word by word, so an account or purpose never splits a word.
        words = shlex.split(template)
        return [w.replace("{account}", self.account).replace("{purpose}", purpose) for w in words]

    def _dir(self) -> Path:
        return (self.settings.directory or Path("?")) / "tokens"

    def _file(self, purpose: str) -> Path:
        return self._dir() / f"{self.account}.{purpose}{PLAINTEXT_SUFFIX}"

    def lookup(self, purpose: str) -> str | None:
        self._fail_if_unusable()
        if self.kind == "command":
            assert self.settings.lookup_command
            # Missing is told apart from broken only by the command itself; an empty answer
            # means "nothing stored".
            try:
                text = _run(
                    self._command(self.settings.lookup_command, purpose),
                    what=self._what(), setting="token_command",
                )
            except AuthError as exc:
                # pass and secret-tool fail the same way for "not stored" and "broken".
                raise AuthError(
                    f"{exc} (if nothing is stored yet, run `mailbridge auth {self.account}`)"
                ) from None
            return text.removesuffix("\n") or None
        if self.kind == "file":
            path = self._file(purpose)
            try:
                mode = path.stat().st_mode & 0o777
            except FileNotFoundError:
                return None
            if mode & 0o077:
                raise AuthError(
                    f"{self._what()}: {path} can be read by others (mode {mode:o}); "
                    f"run `chmod 600 {path}`"
                )
            return path.read_text(encoding="utf-8") or None
        try:
            return keyring.get_password(SERVICE, _entry(self.account, purpose))
        except keyring.errors.KeyringError as exc:
            raise AuthError(
                f"{self._what()}: the keyring is not usable here ({type(exc).__name__}); "
                'set token_store = "command" or "file" for the account (see docs/tokens.md)'
            ) from None

    def store(self, purpose: str, secret: str) -> None:
        self._fail_if_unusable()
        if self.kind == "command":
            assert self.settings.store_command
            _run(
                self._command(self.settings.store_command, purpose),
                what=self._what(), setting="token_store_command", stdin=secret,
            )
            return
        if self.kind == "file":
            folder = self._dir()
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
            path = self._file(purpose)
            partial = path.with_name(path.name + ".new")
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            # Created 0600 from the start: the secret is never readable by others, not even
            # for a moment.
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(secret)
            partial.replace(path)
            return
        try:
            keyring.set_password(SERVICE, _entry(self.account, purpose), secret)
        except keyring.errors.KeyringError as exc:
            raise AuthError(
                f"{self._what()}: cannot write to the keyring ({type(exc).__name__}); "
                'set token_store = "command" or "file" for the account (see docs/tokens.md)'
            ) from None

    def forget(self, purpose: str) -> bool:
        """Remove the secret; whether there was one (the command store cannot tell: True)."""
        if self.kind == "command":
            # There is no standard "delete" command; storing nothing makes it unusable.
            self.store(purpose, "")
            return True
        if self.kind == "file":
            try:
                self._file(purpose).unlink()
            except FileNotFoundError:
                return False
            return True
        try:
            keyring.delete_password(SERVICE, _entry(self.account, purpose))
        except keyring.errors.PasswordDeleteError:
            return False
        except keyring.errors.KeyringError as exc:
            raise AuthError(f"{self._what()}: cannot use the keyring ({type(exc).__name__})") \
                from None
        return True


def token_store(account: AccountSettings | str) -> TokenStore:
    if isinstance(account, str):
        return TokenStore(account, TokenStoreSettings())
    return TokenStore(account.name, account.token_store)


# --- the calls adapters make ----------------------------------------------------------------


def _name(account: AccountSettings | str) -> str:
    return account if isinstance(account, str) else account.name


def lookup(account: AccountSettings | str, purpose: str, command: str | None = None) -> str | None:
    """The secret, from ``command`` when given, else the account's token store; None when
    there is none. Given only a name, the store is the keyring."""
    if command:
        return run_command(command, what=f"account {_name(account)!r}")
    return token_store(account).lookup(purpose)


def require(account: AccountSettings | str, purpose: str, command: str | None = None) -> str:
    secret = lookup(account, purpose, command)
    if not secret:
        name = _name(account)
        raise AuthError(
            f"account {name!r}: no {purpose} credential in {token_store(account).describe()}; "
            f"run `mailbridge auth {name}`"
        )
    return secret


def store(account: AccountSettings | str, purpose: str, secret: str) -> None:
    token_store(account).store(purpose, secret)


def forget(account: AccountSettings | str, purpose: str) -> bool:
    return token_store(account).forget(purpose)
