"""Codec knowledge in one place: keyframes in RTP payloads, picture sizes, H.264 framing.

The forwarder never decodes; it only needs to hold a viewer's video back until a keyframe
begins (after joining, resuming or a source change), so the viewer's decoder starts clean.
The recorder needs each video's picture size and, for H.264, the length-prefixed NAL units
and the avcC record Matroska stores. Where FFmpeg already knows a thing (the SPS), PyAV asks it.
"""

from __future__ import annotations

import av


def vp8_descriptor_size(payload: bytes) -> int:
    """Length of the VP8 payload descriptor (RFC 7741 section 4.2); 0 if truncated."""
    n = len(payload)
    if n < 1:
        return 0
    size = 1
    if payload[0] & 0x80:  # X: extension byte present
        if n < 2:
            return 0
        ext = payload[1]
        size = 2
        if ext & 0x80:  # I: picture id
            if n <= size:
                return 0
            size += 2 if payload[size] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            size += 1
        if ext & 0x30:  # T or K: TID/KEYIDX
            size += 1
    return size if size < n else 0


def vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 key frame."""
    if not payload or not (payload[0] & 0x10) or (payload[0] & 0x07):  # S=1, PID=0
        return False
    size = vp8_descriptor_size(payload)
    return size > 0 and not (payload[size] & 0x01)  # P bit: 0 means key frame


def vp8_frame_start(payload: bytes) -> bool:
    return bool(payload) and bool(payload[0] & 0x10) and not (payload[0] & 0x07)


_H264_KEY_NALS = (5, 7)  # IDR slice, SPS


def h264_keyframe_start(payload: bytes) -> bool:
    """True for a packet that starts an IDR access unit (single NAL, STAP-A or FU-A)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in _H264_KEY_NALS:
        return True
    if nal_type == 24:  # STAP-A: 2-byte sizes then NALs
        pos = 1
        while pos + 2 < len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            if payload[pos + 2] & 0x1F in _H264_KEY_NALS:
                return True
            pos += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A: start bit and inner type
        return bool(payload[1] & 0x80) and (payload[1] & 0x1F) in _H264_KEY_NALS
    return False


def keyframe_start(codec_mime: str, payload: bytes) -> bool:
    mime = codec_mime.lower()
    if mime == "video/vp8":
        return vp8_keyframe_start(payload)
    if mime == "video/h264":
        return h264_keyframe_start(payload)
    return True  # audio and unknown codecs need no gating
def vp8_size(frame: bytes) -> tuple[int, int] | None:
    """Picture size from a VP8 keyframe's header (RFC 6386 section 9.1)."""
    if len(frame) < 10 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(frame[6:8], "little") & 0x3FFF
    height = int.from_bytes(frame[8:10], "little") & 0x3FFF
    return (width, height) if width and height else None


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream (start codes removed)."""
    nals = []
    i = data.find(b"\x00\x00\x01")
    while i != -1:
        start = i + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt == -1 else nxt
        nal = data[start:end]
        if nxt != -1 and nal.endswith(b"\x00"):
            nal = nal.rstrip(b"\x00")  # the leading zero of a 4-byte start code
        if nal:
            nals.append(nal)
        i = nxt
    return nals


def annexb_to_avc(data: bytes) -> bytes:
    """The same NAL units, each with a 4-byte length instead of a start code (Matroska AVC)."""
    return b"".join(len(nal).to_bytes(4, "big") + nal for nal in split_annexb(data))


def h264_picture_size(frame: bytes) -> tuple[int, int] | None:
    """Picture size of an H.264 keyframe (Annex B), as FFmpeg's H.264 parser reads its SPS
    (cropping and every profile included): no decoding, and no SPS reader of our own."""
    parser = av.CodecContext.create("h264", "r")
    try:
        parser.parse(frame)
        parser.parse(None)  # flush: the parser reports the frame it holds back
    except av.FFmpegError:
        return None
    return (parser.width, parser.height) if parser.width > 0 and parser.height > 0 else None


def h264_config(frame: bytes) -> tuple[bytes, tuple[int, int] | None] | None:
    """An AVCDecoderConfigurationRecord (Matroska CodecPrivate) from a keyframe's SPS and PPS."""
    nals = split_annexb(frame)
    sps = next((n for n in nals if n[0] & 0x1F == 7), None)
    pps = next((n for n in nals if n[0] & 0x1F == 8), None)
    if sps is None or pps is None or len(sps) < 4:
        return None
    record = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
    record += b"\x01" + len(pps).to_bytes(2, "big") + pps
    return record, h264_picture_size(frame)


