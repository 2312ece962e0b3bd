"""The Blender 5.0 scene that renders the original Two4Two animal; the only module importing bpy.

One `AnimalScene` per process builds the scene once; `render(params)` then changes only
mesh corners, modifier widths, the plane's position and colour values before the one
render call (no object creation, no other `bpy.ops`). Image and mask come from the same
Cycles render: the Combined and Object Index passes of an uncompressed multi-layer EXR
in /dev/shm, parsed with numpy (`blender_scripts/exr.py`).

What the original renders, and what this scene does the same way (measured against the
original's renders in tests/data/original-128 by benchmarks/fidelity.py):
* Geometry from `two4two.animal`: eight cubes posed, bent, turned and centred as the
  original does, then a one-segment bevel (width 0.05 + size·0.25·spherical) and a
  Catmull–Clark subdivision (render level 5 in the original), both live modifiers, so
  spherical = 1 gives near-spheres and every block looks smaller than its cube.
* Camera at (9, 0, 0) looking along −x, 50 mm lens; elliptic area light 20 × 15 at
  (10, 10, 10), rotation (π/4, π/4, π/2); the original's 20 000 W in Blender 2.83 equal
  20 000·π/4 W in 5.0 (2.83 lit elliptic lights with the power of their inscribed square);
  a 20 × 20 plane 10 units behind the rearmost corner; no world (black); Diffuse BSDFs.
* Colour: the colormap's sRGB values go in as linear albedo and the Filmic view transform
  makes the pale look of the paper's images (`look="saturated"`: sRGB→linear albedo and
  the Standard view, an option).
Where it differs on purpose:
* Isolation: a path tracer carries the background's colour onto the animal and back.
  Here every ray that is not a camera ray sees the plane in a fixed stand-in colour (the
  colormap's middle), and sees a block in that stand-in too unless it is the first bounce
  from a nearby block (shorter than `ISOLATION_RAY_LENGTH`; the plane is ≥ 10 units from
  every block). So blocks still light each other in their own colour and the plane lights
  the animal as a mid-grey background would, while a changed bg_color never changes an
  animal pixel and a changed obj_color never a background pixel. The original lets a
  coloured background tint the animal; near-neutral backgrounds look the same.
* Pixel filter: the original's Blackman–Harris of 1.5 px (`pixel_filter_width`). A 1 px box
  (this scene's earlier filter) gives harder edges than the original's; at 128 samples the
  Blackman–Harris render differs from the original by 0.8/255 on the silhouette's edge ring,
  the box by 3.3/255 (benchmarks/fidelity.py --experiments).
* Noise: `denoise` estimates the background from background pixels, the animal from animal
  pixels and the antialiased edge from edge pixels (`blender_scripts/denoise.py`), guided by
  Cycles' Cryptomatte coverage and Normal pass, so it cannot break isolation.
The mask is Cycles' Object Index pass: the object hit by the first sample of a pixel.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
import tempfile

import bpy
import numpy as np

from blender_scripts.exr import read_exr_uncompressed
from two4two.animal import BLOCK_NAMES, CUBE_FACES, animal_geometry
from blender_scripts.payload import LOOKS, check_payload

OBJECT_LABELS = {"Background": 0, **{name: i + 1 for i, name in enumerate(BLOCK_NAMES)}}  # object name -> mask label
ORIGINAL_LIGHT_WATTS = 20_000.0
LIGHT_WATTS_5_0 = ORIGINAL_LIGHT_WATTS * math.pi / 4
ISOLATION_RAY_LENGTH = 8.0  # blocks are < 7 units apart, the plane is ≥ 10 units from any block


def srgb_to_linear(c):
    """sRGB-encoded [0, 1] -> linear (IEC 61966-2-1)."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c):
    """Linear -> sRGB-encoded [0, 1]; Blender's 'Standard' view transform."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


class AnimalScene:
    """The persistent Cycles scene: eight blocks, a background plane, camera, light.

    samples: Cycles samples per pixel; denoise: the mask-aware filter (see module doc);
    subdivision_levels: Catmull–Clark render level (the original: 5); look: "pale"
    (Filmic, the original's) or "saturated"; pixel_filter_width: of the Blackman–Harris pixel
    filter, in px (the original: 1.5); threads: 0 = all cores.
    The five render settings have no defaults here: two4two.render.RenderSettings declares them
    (`AnimalScene(**RenderSettings().to_dict())`). The knobs after them are for experiments (benchmarks).
    """

    def __init__(self, resolution=(128, 128), *, samples, denoise, subdivision_levels, look, pixel_filter_width,
                 threads=0, seed=0, pixel_filter_type="BLACKMAN_HARRIS", isolate=True,
                 sampling_pattern=None, max_bounces=None, light_tree=False, tmpdir=None, quiet=True):
        if look not in LOOKS:
            raise ValueError(f"look: expected one of {', '.join(LOOKS)}, got {look!r}")
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.look = look
        self.denoise = bool(denoise)
        self.quiet = bool(quiet)
        self.last_stats = {}
        tmpdir = tmpdir or ("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
        self._exr_path = os.path.join(tmpdir, f"two4two_{os.getpid()}_{id(self):x}.exr")
        atexit.register(self.close)

        bpy.ops.wm.read_factory_settings(use_empty=True)
        sc = bpy.context.scene
        self.scene = sc
        r = sc.render
        _set(r, engine="CYCLES", resolution_percentage=100, film_transparent=False, use_persistent_data=True,
             use_compositing=False, use_sequencer=False, dither_intensity=0.0, use_file_extension=False)
        if threads and threads > 0:
            r.threads_mode, r.threads = "FIXED", int(threads)
        else:
            r.threads_mode = "AUTO"
        cy = sc.cycles
        _set(cy, device="CPU", samples=int(samples), use_adaptive_sampling=False, seed=int(seed),
             use_animated_seed=False, use_denoising=False, use_light_tree=bool(light_tree),
             pixel_filter_type=pixel_filter_type, filter_width=float(pixel_filter_width), use_auto_tile=False)
        if sampling_pattern:
            cy.sampling_pattern = sampling_pattern
        if max_bounces is not None:
            cy.max_bounces = cy.diffuse_bounces = int(max_bounces)
        # The view transform is applied by numpy (see _filmic_lut), to linear EXR data.
        sc.display_settings.display_device = "sRGB"
        _set(sc.view_settings, view_transform="Standard", look="None")
        _set(sc.view_layers[0], use_pass_combined=True, use_pass_object_index=True, use_pass_z=False,
             use_pass_normal=True,  # the denoiser's guide: shading on diffuse blocks follows the normal
             use_pass_cryptomatte_object=True,  # per-pixel coverage of the two main objects
             pass_cryptomatte_depth=2)
        _set(r.image_settings, media_type="MULTI_LAYER_IMAGE",  # 5.0: set before file_format
             file_format="OPEN_EXR_MULTILAYER", color_depth="32", exr_codec="NONE")
        self._view = _filmic_lut(tmpdir) if look == "pale" else None

        sc.camera = _add(sc, "Camera", bpy.data.cameras.new("Camera"), location=(9.0, 0.0, 0.0),
                         rotation_euler=(math.pi / 2, 0.0, math.pi / 2))  # look along -x, image up = +z
        sc.camera.data.lens = 50.0

        light = bpy.data.lights.new("AreaLight", type="AREA")
        _set(light, shape="ELLIPSE", size=20.0, size_y=15.0, energy=LIGHT_WATTS_5_0)
        _add(sc, "AreaLight", light, location=(10.0, 10.0, 10.0),
             rotation_euler=(math.pi / 4, math.pi / 4, math.pi / 2))

        self.animal_material, animal_colour, animal_stand_in = _material("Animal", isolate, ray_length=True)
        self.plane_material, plane_colour, plane_stand_in = _material("Background", isolate, ray_length=False)
        stand_ins = [s for s in (animal_stand_in, plane_stand_in) if s is not None]
        self._colour_sockets = {"obj_color_rgb": [animal_colour], "bg_color_rgb": [plane_colour],
                                "stand_in_rgb": stand_ins}

        plane_mesh = bpy.data.meshes.new("PlaneMesh")
        h = 10.0
        plane_mesh.from_pydata([(0, -h, -h), (0, h, -h), (0, h, h), (0, -h, h)], [], [(0, 1, 2, 3)])
        plane_mesh.materials.append(self.plane_material)
        self.plane = _add(sc, "Background", plane_mesh, pass_index=0)

        self.blocks = []
        for label, (name, corners) in enumerate(zip(BLOCK_NAMES, animal_geometry().corners), start=1):
            mesh = bpy.data.meshes.new(name)
            mesh.from_pydata([tuple(c) for c in corners], [], list(CUBE_FACES))
            mesh.materials.append(self.animal_material)
            ob = _add(sc, name, mesh, pass_index=label)
            ob.modifiers.new("Bevel", "BEVEL")  # Blender's defaults: 1 segment, angle limit
            subsurf = ob.modifiers.new("Subdivision", "SUBSURF")
            subsurf.levels = subsurf.render_levels = int(subdivision_levels)
            self.blocks.append(ob)

    # ------------------------------------------------------------------ per sample
    def update(self, params: dict) -> None:
        """Apply a worker payload (`two4two.render.worker_payload`): corners, bevel width, plane position, colours."""
        check_payload(params)
        geo = animal_geometry(**{k: params[k] for k in _GEOMETRY_KEYS})
        hidden = set(params["hidden_blocks"])
        for ob, corners in zip(self.blocks, geo.corners):
            ob.data.vertices.foreach_set("co", corners.astype(np.float32).ravel())
            ob.data.update()
            bevel = ob.modifiers["Bevel"]
            if abs(bevel.width - geo.bevel_width) > 1e-9:
                bevel.width = geo.bevel_width
            # a hidden block is neither seen nor casts light or shadow; its label leaves the mask
            if ob.hide_render != (ob.name in hidden):
                ob.hide_render = ob.name in hidden
        self.plane.location = (geo.plane_x, 0.0, 0.0)
        for key, sockets in self._colour_sockets.items():
            rgb = srgb_to_linear(params[key][:3]) if self.look == "saturated" else params[key][:3]
            for socket in sockets:
                socket.default_value = (*map(float, rgb), 1.0)
        self.resolution = (int(params["resolution"][0]), int(params["resolution"][1]))
        r = self.scene.render
        if (r.resolution_x, r.resolution_y) != self.resolution:
            r.resolution_x, r.resolution_y = self.resolution

    def render_raw(self):
        """Render the current state -> (linear RGB float32 (H, W, 3), labels uint8 (H, W)), top row first.

        Also keeps the render's Cryptomatte coverage (`last_coverage`) and normals (`last_normal`).
        """
        self.scene.render.filepath = self._exr_path
        with _silence_stdout() if self.quiet else contextlib.nullcontext():
            bpy.ops.render.render(write_still=True)
        channels, header = read_exr_uncompressed(self._exr_path, with_header=True)
        self.last_stats = {k.split(".")[-1]: header[k].decode() for k in header if k.startswith("cycles.")}
        rgb = np.stack([channels["ViewLayer.Combined." + c] for c in "RGB"], axis=-1)
        self.last_coverage = _coverage(channels, header)
        self.last_normal = np.stack([channels["ViewLayer.Normal." + c] for c in "XYZ"], axis=-1)
        return rgb, np.rint(channels["ViewLayer.Object Index.X"]).astype(np.uint8)

    def to_display(self, rgb: np.ndarray) -> np.ndarray:
        """Linear RGB -> uint8 display values through the scene's view transform."""
        out = self._view(rgb) if self._view is not None else linear_to_srgb(rgb)
        return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)

    def render(self, params: dict):
        """Render `params` -> (image uint8 (H, W, 3), mask uint8 (H, W) labels 0..8)."""
        self.update(params)
        rgb, mask = self.render_raw()
        if self.denoise:
            from blender_scripts.denoise import denoise

            rgb = denoise(rgb, mask, self.last_coverage, self.last_normal)
        image = self.to_display(rgb)
        if params["fliplr"]:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.remove(self._exr_path)


