"""Filing for ``zstack ingest`` without ``--server``: projects and datasets in the database of ZSTACK_*.

The command line is the database's owner, so it acts as the single user of
the none/token modes (everything it makes goes to the group ``default``, like
its images).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from zstack_analyzer.service.annotations.containers import find_or_create, link_images
from zstack_analyzer.service.auth.permissions import SINGLE_USER

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from zstack_analyzer.service.db.session import Database

__all__ = ["LocalFiler"]


class LocalFiler:
    """Links records into datasets made on first use (the :class:`~zstack_analyzer.batch.filing.Filer` protocol)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._ids: dict[tuple[str | None, str], int] = {}
        self._lock = threading.Lock()

    def _dataset_id(self, session: Session, project: str | None, dataset: str) -> int:
        from zstack_analyzer.service.auth.placement import choose_group

        key = (project, dataset)
        if key not in self._ids:
            placement = choose_group(session, SINGLE_USER, None)
            project_id = None
            if project:
                project_id = find_or_create(session, SINGLE_USER, "project", project, placement).id
            row = find_or_create(
                session, SINGLE_USER, "dataset", dataset, placement, project_id=project_id
            )
            self._ids[key] = row.id
        return self._ids[key]

    def file(self, image_id: str, project: str | None, dataset: str) -> None:
        """Link ``image_id`` into ``dataset`` (of ``project``)."""

        def run(session: Session) -> None:
            link_images(
                session, SINGLE_USER, self._dataset_id(session, project, dataset), [image_id]
            )

        with self._lock:
            self.database.call(run)
