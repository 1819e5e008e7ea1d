"""The reference's booking flow, run step by step against a store (``motia-state demo``, ``make demo``)."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import mask_url
from .manager import StateManager
from .ops import append, increment, merge, set_

__all__ = ["BookingState", "CustomerData", "VenueData", "run_demo"]

HOLD_TTL = 900  # seconds a seat hold lives, like an unpaid reservation


@dataclass
class CustomerData:
    """The reference's typed customer."""

    name: str
    email: str


@dataclass
class VenueData:
    """The reference's typed venue."""

    id: str
    capacity: int


@dataclass
class BookingState:
    """The reference's typed booking, read back with ``state.get(..., type=BookingState)``."""

    customer: CustomerData
    venue: VenueData
    status: Literal["pending", "confirmed"]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _store_name(state: StateManager, label: str | None) -> str:
    # Adapters' reprs may carry their URL; mask it in case a password is in there.
    return mask_url(label if label is not None else repr(state.adapter))


async def run_demo(
    state: StateManager,
    *,
    scope: str | None = None,
    echo: Callable[[str], None] = print,
    store: str | None = None,
) -> dict[str, Any]:
    """Run the booking flow in ``scope`` (a new trace id by default), narrating through ``echo``.

    ``store`` names the store in the narration (e.g. its URL; any password is masked).
    Returns the resulting state of the scope as ``{scope: {key: value}}``, which it also prints as JSON.
    """
    trace_id = scope or f"trace-{uuid.uuid4()}"
    customer = {"name": "Ada Lovelace", "email": "ada@example.com"}
    venue = {"id": "venue-42", "name": "Analytical Hall", "capacity": 120}

    echo(f"store: {_store_name(state, store)}")
    echo(f"scope (the flow's trace id): {trace_id}")

    echo("\n1. a step stores the booking under its trace id")
    await state.set(trace_id, "booking", {"customer": customer, "venue": venue, "status": "pending"})
    echo(f"   set booking = {_json(await state.get(trace_id, 'booking'))}")

    echo("\n2. dot-named keys keep related state together (the reference's namespacing)")
    for key, value in (("booking.customer", customer), ("booking.venue", venue), ("payment.status", "pending")):
        await state.set(trace_id, key, value)
        echo(f"   set {key} = {_json(value)}")

    echo("\n3. a later step confirms the booking with atomic update operations")
    ops = [set_("status", "confirmed"), increment("seats", 2), append("history", "confirmed"), merge({"paid": False})]
    result = await state.update(trace_id, "booking", ops)
    echo(f"   ops: {_json(ops)}")
    echo(f"   old: {_json(result.old_value)}")
    echo(f"   new: {_json(result.new_value)}")
    paid = await state.update(trace_id, "payment.status", [set_("", "paid")])
    echo(f"   payment.status: {_json(paid.old_value)} -> {_json(paid.new_value)}")

    echo("\n4. a typed read rebuilds the booking as dataclasses")
    booking = await state.get(trace_id, "booking", type=BookingState)
    echo(f"   {booking!r}")
    if booking is not None:
        echo(f"   booking.customer.name = {booking.customer.name!r}, booking.venue.capacity = {booking.venue.capacity}")

    echo(f"\n5. a seat hold that expires by itself after {HOLD_TTL} s")
    await state.set(trace_id, "hold", {"seat": "A1"}, ttl=HOLD_TTL)
    left = await state.ttl(trace_id, "hold")
    echo(f"   set hold = {_json({'seat': 'A1'})} (expires in {left or 0:.0f} s)")

    entries = {item.key: item.value for item in await state.items(trace_id)}
    resulting = {trace_id: entries}
    echo(f"\nresulting state of {trace_id}:")
    echo(json.dumps(resulting, ensure_ascii=False, indent=2))
    command = cli_command()
    echo(f"\ninspect it with: {command} list {trace_id}")
    echo(f"remove it with:  {command} clear {trace_id}")
    return resulting


def cli_command() -> str:
    """How to type ``motia-state`` here: the bare name when it is on PATH, else the script's path
    (after ``make demo`` it lives in ``.venv/bin``, which a new shell does not have on its PATH)."""
    script = Path(sys.executable).with_name("motia-state")
    found = shutil.which("motia-state")
    if not script.exists() or (found is not None and Path(found).resolve() == script.resolve()):
        return "motia-state"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)
