"""The Blender scene itself, rendered in-process at tiny sizes with few samples."""

import numpy as np
import pytest
from scipy import ndimage

from two4two.parameters import SceneParameters
from two4two.render import worker_payload

pytestmark = [pytest.mark.slow, pytest.mark.render]

RES = 64


@pytest.fixture(scope="module")
def scene():
    """The shipped render settings (denoiser on): isolation is a property of what users get."""
    from blender_scripts.scene import AnimalScene
    from two4two.render import RenderSettings

    s = AnimalScene(resolution=(RES, RES), **RenderSettings().to_dict())
    yield s
    s.close()


def frontal(**changes):
    """The default animal seen from the side (every rotation 0), legs level with the spine's end."""
    base = dict(id="t", arm_position=0.5, position_x=0.0, position_y=0.0, resolution=(RES, RES))
    base.update(changes)
    return SceneParameters(**base)


def render(scene, p):
    return scene.render(worker_payload(p))


def block_interiors(mask):
    """Pixels whose 3×3 neighbourhood is one block: at least one pixel inside a silhouette.

    Neighbouring blocks are separated by gaps of background that can be narrower than
    a pixel; the mask (first sample of a pixel) cannot see those, so the seam between
    two labels counts as silhouette edge too.
    """
    inside = np.zeros(mask.shape, bool)
    for label in range(1, 9):
        inside |= ndimage.binary_erosion(mask == label, structure=np.ones((3, 3)))
    return inside


def background_interior(mask):
    return ndimage.binary_erosion(mask == 0, structure=np.ones((3, 3)), border_value=1)


def test_image_and_mask_shapes_and_all_nine_labels(scene):
    image, mask = render(scene, frontal())
    assert image.shape == (RES, RES, 3) and image.dtype == np.uint8
    assert mask.shape == (RES, RES) and mask.dtype == np.uint8
    assert set(np.unique(mask)) == set(range(9))


def centroid(mask, labels):
    ys, xs = np.nonzero(np.isin(mask, labels))
    return np.array([xs.mean(), ys.mean()])


def test_right_legs_move_away_from_the_spine_with_arm_position(scene):
    distances = []
    for arm in np.linspace(0, 1, 6):
        _, mask = render(scene, frontal(arm_position=float(arm)))
        distances.append(np.linalg.norm(centroid(mask, [7, 8]) - centroid(mask, [3, 4, 5, 6])))
    assert np.all(np.diff(distances) > 0), distances


def test_background_colour_does_not_touch_the_animal(scene):
    p = frontal(obj_rotation_yaw=0.6, obj_rotation_pitch=0.2, bending=0.2, spherical=0.7)
    image_a, mask_a = render(scene, p.replace(bg_color=0.05))
    image_b, mask_b = render(scene, p.replace(bg_color=0.95))
    np.testing.assert_array_equal(mask_a, mask_b)
    inside = block_interiors(mask_a)
    assert inside.sum() > 200
    assert np.abs(image_a.astype(int) - image_b.astype(int))[inside].max() <= 1
    # ... while the background really changed (by 42/255 on average: Filmic's pale look
    # compresses the colormap's blue-to-red range).
    outside = background_interior(mask_a)
    assert np.abs(image_a.astype(int) - image_b.astype(int))[outside].mean() > 30


def test_animal_colour_does_not_touch_mask_or_background(scene):
    p = frontal(obj_rotation_yaw=-0.4, obj_rotation_roll=0.3, spherical=0.2)
    image_a, mask_a = render(scene, p.replace(obj_color=0.0))
    image_b, mask_b = render(scene, p.replace(obj_color=1.0))
    np.testing.assert_array_equal(mask_a, mask_b)
    outside = background_interior(mask_a)
    assert outside.sum() > 1000
    assert np.abs(image_a.astype(int) - image_b.astype(int))[outside].max() <= 1
    inside = block_interiors(mask_a)
    assert np.abs(image_a.astype(int) - image_b.astype(int))[inside].mean() > 30


def test_fliplr_mirrors_image_and_mask(scene):
    p = frontal(arm_position=0.8, obj_rotation_yaw=0.3, position_x=-0.4)
    image, mask = render(scene, p)
    image_f, mask_f = render(scene, p.replace(fliplr=True))
    np.testing.assert_array_equal(mask_f, mask[:, ::-1])
    np.testing.assert_array_equal(image_f, image[:, ::-1])


