"""The real product on loopback for end-to-end tests: store, tokens from the API, staff login."""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
from aiohttp.test_utils import TestServer

from bench.small_clips import tone_clip, video_clip
from bench.world import PASSWORD, World, make_world
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay.app import build_app
from relay.config import Config


@dataclass
class Product:
    server: TestServer
    world: World
    config: Config

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def app(self):
        return self.server.app

    def booking_now(self, seconds: float = 600, call_type: str = "social", others=(),
                    starts_in: float = -1.0) -> int:
        w = self.world
        now = time.time()
        return w.store.add_booking_unchecked(
            prisoner_id=w.prisoner_a, call_type=call_type, starts_at=now + starts_in,
            ends_at=now + starts_in + seconds, main_visitor_id=w.vid("mum"),
            visitor_ids=[w.vid(o) for o in others], laptop_id=w.laptops_a[0][0],
            status="approved", now=now,
        )

    async def family_token(self, booking_id: int, who: str = "mum") -> str:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{self.url}/api/v1/bookings/{booking_id}/join-token",
                              headers={"Authorization": f"Bearer {self.world.key(who)}"}) as r:
                body = await r.json()
                assert r.status == 200, body
                return body["token"]

    async def prison_token(self, booking_id: int) -> str:
        laptop_id, secret = self.world.laptops_a[0]
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{self.url}/api/v1/laptop/token",
                              json={"laptop_id": laptop_id, "laptop_secret": secret,
                                    "booking_id": booking_id}) as r:
                body = await r.json()
                assert r.status == 200, body
                return body["token"]

    async def staff_session(self, username: str = "officer_a") -> aiohttp.ClientSession:
        s = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with s.post(f"{self.url}/api/v1/staff/login",
                          json={"username": username, "password": PASSWORD}) as r:
            assert r.status == 200, await r.text()
        return s

    async def pair(self, booking_id: int, receive: str = "count", keep: bool = False,
                   family_video=None, prison_video=None):
        fam = CallClient(self.url, await self.family_token(booking_id), receive=receive,
                         keep_frames=keep,
                         video=family_video or EncodedTrack("video", video_clip(seed=1), 30),
                         audio=EncodedTrack("audio", tone_clip(440), 50))
        pri = CallClient(self.url, await self.prison_token(booking_id), receive=receive,
                         keep_frames=keep,
                         video=prison_video or EncodedTrack("video", video_clip(seed=2), 30),
                         audio=EncodedTrack("audio", tone_clip(660), 50))
        await fam.join()
        await pri.join()
        return fam, pri


async def start_product(tmp_path, **overrides) -> Product:
    """``database_url`` in ``overrides``: the records in that PostgreSQL database instead."""
    world = make_world(overrides.get("database_url") or tmp_path / "relay.sqlite")
    settings = {"vision_enabled": False, **overrides}
    config = Config(data_dir=tmp_path, recordings_dir=tmp_path / "recordings", seed_demo=False,
                    **settings)
    app = build_app(config, store=world.store)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return Product(server, world, config)
