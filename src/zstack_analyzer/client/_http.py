"""One HTTP session to the server: bearer token, bounded timeouts, bounded retries.

Why here and not in each call: every request the client makes (records,
pictures, downloads, uploads) gets the same policy. A 429 or 503 is retried
after the server's ``Retry-After`` (capped, so a "come back in 30 s" from an
unreachable bucket cannot stall a notebook for minutes); a connection error or
timeout is retried only for requests that are safe to repeat. After the last
attempt the failure is raised as a typed :mod:`~zstack_analyzer.client.errors`
error carrying the problem+json ``code``.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from zstack_analyzer.client.errors import ClientError, TransportError, error_for

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["RetryPolicy", "Transport", "parse_retry_after"]

logger = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 503})
_IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "PUT", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before giving up.

    Parameters
    ----------
    attempts
        Total tries of one request (1: no retry).
    max_wait_s
        Longest single wait, whatever ``Retry-After`` says.
    backoff_s
        First wait when the server gave no ``Retry-After`` (doubles each time).
    """

    attempts: int = 4
    max_wait_s: float = 10.0
    backoff_s: float = 0.5

    def wait(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to sleep before try number ``attempt + 1``."""
        base = retry_after if retry_after is not None else self.backoff_s * (2**attempt)
        return max(0.0, min(base, self.max_wait_s))


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` if absent or bad."""
    if not value:
        return None
    text = value.strip()
    with contextlib.suppress(ValueError):
        return max(0.0, float(text))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(text)
        return max(0.0, when.timestamp() - time.time())
    return None


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:500]}
    return body if isinstance(body, dict) else {"detail": str(body)[:500]}


class Transport:
    """An ``httpx.Client`` with the retry and error policy of :mod:`zstack_analyzer.client`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        timeout: httpx.Timeout,
        retry: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retry = retry
        self._sleep = sleep
        self.http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        rewind: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """The response of a successful request (2xx/3xx), its body read."""
        with self.stream(method, url, rewind=rewind, **kwargs) as response:
            response.read()
        return response

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        rewind: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> Iterator[httpx.Response]:
        """A successful response whose body is not read yet (downloads stream it to disk).

        ``rewind`` is called before every retry of a request with a body (an upload
        seeks its file back to the start and resets its progress).
        """
        attempts = max(1, self.retry.attempts)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            if attempt and rewind is not None:
                rewind()
            try:
                request = self.http.build_request(method, url, **kwargs)
                response = self.http.send(request, stream=True)
            except (httpx.TransportError, OSError) as exc:
                if last or method.upper() not in _IDEMPOTENT:
                    msg = f"{method} {self.base_url}{url}: {type(exc).__name__}: {exc}"
                    raise TransportError(msg, status=0, code="transport_error") from exc
                delay = self.retry.wait(attempt, None)
                logger.info("%s %s failed (%s); retrying in %.1f s", method, url, exc, delay)
                self._sleep(delay)
                continue
            if response.status_code < 400:
                try:
                    yield response
                finally:
                    response.close()
                return
            try:
                response.read()
            finally:
                response.close()
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if response.status_code in _RETRY_STATUSES and not last:
                delay = self.retry.wait(attempt, retry_after)
                logger.info(
                    "%s %s: %d; retrying in %.1f s", method, url, response.status_code, delay
                )
                self._sleep(delay)
                continue
            raise error_for(response.status_code, _problem(response), retry_after=retry_after)
        msg = f"{method} {url}: no attempt made"  # unreachable: attempts >= 1
        raise ClientError(msg, status=0, code="transport_error")
