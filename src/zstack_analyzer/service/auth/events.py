"""The audit hook: every security-relevant action calls :func:`emit` here.

Why a hook and not the audit table itself: the table and ``GET /api/audit``
are built separately (auth-extras); the call sites (login ok/failed, upload,
register, download of an original, delete, permission and membership
changes, token create/revoke) are already in place and pass what an audit
row needs. :func:`emit` hands the event to the audit writer
(``audit_writer.dispatch``: queued, written off the request path), so it never
raises and never slows a request down.

Actions used by the call sites: ``login``, ``login_failed``, ``logout``,
``password_change``, ``password_change_failed`` (one's own, wrong current password),
``upload``, ``register``, ``download``, ``delete``, ``move``, ``container_delete``
(a project or dataset; each image deleted with it is a ``delete`` of its own),
``user_create``, ``user_update``, ``group_create``, ``group_update``,
``group_delete``, ``membership_add``, ``membership_remove``,
``import_root_add``, ``import_root_remove``, ``token_create``, ``token_revoke``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["emit"]


def emit(action: str, principal: Any, request: Any, **details: Any) -> None:
    """Record that ``principal`` did ``action`` in the audit table (``auth/audit.py``).

    Parameters
    ----------
    action
        A stable action name (see the module docstring).
    principal
        The :class:`~zstack_analyzer.service.auth.permissions.Principal` who acted,
        or ``None`` (a failed login: ``details["username"]`` names the account tried).
    request
        The Starlette ``Request`` (client address, request id), or ``None`` for the CLI.
    **details
        JSON-safe facts: ``image_id``, ``group``, ``username``, ``token_id``...
    """
    from zstack_analyzer.service.auth.audit_writer import dispatch

    dispatch(action, principal, request, details)