def test_same_parameters_give_identical_images(scene):
    p = frontal(obj_rotation_yaw=1.0, spherical=0.9, obj_color=0.3)
    a = render(scene, p)
    render(scene, frontal(arm_position=0.1, spherical=0.1))  # a different scene state in between
    b = render(scene, p)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def test_colours_follow_the_colormap(scene):
    image, mask = render(scene, frontal(obj_color=0.0, bg_color=1.0, colormap_upper_scale=0.9))
    bg = image[background_interior(mask)].mean(axis=0)
    animal = image[block_interiors(mask)].mean(axis=0)
    assert bg[0] > bg[2] + 40  # red background
    assert animal[2] > animal[0] + 20  # blue animal


def test_resolution_follows_the_parameters(scene):
    image, mask = render(scene, frontal(resolution=(48, 32)))
    assert image.shape == (32, 48, 3) and mask.shape == (32, 48)


def test_the_pale_look_is_blenders_filmic_view(scene, tmp_path):
    """Our numpy Filmic (a table sampled from Blender once) against Blender writing the PNG itself."""
    import bpy
    from PIL import Image

    rng = np.random.default_rng(0)
    linear = np.exp2(rng.uniform(-8, 3, size=(64 * 64, 3))).astype(np.float32)  # darks to highlights
    image = bpy.data.images.new("check", 64, 64, alpha=False, float_buffer=True)
    image.colorspace_settings.name = "Linear Rec.709"
    image.pixels.foreach_set(np.concatenate([linear, np.ones((len(linear), 1), np.float32)], 1).ravel())
    sc = bpy.data.scenes.new("check")
    sc.view_settings.view_transform = "Filmic"
    sc.view_settings.look = "None"
    sc.render.dither_intensity = 0.0
    sc.render.image_settings.file_format = "PNG"
    sc.render.image_settings.color_mode = "RGB"
    image.save_render(str(tmp_path / "filmic.png"), scene=sc)
    blender = np.asarray(Image.open(tmp_path / "filmic.png"))[::-1].reshape(-1, 3)  # Blender's rows start at the bottom
    ours = scene.to_display(linear.reshape(64, 64, 3)).reshape(-1, 3)
    diff = np.abs(ours.astype(int) - blender.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.1
    # ... and it is not the plain sRGB curve the saturated look uses.
    from blender_scripts.scene import linear_to_srgb

    assert np.abs(np.round(linear_to_srgb(linear) * 255) - blender).mean() > 10


def test_part_removal_changes_only_the_hidden_blocks_pixels_and_labels(scene):
    """Isolation of part removal: the hidden blocks' labels leave the mask and nothing else's
    label changes; the background outside their pixels (grown by 2 px for anti-aliasing) stays
    within render noise (measured: 99th percentile ≤ 8 of 255 without the denoiser). The other
    blocks do change where the removed one shaded them or bounced light onto them (a removed
    spine lights the legs it hid: 99th percentile up to 120), which is what removing it means."""
    from two4two.animal import PARTS, block_labels

    rng = np.random.default_rng(0)
    for trial in range(2):
        p = frontal(arm_position=float(rng.random()), obj_color=float(rng.random()), bg_color=float(rng.random()),
                    obj_rotation_yaw=float(rng.uniform(0, 6)), spherical=float(rng.random()))
        image, mask = render(scene, p)
        for part in ("right_legs", "spine", "arm_left_top"):
            labels = block_labels(PARTS[part])
            hidden_image, hidden_mask = render(scene, p.replace(hidden_blocks=PARTS[part]))
            region = np.isin(mask, labels)
            assert region.any() and not np.isin(hidden_mask, labels).any()
            assert np.array_equal(hidden_mask[~region], mask[~region])
            assert set(np.unique(hidden_mask[region])) <= {0, *[lab for lab in range(1, 9) if lab not in labels]}
            background = ~ndimage.binary_dilation(region, iterations=2) & (mask == 0)
            diff = np.abs(hidden_image.astype(int) - image.astype(int)).max(axis=-1)
            assert np.percentile(diff[background], 99) <= 10 and diff[background].mean() < 1, part
            assert diff[region].mean() > 10, part  # the block really is gone
        # Nothing of the removal stays in the scene: the next image is the original again.
        again, again_mask = render(scene, p)
        assert np.array_equal(again, image) and np.array_equal(again_mask, mask)
