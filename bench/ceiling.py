"""The ceiling: the fastest a Starlette app can answer under the gateway's uvicorn settings.

The gateway cannot beat an app that answers the same body itself with no routing table,
plugins or upstream call, so its throughput divided by this one is the gateway's share
of the attainable speed on this machine.
"""

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

# The same ~300-byte JSON body that the nginx upstream returns (no ' or $: it is
# pasted verbatim into nginx.conf).
BODY = (
    '{"items":['
    '{"id":1,"name":"alpha","price":10.5,"tags":["red","small"],"in_stock":true},'
    '{"id":2,"name":"bravo","price":20.25,"tags":["blue","medium"],"in_stock":false},'
    '{"id":3,"name":"charlie","price":30.75,"tags":["green","large"],"in_stock":true}'
    '],"total":3,"page":1,"per_page":20,"next":null}'
)


async def items(request):
    return Response(BODY, media_type="application/json")


async def health(request):
    return Response('{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/api/gateway/bench/items", items),
        Route("/api/gateway/health", health),
    ]
)
