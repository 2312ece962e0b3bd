"""The animal's geometry: where the eight blocks' corners are for a parameter set.

Pure numpy, no bpy: the Blender scene (blender_scripts/scene.py) only writes these
corners into its eight block meshes and lets a bevel and a Catmull–Clark subdivision
round them. Every step reproduces what the original Two4Two renderer does to its blocks,
measured against its renders (tests/data/original-128, benchmarks/fidelity.py):

1. Eight cubes of edge 0.8 + 0.1·spherical: spine at y = −1, 0, 1, 2 (z = 0), the fixed leg
   pair at y = −1.5, the moving pair at y = 1.5 + arm_position, legs at z = ±1.
2. Centre: move by −½ of the centre of the corners' bounding box.
3. Bend: two bone chains start at the spine's middle (y = 0.5). The centre bone of each
   side turns by ±bending/2 about the world x axis through its head, the outer bone by a
   further ±bending about its own head (so 1.5·bending in all); the outer spine block and
   its legs follow the outer bone rigidly, while each centre block is skinned with the
   automatic weights Blender's armature gives it (BLEND_WEIGHTS), so it shears a little.
4. Centre again.
5. Turn about the bounding box's centre, recomputed before each turn: roll about y
   (the spine), then pitch about z (vertical), then yaw about x (the viewing axis, so yaw
   spins the animal in the image plane).
6. Centre again, then move by (0, position_x, position_y).

Since step 2, 4 and 6 each move only half-way, the animal is not exactly centred: the
Peeky base pose's spine middle sits 0.28 units right of the image centre, as in the original.
The background plane sits 10 units behind the rearmost corner (`plane_x`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BLOCK_NAMES = (
    "arm_left_top",
    "arm_left_bottom",
    "spine_left",
    "spine_left_center",
    "spine_right_center",
    "spine_right",
    "arm_right_top",
    "arm_right_bottom",
)
# Block groups that part removal hides together (mask labels are 1 + the index in BLOCK_NAMES).
# The right pair is the one whose position (arm_position) defines the class.
BLOCK_GROUPS = {
    "right_legs": ("arm_right_top", "arm_right_bottom"),
    "left_legs": ("arm_left_top", "arm_left_bottom"),
    "spine": ("spine_left", "spine_left_center", "spine_right_center", "spine_right"),
}

# What part removal can hide: a group, or any single block.
PARTS = {**BLOCK_GROUPS, **{name: (name,) for name in BLOCK_NAMES}}


def block_labels(names) -> tuple[int, ...]:
    """The mask labels of blocks given by name."""
    return tuple(1 + BLOCK_NAMES.index(n) for n in names)


# Corner order of a Blender cube primitive (x slowest, z fastest) and its six quads.
CUBE_CORNERS = np.array([(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)
CUBE_FACES = ((0, 1, 3, 2), (2, 3, 7, 6), (6, 7, 5, 4), (4, 5, 1, 0), (2, 6, 4, 0), (7, 3, 1, 5))

# Weight of the centre bone for each corner of the two centre spine blocks (the outer bone
# gets 1 − w). These are the bone-heat weights Blender's automatic armature skinning gives a
# cube between the centre and the outer bone; measured once, they do not depend on the
# block size or the legs' position. Per corner: 1 near the middle of the spine, 0 far from it.
_NEAR, _NEAR2 = 0.859687209, 0.845411569
_FAR, _FAR2 = 1 - _NEAR, 1 - _NEAR2
BLEND_WEIGHTS = {
    "spine_left_center": np.array([_FAR, _FAR2, _NEAR2, _NEAR, _FAR2, _FAR, _NEAR, _NEAR2]),
    "spine_right_center": np.array([_NEAR, _NEAR2, _FAR2, _FAR, _NEAR2, _NEAR, _FAR, _FAR2]),
}
PLANE_DISTANCE = 10.0  # background plane behind the rearmost corner
SPINE_MIDDLE = np.array([0.0, 0.5, 0.0])


def block_size(spherical: float) -> float:
    return 0.8 + 0.1 * float(spherical)


def bevel_width(spherical: float) -> float:
    """Bevel width in scene units (one segment, before the subdivision rounds it)."""
    return 0.05 + block_size(spherical) * 0.25 * float(spherical)


def block_centres(arm_position: float) -> np.ndarray:
    right = 1.5 + float(arm_position)
    return np.array(
        [(0, -1.5, 1), (0, -1.5, -1), (0, -1, 0), (0, 0, 0), (0, 1, 0), (0, 2, 0), (0, right, 1), (0, right, -1)],
        dtype=np.float64,
    )


def rotation(axis: int, angle: float) -> np.ndarray:
    """Right-handed rotation matrix about world axis 0 (x), 1 (y) or 2 (z)."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _affine(axis: int, angle: float, pivot: np.ndarray) -> np.ndarray:
    """4×4 rotation about a line through `pivot`."""
    m = np.eye(4)
    r = rotation(axis, angle)
    m[:3, :3] = r
    m[:3, 3] = pivot - r @ pivot
    return m


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ m[:3, :3].T + m[:3, 3]


