"""Reading just enough of an RTP payload to know where a keyframe starts.

The forwarder never decodes; it only needs to hold a viewer's video back until a keyframe
begins (after joining, resuming or a source change), so the viewer's decoder starts clean.
"""

from __future__ import annotations


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
