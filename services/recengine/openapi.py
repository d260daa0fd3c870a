"""HTTP input checked against a service's OpenAPI document, and the document served.

Each service ships one OpenAPI 3.1 document (``api/openapi.json``, ``index/openapi.json``). A
request body is checked with a JSON Schema (2020-12) validator built once, when the app module
is imported, from the operation's ``requestBody`` schema with every ``$ref`` into the document
resolved in place; query parameters are read with falcon's ``get_param_as_int`` bounded by
their schema's ``minimum`` / ``maximum``, and strings are checked against their schema. So the
document is what the service accepts, and a change to one is a change to the other.

The validators are ``jsonschema_rs`` (Rust): a ``/search`` body as the API sends it costs
about 1 us to check, against about 200 us with the pure-Python ``jsonschema`` package, whose
per-keyword overhead would be a fifth of the index service's whole request.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import falcon
import jsonschema_rs

from recengine.httputil import json_body

#: The longest error description a validation failure produces (a message can quote the
#: whole body, and the body may be a megabyte).
MAX_DESCRIPTION = 300
METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _describe(error: jsonschema_rs.ValidationError, schema: dict[str, Any], whole: str) -> str:
    """``<where>: <what is wrong>`` (``whole`` names the value checked), at most
    :data:`MAX_DESCRIPTION` characters."""
    where = "/".join(str(p) for p in error.instance_path) or whole
    keyword: Any = schema
    for part in error.schema_path:
        keyword = keyword[part]
    if error.schema_path and error.schema_path[-1] == "oneOf" and all(
            set(branch) == {"required"} for branch in keyword):
        names = ", ".join(n for branch in keyword for n in branch["required"])
        return f"{where}: give exactly one of {names}"
    text = f"{where}: {error.message}"
    if len(text) > MAX_DESCRIPTION:  # the message quotes the value, which may be the body
        text = f"{text[:60]} ... {text[-(MAX_DESCRIPTION - 65):]}"
    return text


class Checked:
    """One JSON Schema, compiled; what is wrong with a value as a 400."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.validator = jsonschema_rs.Draft202012Validator(schema)  # checks the schema too

    def error(self, value: Any, name: str = "") -> falcon.HTTPBadRequest | None:
        """``None`` when ``value`` matches; else a 400 titled ``Bad <name>`` (``name``: the
        parameter, or the body's offending top-level field) saying what is wrong."""
        try:
            if self.validator.is_valid(value):
                return None
            error = max(self.validator.iter_errors(value), key=lambda e: len(e.instance_path))
        except ValueError as exc:  # "Recursion limit reached": a value nested too deep
            return falcon.HTTPBadRequest(title=f"Bad {name or 'request'}",
                                         description=f"{name or 'body'}: cannot be validated "
                                         f"({str(exc)[:80]}): nested too deep")
        path = error.instance_path
        description = _describe(error, self.schema, name or "body")
        name = name or (str(path[0]) if path and isinstance(path[0], str) else "request")
        return falcon.HTTPBadRequest(title=f"Bad {name}", description=description)


class Document:
    """A packaged OpenAPI document: served as it is, and the source of request validators."""

    def __init__(self, package: str, name: str = "openapi.json") -> None:
        self.text = resources.files(package).joinpath(name).read_text()
        self.doc: dict[str, Any] = json.loads(self.text)

    def operations(self) -> set[tuple[str, str]]:
        """``(path, method)`` of every documented operation."""
        return {(path, method) for path, item in self.doc["paths"].items()
                for method in item if method in METHODS}

    def resolve(self, node: Any, seen: tuple[str, ...] = ()) -> Any:
        """``node`` with every ``$ref`` into this document replaced by its target (a recursive
        reference is an error: the services' documents have none, so validators need no
        registry and no look-up per request)."""
        if isinstance(node, list):
            return [self.resolve(x, seen) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: self.resolve(v, seen) for k, v in node.items() if k != "$ref"}
        ref = node.get("$ref")
        if ref is None:
            return out
        if ref in seen or not ref.startswith("#/"):
            raise ValueError(f"cannot inline $ref {ref!r} (recursive or external)")
        target: Any = self.doc
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        inlined = self.resolve(target, (*seen, ref))
        # 2020-12 lets a $ref have siblings; both apply
        return {"allOf": [inlined, out]} if out else inlined

    def operation(self, path: str, method: str) -> dict[str, Any]:
        return self.doc["paths"][path][method]

    def body(self, path: str, method: str) -> Body:
        """The validator of the operation's JSON request body."""
        op = self.operation(path, method)
        schema = self.resolve(op["requestBody"])["content"]["application/json"]["schema"]
        return Body(schema)

    def query(self, path: str, method: str) -> Query:
        """The reader of the operation's query parameters."""
        params = [self.resolve(p) for p in self.operation(path, method).get("parameters", [])]
        return Query([p for p in params if p["in"] == "query"])


class Body(Checked):
    """A request body that must match one JSON Schema; an object body gets the ``default`` of
    each property it leaves out."""

    def __init__(self, schema: dict[str, Any]) -> None:
        super().__init__(schema)
        self.defaults = {name: prop["default"]
                         for name, prop in schema.get("properties", {}).items()
                         if "default" in prop}

    def check(self, body: Any) -> Any:
        """``body``, or a 400 saying which part of it does not match the schema."""
        error = self.error(body)
        if error is not None:
            raise error
        if self.defaults and isinstance(body, dict):
            for name, default in self.defaults.items():
                if name not in body:
                    body[name] = copy.copy(default)
        return body

    def read(self, req: falcon.Request, max_bytes: int = 1_048_576) -> Any:
        """The request's JSON body, checked (413 when too large, 400 when not JSON or not
        matching)."""
        return self.check(json_body(req, max_bytes))


class Query:
    """The query parameters of one operation, read as their schemas say."""

    def __init__(self, params: list[dict[str, Any]]) -> None:
        self.ints: list[tuple[str, dict[str, Any]]] = []
        self.strings: list[tuple[str, Any, Checked]] = []
        for p in params:
            schema = p["schema"]
            if schema.get("type") == "integer":
                self.ints.append((p["name"], schema))
            elif schema.get("type") == "string":
                self.strings.append((p["name"], schema.get("default"), Checked(schema)))
            else:
                raise ValueError(f"query parameter {p['name']}: no reader for {schema}")

    def read(self, req: falcon.Request) -> dict[str, Any]:
        """Every parameter by name (its default, or ``None``, when absent or blank); a 400
        naming the parameter when one does not match its schema."""
        out: dict[str, Any] = {}
        for name, schema in self.ints:
            try:
                out[name] = req.get_param_as_int(
                    name, min_value=schema.get("minimum"), max_value=schema.get("maximum"),
                    default=schema.get("default"))
            except falcon.HTTPInvalidParam as exc:  # titled like every other 400 of ours
                raise falcon.HTTPBadRequest(title=f"Bad {name}",
                                            description=exc.description) from None
        for name, default, checked in self.strings:
            value = req.get_param(name)
            if value is None:
                out[name] = default
                continue
            error = checked.error(value, name)
            if error is not None:
                raise error
            out[name] = value
        return out


class Served:
    """``GET /openapi.json``: the document, byte for byte as packaged."""

    def __init__(self, document: Document) -> None:
        self.data = document.text.encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.data
