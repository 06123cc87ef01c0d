"""The OpenAPI entries of the annotation routes (``service/routes/annotations.py``).

Why: the OpenAPI document is the published contract (DESIGN: each route declares its
``response_model``, its ``Problem`` responses; clients are generated from it and
schemathesis tests against it). ``_register`` defines the tag, key-value, comment and
attachment routes of each kind of target at import; these tests call it again on a fresh
router, so what it declares now (operation ids, summaries, success status and schema, the
problem statuses and what they say, the path parameter, the request bodies, the guard's
mark) is what is checked, and they check that the service's own document says the same.

Expected values are written out here, not read from the code: the per-kind 404 says what
is missing ("No dataset with this id", not "No image ..."), and summaries say "an image".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from fastapi import APIRouter, FastAPI

from zstack_analyzer.service.annotations import keyvalues, tags
from zstack_analyzer.service.annotations.access import KINDS
from zstack_analyzer.service.app import create_app
from zstack_analyzer.service.auth.guard import action_of
from zstack_analyzer.service.auth.permissions import Action
from zstack_analyzer.service.config import Settings
from zstack_analyzer.service.errors import PROBLEM_MEDIA_TYPE
from zstack_analyzer.service.routes import annotations
from zstack_analyzer.service.schemas import Problem

if TYPE_CHECKING:
    from pathlib import Path

PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}
DESCRIPTIONS = {
    400: "Unsupported format or malformed upload",
    401: "Missing or invalid credentials (ZSTACK_AUTH=token or users)",
    403: "Forbidden: outside your import roots, not a member of that group, a read-only "
    "token, no X-CSRF-Token with a session cookie, or an image you may see but not change",
    413: "Upload over the size limit",
    422: "Corrupt file, limit exceeded, index out of range or invalid parameter",
}
#: method, path part, route name, summary ({a}: "an image", "a dataset"), success status,
#: success schema (a list of, or one), declared problem statuses.
PER_KIND = [
    ("get", "tags", "{kind}_tags", "The tags of {a}", 200, ("list", "TagRef"), (401, 404)),
    (
        "put",
        "tags",
        "put_{kind}_tags",
        "Replace the tags of {a} (names made on first use in its group)",
        200,
        ("list", "TagRef"),
        (401, 403, 404, 422),
    ),
    (
        "get",
        "key-values",
        "{kind}_key_values",
        "The key-value pairs of {a}, in order",
        200,
        ("list", "KeyValueItem"),
        (401, 404),
    ),
    (
        "put",
        "key-values",
        "put_{kind}_key_values",
        "Replace the key-value pairs of {a}",
        200,
        ("list", "KeyValueItem"),
        (401, 403, 404, 422),
    ),
    (
        "get",
        "comments",
        "{kind}_comments",
        "The comments on {a}, oldest first",
        200,
        ("list", "CommentPublic"),
        (401, 404),
    ),
    (
        "post",
        "comments",
        "post_{kind}_comment",
        "Comment on {a}",
        201,
        ("one", "CommentPublic"),
        (401, 403, 404, 422),
    ),
    (
        "get",
        "attachments",
        "{kind}_attachments",
        "The files attached to {a}",
        200,
        ("list", "AttachmentPublic"),
        (401, 404),
    ),
    (
        "post",
        "attachments",
        "post_{kind}_attachment",
        "Attach a small file to {a} (multipart field 'file', size-capped)",
        201,
        ("one", "AttachmentPublic"),
        (400, 401, 403, 404, 413, 422),
    ),
]
ARTICLE = {"image": "an image", "dataset": "a dataset", "project": "a project"}


def _registered(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """An app with only the per-kind routes, as ``_register`` declares them now."""
    router = APIRouter(prefix="/api", tags=["annotations"])
    monkeypatch.setattr(annotations, "router", router)
    for kind in KINDS:
        annotations._register(kind)
    app = FastAPI()
    app.include_router(router)
    return app


def _path(kind: str, part: str) -> str:
    return f"/api/{kind}s/{{{kind}_id}}/{part}"


def _check_operation(operation: dict[str, Any], kind: str, row: tuple[Any, ...]) -> None:
    method, part, name, summary, status, (shape, model), declared = row
    slug = part.replace("-", "_")
    assert (
        operation["operationId"]
        == f"{name.format(kind=kind)}_api_{kind}s__{kind}_id__{slug}_{method}"
    )
    assert operation["summary"] == summary.format(a=ARTICLE[kind])
    assert operation["tags"] == ["annotations"]
    # The path parameter: the target's id, a string of at most 64 characters.
    [parameter] = operation["parameters"]
    assert (parameter["name"], parameter["in"], parameter["required"]) == (
        f"{kind}_id",
        "path",
        True,
    )
    assert (parameter["schema"]["type"], parameter["schema"]["maxLength"]) == ("string", 64)
    responses = operation["responses"]
    assert set(responses) == {str(status), "422", *(str(s) for s in declared)}
    success = responses[str(status)]["content"]["application/json"]["schema"]
    if shape == "list":
        assert success["type"] == "array"
        assert success["items"] == {"$ref": f"#/components/schemas/{model}"}
    else:
        assert success == {"$ref": f"#/components/schemas/{model}"}
    for code in declared:
        answer = responses[str(code)]
        assert answer["content"]["application/problem+json"] == PROBLEM, code
        expected = f"No {kind} with this id" if code == 404 else DESCRIPTIONS[code]
        assert answer["description"] == expected, code
    if 422 not in declared:  # FastAPI's own for the path parameter
        assert responses["422"]["description"] == "Validation Error"


def _check_bodies(paths: dict[str, Any], kind: str) -> None:
    put_tags = paths[_path(kind, "tags")]["put"]["requestBody"]
    schema = put_tags["content"]["application/json"]["schema"]
    assert put_tags["required"] is True
    assert (schema["type"], schema["maxItems"]) == ("array", tags.MAX_TAGS)
    assert schema["items"] == {"type": "string", "maxLength": 255}
    pairs = paths[_path(kind, "key-values")]["put"]["requestBody"]["content"]
    assert pairs["application/json"]["schema"]["maxItems"] == keyvalues.MAX_PAIRS
    comment = paths[_path(kind, "comments")]["post"]["requestBody"]["content"]
    assert comment["application/json"]["schema"] == {"$ref": "#/components/schemas/CommentCreate"}
    upload = paths[_path(kind, "attachments")]["post"]["requestBody"]
    assert upload == {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }


@pytest.mark.parametrize("kind", KINDS)
def test_each_kinds_routes_document_their_contract(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    paths = _registered(monkeypatch).openapi()["paths"]
    ours = {p for p in paths if p.startswith(f"/api/{kind}s/")}
    assert ours == {_path(kind, part) for part in ("tags", "key-values", "comments", "attachments")}
    for row in PER_KIND:
        method, part = row[0], row[1]
        _check_operation(paths[_path(kind, part)][method], kind, row)
    assert {m for p in ours for m in paths[p]} == {"get", "put", "post"}
    _check_bodies(paths, kind)


def test_the_guard_asks_to_annotate_images_and_leaves_containers_to_the_routes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writes under an image need the right to annotate it; a container's are checked inside."""
    app = _registered(monkeypatch)
    routes = {(m, r.path): r for r in annotations.router.routes for m in r.methods}  # type: ignore[attr-defined]
    assert app.openapi()  # the routes are complete enough to document
    for kind in KINDS:
        for method, part in (("PUT", "tags"), ("PUT", "key-values"), ("POST", "comments")):
            route = routes[(method, _path(kind, part))]
            expected = Action.ANNOTATE if kind == "image" else Action.CHANGE
            assert action_of(method, route) is expected, (kind, part)
        route = routes[("POST", _path(kind, "attachments"))]
        assert action_of("POST", route) is (Action.ANNOTATE if kind == "image" else Action.CHANGE)
        assert action_of("GET", routes[("GET", _path(kind, "tags"))]) is Action.VIEW


