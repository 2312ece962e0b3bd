"""Blender 5.0 (``bpy`` module) rendering core for two4two-style "Peeky"/"Stretchy" images.

This is the only module of the project that imports :mod:`bpy`.  It builds a Cycles
scene **once** (:meth:`AnimalScene.__init__`) and then renders arbitrary parameter
sets by changing only object transforms, bevel-modifier widths and material colour
values (:meth:`AnimalScene.render`) -- no ``bpy.ops`` other than the render call,
no object re-creation.  Each render returns

* ``image``: ``uint8`` ``(H, W, 3)``, sRGB-encoded ("Standard" view transform),
* ``mask``:  ``uint8`` ``(H, W)`` with labels ``0..8`` (see :data:`LABELS`),

both from the *same* Cycles render: the Combined pass and the Object Index pass
(``pass_index`` = label per block) are written to an uncompressed multi-layer OpenEXR
file in ``/dev/shm`` (tmpfs) and parsed with numpy (~1.5 ms; see
:func:`read_exr_uncompressed`).  The compositor Viewer node is *not* evaluated in
background mode and ``bpy.data.images['Render Result'].pixels`` is empty there, so
the EXR round trip is the robust path.

Only one ``AnimalScene`` per process: ``__init__`` resets Blender to factory settings.

Coordinate conventions (world space, Blender is Z-up)
-----------------------------------------------------
* Camera at ``(9, 0, 0)`` looking along ``-X``, 50 mm lens (36 mm sensor);
  image right = world ``+Y``, image up = world ``+Z``.
* The animal is built in its local Y-Z plane: spine along ``+Y`` (spine blocks at
  y = -1, 0, 1, 2 before centring), legs at ``z = +-1``.  With all rotations zero
  the animal is seen exactly **side-on** (yaw = 0 is the side view; yaw = pi/2
  looks along the spine).  The spine midpoint (y = 0.5) is moved to the origin.
* ``bending`` rotates the spine blocks about the local ``X`` axis (within the
  animal's plane, so it is visible side-on): centre blocks by ``bending/2``, outer
  blocks by ``bending``; both halves bend the same way (banana); each leg pair is
  rigidly attached to its outer spine block.
* Whole-animal rotation is an Euler ``XYZ`` with ``(X, Y, Z) = (pitch, roll, yaw)``,
  i.e. ``R = Rz(yaw) @ Ry(roll) @ Rx(pitch)``: roll about the spine axis, pitch is an
  in-plane tilt (about the viewing axis at yaw 0), yaw about the vertical axis.
* ``position_x`` -> world ``+Y`` (image right), ``position_y`` -> world ``+Z`` (image
  up), in scene units.  The frame is ~6.5 units wide at x = 0 and the side-on animal
  ~4.9 units, so |position| > ~0.75 starts to clip the outermost legs.

Rendering choices (measured by benchmarks/render.py)
----------------------------------------------------
* Cycles CPU, ``max_bounces = 0``: direct light only (elliptic area light + uniform
  grey world as ambient/AO fill).  No indirect bounces => no colour bleeding between
  plane and animal; shadows are kept (they do not depend on colours).
* Box pixel filter of width 1 px: every sample of a pixel stays inside that pixel,
  so pixels >= 1 px away from the silhouette are exactly independent of the other
  object's colour (Blackman-Harris 1.5 px leaks up to 2 px).  Caveat: where two
  blocks nearly touch, a sub-pixel sliver of background can show through a pixel
  that the (first-sample) mask labels as animal; pixels >= 1 px inside a single
  part are always exact.
* No denoiser by default: OpenImageDenoise mixes colours across the silhouette
  (up to ~10/255 several pixels away), which breaks attribute isolation.
* Fixed seed, no adaptive sampling: renders are bit-identical for identical params
  (within a process, across processes and across thread counts).
* Light tree off (single light: identical image, ~20 % faster), persistent data on.
* 14 spp: 36.5 dB mean PSNR vs. 1024 spp; ~0.14-0.18 s per 128 px image+mask on
  2 CPU cores (~5.5-7 images/s).
* The mask is Cycles' Object Index pass, which stores the object hit by the *first*
  sample of each pixel (no filtering), so labels are exact integers.
"""

from __future__ import annotations

import atexit
import math
import os
import struct
import sys
import tempfile

import bpy
import numpy as np

