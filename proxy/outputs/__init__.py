"""Where job outputs land: the outputs folder on local disk, or an S3-compatible store.

:func:`output_store` picks the implementation from the ``output_url`` setting; both follow
:class:`proxy.outputs.base.OutputStore`.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.config import Settings
    from proxy.outputs.base import OutputStore


@cache
def output_store(settings: Settings) -> OutputStore:
    """The store of ``settings`` (one per settings: an S3 client is costly to make)."""
    if settings.output_url.startswith("s3://"):
        from proxy.outputs.s3 import S3Outputs

        return S3Outputs.from_settings(settings)
    from proxy.outputs.local import LocalOutputs

    return LocalOutputs(settings)
