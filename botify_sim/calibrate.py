"""Check the world's calibration: mean time per session of Random and StickyArtist.

    python -m botify_sim.calibrate [--sessions 10000] [--seeds 42 7 2024]

Targets (reference.md §5, published 2.08 and 3.14): Random 2.1 ± 0.2, StickyArtist
3.1 ± 0.3. Sessions are driven in-process with the platform's own recommenders, exactly as
the API would serve them. TopPop (top 100 by the world's hidden popularity) is reported
for information. Exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from botify.recommenders import RecommenderContext, build_recommender
from botify_sim.config import load_config
from botify_sim.simulate import simulate_in_process
from botify_sim.world import generate_world

TARGETS = {"random": (2.1, 0.2), "sticky_artist": (3.1, 0.3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 2024])
    args = parser.parse_args(argv)
    console = Console()
    table = Table(title=f"mean time per session over {args.sessions:,} sessions (± standard error)")
    for col in ("world seed", "recommender", "time/session", "tracks/session", "target", "ok"):
        table.add_column(col)
    ok = True
    for seed in args.seeds:
        started = time.perf_counter()
        config = load_config().model_copy(update={"seed": seed})
        world = generate_world(config)
        context = RecommenderContext(world.catalog, seed=seed)
        context.popularity.top = tuple(
            int(world.track_ids[i]) for i in np.argsort(-world.popularity)[:100]
        )
        for name in ("random", "sticky_artist", "top_pop"):
            s = simulate_in_process(
                build_recommender(name, context), world, args.sessions, seed, config.user
            )
            target = TARGETS.get(name)
            hit = target is None or abs(s.mean_time - target[0]) <= target[1]
            ok &= hit
            table.add_row(
                str(seed),
                name,
                f"{s.mean_time:.3f} ± {s.sem_time:.3f}",
                f"{s.mean_tracks:.2f}",
                f"{target[0]} ± {target[1]}" if target else "-",
                "yes" if hit else "[red]NO[/]",
            )
        console.print(f"world seed {seed}: done in {time.perf_counter() - started:.0f} s")
    console.print(table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
