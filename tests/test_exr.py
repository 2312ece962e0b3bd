"""The EXR reader of the render workers, without Blender: files built here by the OpenEXR layout."""

import struct

import numpy as np
import pytest

from blender_scripts.exr import read_exr_uncompressed

TYPES = {np.dtype("<f2"): 1, np.dtype("<f4"): 2}


def attribute(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def header(channels: dict[str, np.ndarray], extra: bytes = b"") -> bytes:
    h, w = next(iter(channels.values())).shape
    chlist = b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", TYPES[a.dtype], 0, 1, 1) for n, a in channels.items()) + b"\0"
    return (attribute("channels", "chlist", chlist) + attribute("compression", "compression", b"\0")
            + attribute("dataWindow", "box2i", struct.pack("<4i", 0, 0, w - 1, h - 1)) + extra + b"\0")


def scanline(channels: dict[str, np.ndarray], y: int) -> bytes:
    return b"".join(a[y].tobytes() for a in channels.values())  # channel by channel, as the header lists them


def write_exr(path, parts: list[dict[str, np.ndarray]], row_order: list[int]) -> None:
    multipart = len(parts) > 1
    out = struct.pack("<II", 20000630, 2 | (0x1000 if multipart else 0))
    out += b"".join(header(p, attribute("name", "string", f"part{i}".encode()) if multipart else b"") for i, p in enumerate(parts))
    if multipart:
        out += b"\0"
    heights = [next(iter(p.values())).shape[0] for p in parts]
    table_at = len(out)
    out += b"\0" * (8 * sum(heights))
    offsets = []
    for i, p in enumerate(parts):
        for y in row_order:
            offsets.append(len(out))
            data = scanline(p, y)
            out += (struct.pack("<i", i) if multipart else b"") + struct.pack("<ii", y, len(data)) + data
    # each part's offsets, in row order 0..h-1
    table = b""
    for i, h in enumerate(heights):
        mine = offsets[i * h:(i + 1) * h]
        table += b"".join(struct.pack("<Q", mine[row_order.index(y)]) for y in range(h))
    out = out[:table_at] + table + out[table_at + len(table):]
    path.write_bytes(out)


@pytest.mark.parametrize("parts", [1, 2])
def test_channels_come_back_as_float32_top_row_first_whatever_the_chunk_order(tmp_path, parts):
    rng = np.random.default_rng(0)
    written = [{"ViewLayer.Combined.B": rng.random((3, 5)).astype("<f4"), "ViewLayer.Combined.G": rng.random((3, 5)).astype("<f2"),
                "ViewLayer.Combined.R": rng.random((3, 5)).astype("<f4")} for _ in range(parts)]
    if parts == 2:
        written[1] = {"ViewLayer.Object Index.X": np.arange(15, dtype="<f4").reshape(3, 5)}
    write_exr(tmp_path / "a.exr", written, row_order=[2, 0, 1])
    channels, first_header = read_exr_uncompressed(tmp_path / "a.exr", with_header=True)
    expected = {k: v for part in written for k, v in part.items()}
    assert set(channels) == set(expected)
    for name, values in expected.items():
        assert channels[name].dtype == np.float32
        np.testing.assert_array_equal(channels[name], values.astype(np.float32))
    assert struct.unpack("<4i", first_header["dataWindow"]) == (0, 0, 4, 2)


def test_compressed_tiled_and_foreign_files_are_refused(tmp_path):
    (tmp_path / "x.exr").write_bytes(b"not an exr at all")
    with pytest.raises(ValueError, match="not an OpenEXR file"):
        read_exr_uncompressed(tmp_path / "x.exr")
    (tmp_path / "t.exr").write_bytes(struct.pack("<II", 20000630, 2 | 0x200))
    with pytest.raises(ValueError, match="tiled EXR not supported"):
        read_exr_uncompressed(tmp_path / "t.exr")
    write_exr(tmp_path / "c.exr", [{"R": np.zeros((2, 2), "<f4")}], row_order=[0, 1])
    data = bytearray((tmp_path / "c.exr").read_bytes())
    at = data.index(b"compression\0compression\0") + len(b"compression\0compression\0") + 4
    data[at] = 3  # ZIP
    (tmp_path / "c.exr").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="compression not supported"):
        read_exr_uncompressed(tmp_path / "c.exr")
