"""Profile one benchmark row with pyinstrument: ``python -m bench.profile postgres get -c 1``.

Writes the call tree as text to ``bench/results/profile-<adapter>-<workload>-c<N>[-raw].txt`` and prints it,
headed by the frames with the most time of their own. Use it on a missed target to see where motia-state
spends the time the raw driver does not; ``python -m bench`` does it for every missed ratio target
(``--profile-misses``).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from bench.backends import ADAPTERS, make_backend
from bench.core import WORKLOADS, measure

__all__ = ["main", "profile_row", "top_frames"]


def _where(frame: Any) -> str:
    return f"{frame.function} ({frame.file_path_short}:{frame.line_no})" if frame.file_path_short else frame.function


def top_frames(root: Any, n: int = 5) -> list[str]:
    """The ``n`` functions with the most time of their own (not in their callees), summed over the tree.

    ``root`` is a pyinstrument ``Frame``; each line is ``share% function (file:line)``. pyinstrument's
    synthetic frames are named after the function they sit in: ``[self]`` time is that function's own, and
    ``[await] in f`` is time ``f`` spent awaiting (the server, the adapter's worker thread, a lock).
    """
    own: dict[str, float] = {}
    total = root.time or 1.0
    stack = [root]
    while stack:
        frame = stack.pop()
        children = frame.children
        stack.extend(children)
        mine = frame.time - sum(c.time for c in children)
        if mine <= 0:
            continue
        where = _where(frame)
        parent = frame.parent
        if frame.is_synthetic and parent is not None:
            where = _where(parent) if frame.function == "[self]" else f"{frame.function} in {_where(parent)}"
        own[where] = own.get(where, 0.0) + mine
    ranked = sorted(own.items(), key=lambda kv: kv[1], reverse=True)[:n]
    return [f"{t / total:5.1%} {where}" for where, t in ranked]


async def _profile(adapter: str, workload: str, concurrency: int, seconds: float, raw: bool) -> tuple[str, list[str]]:
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
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    top = top_frames(root) if root is not None else []
    head = f"# {adapter} {workload} c={concurrency} {'raw' if raw else 'motia-state'}: {m.ops_per_s:,.0f} ops/s\n"
    head += "# most time of their own:\n" + "".join(f"#   {line}\n" for line in top)
    return head + profiler.output_text(unicode=True, color=False, show_all=False), top


async def profile_row(
    adapter: str, workload: str, concurrency: int, seconds: float, out: Path, *, raw: bool = False
) -> tuple[Path, list[str]]:
    """Profile one row and write its call tree to ``out``; return the file and the top frames by own time."""
    text, top = await _profile(adapter, workload, concurrency, seconds, raw)
    suffix = "-raw" if raw else ""
    return _write(out / f"profile-{adapter}-{workload}-c{concurrency}{suffix}.txt", text), top


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("adapter", choices=ADAPTERS)
    p.add_argument("workload", choices=list(WORKLOADS))
    p.add_argument("-c", "--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--raw", action="store_true", help="profile the raw-driver baseline instead")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    path, _ = asyncio.run(
        profile_row(args.adapter, args.workload, args.concurrency, args.seconds, args.out, raw=args.raw)
    )
    print(path.read_text(encoding="utf-8"))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
