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
import math
import os
import sys
import tempfile

import bpy
import numpy as np

from blender_scripts.exr import read_exr_uncompressed
from two4two.animal import BLOCK_NAMES, CUBE_FACES, animal_geometry
from blender_scripts.payload import LOOKS, check_payload

LABELS = {0: "Background", **{i + 1: name for i, name in enumerate(BLOCK_NAMES)}}  # object names
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
        self._render_settings(sc, samples, threads, seed, (pixel_filter_type, pixel_filter_width), sampling_pattern,
                              max_bounces, light_tree)
        self._view = _filmic_lut(tmpdir) if look == "pale" else None

        cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        cam.data.lens = 50.0
        sc.collection.objects.link(cam)
        cam.location = (9.0, 0.0, 0.0)
        cam.rotation_euler = (math.pi / 2, 0.0, math.pi / 2)  # look along -x, image up = +z
        sc.camera = cam

        light_data = bpy.data.lights.new("AreaLight", type="AREA")
        light_data.shape = "ELLIPSE"
        light_data.size, light_data.size_y = 20.0, 15.0
        light_data.energy = LIGHT_WATTS_5_0
        light = bpy.data.objects.new("AreaLight", light_data)
        sc.collection.objects.link(light)
        light.location = (10.0, 10.0, 10.0)
        light.rotation_euler = (math.pi / 4, math.pi / 4, math.pi / 2)

        self.animal_material, self._animal_color, animal_stand_in = _material("Animal", isolate, ray_length=True)
        self.plane_material, self._plane_color, plane_stand_in = _material("Background", isolate, ray_length=False)
        self._stand_ins = [s for s in (animal_stand_in, plane_stand_in) if s is not None]

        plane_mesh = bpy.data.meshes.new("PlaneMesh")
        h = 10.0
        plane_mesh.from_pydata([(0, -h, -h), (0, h, -h), (0, h, h), (0, -h, h)], [], [(0, 1, 2, 3)])
        plane_mesh.materials.append(self.plane_material)
        self.plane = bpy.data.objects.new("Background", plane_mesh)
        sc.collection.objects.link(self.plane)
        self.plane.pass_index = 0

        corners = animal_geometry().corners
        self.blocks, self.meshes, self.bevels = [], [], []
        for label, name in enumerate(BLOCK_NAMES, start=1):
            mesh = bpy.data.meshes.new(name)
            mesh.from_pydata([tuple(c) for c in corners[label - 1]], [], list(CUBE_FACES))
            mesh.materials.append(self.animal_material)
            ob = bpy.data.objects.new(name, mesh)
            sc.collection.objects.link(ob)
            ob.pass_index = label
            bevel = ob.modifiers.new("Bevel", "BEVEL")  # Blender's defaults: 1 segment, angle limit
            subsurf = ob.modifiers.new("Subdivision", "SUBSURF")
            subsurf.levels = subsurf.render_levels = int(subdivision_levels)
            self.blocks.append(ob)
            self.meshes.append(mesh)
            self.bevels.append(bevel)

    @staticmethod
    def _render_settings(sc, samples, threads, seed, pixel_filter, sampling_pattern, max_bounces, light_tree):
        r = sc.render
        r.engine = "CYCLES"
        r.resolution_percentage = 100
        r.film_transparent = False
        r.use_persistent_data = True
        r.use_compositing = False
        r.use_sequencer = False
        r.dither_intensity = 0.0
        if threads and threads > 0:
            r.threads_mode, r.threads = "FIXED", int(threads)
        else:
            r.threads_mode = "AUTO"
        cy = sc.cycles
        cy.device = "CPU"
        cy.samples = int(samples)
        cy.use_adaptive_sampling = False
        cy.seed = int(seed)
        cy.use_animated_seed = False
        cy.use_denoising = False
        cy.use_light_tree = bool(light_tree)
        cy.pixel_filter_type = pixel_filter[0]
        cy.filter_width = float(pixel_filter[1])
        cy.use_auto_tile = False
        if sampling_pattern:
            cy.sampling_pattern = sampling_pattern
        if max_bounces is not None:
            for attr in ("max_bounces", "diffuse_bounces"):
                setattr(cy, attr, int(max_bounces))
        # The view transform is applied by numpy (see _filmic_lut), to linear EXR data.
        sc.display_settings.display_device = "sRGB"
        sc.view_settings.view_transform = "Standard"
        sc.view_settings.look = "None"
        vl = sc.view_layers[0]
        vl.use_pass_combined = True
        vl.use_pass_object_index = True
        vl.use_pass_z = False
        vl.use_pass_normal = True  # the denoiser's guide: shading on diffuse blocks follows the normal
        vl.use_pass_cryptomatte_object = True  # per-pixel coverage of the two main objects
        vl.pass_cryptomatte_depth = 2
        s = r.image_settings
        s.media_type = "MULTI_LAYER_IMAGE"  # 5.0: set before file_format
        s.file_format = "OPEN_EXR_MULTILAYER"
        s.color_depth = "32"
        s.exr_codec = "NONE"
        r.use_file_extension = False

    # ------------------------------------------------------------------ per sample
    def update(self, params: dict) -> None:
        """Apply a worker payload (`two4two.render.worker_payload`): corners, bevel width, plane position, colours."""
        check_payload(params)
        geo = animal_geometry(**{k: params[k] for k in _GEOMETRY_KEYS})
        for mesh, corners in zip(self.meshes, geo.corners):
            mesh.vertices.foreach_set("co", corners.astype(np.float32).ravel())
            mesh.update()
        for bevel in self.bevels:
            if abs(bevel.width - geo.bevel_width) > 1e-9:
                bevel.width = geo.bevel_width
        self.plane.location = (geo.plane_x, 0.0, 0.0)
        hidden = set(params["hidden_blocks"])
        for ob in self.blocks:  # a hidden block is neither seen nor casts light or shadow; its label leaves the mask
            if ob.hide_render != (ob.name in hidden):
                ob.hide_render = ob.name in hidden
        obj, bg, stand_in = params["obj_color_rgb"][:3], params["bg_color_rgb"][:3], params["stand_in_rgb"][:3]
        if self.look == "saturated":
            obj, bg, stand_in = srgb_to_linear(obj), srgb_to_linear(bg), srgb_to_linear(stand_in)
        self._animal_color.default_value = (*map(float, obj), 1.0)
        self._plane_color.default_value = (*map(float, bg), 1.0)
        for socket in self._stand_ins:
            socket.default_value = (*map(float, stand_in), 1.0)
        res = params["resolution"]
        if (int(res[0]), int(res[1])) != self.resolution:
            self.resolution = (int(res[0]), int(res[1]))
        r = self.scene.render
        if (r.resolution_x, r.resolution_y) != self.resolution:
            r.resolution_x, r.resolution_y = self.resolution

    def render_raw(self):
        """Render the current state -> (linear RGB float32 (H, W, 3), labels uint8 (H, W)), top row first.

        Also keeps the render's Cryptomatte coverage (`last_coverage`) and normals (`last_normal`).
        """
        self.scene.render.filepath = self._exr_path
        with _silence_stdout(self.quiet):
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
        try:
            os.remove(self._exr_path)
        except OSError:
            pass


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
    names = {name: label for label, name in LABELS.items()}
    by_bits = {_hash_bits(int(h, 16)): names[n] for n, h in manifest.items() if n in names}
    layer = "ViewLayer.CryptoObject00."
    ids = np.stack([channels[layer + "r"], channels[layer + "b"]], axis=-1).astype(np.float32)
    weights = np.stack([channels[layer + "g"], channels[layer + "a"]], axis=-1).astype(np.float32)
    bits = ids.view(np.uint32)
    labels = np.full(ids.shape, -1, np.int16)
    for value, label in by_bits.items():
        labels[bits == value] = label
    weights[labels < 0] = 0.0
    return labels, weights


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
        near = nodes.new("ShaderNodeMath")
        near.operation = "LESS_THAN"
        links.new(path.outputs["Ray Length"], near.inputs[0])
        near.inputs[1].default_value = ISOLATION_RAY_LENGTH
        first = nodes.new("ShaderNodeMath")
        first.operation = "LESS_THAN"
        links.new(path.outputs["Ray Depth"], first.inputs[0])
        first.inputs[1].default_value = 1.5
        both = nodes.new("ShaderNodeMath")
        both.operation = "MULTIPLY"
        links.new(near.outputs[0], both.inputs[0])
        links.new(first.outputs[0], both.inputs[1])
        either = nodes.new("ShaderNodeMath")
        either.operation = "MAXIMUM"
        links.new(path.outputs["Is Camera Ray"], either.inputs[0])
        links.new(both.outputs[0], either.inputs[1])
        own_colour = either.outputs[0]
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
    r, g, b = np.meshgrid(grid, grid, grid, indexing="ij")
    linear = np.exp2(lo + np.stack([r, g, b], axis=-1).reshape(-1, 3) * (hi - lo))
    width, height = size * size, size
    image = bpy.data.images.new("filmic_grid", width, height, alpha=False, float_buffer=True)
    image.colorspace_settings.name = "Linear Rec.709"
    rgba = np.concatenate([linear, np.ones((linear.shape[0], 1))], axis=1).astype(np.float32)
    image.pixels.foreach_set(rgba.ravel())
    lut_scene = bpy.data.scenes.new("filmic_lut")
    lut_scene.display_settings.display_device = "sRGB"
    lut_scene.view_settings.view_transform = "Filmic"
    lut_scene.view_settings.look = "None"
    lut_scene.view_settings.exposure = 0.0
    lut_scene.view_settings.gamma = 1.0
    lut_scene.render.dither_intensity = 0.0
    settings = lut_scene.render.image_settings
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    settings.color_depth = "16"
    path = os.path.join(tmpdir, f"two4two_filmic_{os.getpid()}.png")
    image.save_render(path, scene=lut_scene)
    back = bpy.data.images.load(path)
    back.colorspace_settings.name = "Non-Color"
    values = np.empty(width * height * 4, dtype=np.float32)
    back.pixels.foreach_get(values)
    os.remove(path)
    table = values.reshape(-1, 4)[:, :3].reshape(size, size, size, 3)
    bpy.data.images.remove(image)
    bpy.data.images.remove(back)
    bpy.data.scenes.remove(lut_scene)

    flat = table.reshape(-1, 3).astype(np.float32)
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


class _silence_stdout:
    """Redirect the C-level stdout (Blender's "Saved: ..." lines) to /dev/null."""

    def __init__(self, active=True):
        self.active = active

    def __enter__(self):
        if self.active:
            sys.stdout.flush()
            self._saved = os.dup(1)
            self._null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(self._null, 1)

    def __exit__(self, *exc):
        if self.active:
            os.dup2(self._saved, 1)
            os.close(self._saved)
            os.close(self._null)
