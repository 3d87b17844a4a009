"""When a leg's faces are re-identified, and the M-of-N identity decisions (pure logic, with
descriptors made up so that distances are exact)."""

from __future__ import annotations

import numpy as np

from vision.detector import Face
from vision.identity_check import LegIdentity
from vision.settings import VisionSettings

CONFIG = VisionSettings()  # threshold 0.5, interval 3 s, confirm 2 of 3, clear 3 of 4
ME = np.zeros(128, np.float32)
NEAR = ME.copy()
NEAR[0] = 0.2  # distance 0.2: the enrolled person
FAR = ME.copy()
FAR[0] = 0.9  # distance 0.9: someone else
BOX = Face(100, 100, 200, 220, 0.9)
MOVED = Face(400, 100, 500, 220, 0.9)


def leg(**kw) -> LegIdentity:
    return LegIdentity("1:family", {"visitor:1": [ME]}, CONFIG, **kw)


def test_checks_are_due_on_changes_and_slowly_otherwise() -> None:
    ident = leg()
    assert ident.due([BOX], 0.0)  # first face: a change from nothing
    ident.checked([BOX], [NEAR], 0.0)
    assert not ident.due([BOX], 1.0)  # same face, same place: wait for the interval
    assert not ident.due([BOX], 2.0)
    assert ident.due([BOX], 3.0)  # the steady re-check
    ident.checked([BOX], [NEAR], 3.0)
    assert ident.due([BOX, MOVED], 3.5)  # the count changed
    assert ident.due([MOVED], 4.0)  # a face where there was none: a new track
    assert not ident.due([], 4.5)  # nobody to check
    assert not LegIdentity("k", {}, CONFIG).due([BOX], 0.0)  # nobody enrolled for the side


def test_a_stranger_is_confirmed_m_of_n_and_cleared_by_the_clear_rule() -> None:
    ident = leg()
    assert ident.checked([BOX], [NEAR], 0.0) is None
    assert ident.checked([BOX], [FAR], 3.0) is None  # one check never decides
    assert ident.due([BOX], 3.25)  # a suspicion is checked at every sample
    event = ident.checked([BOX], [FAR], 3.25)
    assert event is not None and event.kind == "unmatched"
    assert event.matches == [(None, 0.9)] and event.boxes == [BOX.box]
    assert ident.checked([BOX], [FAR], 3.5) is None  # emitted once
    for t in (4.0, 4.25):
        assert ident.checked([BOX], [NEAR], t) is None
    cleared = ident.checked([BOX], [NEAR], 4.5)
    assert cleared is not None and cleared.kind == "matched"
    assert cleared.matches == [("visitor:1", 0.2)]


def test_one_stranger_among_matched_faces_is_unmatched() -> None:
    ident = leg()
    ident.checked([BOX, MOVED], [NEAR, FAR], 0.0)
    event = ident.checked([BOX, MOVED], [NEAR, FAR], 0.25)
    assert event is not None and event.kind == "unmatched"
    assert [m[0] for m in event.matches] == ["visitor:1", None]


def test_old_checks_are_forgotten() -> None:
    ident = leg()
    ident.checked([BOX], [FAR], 0.0)
    # long after the window ((3 + 1) x 3 s), a second bad check does not combine with it
    assert ident.checked([BOX], [FAR], 60.0) is None


def test_a_rejoined_leg_under_an_identity_pause_starts_unmatched() -> None:
    ident = leg(start_unmatched=True)
    assert ident.due([BOX], 0.0) and ident.due([BOX], 0.1)
    events = [ident.checked([BOX], [NEAR], t) for t in (0.0, 0.25, 0.5)]
    assert events[:2] == [None, None] and events[2] is not None and events[2].kind == "matched"


def test_why_a_check_is_due_and_only_a_disagreeing_check_is_hurried() -> None:
    ident = leg()
    assert ident.due([BOX], 0.0) and ident.reason == "count"
    ident.checked([BOX], [NEAR], 0.0)
    assert ident.due([BOX], 3.0) and ident.reason == "steady"
    ident.checked([BOX], [NEAR], 3.0)
    assert not ident.pending()  # agrees with "matched": nothing to hurry
    ident.checked([BOX], [FAR], 3.2)
    assert ident.pending()  # one stranger while matched: confirm at the next sample
    assert ident.due([BOX], 3.4) and ident.reason == "confirm"
    assert ident.checked([BOX], [NEAR], 3.4) is None
    assert not ident.pending() and not ident.due([BOX], 3.6)  # dropped: back to the steady rate
    event = ident.checked([BOX], [FAR], 4.0)  # 2 of the last 3 (stranger, ok, stranger)
    assert event is not None and event.kind == "unmatched"
    # unmatched and the stranger still there: every sample is checked, but nothing is hurried
    assert not ident.pending() and ident.due([BOX], 4.4) and ident.reason == "unmatched"
    ident.checked([BOX], [NEAR], 4.4)
    assert ident.pending()  # the enrolled face again: confirm the clear quickly
    assert [r.stranger for r in ident.history] == [False, False, True, False, True, False]


def test_a_look_change_is_a_change() -> None:
    still = np.zeros((16, 16), np.float32)
    other = np.ones((16, 16), np.float32)
    ident = leg()
    ident.due([BOX], 0.0, [still])
    ident.checked([BOX], [NEAR], 0.0)
    assert not ident.due([BOX], 0.5, [still]) and ident.reason == ""
    assert ident.due([BOX], 1.0, [other]) and ident.reason == "look"
