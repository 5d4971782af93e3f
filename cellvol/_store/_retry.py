"""Retrying S3 requests that fail transiently: fast jittered backoff within a bounded budget.

What fails transiently: a 5xx answer (500 InternalError, 503 SlowDown...), throttling (429,
``SlowDown``, ``Throttling``), S3's 400 ``RequestTimeout``, a body the server found changed
in transit (400 ``BadDigest``, ``XAmzContentSHA256Mismatch``: it no longer matched the
checksum or signed hash it was sent with), a connection refused, reset or timed out before
an answer, and an answer whose body is cut short or broken off. Anything else (404, 403,
412...) is an answer, never retried.

Two places retry, one kind of failure each, and they share one budget per request (one
count of tries, kept for the request's task in :data:`_SPENT`), so they never multiply:

- botocore's client, whose ``needs-retry`` event asks cellvol (:func:`install`) after every
  attempt of every request (paginated listings included) whether to try again, and how long
  to wait first: failed answers and connections. botocore's own retries are turned off, as
  they wait up to seconds between attempts (one failure in ten made a write five times
  slower).
- :func:`retry_reads`, around a request *and the reading of its body*, which botocore hands
  over unread for downloads: bodies shorter than their ``Content-Length``, connections lost
  mid-body, unparsable answers.

When the budget is spent, :class:`~cellvol.errors.StoreUnavailableError` names the request's
key; a resumed write starts again from the shards it had finished.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from cellvol.errors import InvalidInputError, StoreUnavailableError

__all__ = [
    "RetryPolicy",
    "ShortBodyError",
    "describe_failure",
    "install",
    "is_transient",
    "retry_reads",
]

# Error codes S3 (and S3-compatible stores) answer with when trying again later may succeed.
_TRANSIENT_CODES: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "BandwidthLimitExceeded",
        "EC2ThrottledException",
        # The body arrived changed (corrupted in transit): sent again, it arrives whole.
        "BadDigest",
        "XAmzContentSHA256Mismatch",
    }
)
_TRANSIENT_STATUS: Final = frozenset({408, 429})
_HANDLER_ID: Final = "cellvol-retry"


class ShortBodyError(ConnectionError):
    """An answer's body ended, broke off or stalled before all of it arrived."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how patiently, one S3 request is tried.

    Parameters
    ----------
    attempts
        Tries of one request, the first included (1: never retried).
    first_delay
        Seconds: the wait before the first retry is between half this and this; each
        further wait doubles the range, up to ``max_delay``.
    max_delay
        Seconds: the longest wait between two tries.
    """

    attempts: int = 10
    first_delay: float = 0.05
    max_delay: float = 2.0

    @classmethod
    def of(cls, value: Any, url: str) -> RetryPolicy:
        """The policy the ``retry`` storage option asks for (a mapping; None: the defaults).

        Raises
        ------
        InvalidInputError
            For anything but a mapping of the three fields to positive numbers.
        """
        if value is None:
            return cls()
        names = [f.name for f in fields(cls)]
        if not isinstance(value, Mapping):
            raise InvalidInputError(
                f"storage option 'retry' for {url} must be a mapping with some of "
                f"{', '.join(names)}, got {type(value).__name__}"
            )
        unknown = sorted(str(k) for k in value if k not in names)
        if unknown:
            raise InvalidInputError(
                f"unknown key {', '.join(map(repr, unknown))} in storage option 'retry' for "
                f"{url}: expected some of {', '.join(names)}"
            )
        policy = cls(**value)
        whole = isinstance(policy.attempts, int) and not isinstance(policy.attempts, bool)
        if not whole or policy.attempts < 1:
            raise InvalidInputError(
                f"storage option retry={{'attempts': {policy.attempts!r}}} for {url}: "
                "expected a whole number of tries, at least 1"
            )
        for name in ("first_delay", "max_delay"):
            seconds = getattr(policy, name)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                raise InvalidInputError(
                    f"storage option retry={{{name!r}: {seconds!r}}} for {url}: expected "
                    "seconds, a number of at least 0"
                )
        return policy

    def delay(self, retry: int, answered: bool = True) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first).

        ``answered``: the store answered with an error (5xx, throttling), which says it is
        failing or busy. A request that got no answer, or lost it halfway (a dropped
        connection, a body cut short), is retried at once the first time, on a new
        connection, and only then waits, one step behind.
        """
        if not answered:
            if retry == 1:
                return 0.0
            retry -= 1
        ceiling = min(self.max_delay, self.first_delay * 2.0 ** (retry - 1))
        # "Equal jitter": never less than half the ceiling, so that a throttled store sees
        # the rate fall, and spread over the other half, so that requests failed together
        # do not come back together.
        return ceiling / 2 + random.uniform(0, ceiling / 2)


# The tries a request around its body (retry_reads) has spent, and those of its current
# call (botocore's attempts so far), as needs-retry sees them in the same task.
_SPENT: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "cellvol_retry_spent", default=None
)


