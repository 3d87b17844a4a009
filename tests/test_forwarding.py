"""Two real aiortc clients through the relay: media both ways, forwarded bit for bit."""

from __future__ import annotations

import asyncio
import threading

import av

from protocol.aiortc_glue import ForwardingReceiver, ForwardingSender
from protocol.client import CallClient
from protocol.media import EncodedTrack
from relay import keys
from tests.support import admission, tone_clip, video_clip


async def start_pair(relay, tokens, booking_id=1, receive="encoded", keep=True):
    fam_token = tokens.add(f"fam{booking_id}", admission(booking_id, "family"))
    pri_token = tokens.add(f"pri{booking_id}", admission(booking_id, "prison"))
    fam = CallClient(
        relay.base_url, fam_token, receive=receive, keep_frames=keep,
        video=EncodedTrack("video", video_clip(seed=1), 30), audio=EncodedTrack("audio", tone_clip(440), 50),
    )
    pri = CallClient(
        relay.base_url, pri_token, receive=receive, keep_frames=keep,
        video=EncodedTrack("video", video_clip(seed=2), 30), audio=EncodedTrack("audio", tone_clip(660), 50),
    )
    await fam.join()
    await pri.join()
    return fam, pri


async def test_media_flows_both_ways_bit_exact(relay, tokens):
    decoder_threads_before = sum(1 for t in threading.enumerate() if t.name.endswith("-decoder"))
    fam, pri = await start_pair(relay, tokens)
    try:
        await fam.wait_state("live")
        for client in (fam, pri):
            await client.wait_frames("video0", 45)
            await client.wait_frames("audio0", 50)
        # what arrived is what the other side sent, frame by frame, in order
        for receiver, sender_clip in ((fam, video_clip(seed=2)), (pri, video_clip(seed=1))):
            sent = [f.data for f in sender_clip]
            got = receiver.encoded["video0"]
            assert got[0].keyframe, "a viewer's video starts at a keyframe"
            start = sent.index(got[0].data)
            for i, frame in enumerate(got[:40]):
                assert frame.data == sent[(start + i) % len(sent)], f"frame {i} differs"
            # and the far side can decode it
            dec = av.CodecContext.create("vp8", "r")
            pictures = [p for f in got[:30] for p in dec.decode(av.Packet(f.data))]
            assert len(pictures) == 30 and pictures[0].width == 320
        for receiver, tone in ((fam, tone_clip(660)), (pri, tone_clip(440))):
            sent_audio = {f.data for f in tone}
            assert all(f.data in sent_audio for f in receiver.encoded["audio0"][:50])
        # the relay itself neither decoded nor encoded anything
        registry = relay.app[keys.REGISTRY]
        live = registry.get(1)
        for leg in live.call.legs.values():
            for sender in leg.senders.values():
                assert isinstance(sender, ForwardingSender)
                assert sender._RTCRtpSender__encoder is None
            for producer in leg.producers.values():
                assert isinstance(producer.receiver, ForwardingReceiver)
                assert producer.receiver._RTCRtpReceiver__decoder_thread is None
        # clients here receive encoded too: no decoder thread anywhere in this process
        after = sum(1 for t in threading.enumerate() if t.name.endswith("-decoder"))
        assert after == decoder_threads_before
    finally:
        await fam.close()
        await pri.close()


async def test_far_side_decodes_real_frames(relay, tokens):
    fam, pri = await start_pair(relay, tokens, booking_id=2, receive="decode", keep=False)
    try:
        await fam.wait_frames("video0", 20)
        await pri.wait_frames("video0", 20)
        await pri.wait_frames("audio0", 20)
        frame = fam.decoded_last["video0"]
        assert (frame.width, frame.height) == (320, 240)
    finally:
        await fam.close()
        await pri.close()
    await asyncio.sleep(0)



async def test_h264_call_is_forwarded_and_decodes(config, tokens):
    """Where H.264 is configured and both sides offer it, both legs use it and the far side
    decodes what was forwarded, slice for slice as sent."""
    from aiohttp.test_utils import TestServer

    from protocol.codecs import split_annexb
    from protocol.media import encode_video, moving_pattern
    from relay.app import build_app

    clip = encode_video(moving_pattern(320, 240, 60, seed=9), bitrate=400_000,
                        keyframe_interval=30, codec="libx264")
    app = build_app(config.replace(video_codecs=("video/H264", "video/VP8")), admit=tokens)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    tokens.add("h-fam", admission(60, "family"))
    tokens.add("h-pri", admission(60, "prison"))
    fam = CallClient(url, "h-fam", receive="encoded", keep_frames=True,
                     video=EncodedTrack("video", clip, 30), audio=EncodedTrack("audio", tone_clip(), 50))
    pri = CallClient(url, "h-pri", receive="encoded", keep_frames=True,
                     video=EncodedTrack("video", clip, 30), audio=EncodedTrack("audio", tone_clip(), 50))
    try:
        joined = await fam.join()
        assert joined["call"]["video_codec"].lower() == "video/h264"
        await pri.join()
        await pri.wait_frames("video0", 40)
        got = pri.encoded["video0"]
        assert got[0].keyframe

        def slices(data: bytes) -> tuple[bytes, ...]:
            return tuple(n for n in split_annexb(data) if n and n[0] & 0x1F in (1, 5))

        sent = [slices(f.data) for f in clip]
        start = sent.index(slices(got[0].data))
        for i, frame in enumerate(got[:30]):
            assert slices(frame.data) == sent[(start + i) % len(sent)], f"frame {i} differs"
        dec = av.CodecContext.create("h264", "r")
        pictures = [p for f in got[:30] for p in dec.decode(av.Packet(f.data))]
        assert len(pictures) >= 25 and pictures[0].width == 320
    finally:
        await fam.close()
        await pri.close()
        await server.close()
