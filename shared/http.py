"""What every HTTP app of the system answers to a request it cannot take, and how its OpenAPI
document declares those answers (SPEC.md: "Invalid input gets 422 with a readable detail, never
a 500 or a trace").

FastAPI's defaults leave three holes, each found by schemathesis: a 422 that echoes the input
back fails to encode it when it holds a lone surrogate (a 500); a 405's `Allow` names the
methods of the first route whose path matched, not of every route on that path; and the
answers a route gives besides its success (400, 404, 409, 413, 503) are not in the document.
"""

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

# The largest body any route takes (an order of 50 lines is about 5 KB).
MAX_BODY_BYTES = 64 * 1024


class Problem(BaseModel):
    """Every refusal but a validation error: what went wrong, in words."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    """A 422 from validation: each field that is wrong, where it is and why."""

    detail: list[FieldError]


_WHY = {
    400: "the body is not JSON that can be parsed (invalid, or nested too deeply)",
    404: "no such resource",
    409: "the resource's state does not allow it",
    413: f"the body is larger than {MAX_BODY_BYTES} bytes",
    422: "a field is missing or wrong",
    503: "the service's database is unavailable; try again",
}


def answers(*codes: int, **models: Any) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each status code it can answer besides its success, with
    its body's schema (`Problem`, or `Invalid` for 422; `s422=` gives another)."""
    declared: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        declared[code] = {"description": _WHY[code]}
        if code == 413:  # FastAPI's body limit answers before any handler, in plain text
            declared[code]["content"] = {"text/plain": {"schema": {"type": "string"}}}
        else:
            declared[code]["model"] = models.get(f"s{code}", Invalid if code == 422 else Problem)
    return declared


# A body's answers: what a route taking a JSON body can answer before it runs.
BODY = (400, 413, 422)


def field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The errors without the input they refused: it may be large, or not encodable."""
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]


def allowed_methods(request: Request) -> str:
    """Every method some route serves on this path, for a 405's `Allow`."""
    methods: set[str] = set()
    for route in _routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    # FastAPI keeps an included router as one entry (with no methods of its own); the routes
    # are inside it. Every router here is included without a prefix.
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _routes(inner.routes) if inner is not None else (route,)


def refusal(exc: RequestValidationError) -> tuple[int, str | list[dict[str, Any]]]:
    """What a request that fails validation is answered: a body that is not JSON cannot be
    read at all, 400 in words (as FastAPI answers one nested too deeply); JSON that says the
    wrong thing is 422, field by field."""
    for error in exc.errors():
        if error["type"] == "json_invalid":
            why = error.get("ctx", {}).get("error", "it cannot be parsed")
            return 400, f"the body is not JSON: {why} at character {error['loc'][-1]}"
    return 422, field_errors(exc)


async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
    status, detail = refusal(exc)
    return JSONResponse({"detail": detail}, status_code=status)


async def refused(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 405:
        return JSONResponse(
            {"detail": f"{request.method} is not allowed here"},
            status_code=405,
            headers={"Allow": allowed_methods(request)},
        )
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, refused)  # type: ignore[arg-type]
