"""layout.project in threads: each thread queries its own prepared AOI geometry.

GEOS prepared geometries are not safe to query from two threads at once: masks drawn in
parallel for the blocks of one COG corrupted the heap and crashed the suite in CI.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

from streaming.aoi import parse_aois
from streaming.grid import WEB_MERCATOR_CRS
from streaming.layout import project

AOI = parse_aois({"type": "Polygon", "coordinates": [[
    [8.0, 46.0], [8.1, 46.0], [8.1, 46.1], [8.0, 46.1], [8.0, 46.0]]]})  # fmt: skip


def test_each_thread_gets_its_own_geometry_and_keeps_it():
    here = project(AOI, WEB_MERCATOR_CRS)
    assert project(AOI, WEB_MERCATOR_CRS) is here  # cached in this thread
    with ThreadPoolExecutor(1) as pool:
        there = pool.submit(project, AOI, WEB_MERCATOR_CRS).result()
        assert pool.submit(project, AOI, WEB_MERCATOR_CRS).result() is there
    assert there is not here and there.equals(here)


def test_an_aoi_queried_in_parallel_does_not_crash_the_process():
    # In a child process: before the fix this died of heap corruption within a second
    # (what plan_mask and the seed's tile count do, from several threads at once).
    script = textwrap.dedent(
        """
        import threading
        import numpy as np
        import shapely
        from streaming.aoi import parse_aois
        from streaming.grid import WEB_MERCATOR_CRS
        from streaming.layout import project

        t = np.linspace(0, 2 * np.pi, 1500)
        xs, ys = np.meshgrid(np.linspace(880e3, 900e3, 24), np.linspace(5770e3, 5790e3, 24))
        boxes = shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + 900, ys.ravel() + 900)
        for i in range(80):
            r = 0.05 + 0.005 * np.sin(7 * t + i)  # a new AOI each round: fresh geometries
            ring = np.column_stack([8 + r * np.cos(t), 46 + r * np.sin(t)]).tolist()
            aois = parse_aois({"type": "Polygon", "coordinates": [ring + [ring[0]]]})
            barrier = threading.Barrier(4)

            def work():
                area = project(aois, WEB_MERCATOR_CRS)
                barrier.wait()
                shapely.covers(area, boxes)
                shapely.intersects(area, boxes)

            threads = [threading.Thread(target=work) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        print("done")
        """
    )
    command = [sys.executable, "-c", script]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "done", run.stderr[-2000:]
