"""A ``download`` import: the streaming image, then a job materializing it (SPEC §4, §6)."""

from __future__ import annotations

from typing import Any

from proxy.api_models import ImportAsk
from proxy.catalog.base import ImageRecord, JobRecord
from proxy.jobs.service import Jobs


def materialize_params(image_id: str, **options: Any) -> dict[str, Any]:
    """The parameters of a materialize job of ``image_id`` (unset options left out)."""
    return {"image_id": image_id, **{k: v for k, v in options.items() if v is not None}}


async def start_download(jobs: Jobs, image: ImageRecord, ask: ImportAsk) -> JobRecord:
    """Start the job materializing ``image``; when it cannot start, the image goes too.

    A download import makes both or neither: a refused job (bad parameters, the guard)
    leaves no image behind that the caller did not ask for alone.
    """
    params = materialize_params(
        image.id, max_cell_pixels=ask.max_cell_pixels, compression=ask.compression
    )
    try:
        return await jobs.create(
            "materialize",
            name=image.name,
            server_id=image.server_id,
            image_id=image.id,
            params=params,
        )
    except BaseException:
        await jobs.services.catalog.images.delete(image.id)
        raise
