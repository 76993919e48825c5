"""The resolution guard (SPEC §5): refuse reads much finer than the detector needs.

A detector trained at 0.5 m/px gains nothing from 0.1 m/px pixels, but the upstream
pays for them: 25 times the tiles. A read whose ground resolution is finer than
``detector_res / max_ratio`` is refused before any upstream request, with the numbers
and the two ways out in the hint.
"""

from __future__ import annotations

import math

from streaming.errors import InvalidRead, ResolutionTooHigh
from streaming.image import ReadEstimate

__all__ = ["ResolutionTooHigh", "check_resolution"]

RES_TOLERANCE = 1e-6  # relative: a read exactly at the limit passes despite float noise


def check_resolution(
    read_ground_res: float,
    detector_res: float | None,
    max_ratio: float,
    estimate: ReadEstimate,
    image_res: float,
    *,
    server_id: str | None = None,
) -> None:
    """Raise :class:`ResolutionTooHigh` when the read is finer than the detector allows.

    All resolutions are ground metres per pixel: ``read_ground_res`` of the read,
    ``detector_res`` of the detector (``None``: no guard), ``image_res`` of the image.
    ``estimate`` gives the upstream requests the refusal saves; ``server_id`` names the
    server in the suggested duplicate call.
    """
    if detector_res is None:
        return
    if not (math.isfinite(detector_res) and detector_res > 0):
        raise InvalidRead(f"detector_resolution must be a positive number, not {detector_res}")
    if not (math.isfinite(max_ratio) and max_ratio > 0):
        raise InvalidRead(f"the guard's max ratio must be positive, not {max_ratio}")
    limit = detector_res / max_ratio
    if read_ground_res >= limit * (1 - RES_TOLERANCE):
        return
    server = server_id if server_id is not None else "{server_id}"
    scale = detector_res / read_ground_res
    raise ResolutionTooHigh(
        f"the read is {read_ground_res:.4g} m/px, finer than the detector's "
        f"{detector_res:.4g} m/px allows (at most {max_ratio:g}x finer: {limit:.4g} m/px); "
        f"the image is {image_res:.4g} m/px",
        hint=(
            f"read at the detector's resolution ({detector_res:.4g} m/px: shrink "
            f"out_width/out_height {scale:.3g} times), or duplicate the server at that "
            f'resolution and import again: POST /servers/{server}/duplicate {{"resolution": '
            f"{detector_res:g}}}, then POST /imports with the new server_id"
        ),
        image_resolution=image_res,
        read_resolution=read_ground_res,
        detector_resolution=detector_res,
        max_ratio=max_ratio,
        upstream_requests_avoided=estimate.requests,
    )
