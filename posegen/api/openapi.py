"""The OpenAPI document as the API answers: 400 (not 422), 401 on token routes, one error body.

FastAPI documents a 422 `HTTPValidationError` on every route with parameters, but
`posegen.api.errors` answers invalid requests with 400 and every failure with
`{"error", "message", ...context}`; generated clients and schemathesis read this document, so it
must say what the API does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_ERROR = "Error"
_VALIDATION = "ValidationProblem"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")

_SCHEMAS: dict[str, dict[str, Any]] = {
    _ERROR: {
        "title": _ERROR,
        "type": "object",
        "description": "Every 4xx body (and 500, 503 unless documented otherwise): a type, a "
        "human-readable message, and context fields that depend on the error (`field`, "
        "`required`, `balance`, `retryAfter`, …).",
        "properties": {
            "error": {"type": "string", "examples": ["NotFound"]},
            "message": {"type": "string"},
        },
        "required": ["error", "message"],
        "additionalProperties": True,
    },
    _VALIDATION: {
        "title": _VALIDATION,
        "type": "object",
        "description": "An invalid request: the first problem in `message`, all of them in "
        "`details` (fields spelled as the client sent them, e.g. `backgroundColor`).",
        "properties": {
            "error": {"type": "string", "examples": ["ValidationError", "ValidationFailed"]},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": ["string", "null"]},
                        "message": {"type": "string"},
                    },
                    "required": ["field", "message"],
                },
            },
        },
        "required": ["error", "message"],
        "additionalProperties": True,
    },
}


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` with the corrected document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = corrected(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def corrected(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for operation in _operations(document):
        responses = operation.setdefault("responses", {})
        validation = responses.pop("422", None)
        if validation is not None or "400" in responses:
            description = responses.get("400", {}).get("description", "Invalid request")
            responses["400"] = {
                "description": description,
                "content": {"application/json": {"schema": _ref(_VALIDATION)}},
            }
        if operation.get("security"):
            responses.setdefault("401", {"description": "Missing or invalid bearer token"})
        for code, response in responses.items():
            if code[0] == "4" and code != "400" and "content" not in response:
                response["content"] = {"application/json": {"schema": _ref(_ERROR)}}
    schemas.update(_SCHEMAS)
    text = repr(document["paths"])
    for name in _FASTAPI_VALIDATION:
        if f"#/components/schemas/{name}'" not in text:
            schemas.pop(name, None)
    return document


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    methods = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return [
        operation
        for item in document.get("paths", {}).values()
        for method, operation in item.items()
        if method in methods
    ]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
