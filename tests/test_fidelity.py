"""Our animal against the original Two4Two renderer's, parameter set by parameter set.

tests/data/original-128 holds the original's 128 px renders and masks for 59 parameter sets
(single-attribute sweeps and 20 study2022 draws). Geometry is checked without Blender on
what the original's construction implies; the renders are compared with the shipped settings.
"""

import math

import numpy as np
import pytest

from two4two.animal import BLOCK_NAMES, animal_geometry, block_size
from two4two.fidelity import compare, load_references
from two4two.parameters import SceneParameters

SPINE = [BLOCK_NAMES.index(n) for n in ("spine_left", "spine_left_center", "spine_right_center", "spine_right")]


def block_centres(geo):
    return geo.corners.mean(axis=1)


def test_the_peaky_base_sits_right_of_centre_as_the_halfway_centring_leaves_it():
    geo = animal_geometry(arm_position=0.25, spherical=0.5)
    spine = block_centres(geo)[SPINE]
    # Built with its spine middle at y = 0.5, moved back by half the bounding box centre
    # (0.25) three times: 0.5 − 0.125 − 0.0625 − 0.03125.
    assert spine[:, 1].mean() == pytest.approx(0.28125)
    assert np.allclose(spine[:, [0, 2]], 0.0)


def test_yaw_spins_the_animal_in_the_image_plane_and_pitch_turns_it_about_the_vertical():
    base = block_centres(animal_geometry(obj_rotation_yaw=math.pi / 2))
    spine = base[SPINE]
    # A quarter turn of yaw stands the spine upright (image up = +z), right end on top,
    # and keeps every block at the same depth: the legs stay in view.
    assert np.ptp(spine[:, 1]) < 1e-9 and spine[-1, 2] - spine[0, 2] == pytest.approx(3.0)
    assert np.ptp(base[:, 0]) < 1e-9
    turned = block_centres(animal_geometry(obj_rotation_pitch=math.pi / 6))[SPINE]
    depth = turned[-1, 0] - turned[0, 0]
    assert depth == pytest.approx(-3.0 * math.sin(math.pi / 6))  # right end turned away
    assert np.ptp(turned[:, 2]) < 1e-9  # still level


def test_bending_curves_the_spine_in_the_image_plane_and_shears_only_the_centre_blocks():
    geo = animal_geometry(bending=math.pi / 10)
    flat = animal_geometry()
    assert np.allclose(geo.corners[..., 0], flat.corners[..., 0])  # no depth change at zero rotation
    spine = block_centres(geo)[SPINE]
    assert spine[0, 2] > spine[1, 2] and spine[3, 2] > spine[2, 2]  # both ends bend up: a banana
    edge = block_size(0.5)
    for k, name in enumerate(BLOCK_NAMES):
        lengths = np.linalg.norm(geo.corners[k][2] - geo.corners[k][0])  # the edge along the spine
        if name.endswith("_center"):
            assert not np.isclose(lengths, edge)  # skinned between two bones: a little sheared
        else:
            assert np.isclose(lengths, edge)  # rigid


def test_the_plane_stays_ten_units_behind_the_rearmost_corner():
    geo = animal_geometry(obj_rotation_pitch=0.5, obj_rotation_roll=0.4, position_x=-0.8)
    assert geo.plane_x == pytest.approx(geo.corners[..., 0].min() - 10.0)


@pytest.fixture(scope="module")
def renders():
    pytest.importorskip("bpy", reason="renders with Blender: pip install -e '.[render]'")
    from blender_scripts.scene import AnimalScene
    from two4two.render import RenderSettings, worker_payload

    scene = AnimalScene(resolution=(128, 128), **RenderSettings().to_dict())
    out = []
    for ref in load_references():
        image, mask = scene.render(worker_payload(SceneParameters.from_dict(ref.params)))
        out.append((ref, compare(image, mask, ref.image, ref.mask)))
    scene.close()
    return out


@pytest.mark.slow
@pytest.mark.blender
def test_every_reference_image_has_the_originals_silhouette_and_blocks(renders):
    ious = [m["iou"] for _, m in renders]
    assert len(renders) == 59
    for ref, m in renders:
        assert m["iou"] >= 0.95, (ref.id, m)
        assert m["label_agreement"] >= 0.95, (ref.id, m)
    assert np.mean(ious) >= 0.97


@pytest.mark.slow
@pytest.mark.blender
def test_every_reference_image_has_the_originals_colours(renders):
    for ref, m in renders:
        assert m["background_mad"] <= 4.0, (ref.id, m)
        if 0.4 <= ref.params["bg_color"] <= 0.6:  # elsewhere the original's background tints the animal
            assert m["interior_mad"] <= 10.0, (ref.id, m)
    assert sum(0.4 <= ref.params["bg_color"] <= 0.6 for ref, _ in renders) >= 3
