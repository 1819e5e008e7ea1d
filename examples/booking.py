"""The reference's booking flow, run against the configured store (SQLite by default)."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

from motia_state import StateManager, ops


@dataclass
class Customer:
    name: str
    email: str


@dataclass
class Venue:
    id: str
    capacity: int


@dataclass
class Booking:
    customer: Customer
    venue: Venue
    status: str


async def main() -> None:
    state = StateManager.from_config()
    trace_id = f"trace-{uuid.uuid4()}"
    async with state:
        print(f"store: {state.adapter!r}\nscope (trace id): {trace_id}")
        await state.set(
            trace_id,
            "booking",
            {"customer": {"name": "Ada", "email": "ada@example.com"}, "venue": {"id": "v1", "capacity": 120}},
        )
        await state.set(trace_id, "booking.customer", {"name": "Ada", "email": "ada@example.com"})
        await state.set(trace_id, "payment.status", "pending")
        result = await state.update(trace_id, "booking", [ops.set_("status", "confirmed"), ops.increment("seats", 2)])
        print("update:", json.dumps(result.new_value))
        booking = await state.get(trace_id, "booking", type=Booking)
        print("typed read:", booking)
        await state.set(trace_id, "hold", {"seat": "A1"}, ttl=60)
        print(f"hold expires in {await state.ttl(trace_id, 'hold'):.0f}s")
        everything = {item.key: item.value for item in await state.items(trace_id)}
        print(json.dumps({trace_id: everything}, indent=2, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main())
