"""A Spin 4 HTTP app on the Python Spin SDK (spin-sdk 5): `/` answers the `greeting`
variable, `/upstream` calls the URL in the `upstream_url` variable and answers with
what came back, every other path 404."""

from spin_sdk import http, variables
from spin_sdk.http import Request, Response

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
        return Response(404, dict(TEXT), b"Not Found")