_GEOMETRY_KEYS = ("arm_position", "spherical", "bending", "obj_rotation_roll", "obj_rotation_pitch",
                  "obj_rotation_yaw", "position_x", "position_y")


def _hash_bits(h: int) -> int:
    """Cryptomatte's name hash -> the bits of the float id it stores (no NaN, inf or denormal)."""
    exponent = (h >> 23) & 0xFF
    return h ^ (1 << 23) if exponent in (0, 255) else h


def _coverage(channels: dict, header: dict):
    """Cryptomatte's two main objects per pixel -> (labels int16 (H, W, 2), -1 for none; coverage (H, W, 2))."""
    import json

    key = next(k for k in header if k.startswith("cryptomatte/") and k.endswith("/manifest"))
    manifest = json.loads(header[key].decode())
    by_bits = {_hash_bits(int(h, 16)): OBJECT_LABELS[n] for n, h in manifest.items() if n in OBJECT_LABELS}
    layer = "ViewLayer.CryptoObject00."
    bits = np.stack([channels[layer + "r"], channels[layer + "b"]], axis=-1).astype(np.float32).view(np.uint32)
    weights = np.stack([channels[layer + "g"], channels[layer + "a"]], axis=-1).astype(np.float32)
    labels = np.full(bits.shape, -1, np.int16)
    for value, label in by_bits.items():
        labels[bits == value] = label
    weights[labels < 0] = 0.0
    return labels, weights


