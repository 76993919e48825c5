"""The routes of jobs (SPEC §6): materialize, seed, and the jobs' state, cells and events."""

from __future__ import annotations

from proxy.handlers import jobs
from proxy.jobs.api_models import CellsGeoJSON, JobList, JobView, MaterializeAsk, SeedAsk
from proxy.routes.route import Route, query_param

JOB_ROUTES: tuple[Route, ...] = (
    Route(
        method="POST",
        path="/images/{id}/materialize",
        handler=jobs.materialize_image,
        summary="Materialize an image into Cloud-Optimized GeoTIFFs (a job)",
        tag="jobs",
        body=MaterializeAsk,
        body_required=False,
        ok=202,
        answer=JobView,
        errors=(409, 410),
    ),
    Route(
        method="POST",
        path="/servers/{id}/seed",
        handler=jobs.seed_server,
        summary="Fill the tile cache of a server over AOIs and a zoom range (a job)",
        tag="jobs",
        body=SeedAsk,
        ok=202,
        answer=JobView,
    ),
    Route(
        method="GET",
        path="/jobs",
        handler=jobs.list_jobs,
        summary="List jobs, newest first",
        tag="jobs",
        answer=JobList,
        errors=(422,),
        query=(
            query_param(
                "state",
                "only jobs in this state",
                {"enum": ["pending", "running", "paused", "done", "failed", "cancelled"]},
            ),
            query_param(
                "limit", "at most this many", {"type": "integer", "minimum": 1, "maximum": 1000}
            ),
        ),
    ),
    Route(
        method="GET",
        path="/jobs/{id}",
        handler=jobs.get_job,
        summary="A job: state, cells per state, bytes, upstream requests, rate, ETA",
        tag="jobs",
        answer=JobView,
    ),
    Route(
        method="GET",
        path="/jobs/{id}/cells.geojson",
        handler=jobs.job_cells,
        summary="The cells of a job as GeoJSON (lon/lat) with their state and error",
        tag="jobs",
        answer=CellsGeoJSON,
    ),
    Route(
        method="GET",
        path="/jobs/{id}/events",
        handler=jobs.job_events,
        summary="Server-Sent Events of the progress of a job (job, cell, end)",
        tag="jobs",
        answer="text/event-stream",
    ),
    Route(
        method="POST",
        path="/jobs/{id}/cancel",
        handler=jobs.cancel_job,
        summary="Cancel a job (running cells stop within seconds)",
        tag="jobs",
        answer=JobView,
        errors=(409,),
    ),
    Route(
        method="POST",
        path="/jobs/{id}/retry",
        handler=jobs.retry_job,
        summary="Run the failed cells of a job again",
        tag="jobs",
        answer=JobView,
        errors=(409,),
    ),
)