LABELS = {
    0: "background",
    1: "arm_left_top",
    2: "arm_left_bottom",
    3: "spine_left",
    4: "spine_left_center",
    5: "spine_right_center",
    6: "spine_right",
    7: "arm_right_top",
    8: "arm_right_bottom",
}
_BLOCK_NAMES = [LABELS[i] for i in range(1, 9)]


def srgb_to_linear(c):
    """sRGB-encoded [0, 1] -> linear (IEC 61966-2-1)."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c):
    """Linear -> sRGB-encoded [0, 1]; identical to Blender's 'Standard' view transform."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def _rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def animal_layout(arm_position: float, bending: float):
    """Block centres and X-rotation angles in the animal's (centred) local frame.

    Returns ``[(name, (x, y, z), angle_about_x), ...]`` in label order 1..8.
    Before centring: spine y = -1, 0, 1, 2; left legs y = -1.5, right legs
    y = 1.5 + arm_position, legs at z = +-1.  The spine midpoint 0.5 is subtracted.
    Bending: per side a two-bone chain hinged at the centre; the centre bone is
    rotated by ``bending/2``, the outer bone by ``bending``.
    """
    mid = 0.5
    b = float(bending)
    blocks = {}
    for sign, side in ((-1.0, "left"), (1.0, "right")):
        a_c, a_o = sign * b / 2.0, sign * b  # mirrored angles -> both ends move the same way
        d_c = np.array([0.0, sign * math.cos(b / 2.0), math.sin(b / 2.0)])
        d_o = np.array([0.0, sign * math.cos(b), math.sin(b)])
        centre_blk = 0.5 * d_c
        outer_blk = 1.0 * d_c + 0.5 * d_o
        blocks[f"spine_{side}_center"] = (centre_blk, a_c)
        blocks[f"spine_{side}"] = (outer_blk, a_o)
        # leg offset along the spine relative to the outer spine block (unbent)
        if side == "left":
            leg_dy = (-1.5 - mid) - (-1.0 - mid)                 # -0.5 (fixed)
        else:
            leg_dy = (1.5 + float(arm_position) - mid) - (2.0 - mid)  # arm_position - 0.5
        R = _rot_x(a_o)
        for dz, pos in ((1.0, "top"), (-1.0, "bottom")):
            blocks[f"arm_{side}_{pos}"] = (outer_blk + R @ np.array([0.0, leg_dy, dz]), a_o)
    return [(n, tuple(float(v) for v in blocks[n][0]), float(blocks[n][1])) for n in _BLOCK_NAMES]