def _set(target, **values) -> None:
    """Set a Blender struct's properties, in the order given."""
    for name, value in values.items():
        setattr(target, name, value)


def _add(sc, name: str, data, **values):
    """A new object `name` of `data`, linked into the scene, with its properties set."""
    ob = bpy.data.objects.new(name, data)
    sc.collection.objects.link(ob)
    _set(ob, **values)
    return ob


def _material(name: str, isolate: bool, ray_length: bool):
    """A Diffuse BSDF whose colour non-camera rays may see as a stand-in (see module doc).

    Returns (material, colour socket, stand-in colour socket or None).
    """
    mat = bpy.data.materials.new(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.clear()
    out = nodes.new("ShaderNodeOutputMaterial")
    diffuse = nodes.new("ShaderNodeBsdfDiffuse")
    links.new(diffuse.outputs["BSDF"], out.inputs["Surface"])
    if not isolate:
        return mat, diffuse.inputs["Color"], None
    path = nodes.new("ShaderNodeLightPath")
    mix = nodes.new("ShaderNodeMix")
    mix.data_type = "RGBA"
    factor, stand_in, own = mix.inputs[0], mix.inputs[6], mix.inputs[7]  # Factor, A, B (colour)
    own_colour = path.outputs["Is Camera Ray"]
    if ray_length:  # the first bounce from a nearby block sees the real colour too
        def math_node(operation, a, b):
            node = nodes.new("ShaderNodeMath")
            node.operation = operation
            links.new(a, node.inputs[0])
            if isinstance(b, float):
                node.inputs[1].default_value = b
            else:
                links.new(b, node.inputs[1])
            return node.outputs[0]

        near = math_node("LESS_THAN", path.outputs["Ray Length"], ISOLATION_RAY_LENGTH)
        first = math_node("LESS_THAN", path.outputs["Ray Depth"], 1.5)
        own_colour = math_node("MAXIMUM", own_colour, math_node("MULTIPLY", near, first))
    links.new(own_colour, factor)
    links.new(mix.outputs[2], diffuse.inputs["Color"])  # the RGBA result
    return mat, own, stand_in


def _filmic_lut(tmpdir: str, size: int = 65):
    """Blender's Filmic view (look None) as a function of linear RGB, sampled once from Blender itself.

    Blender applies view transforms only when it writes display images, so a size³ grid of
    linear colours, spaced like Filmic's own log2 shaper, is written through a Filmic scene
    as a 16-bit PNG, read back as data, and interpolated trilinearly afterwards.
    """
    lo, hi = -12.473931188, 12.526068812  # Filmic Log's log2 allocation
    grid = np.linspace(0.0, 1.0, size)
    linear = np.exp2(lo + np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 3) * (hi - lo))
    width, height = size * size, size
    image = bpy.data.images.new("filmic_grid", width, height, alpha=False, float_buffer=True)
    image.colorspace_settings.name = "Linear Rec.709"
    rgba = np.concatenate([linear, np.ones((linear.shape[0], 1))], axis=1).astype(np.float32)
    image.pixels.foreach_set(rgba.ravel())
    lut_scene = bpy.data.scenes.new("filmic_lut")
    lut_scene.display_settings.display_device = "sRGB"
    _set(lut_scene.view_settings, view_transform="Filmic", look="None", exposure=0.0, gamma=1.0)
    lut_scene.render.dither_intensity = 0.0
    _set(lut_scene.render.image_settings, file_format="PNG", color_mode="RGB", color_depth="16")
    path = os.path.join(tmpdir, f"two4two_filmic_{os.getpid()}.png")
    image.save_render(path, scene=lut_scene)
    back = bpy.data.images.load(path)
    back.colorspace_settings.name = "Non-Color"
    values = np.empty(width * height * 4, dtype=np.float32)
    back.pixels.foreach_get(values)
    os.remove(path)
    bpy.data.images.remove(image)
    bpy.data.images.remove(back)
    bpy.data.scenes.remove(lut_scene)

    flat = values.reshape(-1, 4)[:, :3]  # the size³ grid's RGB, blue varying fastest
    corners = [(dr, dg, db) for dr in (0, 1) for dg in (0, 1) for db in (0, 1)]
    offsets = np.array([(dr * size + dg) * size + db for dr, dg, db in corners])

    def view(rgb: np.ndarray) -> np.ndarray:
        shape = rgb.shape
        x = np.log2(np.maximum(rgb.reshape(-1, 3).astype(np.float32), np.float32(2.0**lo)))
        u = np.clip((x - lo) * np.float32((size - 1) / (hi - lo)), 0.0, size - 1.0001)
        i = u.astype(np.int64)
        f = u - i
        base = (i[:, 0] * size + i[:, 1]) * size + i[:, 2]
        out = np.zeros((base.shape[0], 3), dtype=np.float32)
        for (dr, dg, db), offset in zip(corners, offsets):
            w = (f[:, 0] if dr else 1 - f[:, 0]) * (f[:, 1] if dg else 1 - f[:, 1]) * (f[:, 2] if db else 1 - f[:, 2])
            out += w[:, None] * flat[base + offset]
        return out.reshape(shape)

    return view


@contextlib.contextmanager
def _silence_stdout():
    """Redirect the C-level stdout (Blender's "Saved: ..." lines) to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