def _bbox_centre(corners: np.ndarray) -> np.ndarray:
    flat = corners.reshape(-1, 3)
    return (flat.min(axis=0) + flat.max(axis=0)) / 2


@dataclass(frozen=True)
class AnimalGeometry:
    corners: np.ndarray  # (8 blocks, 8 corners, 3) world coordinates, blocks in BLOCK_NAMES order
    bevel_width: float
    plane_x: float  # x of the background plane (it faces the camera on +x)


def animal_geometry(
    arm_position: float = 0.5,
    spherical: float = 0.5,
    bending: float = 0.0,
    obj_rotation_roll: float = 0.0,
    obj_rotation_pitch: float = 0.0,
    obj_rotation_yaw: float = 0.0,
    position_x: float = 0.0,
    position_y: float = 0.0,
) -> AnimalGeometry:
    """World coordinates of every block corner, the bevel width and the background plane."""
    half = block_size(spherical) / 2
    corners = block_centres(arm_position)[:, None, :] + half * CUBE_CORNERS[None, :, :]

    def centre(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        shift = -0.5 * _bbox_centre(c)
        return c + shift, shift

    corners, moved = centre(corners)
    corners = _bend(corners, float(bending), SPINE_MIDDLE + moved)
    corners, _ = centre(corners)
    for axis, angle in ((1, obj_rotation_roll), (2, obj_rotation_pitch), (0, obj_rotation_yaw)):
        corners = _apply(_affine(axis, float(angle), _bbox_centre(corners)), corners)
    corners, _ = centre(corners)
    corners = corners + np.array([0.0, float(position_x), float(position_y)])
    plane_x = float(corners[..., 0].min()) - PLANE_DISTANCE
    return AnimalGeometry(corners, bevel_width(spherical), plane_x)


def _bend(corners: np.ndarray, bending: float, middle: np.ndarray) -> np.ndarray:
    """Pose the two bone chains and skin the blocks (see the module docstring, step 3)."""
    out = corners.copy()
    for side, sign, outer_head in (("right", 1.0, middle + [0, 0.5, 0]), ("left", -1.0, middle - [0, 0.5, 0])):
        centre_bone = _affine(0, sign * bending / 2, middle)
        outer_bone = centre_bone @ _affine(0, sign * bending, outer_head)
        for k, name in enumerate(BLOCK_NAMES):
            if side not in name:
                continue
            if name in BLEND_WEIGHTS:
                w = BLEND_WEIGHTS[name][:, None]
                out[k] = w * _apply(centre_bone, corners[k]) + (1 - w) * _apply(outer_bone, corners[k])
            else:
                out[k] = _apply(outer_bone, corners[k])
    return out
