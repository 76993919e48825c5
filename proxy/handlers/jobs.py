"""Jobs: list, state, cells as GeoJSON, Server-Sent Events, cancel, retry; materialize, seed.

Progress comes from the catalog, so a job run by another process (``serve --workers N``,
a CLI ``jobs run``) shows the same: the events stream polls the catalog and sends what
changed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from proxy.api_models import validate_body
from proxy.catalog.base import ENDED, CellStore, JobRecord
from proxy.errors import InvalidInput, NotFound
from proxy.http import json_response, read_json
from proxy.images.service import ImageService
from proxy.images.store import load_image, load_server
from proxy.jobs.api_models import MaterializeAsk, SeedAsk
from proxy.jobs.downloads import materialize_params
from proxy.jobs.service import Jobs
from proxy.jobs.views import cells_geojson
from proxy.keys import JOBS, SERVICES
from proxy.quota.share import check_fits, quota_share

EVENT_INTERVAL = 0.25  # at most ~4 job events a second
PING_INTERVAL = 15.0
STATES = ("pending", "running", "paused", "done", "failed", "cancelled")


def _jobs(request: web.Request) -> Jobs:
    return request.app[JOBS]


async def list_jobs(request: web.Request) -> web.Response:
    """GET /jobs: jobs newest first (``state``, ``limit`` filter)."""
    state = request.query.get("state")
    if state is not None and state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}")
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise InvalidInput("limit must be an integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit must be between 1 and 1000")
    jobs = _jobs(request)
    records = await request.app[SERVICES].catalog.jobs.recent(state, limit)
    return json_response({"jobs": [jobs.view(r) for r in records]})


async def get_job(request: web.Request) -> web.Response:
    """GET /jobs/{id}: state, cells per state, bytes written, upstream requests, rate, ETA."""
    jobs = _jobs(request)
    return json_response(jobs.view(await jobs.get(request.match_info["id"])))


async def job_cells(request: web.Request) -> web.Response:
    """GET /jobs/{id}/cells.geojson: each cell's polygon (lon/lat), index, state and error."""
    jobs = _jobs(request)
    record = await jobs.get(request.match_info["id"])
    cells = await request.app[SERVICES].catalog.cells.of_job(record.id)
    body = orjson.dumps(cells_geojson(cells))
    return web.Response(body=body, content_type="application/geo+json")


async def cancel_job(request: web.Request) -> web.Response:
    """POST /jobs/{id}/cancel: running cells stop within seconds, leaving no temporary file."""
    jobs = _jobs(request)
    return json_response(jobs.view(await jobs.cancel(request.match_info["id"])))


async def retry_job(request: web.Request) -> web.Response:
    """POST /jobs/{id}/retry: failed cells run again (409 job_not_retryable when none)."""
    jobs = _jobs(request)
    return json_response(jobs.view(await jobs.retry(request.match_info["id"])))


async def materialize_image(request: web.Request) -> web.Response:
    """POST /images/{id}/materialize: a job writing the image into Cloud-Optimized GeoTIFFs."""
    ask: MaterializeAsk = validate_body(MaterializeAsk, await read_json(request, required=False))
    services = request.app[SERVICES]
    image = await load_image(services, request.match_info["id"])
    server = await load_server(services, image)  # 410 when its server was deleted
    # The share of the server's quota a full read of the image would use (SPEC §6, quotas).
    requests, bytes_ = await ImageService(services).full_read_cost(image, server)
    share = await quota_share(services, server, requests, bytes_)
    if ask.require_quota:
        check_fits(share, server.id)
    jobs = _jobs(request)
    record = await jobs.create(
        "materialize",
        name=image.name,
        server_id=image.server_id,
        image_id=image.id,
        params=materialize_params(image.id, **ask.model_dump(exclude={"require_quota"})),
    )
    answer = {**jobs.view(record), "quota": share}
    return json_response(answer, 202, {"Location": f"/jobs/{record.id}"})


async def seed_server(request: web.Request) -> web.Response:
    """POST /servers/{id}/seed: a job filling the server's tile cache over AOIs and zooms."""
    ask: SeedAsk = validate_body(SeedAsk, await read_json(request))
    if ask.min_zoom > ask.max_zoom:
        raise InvalidInput("min_zoom must not be past max_zoom")
    services = request.app[SERVICES]
    server_id = request.match_info["id"]
    server = await services.catalog.servers.get(server_id)
    if server is None:
        raise NotFound(
            f"no server with id {server_id[:64]!r}", hint="GET /servers lists the servers"
        )
    jobs = _jobs(request)
    record = await jobs.create(
        "seed",
        name=str(server.config.get("name", server.id)),
        server_id=server.id,
        image_id=None,
        params={"server_id": server.id, **ask.model_dump()},
    )
    return json_response(jobs.view(record), 202, {"Location": f"/jobs/{record.id}"})


async def job_events(request: web.Request) -> web.StreamResponse:
    """GET /jobs/{id}/events: Server-Sent Events ``job`` and ``cell`` on change, ``end`` last."""
    jobs = _jobs(request)
    job_id = request.match_info["id"]
    record = await jobs.get(job_id)
    cells_store = request.app[SERVICES].catalog.cells
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # proxies must not hold the stream back
        }
    )
    await response.prepare(request)
    try:
        await _stream(response, jobs, record, cells_store)
    except ConnectionResetError:  # the client went away: nothing more to send
        return response
    await response.write_eof()
    return response


async def _stream(
    response: web.StreamResponse, jobs: Jobs, record: JobRecord, cells_store: CellStore
) -> None:
    """Send the job's events until it ends (polling the catalog, which every process shares)."""
    job_id = record.id
    seen_job: tuple[Any, ...] | None = None
    seen_cells: dict[int, tuple[str, str | None]] = {}
    pinged = time.monotonic()
    while True:
        key = (record.state, record.updated_at, record.cells, record.bytes_written)
        if key != seen_job or record.id in _live_ids(jobs):
            await _send(response, "job", jobs.view(record))
            seen_job = key
        for cell in await cells_store.of_job(job_id):
            state = (cell.state, cell.error)
            if seen_cells.get(cell.index) != state:
                seen_cells[cell.index] = state
                data = {"index": cell.index, "state": cell.state, "error": cell.error}
                await _send(response, "cell", data)
        if record.state in ENDED:
            await _send(response, "end", jobs.view(record))
            break
        if time.monotonic() - pinged >= PING_INTERVAL:
            await response.write(b": ping\n\n")
            pinged = time.monotonic()
        await asyncio.sleep(EVENT_INTERVAL)
        record = await jobs.get(job_id)


def _live_ids(jobs: Jobs) -> set[str]:
    """Jobs whose running cells in this process write bytes (their progress moves)."""
    return set() if jobs.runner is None else set(jobs.runner.live)


async def _send(response: web.StreamResponse, event: str, data: Any) -> None:
    await response.write(b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")