def install(client: Any, policy: RetryPolicy, connect_attempts: int | None = None) -> None:
    """Make botocore ``client`` retry failed answers and connections by ``policy``.

    ``connect_attempts``: at most this many tries when no connection can be made at all (a
    probe's: an endpoint that is not there is reported at once, not after the budget).
    Installing again on the same client changes nothing.
    """

    def needs_retry(
        *,
        response: Any = None,
        attempts: int,
        caught_exception: BaseException | None = None,
        **_: Any,
    ) -> float | None:
        spent = _SPENT.get()
        earlier = 0
        if spent is not None:
            spent[1] = attempts
            earlier = spent[0]
        if earlier + attempts >= policy.attempts:
            return None
        answered = caught_exception is None
        if caught_exception is not None:
            failed = _is_connection_error(caught_exception)
            if connect_attempts is not None and _cannot_connect(caught_exception):
                failed = failed and attempts < connect_attempts
        else:
            failed = response is not None and _is_transient_answer(response[1])
        return policy.delay(attempts, answered) if failed else None

    client.meta.events.register("needs-retry.s3", needs_retry, unique_id=_HANDLER_ID)


async def retry_reads[T](
    call: Callable[[], Awaitable[T]], policy: RetryPolicy, describe: Callable[[], str]
) -> T:
    """``await call()``, again after a broken answer body, within ``policy``.

    Failed answers and connections were retried inside ``call`` already (see
    :func:`install`), on the same count of tries: when one comes out, the budget is spent,
    and a broken body is tried again only while tries are left. Either way that ends in
    :class:`StoreUnavailableError`, whose message starts with ``describe()`` (the request
    and its key). Other errors are raised as they are.
    """
    started = time.monotonic()
    spent = [0, 0]  # tries before this call, tries of this call (botocore's attempts)
    token = _SPENT.set(spent)
    try:
        while True:
            spent[1] = 0
            try:
                return await call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                spent[0] += max(spent[1], 1)
                if not (_is_body_error(exc) and spent[0] < policy.attempts):
                    raise _spent(describe(), policy, started, exc) from exc
            await asyncio.sleep(policy.delay(spent[0], answered=False))
    finally:
        _SPENT.reset(token)


def _spent(
    request: str, policy: RetryPolicy, started: float, exc: BaseException
) -> StoreUnavailableError:
    elapsed = time.monotonic() - started
    return StoreUnavailableError(
        f"{request} kept failing for {elapsed:.1f} s, up to the retry budget of "
        f"{policy.attempts} tries; the last failure: {describe_failure(exc)}",
        hint="try again once the store answers (a write resumes from where it "
        "stopped with {resume=True}), or allow more tries with the storage option "
        "'retry' (attempts, first_delay, max_delay)",
    )


def is_transient(exc: BaseException) -> bool:
    """Whether trying ``exc``'s request again may succeed."""
    if _is_connection_error(exc) or _is_body_error(exc):
        return True
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and _is_transient_answer(response)


def _is_transient_answer(parsed: Mapping[str, Any]) -> bool:
    status = (parsed.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    code = (parsed.get("Error") or {}).get("Code")
    if isinstance(status, int) and (status >= 500 or status in _TRANSIENT_STATUS):
        return True
    return code in _TRANSIENT_CODES


def _is_connection_error(exc: BaseException) -> bool:
    """A request that got no answer: botocore wraps every failure to send or connect."""
    boto = importlib.import_module("botocore.exceptions")
    aiohttp = importlib.import_module("aiohttp")
    if isinstance(exc, StoreUnavailableError):
        return False
    return isinstance(
        exc,
        boto.HTTPClientError
        | boto.ConnectionError
        | aiohttp.ClientError
        | ConnectionError
        | TimeoutError,
    )


def _cannot_connect(exc: BaseException) -> bool:
    """No connection could be made (refused, unresolvable, or timed out while connecting)."""
    boto = importlib.import_module("botocore.exceptions")
    aiohttp = importlib.import_module("aiohttp")
    if isinstance(exc, boto.ConnectTimeoutError):
        return True
    cause = getattr(exc, "kwargs", {}).get("error")
    return isinstance(exc, boto.EndpointConnectionError) and isinstance(
        cause, aiohttp.ClientConnectorError | socket.gaierror
    )


def _is_body_error(exc: BaseException) -> bool:
    """An answer whose body broke off, came short or could not be parsed.

    botocore wraps whatever fails while a request is sent (:func:`_is_connection_error`), so
    the network's own errors that come out of a call unwrapped came from reading a body.
    """
    boto = importlib.import_module("botocore.exceptions")
    parsers = importlib.import_module("botocore.parsers")
    aiohttp = importlib.import_module("aiohttp")
    if isinstance(exc, StoreUnavailableError | boto.HTTPClientError | boto.ConnectionError):
        return False
    return isinstance(
        exc,
        ShortBodyError
        | boto.ResponseStreamingError
        | boto.IncompleteReadError
        | parsers.ResponseParserError
        | aiohttp.ClientError
        | ConnectionError
        | TimeoutError,
    )


def describe_failure(exc: BaseException) -> str:
    """A failure in a few words: ``HTTP 503 SlowDown``, or the exception's type and text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = (response.get("Error") or {}).get("Code")
        return f"HTTP {status} {code}".strip()
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
