"""Flask's "Hello, World!" as a wasi:http component, built with componentize-py.

The route table mimics Flask's decorator so the app reads like bench/flask/app.py;
the handler answers exactly like the Rust hello guest: `GET /` gives `Hello, World!`
as `text/plain; charset=utf-8`, anything else `404 Not Found`.
"""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

ROUTES = {}


def route(path):
    """Registers a GET handler returning a string, like Flask's `@app.route`."""

    def register(view):
        ROUTES[path] = view
        return view

    return register


@route("/")
def hello_world():
    return "Hello, World!"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "").split("?", 1)[0]
        view = ROUTES.get(path) if isinstance(request.method(), Method_Get) else None
        if view is None:
            status, body = 404, b"Not Found"
        else:
            status, body = 200, view().encode("utf-8")
        respond(response_out, status, body)


def respond(response_out: ResponseOutparam, status: int, body: bytes) -> None:
    headers = Fields.from_list(
        [
            ("content-type", b"text/plain; charset=utf-8"),
            ("content-length", str(len(body)).encode("ascii")),
        ]
    )
    response = OutgoingResponse(headers)
    response.set_status_code(status)
    outgoing_body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with outgoing_body.write() as stream:
        stream.blocking_write_and_flush(body)
    OutgoingBody.finish(outgoing_body, None)
