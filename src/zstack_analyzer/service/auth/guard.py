"""The one enforcement point: every ``/api`` route of the image routers depends on :func:`authorize`.

It resolves the caller (401/403, ``principal.py``) and, for any route with an
``{image_id}`` in its path (record, metadata, every picture, histogram,
download, the virtual OME-Zarr and tiles, delete, move, and any route added
later under that prefix), loads the image and checks it:

- not visible to the caller: 404, with the same body as an unknown id (its
  existence is not disclosed);
- visible, but the method changes it (anything but GET/HEAD) and the caller
  may not change it: 403;
- a route marked :func:`annotates` (tags, key-value pairs, comments,
  attachments; ROIs) asks for the right to annotate instead, one marked
  ``image_action(Action.VIEW)`` (unlinking from a dataset, which changes the
  dataset) only for the right to see.

Lists, search and lookups filter in their queries instead
(:func:`~.permissions.visible_images_filter`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import HTTPException, Request

from zstack_analyzer.service.auth.permissions import Action, allows
from zstack_analyzer.service.auth.principal import SAFE_METHODS, PrincipalDep
from zstack_analyzer.service.errors import ImageNotFoundError

if TYPE_CHECKING:
    from zstack_analyzer.service.db.session import Database
    from zstack_analyzer.service.images_service import RecordMemo

__all__ = ["action_of", "annotates", "authorize", "image_action"]


#: The attribute :func:`image_action` sets on a route's endpoint.
ACTION_ATTRIBUTE = "image_action"
F = TypeVar("F", bound=Callable[..., Any])


def image_action(action: Action) -> Callable[[F], F]:
    """Declare what a route that is not GET does to the image in its path (default: change it).

    Why: a write to an annotation route (tags, key-value pairs, comments,
    ROIs) needs only the right to annotate the image (read-annotate groups
    let members annotate others' images), and unlinking an image from a
    dataset changes the dataset, not the image (``Action.VIEW``). Put it
    below the router's decorator::

        @router.put("/{image_id}/tags")
        @annotates
        def put_tags(...): ...
    """

    def mark(endpoint: F) -> F:
        setattr(endpoint, ACTION_ATTRIBUTE, action)
        return endpoint

    return mark


#: :func:`image_action` for routes that annotate the image in their path.
annotates = image_action(Action.ANNOTATE)


def action_of(method: str, route: object = None) -> Action:
    """What a request does to the image in its path (``route``: the matched route, if known).

    Safe methods view it; others change it, unless the route declares otherwise:
    by :func:`image_action` (or :data:`annotates`) on its endpoint.
    """
    if method in SAFE_METHODS:
        return Action.VIEW
    declared = getattr(getattr(route, "endpoint", None), ACTION_ATTRIBUTE, None)
    if isinstance(declared, Action):
        return declared
    return Action.CHANGE


async def authorize(request: Request, principal: PrincipalDep) -> None:
    """Router dependency: the caller is known and may do this to the image in the path."""
    image_id = request.path_params.get("image_id")
    if image_id is None or principal.is_admin:
        return  # an admin may do everything; an unknown id is the route's own 404
    records: RecordMemo = request.app.state.records
    database: Database = request.app.state.database
    action = action_of(request.method, request.scope.get("route"))
    if action is Action.VIEW:
        image = await records.require(database, str(image_id))
    else:  # a change is checked against the row as it is now, not a memo
        from zstack_analyzer.service.images_service import require_image

        image = await database.run(require_image, str(image_id))
    if not allows(principal, image, Action.VIEW):
        msg = f"no image with id {str(image_id)!r}"
        raise ImageNotFoundError(msg)
    if not allows(principal, image, action):
        msg = f"you may see image {image_id} but not {action.value} it"
        raise HTTPException(403, msg)
