"""Page reruns on a warm cache (issue 28 §2): how long each page of the app takes to run
again once everything it reads has been read once.

    python benchmarks/page_reruns.py [--cache-dir DIR] [--reruns 5] [--skip-synthetic]

Runs the app with Streamlit's AppTest in this process, opens each page of the navigation
(workspace, feature search, activation examples, live intervention, and any page added
since), runs it three times to warm every cache, then times `--reruns` more runs of the
same page and prints the median and the slowest (target < 1 s). On the examples page it
also times a step to the next feature (new co-occurrence, examples and frequencies). The
workspace's caches must be built (`python -m core cache build`; `--cache-dir` points
UNLEARNING_LENS_CACHE_DIR at them). Then, on a synthetic 1M-token cache (16,384 features,
L0 ≈ 20, benchmarks/cache_build.py's builder): co-occurrence of a feature seen before and of a
new one against the uncached computation.

"Before" figures come from running this script unchanged from a checkout of the earlier
commit (`git worktree add`), in the same session: the app measured is the one beside it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TIMEOUT = 900  # the first run imports sae_lens and may build the neighbour tables


def pages() -> list[str]:
    """The pages of the app's navigation, in order (read from app.py)."""
    return re.findall(r'st\.Page\(\s*"(pages/[^"]+\.py)"', (REPO / "app.py").read_text())


def timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def page_reruns(page: str, reruns: int) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    first = timed(lambda: at.switch_page(page).run())
    for _ in range(2):
        at.run()
    times = [timed(at.run) for _ in range(reruns)]
    if at.exception:
        raise SystemExit(f"{page} failed: {at.exception[0].value}")
    found = {"first": first, "median": statistics.median(times), "max": max(times)}
    if page.endswith("activation_examples.py"):
        steps = []
        for _ in range(reruns):
            box = at.number_input(key="feature_box")
            steps.append(timed(lambda box=box: box.set_value(box.value + 1).run()))
        found["next feature"] = statistics.median(steps)
    return found


def cooccurrence_reruns() -> None:
    import numpy as np

    from benchmarks.cache_build import synthetic_cache
    from core.features import cooccurrence as module
    from core.workspace.workspace import Workspace

    ws = Workspace.open("offline-gemma3-270m")
    with tempfile.TemporaryDirectory() as root:
        cache = synthetic_cache(ws, Path(root), 1_048_576, 16_384, 20)
        features = [int(f) for f in np.random.default_rng(2).integers(0, 2_000, size=5)]
        uncached_call = getattr(module, "uncached_cooccurrence", module.cooccurrence)  # before
        uncached = [timed(lambda f=f: uncached_call(cache, f)) for f in features]
        new = [timed(lambda f=f: module.cooccurrence(cache, f)) for f in features]
        again = [timed(lambda f=f: module.cooccurrence(cache, f)) for f in features]
    print(
        "co-occurrence, 1M-token cache, median of 5 features: uncached "
        f"{statistics.median(uncached):.3f} s; a new feature {statistics.median(new):.3f} s "
        f"(the first includes the feature-independent pass: {new[0]:.3f} s); the same feature "
        f"again {1e3 * statistics.median(again):.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache-dir", help="UNLEARNING_LENS_CACHE_DIR holding built caches")
    parser.add_argument("--reruns", type=int, default=5)
    parser.add_argument("--skip-synthetic", action="store_true")
    args = parser.parse_args()
    if args.cache_dir:
        os.environ["UNLEARNING_LENS_CACHE_DIR"] = args.cache_dir
    from core.base.environment import configure_environment

    configure_environment()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    for page in pages():
        found = page_reruns(page, args.reruns)
        extra = "".join(
            f"; {name} {value:.3f} s" for name, value in found.items() if name == "next feature"
        )
        print(
            f"{page}: first run {found['first']:.1f} s; rerun median {found['median']:.3f} s, "
            f"max {found['max']:.3f} s{extra} (target < 1 s)"
        )
    if not args.skip_synthetic:
        cooccurrence_reruns()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
