"""A reader for the uncompressed multi-layer OpenEXR files Cycles writes (no bpy needed).

Blender 5.0 writes multi-layer EXRs as multi-part files, one part per pass; the compositor's
Viewer node is not evaluated in background mode and the Render Result's pixels are empty
there, so the file round trip in /dev/shm (about 1.5 ms at 128 px) is the robust path.
"""

from __future__ import annotations

import struct

import numpy as np


_DTYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}  # OpenEXR's UINT, HALF, FLOAT


def _read_exr_header(data, pos):
    attrs = {}
    while data[pos] != 0:
        name_end = data.index(b"\0", pos)
        value_at = data.index(b"\0", name_end + 1) + 5  # past the type name's NUL and the value's int32 size
        size = struct.unpack_from("<i", data, value_at - 4)[0]
        attrs[data[pos:name_end].decode()] = data[value_at:value_at + size]
        pos = value_at + size
    return attrs, pos + 1


def _exr_channels(val):
    out, p = [], 0
    while val[p] != 0:
        e = val.index(b"\0", p)
        out.append((val[p:e].decode(), _DTYPES[struct.unpack_from("<i", val, e + 1)[0]]))
        p = e + 1 + 16
    return out


def read_exr_uncompressed(path, with_header=False):
    """Minimal reader for scanline, *uncompressed* OpenEXR files (single- or multi-part).

    Blender 5.0 writes multilayer EXRs as multi-part files (one part per pass).
    Returns ``{channel_name: float32 array (H, W)}``, top row first.
    """
    with open(path, "rb") as fh:
        data = fh.read()
    magic, version = struct.unpack_from("<II", data, 0)
    if magic != 20000630:
        raise ValueError("not an OpenEXR file")
    multipart = bool(version & 0x1000)
    if version & 0x200:
        raise ValueError("tiled EXR not supported")
    pos, headers = 8, []
    while True:
        attrs, pos = _read_exr_header(data, pos)
        headers.append(attrs)
        if not multipart or data[pos] == 0:
            break
    if multipart:
        pos += 1  # empty header terminates the header list
    out = {}
    for attrs in headers:  # each part's offset table follows the previous one's
        if attrs["compression"][0] != 0:
            raise ValueError("EXR compression not supported (write with exr_codec='NONE')")
        x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"])
        w, h = x1 - x0 + 1, y1 - y0 + 1
        offsets = np.frombuffer(data, dtype="<u8", count=h, offset=pos)
        pos += 8 * h
        chans = _exr_channels(attrs["channels"])
        row_bytes = sum(t.itemsize for _, t in chans) * w
        head = 12 if multipart else 8  # [part,] y, size
        rows = np.stack([np.frombuffer(data, np.uint8, row_bytes, int(o) + head) for o in offsets])
        ys = np.array([struct.unpack_from("<i", data, int(o) + head - 8)[0] for o in offsets]) - y0
        img = np.empty_like(rows)
        img[ys] = rows
        col = 0
        for cname, t in chans:  # channel-sorted planar layout within each scanline
            nb = t.itemsize * w
            out[cname] = np.ascontiguousarray(img[:, col:col + nb]).view(t).astype(np.float32)
            col += nb
    return (out, headers[0]) if with_header else out
