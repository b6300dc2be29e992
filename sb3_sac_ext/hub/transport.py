"""
Calls to the Hugging Face Hub through ``huggingface_hub``: a bounded timeout on every request, a bounded retry on
network errors and HTTP 5xx / 408 / 429, and ``huggingface_hub``'s errors mapped to our typed Hub errors
(:mod:`sb3_sac_ext.common.errors`).

:data:`TIMEOUT`, :data:`RETRIES` and :data:`RETRY_WAIT` are read at each call; setting them on
:mod:`sb3_sac_ext.hub` sets them here.
"""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sb3_sac_ext.common.errors import (
    HubAuthError,
    HubConnectionError,
    HubDependencyError,
    HubError,
    HubFileNotFoundError,
    HubRepositoryNotFoundError,
    HubRevisionNotFoundError,
    SB3SacExtError,
)

INSTALL_HINT = 'pip install "sb3-sac-ext[hub]"'
# Attempts of each Hub call on network errors and HTTP 5xx / 429, and the first wait between them (doubled each time)
RETRIES = 3
RETRY_WAIT = 1.0
# Seconds: connection and read timeout of every request (huggingface_hub's own default is no timeout)
TIMEOUT = 30.0

T = TypeVar("T")


def hub_module() -> Any:
    """:return: The ``huggingface_hub`` module, or a clear error naming the extra to install."""
    try:
        import huggingface_hub
    except ImportError as e:
        raise HubDependencyError(f"The Hub tools need huggingface_hub: {INSTALL_HINT} ({e})") from None
    return huggingface_hub


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level exceptions of the HTTP client that ``huggingface_hub`` uses (httpx2, httpx or requests)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        errors.extend(getattr(module, name) for name in names if isinstance(getattr(module, name, None), type))
    return tuple(errors)


def status_code(error: BaseException) -> int | None:
    """:return: The HTTP status of a failed request, or None for other errors."""
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _is_transient(error: BaseException) -> bool:
    status = status_code(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    return isinstance(error, _transport_errors())


@contextlib.contextmanager
def bounded_timeout(seconds: float) -> Iterator[None]:
    """
    Give the shared ``huggingface_hub`` HTTP client a timeout while inside the block, when it has none
    (its default). A timeout configured by the user (``huggingface_hub.set_client_factory``) is kept.

    :param seconds: The timeout
    """
    session = None
    previous = None
    with contextlib.suppress(Exception):
        from huggingface_hub.utils import get_session

        session = get_session()
        previous = session.timeout
        if all(getattr(previous, name, 0) is None for name in ("connect", "read", "write", "pool")):
            session.timeout = seconds
        else:
            session = None
    try:
        yield
    finally:
        if session is not None:
            with contextlib.suppress(Exception):
                session.timeout = previous


def describe(error: BaseException) -> str:
    """:return: ``"HTTP <status>: <first line>"``, or the exception type and first line, for error messages."""
    status = status_code(error)
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"HTTP {status}: {first_line}" if status is not None else f"{type(error).__name__}: {first_line}"


def _retry(call: Callable[[], T], what: str, endpoint: str | None) -> T:
    """
    Run ``call`` up to :data:`RETRIES` times while it fails on the network or with HTTP 5xx / 408 / 429, waiting
    :data:`RETRY_WAIT` seconds (doubled each time) in between; other errors are raised at once.

    :param call: The call
    :param what: What it does, for the error message
    :param endpoint: The Hub URL, for the error message
    :return: What ``call`` returns
    :raise HubConnectionError: when every attempt failed on the network or with a server error
    """
    wait = RETRY_WAIT
    for attempt in range(1, RETRIES + 1):
        try:
            with bounded_timeout(TIMEOUT):
                return call()
        except Exception as e:
            if not _is_transient(e):
                raise
            if attempt == RETRIES:
                where = endpoint or "https://huggingface.co"
                raise HubConnectionError(
                    f"{what} failed {RETRIES} times: the Hub at {where} is unreachable or keeps failing ({describe(e)}). "
                    "Check the network connection and the endpoint, then try again."
                ) from e
            time.sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _translate(error: BaseException, repo_id: str, revision: str | None, filename: str | None = None) -> BaseException:
    """:return: A ``huggingface_hub`` error as one of our typed errors (or the error itself when it is not a Hub error)."""
    hub_errors = hub_module().errors
    if isinstance(error, SB3SacExtError):
        return error
    if isinstance(error, hub_errors.RevisionNotFoundError):
        return HubRevisionNotFoundError(
            f"Revision {revision!r} does not exist in the repository {repo_id!r}: pass an existing commit sha, branch or tag."
        )
    if isinstance(error, hub_errors.RemoteEntryNotFoundError) and filename is not None:
        return HubFileNotFoundError(f"File {filename!r} does not exist in {repo_id!r} at revision {revision or 'main'!r}.")
    if isinstance(error, (hub_errors.RepositoryNotFoundError, hub_errors.RemoteEntryNotFoundError)):
        # GatedRepoError is a RepositoryNotFoundError; 401 without a token is reported as RepoNotFound by the Hub
        return HubRepositoryNotFoundError(
            f"Repository {repo_id!r} does not exist, or it is private and the token cannot read it "
            "(check the repo id, the token, and the endpoint)."
        )
    status = status_code(error)
    if status in (401, 403):
        return HubAuthError(
            f"The Hub refused the token for {repo_id!r} (HTTP {status}): use a token with write access to this "
            "namespace (https://huggingface.co/settings/tokens), passed as token=... or the HF_TOKEN variable."
        )
    if (status is not None and status >= 500) or isinstance(error, _transport_errors()):
        return HubConnectionError(f"The Hub request for {repo_id!r} failed: {describe(error)}")
    if isinstance(error, hub_errors.HfHubHTTPError):
        return HubError(f"The Hub request for {repo_id!r} failed: {describe(error)}")
    return error


def call_hub(
    call: Callable[[], T], what: str, repo_id: str, revision: str | None, endpoint: str | None, filename: str | None = None
) -> T:
    """
    Run a Hub call with the bounded timeout and retry (:func:`_retry`), and raise our typed errors (:func:`_translate`).

    :param call: The call
    :param what: What it does, for error messages (``"Uploading to 'me/x'"``)
    :param repo_id: The repository, for error messages
    :param revision: The revision, for error messages
    :param endpoint: The Hub URL, for error messages
    :param filename: The file the call downloads, if any (a missing entry is then a missing file)
    :return: What ``call`` returns
    :raise HubError: (a subclass) for every failure of the Hub or the network
    """
    try:
        return _retry(call, what, endpoint)
    except HubError:
        raise
    except Exception as e:
        translated = _translate(e, repo_id, revision, filename)
        if translated is e:
            raise
        raise translated from e


def resolve_token(token: str | None) -> str:
    """
    :param token: A token, or None to use ``HF_TOKEN`` or the saved login
    :return: The token
    :raise HubAuthError: when there is none (nothing has been sent)
    """
    if token:
        return token
    found = hub_module().get_token()
    if not found:
        raise HubAuthError(
            "No Hugging Face token: nothing was uploaded. Pass token=..., set the HF_TOKEN environment variable, or run "
            "`hf auth login` (create a token with write access at https://huggingface.co/settings/tokens)."
        )
    return found