def test_the_service_documents_the_same_and_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The service's document has these entries, and its other annotation routes' 404/409."""
    served = create_app(Settings(_env_file=None, data_dir=tmp_path)).openapi()["paths"]  # type: ignore[call-arg]
    fresh = _registered(monkeypatch).openapi()["paths"]
    for path, item in fresh.items():
        for method, operation in item.items():
            mine = served[path][method]
            for key in ("operationId", "summary", "parameters", "requestBody"):
                assert mine.get(key) == operation.get(key), (path, method, key)
            assert set(mine["responses"]) == set(operation["responses"])
            for code, answer in operation["responses"].items():
                assert mine["responses"][code]["description"] == answer["description"]
    not_found = {
        ("patch", "/api/tags/{tag_id}"): "No tag with this id",
        ("post", "/api/tags/{tag_id}/merge"): "No tag with this id",
        ("delete", "/api/comments/{comment_id}"): "No comment with this id",
        ("get", "/api/attachments/{attachment_id}"): "No attachment with this id",
        ("delete", "/api/attachments/{attachment_id}"): "No attachment with this id",
    }
    for (method, path), description in not_found.items():
        assert served[path][method]["responses"]["404"]["description"] == description
    conflicts = {
        "/api/tags/{tag_id}": ("patch", "Its group has a tag of that name"),
        "/api/tags/{tag_id}/merge": ("post", "The two tags are of different groups"),
    }
    for path, (method, description) in conflicts.items():
        assert served[path][method]["responses"]["409"]["description"] == description


def test_the_tag_routes_problems_say_what_clashed() -> None:
    """The tag routes' responses are made at import; here made again, as the decorators do."""
    problem = {PROBLEM_MEDIA_TYPE: PROBLEM}
    made = annotations._problems(401, 404, 409, missing="tag", conflict="Taken")
    assert made == {
        401: {"model": Problem, "description": DESCRIPTIONS[401], "content": problem},
        404: {"model": Problem, "description": "No tag with this id", "content": problem},
        409: {"model": Problem, "description": "Taken", "content": problem},
    }
    shared = annotations._problems(404, 409, missing="comment")[409]["description"]
    assert shared == "The in-place original changed since it was registered (ingest it again)"
