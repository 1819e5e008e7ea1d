"""Profile one benchmark row with pyinstrument: ``python -m bench.profile postgres get -c 1``.

Writes the call tree as text to ``bench/results/profile-<adapter>-<workload>-c<N>[-raw].txt`` and prints it.
Use it on a missed target to see where motia-state spends the time the raw driver does not.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bench.backends import ADAPTERS, make_backend
from bench.core import WORKLOADS, measure

__all__ = ["main"]


async def _profile(adapter: str, workload: str, concurrency: int, seconds: float, raw: bool) -> str:
    from pyinstrument import Profiler

    backend = await make_backend(adapter)
    await backend.open()
    try:
        await backend.raw.reset()
        subject = backend.raw if raw else backend.motia
        w = WORKLOADS[workload]
        await measure(subject, w, concurrency, 0.2)  # warm: connections, statements, caches
        profiler = Profiler(interval=0.0002, async_mode="enabled")
        profiler.start()
        m = await measure(subject, w, concurrency, seconds)
        profiler.stop()
        await backend.raw.reset()
    finally:
        await backend.close()
    head = f"# {adapter} {workload} c={concurrency} {'raw' if raw else 'motia-state'}: {m.ops_per_s:,.0f} ops/s\n"
    return head + profiler.output_text(unicode=True, color=False, show_all=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("adapter", choices=ADAPTERS)
    p.add_argument("workload", choices=list(WORKLOADS))
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--raw", action="store_true", help="profile the raw-driver baseline instead")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    text = asyncio.run(_profile(args.adapter, args.workload, args.concurrency, args.seconds, args.raw))
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-raw" if args.raw else ""
    path = args.out / f"profile-{args.adapter}-{args.workload}-c{args.concurrency}{suffix}.txt"
    path.write_text(text, encoding="utf-8")
    print(text)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
