"""A prisoner at the laptop page's kiosk, over the real API: the laptop enrolled once (its
device key) and the prisoner signed in with number and PIN, as the page does
(relay/web/kiosk_api.py). The enrolment code and the PIN are set in the store directly: the
staff endpoints that make them have their own tests (test_laptop_enrolment, test_browser_kiosk).
"""

from __future__ import annotations

from typing import Any

from relay import auth
from relay.records.store import Store

PIN = "4821"
ENROLMENT_LIFETIME_S = 900.0


def device_key(store: Store, laptop_id: int, staff_id: int, now: float) -> str:
    """A fresh device key for ``laptop_id`` (what the page keeps after its set-up code)."""
    code = store.start_enrolment(laptop_id, staff_id, now, ENROLMENT_LIFETIME_S).code
    return store.redeem_enrolment(code, now)[1]


def give_pin(store: Store, prisoner_id: int, staff_id: int, now: float, pin: str = PIN) -> None:
    store.set_kiosk_pin(prisoner_id, auth.hash_password(pin), staff_id, now)


async def sign_in(client: Any, key: str, number: str, pin: str = PIN):
    """The raw sign-in response (tests check refusals too)."""
    return await client.post(
        "/api/v1/kiosk/sign-in", json={"device_key": key, "prisoner_number": number, "pin": pin}
    )


async def kiosk(client: Any, key: str, number: str, pin: str = PIN) -> dict[str, str]:
    """Signed in: the body fields every kiosk request carries (device key and session)."""
    r = await sign_in(client, key, number, pin)
    body = await r.json()
    assert r.status == 200, body
    return {"device_key": key, "session": body["session"]}
