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


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data = data.replace(b"\x00\x00\x03", b"\x00\x00")  # emulation prevention
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]  # IndexError on a short SPS: caught by the caller
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


def h264_sps_size(sps: bytes) -> tuple[int, int] | None:
    """Picture size from an H.264 SPS NAL unit (ITU-T H.264 section 7.3.2.1.1)."""
    try:
        b = _Bits(sps[1:])
        profile = b.u(8)
        b.u(16)  # constraint flags, level
        b.ue()  # seq_parameter_set_id
        chroma = 1
        if profile in _HIGH_PROFILES:
            chroma = b.ue()
            if chroma == 3:
                b.u(1)
            b.ue()
            b.ue()
            b.u(1)
            if b.u(1):  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma != 3 else 12):
                    if b.u(1):
                        last = nxt = 8
                        for _ in range(16 if i < 6 else 64):
                            if nxt:
                                nxt = (last + b.se() + 256) % 256
                            last = nxt or last
        b.ue()  # log2_max_frame_num_minus4
        poc_type = b.ue()
        if poc_type == 0:
            b.ue()
        elif poc_type == 1:
            b.u(1)
            b.se()
            b.se()
            for _ in range(b.ue()):
                b.se()
        b.ue()  # max_num_ref_frames
        b.u(1)
        width_mbs = b.ue() + 1
        height_units = b.ue() + 1
        frame_mbs_only = b.u(1)
        if not frame_mbs_only:
            b.u(1)
        b.u(1)
        width, height = width_mbs * 16, (2 - frame_mbs_only) * height_units * 16
        if b.u(1):  # frame_cropping_flag
            left, right, top, bottom = b.ue(), b.ue(), b.ue(), b.ue()
            unit_x = 1 if chroma in (0, 3) else 2
            unit_y = (1 if chroma in (0, 2) else 2) * (2 - frame_mbs_only)
            width -= unit_x * (left + right)
            height -= unit_y * (top + bottom)
    except (IndexError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def h264_config(frame: bytes) -> tuple[bytes, tuple[int, int] | None] | None:
    """An AVCDecoderConfigurationRecord (Matroska CodecPrivate) from a keyframe's SPS and PPS."""
    nals = split_annexb(frame)
    sps = next((n for n in nals if n[0] & 0x1F == 7), None)
    pps = next((n for n in nals if n[0] & 0x1F == 8), None)
    if sps is None or pps is None or len(sps) < 4:
        return None
    record = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
    record += b"\x01" + len(pps).to_bytes(2, "big") + pps
    return record, h264_sps_size(sps)


