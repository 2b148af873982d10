"""A Spin 4 HTTP app on the Python Spin SDK (spin-sdk 5): `/` answers the `greeting`
variable, `/upstream` calls the URL in the `upstream_url` variable and answers with
what came back, `/visits` counts visits in the `default` key-value store with
`wasi:keyvalue`'s atomic increment, `/notes/KEY` stores (PUT) and reads (GET) a note
with Spin's key-value interface, `/notes` lists the notes' keys, every other path 404."""

from spin_sdk import http, key_value, variables
from spin_sdk.http import Request, Response
from spin_sdk.wit.imports import wasi_keyvalue_atomics_0_2_0_draft2 as atomics
from spin_sdk.wit.imports import wasi_keyvalue_store_0_2_0_draft2 as wasi_store

TEXT = {"content-type": "text/plain; charset=utf-8"}


class HttpHandler(http.Handler):
    async def handle_request(self, request: Request) -> Response:
        path = request.uri.split("?", 1)[0]
        if request.method == "GET" and path == "/":
            greeting = await variables.get("greeting")
            return Response(200, dict(TEXT), bytes(greeting, "utf-8"))
        if request.method == "GET" and path == "/upstream":
            url = await variables.get("upstream_url")
            upstream = await http.send(Request("GET", url, {}, None))
            return Response(upstream.status, dict(TEXT), upstream.body)
        if request.method == "GET" and path == "/visits":
            with wasi_store.open("default") as bucket:
                count = atomics.increment(bucket, "visits", 1)
            return Response(200, dict(TEXT), bytes(f"Visit number {count}", "utf-8"))
        if path.startswith("/notes"):
            return await notes(request.method, path.removeprefix("/notes").lstrip("/"), request.body)
        return Response(404, dict(TEXT), b"Not Found")


async def notes(method: str, key: str, body: bytes | None) -> Response:
    """The notes in the `default` store, through `spin:key-value@3.0.0`."""
    with await key_value.open_default() as store:
        if method == "PUT" and key:
            await store.set(key, body or b"")
            return Response(200, dict(TEXT), b"stored")
        if method == "GET" and key:
            value = await store.get(key)
            if value is None:
                return Response(404, dict(TEXT), b"no such note")
            return Response(200, dict(TEXT), value)
        keys, outcome = await store.get_keys()
        listed: list[str] = []
        with keys:
            while not keys.writer_dropped:
                listed += await keys.read(100)
        await outcome.read()
        return Response(200, dict(TEXT), bytes("\n".join(sorted(listed)), "utf-8"))
