"""Accounts, groups, tokens, sessions and the one permission check (``ZSTACK_AUTH=users``).

Why a package of its own: every query and route that touches an image asks
:mod:`.permissions` (a :class:`~.permissions.Principal` and a query filter),
so who may see or change what is decided in one place. The modules:

- ``models``: users, groups, memberships, API tokens, sessions, group import roots;
- ``passwords``: argon2id hashing (argon2-cffi);
- ``secrets``: high-entropy tokens, stored as SHA-256 only;
- ``permissions``: ``Principal`` and OMERO's four group levels;
- ``principal``: who is calling (none/token/users modes; bearer token or session cookie);
- ``guard``: the dependency every ``/api/images/{id}...`` route passes (404/403);
- ``placement``: which group an upload or registration goes to;
- ``accounts``: create users, groups, memberships and tokens (CLI and admin routes);
- ``login``: password check with rate limits, pluggable authenticators (LDAP);
- ``events``: the audit hook (a no-op here; the audit table plugs in).

Nothing is imported here, so importing a model does not pull in FastAPI.
"""
