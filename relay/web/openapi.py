"""The OpenAPI 3.1 document served at ``/api/v1/openapi.json``, generated from the route table
(``relay.web.routes``) and the models (``relay.web.models``): nothing here is written by hand
but prose, so the document cannot disagree with what the API validates and returns.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from relay.web import models as m
from relay.web.routes import API_PREFIX, OPERATIONS, Op

REF = "#/components/schemas/{model}"
_ID_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": m.MAX_ID}
_SECURITY = {"visitor": "visitorKey", "staff": "staffSession", "family": "familySession"}

__all__ = ["API_PREFIX", "openapi_document", "model_schemas", "query_parameters"]


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {"Error": m.Error}
    for op in OPERATIONS:
        for model in (op.body, op.response):
            if model is not None:
                found[model.__name__] = model
    return list(found.values())


@functools.cache
def model_schemas() -> dict[str, dict[str, Any]]:
    """components.schemas: every body and response model (and those they nest)."""
    models = _models()
    modes = [(model, "validation" if issubclass(model, m.Request) else "serialization")
             for model in models]
    _, doc = models_json_schema(modes, ref_template=REF)  # type: ignore[arg-type]
    return dict(doc.get("$defs", {}))


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value: drop the ``null`` branch of an optional one."""
    options = schema.get("anyOf")
    if options:
        rest = [s for s in options if s.get("type") != "null"]
        if len(rest) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **rest[0]}
    return {k: v for k, v in schema.items() if k not in ("default", "title")}


def query_parameters(op: Op) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    schema = op.query.model_json_schema(by_alias=True)
    required = set(schema.get("required", ()))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _non_null(prop)}
        for name, prop in schema["properties"].items()
    ]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(op: Op) -> dict[str, Any]:
    doc: dict[str, Any] = {"operationId": op.op_id, "summary": op.summary}
    params = [{"name": name, "in": "path", "required": True, "schema": _ID_SCHEMA}
              for name in op.path_params]
    params += query_parameters(op)
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {
            "required": op.body_required,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    security = [{_SECURITY[s]: []} for s in op.security if s in _SECURITY]
    if security:
        doc["security"] = security
    if op.response is not None:
        ok: dict[str, Any] = _ref(op.response)
    elif op.media_type == "application/json":
        ok = {"type": "object"}
    else:
        ok = {"type": "string", "format": "binary"}
    doc["responses"] = {
        str(op.status): {"description": "success", "content": {op.media_type: {"schema": ok}}},
        "4XX": {
            "description": "refused: the error code says why",
            "content": {"application/json": {"schema": _ref(m.Error)}},
        },
    }
    return doc


def openapi_document(server_url: str = "") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.full_path, {})[op.method.lower()] = _operation(op)
    out: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "visitrelay booking API",
            "version": "1",
            "description": "Bookings, approvals and join tokens for prison video calls. "
            "Every error is {\"error\": {\"code\", \"message\"}} with a stable code.",
        },
        "paths": paths,
        "components": {
            "schemas": model_schemas(),
            "securitySchemes": {
                "visitorKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The visitor's access key '<visitor id>.<secret>', "
                    "issued once at vetting.",
                },
                "staffSession": {"type": "apiKey", "in": "cookie", "name": "relay_staff"},
                "familySession": {"type": "apiKey", "in": "cookie", "name": "relay_family"},
            },
        },
    }
    if server_url:
        out["servers"] = [{"url": server_url}]
    return out
