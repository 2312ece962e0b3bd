"""What a render worker receives per sample: every scene parameter and the colours resolved to sRGB.

The worker side of the render contract, kept here so the scene can check what it is given
without importing the pools (two4two.render imports this module, never the other way).
"""

from __future__ import annotations

from two4two.parameters import FIELD_NAMES, SceneParameters

LOOKS = ("pale", "saturated")
PAYLOAD_KEYS = (*FIELD_NAMES, "obj_color_rgb", "bg_color_rgb", "stand_in_rgb")


def check_payload(payload: dict) -> None:
    """Raise ValueError naming any missing or unknown key (a misspelled key must not be ignored)."""
    unknown = sorted(set(payload) - set(PAYLOAD_KEYS))
    missing = [k for k in PAYLOAD_KEYS if k not in payload]
    if unknown or missing:
        problems = ([f"unknown key(s) {', '.join(unknown)}"] if unknown else []) + ([f"missing {', '.join(missing)}"] if missing else [])
        raise ValueError(f"render payload: {'; '.join(problems)}; expected exactly: {', '.join(PAYLOAD_KEYS)}")


def worker_payload(params: SceneParameters) -> dict:
    """What a worker needs: the parameters plus their colours resolved to sRGB."""
    return {**params.to_dict(), "hidden_blocks": list(params.hidden_blocks),  # to_dict leaves an empty list out
            "obj_color_rgb": params.obj_color_rgb(), "bg_color_rgb": params.bg_color_rgb(),
            "stand_in_rgb": params.stand_in_rgb()}
