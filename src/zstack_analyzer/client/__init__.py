"""A Python client for a running zstack-analyzer server.

Examples
--------
>>> from zstack_analyzer.client import Client
>>> with Client("http://lab-server:8000", token="...") as client:  # doctest: +SKIP
...     image = client.images.upload("cells.czi")
...     stack = image.to_dask()  # lazy, fetched chunk by chunk
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from zstack_analyzer.client._http import RetryPolicy, Transport
from zstack_analyzer.client.errors import (
    AuthError,
    ClientError,
    NotFoundError,
    ServiceUnavailableError,
    TransportError,
)
from zstack_analyzer.client.images import Image, Images

if TYPE_CHECKING:
    from types import TracebackType

__all__ = [
    "AuthError",
    "Client",
    "ClientError",
    "Image",
    "Images",
    "NotFoundError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "TransportError",
]


class Client:
    """A session with one server.

    Parameters
    ----------
    url
        The server's base URL, e.g. ``http://lab-server:8000``.
    token
        Bearer token: the server's ``ZSTACK_API_TOKEN``, or a personal token
        (``ZSTACK_AUTH=users``); both are sent the same way.
    timeout_s
        Longest wait for any one read or write on the socket (not for a whole
        download); connecting is bounded by ``connect_timeout_s``.
    retry
        Bounded retries of 429/503 (after ``Retry-After``) and of failed connections.
    page_size
        Records per request when a list or search is paged.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        retry: RetryPolicy | None = None,
        page_size: int = 500,
    ) -> None:
        self.transport = Transport(
            url,
            token=token,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            retry=retry or RetryPolicy(),
        )
        self.images = Images(self.transport, page_size=page_size)

    @property
    def url(self) -> str:
        """The server's base URL."""
        return self.transport.base_url

    def health(self) -> dict[str, object]:
        """``GET /api/health``."""
        body = self.transport.request("GET", "/api/health").json()
        return body if isinstance(body, dict) else {}

    def close(self) -> None:
        """Close the connections."""
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