class AnimalScene:
    """Persistent Cycles scene: eight rounded blocks, a background plane, camera, light.

    Parameters
    ----------
    resolution : (w, h)
    samples : Cycles samples per pixel (14 => 36.5 dB mean PSNR vs. 1024 spp at 128 px).
    denoise : OpenImageDenoise on/off.  **Breaks attribute isolation** (see module doc).
    threads : 0 = all cores (AUTO), N = fixed thread count.
    Keyword-only knobs are for experiments; the defaults are the chosen settings.
    """

    def __init__(self, resolution=(128, 128), samples=14, denoise=False, threads=0, *,
                 denoise_passes="RGB_ALBEDO_NORMAL", denoise_prefilter="FAST", seed=0, pixel_filter=("BOX", 1.0),
                 light_tree=False, adaptive=False, adaptive_threshold=0.01,
                 persistent_data=True, max_bounces=0, ambient="world", world_strength=0.4,
                 ambient_strength=0.3, light_power=6000.0, light_shape="ELLIPSE",
                 cast_shadows=True, subdivision_levels=2, bevel_segments=3, roughness=0.45,
                 plane_distance=4.0, tile_size=None, tmpdir=None, quiet=True):
        self.resolution = (int(resolution[0]), int(resolution[1]))
        tmpdir = tmpdir or ("/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
        self._exr_path = os.path.join(tmpdir, f"two4two_{os.getpid()}_{id(self):x}.exr")
        atexit.register(self.close)
        self.last_stats = {}
        self.quiet = bool(quiet)

        bpy.ops.wm.read_factory_settings(use_empty=True)
        sc = bpy.context.scene
        self.scene = sc

        # -------------------------------------------------------------- render settings
        r = sc.render
        r.engine = "CYCLES"
        r.resolution_x, r.resolution_y = self.resolution
        r.resolution_percentage = 100
        r.film_transparent = False
        r.use_persistent_data = bool(persistent_data)
        r.use_compositing = False
        r.use_sequencer = False
        if threads and threads > 0:
            r.threads_mode = "FIXED"
            r.threads = int(threads)
        else:
            r.threads_mode = "AUTO"
        cy = sc.cycles
        cy.device = "CPU"
        cy.samples = int(samples)
        cy.use_adaptive_sampling = bool(adaptive)
        cy.adaptive_threshold = float(adaptive_threshold)
        cy.seed = int(seed)
        cy.use_animated_seed = False
        cy.use_denoising = bool(denoise)
        cy.denoiser = "OPENIMAGEDENOISE"
        cy.denoising_input_passes = denoise_passes
        cy.denoising_prefilter = denoise_prefilter
        for attr in ("max_bounces", "diffuse_bounces", "glossy_bounces",
                     "transmission_bounces"):
            setattr(cy, attr, int(max_bounces))
        cy.volume_bounces = 0
        cy.transparent_max_bounces = 0
        cy.caustics_reflective = False
        cy.caustics_refractive = False
        cy.use_light_tree = bool(light_tree)
        cy.pixel_filter_type = pixel_filter[0]
        cy.filter_width = float(pixel_filter[1])
        if tile_size:
            cy.use_auto_tile = True
            cy.tile_size = int(tile_size)
        else:
            cy.use_auto_tile = False
        # Blender 5.0 defaults to AgX, which desaturates; 'Standard' = plain sRGB OETF.
        sc.display_settings.display_device = "sRGB"
        sc.view_settings.view_transform = "Standard"
        sc.view_settings.look = "None"
        sc.view_settings.exposure = 0.0
        sc.view_settings.gamma = 1.0

        vl = sc.view_layers[0]
        vl.use_pass_combined = True
        vl.use_pass_object_index = True  # named "Object Index" in 5.0 (was IndexOB)
        vl.use_pass_z = False

        s = r.image_settings
        s.media_type = "MULTI_LAYER_IMAGE"  # 5.0: must be set before file_format
        s.file_format = "OPEN_EXR_MULTILAYER"
        s.color_depth = "32"
        s.exr_codec = "NONE"
        r.filepath = self._exr_path
        r.use_file_extension = False

        # -------------------------------------------------------------- world (ambient)
        world = bpy.data.worlds.new("World")
        sc.world = world
        bg = world.node_tree.nodes["Background"]
        bg.inputs["Color"].default_value = (1.0, 1.0, 1.0, 1.0)
        bg.inputs["Strength"].default_value = float(world_strength) if ambient == "world" else 0.0

        # -------------------------------------------------------------- camera
        cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        cam.data.lens = 50.0
        cam.data.sensor_fit = "AUTO"
        sc.collection.objects.link(cam)
        cam.location = (9.0, 0.0, 0.0)
        cam.rotation_euler = (math.pi / 2, 0.0, math.pi / 2)  # look along -X, up +Z
        sc.camera = cam

        # -------------------------------------------------------------- light
        ld = bpy.data.lights.new("AreaLight", type="AREA")
        ld.shape = light_shape
        ld.size, ld.size_y = 20.0, 15.0
        ld.energy = float(light_power)
        light = bpy.data.objects.new("AreaLight", ld)
        sc.collection.objects.link(light)
        light.location = (10.0, 10.0, 10.0)
        light.rotation_euler = _look_euler(-np.array(light.location, dtype=float))

        # -------------------------------------------------------------- materials
        self.obj_mat = _principled("AnimalMaterial", roughness=roughness, specular=0.5)
        self.bg_mat = _principled("BackgroundMaterial", roughness=1.0, specular=0.0)
        obsdf = self.obj_mat.node_tree.nodes["Principled BSDF"]
        bbsdf = self.bg_mat.node_tree.nodes["Principled BSDF"]
        self._color_sockets = [obsdf.inputs["Base Color"], bbsdf.inputs["Base Color"]]
        if ambient == "emission":
            # noise-free ambient fill alternative: emission = ambient_strength * albedo
            # Emissive surfaces act as lights (light sampling *and* BSDF-sampled rays at
            # bounce 0), so the plane would tint the animal.  Emission is not sampled as a
            # light, and plane/blocks are hidden from diffuse/glossy rays below.
            for mat in (self.obj_mat, self.bg_mat):
                mat.cycles.emission_sampling = "NONE"
            for b in (obsdf, bbsdf):
                b.inputs["Emission Strength"].default_value = float(ambient_strength)
            self._color_sockets += [obsdf.inputs["Emission Color"], bbsdf.inputs["Emission Color"]]

        # -------------------------------------------------------------- background plane
        h = 30.0
        pm = bpy.data.meshes.new("PlaneMesh")
        pm.from_pydata([(0, -h, -h), (0, h, -h), (0, h, h), (0, -h, h)], [], [(0, 1, 2, 3)])
        pm.materials.append(self.bg_mat)
        self.plane = bpy.data.objects.new("Background", pm)
        sc.collection.objects.link(self.plane)
        self.plane.location = (-float(plane_distance), 0.0, 0.0)
        self.plane.pass_index = 0
        if ambient == "emission":
            self.plane.visible_diffuse = self.plane.visible_glossy = False

        # -------------------------------------------------------------- animal
        self.root = bpy.data.objects.new("Animal", None)
        sc.collection.objects.link(self.root)
        self.root.rotation_mode = "XYZ"
        cube = bpy.data.meshes.new("BlockMesh")  # unit cube, shared by all blocks
        v = [(x, y, z) for x in (-.5, .5) for y in (-.5, .5) for z in (-.5, .5)]
        f = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        cube.from_pydata(v, [], f)
        cube.materials.append(self.obj_mat)
        for p in cube.polygons:
            p.use_smooth = True
        self.blocks, self.bevels = [], []
        for label, name in enumerate(_BLOCK_NAMES, start=1):
            ob = bpy.data.objects.new(name, cube)
            sc.collection.objects.link(ob)
            ob.parent = self.root
            ob.pass_index = label
            ob.rotation_mode = "XYZ"
            bev = ob.modifiers.new("Bevel", "BEVEL")
            bev.segments = int(bevel_segments)
            bev.limit_method = "NONE"
            bev.affect = "EDGES"
            sub = ob.modifiers.new("Subdivision", "SUBSURF")
            sub.levels = sub.render_levels = int(subdivision_levels)
            ob.visible_shadow = bool(cast_shadows)
            if ambient == "emission":
                ob.visible_diffuse = ob.visible_glossy = False
            self.blocks.append(ob)
            self.bevels.append(bev)

    # ------------------------------------------------------------------ per sample
    def update(self, params: dict) -> None:
        """Apply a parameter dict: transforms, bevel widths and colour values only."""
        spherical = float(params.get("spherical", 0.5))
        size = 0.8 + 0.1 * spherical
        bevel_local = (0.05 + size * 0.25 * spherical) / size  # modifier works in local units
        layout = animal_layout(params.get("arm_position", 0.5), params.get("bending", 0.0))
        for ob, bev, (_, loc, ang) in zip(self.blocks, self.bevels, layout):
            ob.location = loc
            ob.rotation_euler = (ang, 0.0, 0.0)
            ob.scale = (size, size, size)
            if abs(bev.width - bevel_local) > 1e-7:  # avoid needless modifier re-evaluation
                bev.width = bevel_local
        self.root.rotation_euler = (float(params.get("obj_rotation_pitch", 0.0)),
                                    float(params.get("obj_rotation_roll", 0.0)),
                                    float(params.get("obj_rotation_yaw", 0.0)))
        self.root.location = (0.0, float(params.get("position_x", 0.0)),
                              float(params.get("position_y", 0.0)))
        oc = (*srgb_to_linear(params.get("obj_color_rgb", (0.5, 0.5, 0.5))[:3]), 1.0)
        bc = (*srgb_to_linear(params.get("bg_color_rgb", (0.8, 0.8, 0.8))[:3]), 1.0)
        self._color_sockets[0].default_value = oc
        self._color_sockets[1].default_value = bc
        if len(self._color_sockets) == 4:
            self._color_sockets[2].default_value = oc
            self._color_sockets[3].default_value = bc
        res = params.get("resolution")
        if res is not None and (int(res[0]), int(res[1])) != self.resolution:
            self.resolution = (int(res[0]), int(res[1]))
            self.scene.render.resolution_x, self.scene.render.resolution_y = self.resolution

    def render_raw(self):
        """Render the current state -> (linear RGB float32 (H, W, 3), object index float32 (H, W)).

        Rows are top-first.  ``self.last_stats`` receives Cycles' timing metadata.
        """
        if self.quiet:
            with _silence_stdout():
                bpy.ops.render.render(write_still=True)
        else:
            bpy.ops.render.render(write_still=True)
        ch, hdr = read_exr_uncompressed(self._exr_path, with_header=True)
        self.last_stats = {k.split(".")[-1]: hdr[k].decode() for k in hdr if k.startswith("cycles.")}
        rgb = np.stack([ch["ViewLayer.Combined." + c] for c in "RGB"], axis=-1)
        return rgb, ch["ViewLayer.Object Index.X"]

    def render(self, params: dict):
        """Render ``params`` -> (image uint8 (H, W, 3) sRGB, mask uint8 (H, W) labels 0..8)."""
        self.update(params)
        rgb, idx = self.render_raw()
        image = np.round(linear_to_srgb(rgb) * 255.0).astype(np.uint8)
        mask = np.rint(idx).astype(np.uint8)
        if params.get("fliplr", False):
            image, mask = image[:, ::-1], mask[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(mask)

    def close(self) -> None:
        try:
            os.remove(self._exr_path)
        except OSError:
            pass


class _silence_stdout:
    """Redirect the C-level stdout (Blender's "Saved: ..." lines) to /dev/null."""

    def __enter__(self):
        sys.stdout.flush()
        self._saved = os.dup(1)
        self._null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(self._null, 1)

    def __exit__(self, *exc):
        os.dup2(self._saved, 1)
        os.close(self._saved)
        os.close(self._null)


def _principled(name, roughness=0.5, specular=0.5):
    mat = bpy.data.materials.new(name)  # 5.0: materials always have a node tree
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = float(roughness)
    bsdf.inputs["Specular IOR Level"].default_value = float(specular)
    return mat


def _look_euler(direction):
    """Euler XYZ angles that rotate local ``-Z`` onto ``direction`` (keeping +Z up)."""
    d = np.asarray(direction, float)
    z = -d / np.linalg.norm(d)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)  # R = Rz @ Ry @ Rx
    return (math.atan2(R[2, 1], R[2, 2]), math.asin(max(-1.0, min(1.0, -R[2, 0]))),
            math.atan2(R[1, 0], R[0, 0]))


def _read_exr_header(data, pos):
    attrs = {}
    while data[pos] != 0:
        end = data.index(b"\0", pos)
        name = data[pos:end].decode()
        pos = end + 1
        end = data.index(b"\0", pos)
        pos = end + 1
        size = struct.unpack_from("<i", data, pos)[0]
        pos += 4
        attrs[name] = data[pos:pos + size]
        pos += size
    return attrs, pos + 1


def _exr_channels(val):
    out, p = [], 0
    while val[p] != 0:
        e = val.index(b"\0", p)
        out.append((val[p:e].decode(), struct.unpack_from("<i", val, e + 1)[0]))
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
    sizes = {0: 4, 1: 2, 2: 4}
    dtypes = {0: "<u4", 1: "<f2", 2: "<f4"}
    out = {}
    tables = []
    for attrs in headers:
        x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"])
        h = y1 - y0 + 1
        tables.append(np.frombuffer(data, dtype="<u8", count=h, offset=pos))
        pos += 8 * h
    for attrs, offsets in zip(headers, tables):
        if attrs["compression"][0] != 0:
            raise ValueError("EXR compression not supported (write with exr_codec='NONE')")
        x0, y0, x1, y1 = struct.unpack("<4i", attrs["dataWindow"])
        w, h = x1 - x0 + 1, y1 - y0 + 1
        chans = _exr_channels(attrs["channels"])
        row_bytes = sum(sizes[t] for _, t in chans) * w
        head = 12 if multipart else 8  # [part,] y, size
        rows = np.stack([np.frombuffer(data, np.uint8, row_bytes, int(o) + head) for o in offsets])
        ys = np.array([struct.unpack_from("<i", data, int(o) + head - 8)[0] for o in offsets]) - y0
        img = np.empty_like(rows)
        img[ys] = rows
        col = 0
        for cname, t in chans:  # channel-sorted planar layout within each scanline
            nb = sizes[t] * w
            out[cname] = np.ascontiguousarray(img[:, col:col + nb]).view(dtypes[t]).astype(np.float32)
            col += nb
    if with_header:
        return out, headers[0]
    return out
