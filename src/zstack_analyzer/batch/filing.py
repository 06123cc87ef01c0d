"""File ingested images into a project and dataset (``zstack ingest --project P --dataset D``).

Why a sink that wraps a sink: the walk, the per-file work and the commit stay
as they are (local database or a server's API); after each file is in, its
record is linked into the dataset the options name, through a *filer* that
speaks to the same place (the database of ZSTACK_*, or the server's
``/api/projects`` and ``/api/datasets`` routes). ``--dataset-from-folder``
makes one dataset per folder, named by the folder's path below the ingested
root (``plate1/A01``), so a tree of acquisitions keeps its shape.

A file that was already present from an earlier run is not filed again (the
ingest skips it before any commit): file those with ``POST /api/datasets/{id}/images``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

from zstack_analyzer.batch.ingest import Commit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager

    from zstack_analyzer.batch.ingest import Sink
    from zstack_analyzer.batch.runner import Runner
    from zstack_analyzer.batch.walk import FileEntry

__all__ = ["Filer", "Filing", "FilingSink", "HttpFiler"]


class Filer(Protocol):
    """Links an image into a dataset (made on first use, in the project when given)."""

    def file(self, image_id: str, project: str | None, dataset: str) -> None:
        """Link ``image_id``; raises with a message a person reads when it cannot."""
        ...


@dataclass(frozen=True, slots=True)
class Filing:
    """Where ingested files go: a fixed dataset, or one per folder below ``roots``."""

    project: str | None = None
    dataset: str | None = None
    from_folder: bool = False
    roots: tuple[str, ...] = field(default_factory=tuple)

    @property
    def active(self) -> bool:
        """Whether anything is to be filed at all."""
        return self.dataset is not None or self.from_folder

    def dataset_for(self, path: str) -> str | None:
        """The dataset name for a file at ``path`` (``None``: not filed).

        Examples
        --------
        >>> Filing(from_folder=True, roots=("/data/screen",)).dataset_for("/data/screen/p1/A01/x.tif")
        'p1/A01'
        >>> Filing(from_folder=True, roots=("/data/screen",)).dataset_for("/data/screen/x.tif")
        'screen'
        """
        if not self.from_folder:
            return self.dataset
        file = Path(path).absolute()
        for root in self.roots:
            base = Path(root).absolute()
            if base.is_file() or base == file:
                return base.parent.name or base.name
            if file.is_relative_to(base):
                parent = file.relative_to(base).parent
                return PurePosixPath(*parent.parts).as_posix() if parent.parts else base.name
        return file.parent.name


class FilingSink:
    """A sink that files each new record after the wrapped sink commits it."""

    def __init__(self, inner: Sink, filer: Filer, filing: Filing) -> None:
        self.inner = inner
        self.filer = filer
        self.filing = filing
        self.uses_cluster = inner.uses_cluster

    def is_present(self, entry: FileEntry) -> bool:  # noqa: D102  (the Sink protocol)
        return self.inner.is_present(entry)

    def task(self) -> Callable[[Any], Any]:  # noqa: D102
        return self.inner.task()

    def job(self, entry: FileEntry) -> Any:  # noqa: D102
        return self.inner.job(entry)

    def local_runner(self) -> AbstractContextManager[Runner] | None:  # noqa: D102
        return self.inner.local_runner()

    def commit(self, entry: FileEntry, result: Any) -> Commit:
        """The inner commit, then the filing of its record (a filing failure fails the file)."""
        commit = self.inner.commit(entry, result)
        dataset = self.filing.dataset_for(entry.path)
        if commit.image_id is None or commit.outcome not in ("ingested", "present") or not dataset:
            return commit
        try:
            self.filer.file(commit.image_id, self.filing.project, dataset)
        except Exception as exc:  # the record is in; say why it is not filed
            return Commit(
                "failed",
                f"stored as {commit.image_id} but not filed in {dataset!r}: {exc}",
                commit.image_id,
            )
        return commit


class HttpFiler:
    """Files records through a server's API (the same client and token as the upload).

    A project or dataset is chosen as the in-process filer chooses it
    (:func:`~zstack_analyzer.service.annotations.containers.find_or_create`): the
    caller's own of that name, else another's the caller may change, else a new one.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._ids: dict[tuple[str, str | int | None], int] = {}
        self._lock = threading.Lock()

    def _find_or_make(self, kind: str, name: str, project_id: int | None) -> int:
        key = (f"{kind}:{name}", project_id)
        with self._lock:
            if key in self._ids:
                return self._ids[key]
            params: dict[str, Any] = {"name": name, "limit": 1000}
            if project_id is not None:
                params["project_id"] = project_id
            found = self.client.get(f"/api/{kind}s", params=params)
            _raise(found)
            exact = [row for row in found.json()["data"] if row["name"] == name]
            # Never one the caller may only see (every link into it answers 403): their own
            # first, then another's they may change, oldest first; else a new one. A server
            # without these fields (older) says nothing: its first, as before.
            usable = [row for row in exact if row.get("can_change", True)]
            usable.sort(key=lambda row: (not row.get("owned_by_you", True), int(row["id"])))
            if usable:
                self._ids[key] = int(usable[0]["id"])
            else:
                body: dict[str, Any] = {"name": name}
                if project_id is not None:
                    body["project_id"] = project_id
                made = self.client.post(f"/api/{kind}s", json=body)
                _raise(made)
                self._ids[key] = int(made.json()["id"])
            return self._ids[key]

    def file(self, image_id: str, project: str | None, dataset: str) -> None:
        """Link ``image_id`` into ``dataset`` (of ``project``), making them on first use."""
        project_id = self._find_or_make("project", project, None) if project else None
        dataset_id = self._find_or_make("dataset", dataset, project_id)
        _raise(
            self.client.post(f"/api/datasets/{dataset_id}/images", json={"image_ids": [image_id]})
        )


def _raise(response: Any) -> None:
    """Raise an answer of 400 or more as the server's detail (else the body as text).

    The body may be JSON that is not an object (a proxy's or an old server's list or
    string): it is then said as text, never an AttributeError of its own.
    """
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        detail = body.get("detail", response.text) if isinstance(body, dict) else response.text
        msg = f"HTTP {response.status_code}: {str(detail)[:300]}"
        raise RuntimeError(msg)


def filing_roots(paths: Sequence[str | Path]) -> tuple[str, ...]:
    """The ingested paths as roots for ``--dataset-from-folder``."""
    return tuple(str(Path(p).absolute()) for p in paths)
