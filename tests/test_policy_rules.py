"""Policy rules that need no media: staff-must-resume, restored pauses, pause reasons stack."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

from relay.calls.call import Call
from relay.calls.policy import CallPolicy
from relay.config import Config
from tests.support import admission, establishment


def live_call(staff_must_resume: bool) -> tuple[Call, list[tuple[str, dict]]]:
    call = Call(admission(1, "family", policy=establishment(staff_must_resume=staff_must_resume)), 0.5)
    sent: list[tuple[str, dict]] = []
    for role in ("family", "prison"):
        call.legs[role] = SimpleNamespace(role=role, is_watcher=False, producers={},
                                          notify=lambda t, f: sent.append((t, f)))
    return call, sent


async def test_vision_pause_waits_for_staff_where_the_establishment_says_so():
    call, sent = live_call(staff_must_resume=True)
    policy = CallPolicy(call, Config(resume_after_clear_s=0.05))
    policy.leg_joined("family")
    policy.leg_joined("prison")
    assert policy.state == "live"
    policy.vision_over_limit("family", 3, 1)
    assert policy.state == "paused" and call.media_paused
    policy.vision_cleared("family", 1)
    await asyncio.sleep(0.2)
    assert policy.state == "paused", "a cleared vision pause still needs staff here"
    assert policy.describe()["awaiting_staff"] is True
    policy.staff_resume("staff:1")
    assert policy.state == "live" and not call.media_paused


async def test_vision_pause_lifts_by_itself_after_calm_and_staff_pause_stacks():
    call, _ = live_call(staff_must_resume=False)
    policy = CallPolicy(call, Config(resume_after_clear_s=0.05))
    policy.leg_joined("family")
    policy.leg_joined("prison")
    policy.vision_over_limit("prison", 2, 1)
    policy.staff_pause("staff:1")
    policy.vision_cleared("prison", 1)
    await asyncio.sleep(0.2)
    assert policy.state == "paused" and policy.pause_reasons == {"staff"}
    policy.staff_resume("staff:1")
    assert policy.state == "live"
    # a count that rises again before the calm is over keeps the call paused
    policy.vision_over_limit("prison", 2, 1)
    policy.vision_cleared("prison", 1)
    policy.vision_over_limit("prison", 2, 1)
    await asyncio.sleep(0.2)
    assert policy.state == "paused"


async def test_restored_pauses_and_slot_not_started():
    call, _ = live_call(staff_must_resume=False)
    call.starts_at = time.time() + 0.2
    policy = CallPolicy(call, Config())
    policy.leg_joined("family")
    policy.leg_joined("prison")
    assert "before_start" in policy.pause_reasons and call.media_paused
    policy.restore({"staff"}, set())
    await asyncio.sleep(0.4)
    assert policy.pause_reasons == {"staff"}, "the slot started; the restored staff pause stays"
    policy.end("staff")
    assert policy.state == "ended" and call.media_paused
