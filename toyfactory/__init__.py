"""The toy factory: a small, deterministic, synthetic inspection dataset in MVTec AD layout.

Four categories, each a teaching instrument for one situation of the course:

==========  ==============================================  =========================================
category    what it shows                                   defect types
==========  ==============================================  =========================================
weave       a texture (woven fabric, fine noise, lighting)   scratch, hole, stain, crack
bracket     one lit metal part, centred, with translation    scratch, hole, crack, missing_part
            and rotation jitter knobs
pills       3 to 6 capsules at random places on a tray       crack, stain, broken
box         a box whose compartments hold parts in a fixed   logical_missing, logical_extra,
            arrangement (MVTec LOCO-like)                    logical_swapped, logical_misplaced,
                                                             structural_scratch, structural_stain
==========  ==============================================  =========================================

Every image is rendered from scratch with numpy: shapes are signed distance functions (anti-aliased by
their distance to the edge), shading comes from a height field lit from the top left, and each image
gets its own lighting, surface grain and sensor noise, so that no two normal images are alike.

The box's nuts and washers lie at random free places in their compartments; ``layout="slots"`` puts
every part in a fixed slot instead (``BOX_SLOTS``, small jitter), as MVTec LOCO's items sit; ``layout="choice"``
gives each kind three slots of which two, chosen at random, are filled (``BOX_CHOICE_SLOTS``): a part in any
one slot is normal, only the count is a rule (notebook 07).

A defective image is rendered as its defect-free twin (the *reference*) plus the defect. Its mask is
exactly the set of pixels that differ from the reference: a pixel counts when one of its channels
moves by more than ``DIFF_THRESHOLD`` grey levels, and every other pixel is copied from the
reference. So the ground truth is never a guess, also for logical anomalies (a missing nut's mask
is its footprint and shadow, a misplaced one's is where it was plus where it is).

On disk (MVTec AD layout plus a validation split of held-out normal images)::

    CAT/train/good/000.png  CAT/validation/good/000.png  CAT/test/good/000.png  CAT/test/DEFECT/000.png
    CAT/ground_truth/DEFECT/000_mask.png (0 / 255)       CAT/toy_factory.json (the settings used)

Random numbers come from ``numpy.random.default_rng([seed, key, index])`` with a key per
(category, split, defect type): the same seed gives byte-identical files, and changing ``n_train``
does not change the test images.

Example::

    from toyfactory import make_toy_dataset, render_sample
    root = make_toy_dataset("data/toy")                        # data/toy/{weave,bracket,pills,box}/...
    sample = render_sample("bracket", "missing_part", rng=3)   # in memory: .image, .mask, .reference
    render_sample("bracket", rng=3, translation=0.2).image     # the same knob make_toy_dataset has
"""

from __future__ import annotations

import json
import operator
import os
import secrets
import shutil
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from tqdm.auto import tqdm

TOY_CATEGORIES = ("weave", "bracket", "pills", "box")

DEFECT_TYPES = {
    "weave": ("scratch", "hole", "stain", "crack"),
    "bracket": ("scratch", "hole", "crack", "missing_part"),
    "pills": ("crack", "stain", "broken"),
    "box": (
        "logical_missing",
        "logical_extra",
        "logical_swapped",
        "logical_misplaced",
        "structural_scratch",
        "structural_stain",
    ),
}

# Pose jitter of each category: (max shift as a fraction of the image side, max rotation in degrees).
# A texture has no position, so weave shifts the pattern's phase freely.
DEFAULT_JITTER = {
    "weave": (0.5, 2.0),
    "bracket": (0.03, 4.0),
    "pills": (0.02, 2.0),
    "box": (0.02, 2.0),
}

# The box's layout "slots": (part, x, y) of every slot, in units of the image side from the box's centre
# (x right, y down), and the largest shift of a part from its slot (same units) and turn of a part (degrees).
BOX_SLOTS = (("bolt", 0.245, 0.0), ("nut", -0.32, -0.195), ("nut", -0.18, -0.195),
             ("washer", -0.32, 0.195), ("washer", -0.18, 0.195))
BOX_SLOT_JITTER = (0.01, 3.0)
# The box's layout "choice": three slots per round kind (x, y as above), two of them filled at random, so that
# a part in any one slot is normal and only the count (two nuts, two washers) is a rule.
BOX_CHOICE_SLOTS = {"nut": ((-0.32, -0.195), (-0.18, -0.195), (-0.04, -0.195)),
                    "washer": ((-0.32, 0.195), (-0.18, 0.195), (-0.04, 0.195))}

# A pixel belongs to a defect mask when some channel differs from the reference by more than this
# many grey levels (out of 255).
DIFF_THRESHOLD = 10

_MIN_IMAGE_SIZE = 64
_SUPERSAMPLE = 4  # strokes (scratches, cracks) are drawn 4x larger and averaged down: anti-aliasing
_LIGHT = np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70])  # from the top left
_HALFWAY = (_LIGHT + [0, 0, 1]) / np.linalg.norm(_LIGHT + [0, 0, 1])  # for specular highlights


# ----------------------------------------------------------------------------------------------------
# Small geometry and shading helpers. Lengths are in pixels unless a name says otherwise.


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(x, y)``, each ``(size, size)``; x to the right, y down."""
    centres = np.arange(size) + 0.5
    x, y = np.meshgrid(centres, centres)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _to_local(x, y, cx, cy, angle_deg):
    """Coordinates of points (x, y) in a frame centred at (cx, cy), turned counter-clockwise on screen."""
    a = np.deg2rad(angle_deg)
    dx, dy = x - cx, y - cy
    return np.cos(a) * dx - np.sin(a) * dy, np.sin(a) * dx + np.cos(a) * dy


def _to_image(u, v, cx, cy, angle_deg):
    """Inverse of :func:`_to_local`: frame coordinates (u, v) back to image coordinates."""
    a = np.deg2rad(angle_deg)
    return cx + np.cos(a) * u + np.sin(a) * v, cy - np.sin(a) * u + np.cos(a) * v


def _sd_circle(u, v, r):
    return np.hypot(u, v) - r


def _sd_round_box(u, v, half_w, half_h, radius):
    """Signed distance to a rectangle with rounded corners centred at the origin (negative inside)."""
    qx = np.abs(u) - half_w + radius
    qy = np.abs(v) - half_h + radius
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0) - radius


def _sd_hexagon(u, v, apothem):
    """Signed distance to a regular hexagon with flat top and bottom (after Inigo Quilez)."""
    kx, ky, kz = -0.866025404, 0.5, 0.577350269
    px, py = np.abs(u), np.abs(v)
    d = 2 * np.minimum(kx * px + ky * py, 0)
    px, py = px - d * kx, py - d * ky
    px = px - np.clip(px, -kz * apothem, kz * apothem)
    py = py - apothem
    return np.hypot(px, py) * np.sign(py)


def _sd_segment(u, v, ax, ay, bx, by):
    """Distance to the segment from (ax, ay) to (bx, by)."""
    pax, pay, bax, bay = u - ax, v - ay, bx - ax, by - ay
    t = np.clip((pax * bax + pay * bay) / (bax * bax + bay * bay), 0, 1)
    return np.hypot(pax - bax * t, pay - bay * t)


def _smooth_min(a, b, k):
    """Union of two shapes with a fillet of size k where they meet."""
    h = np.maximum(k - np.abs(a - b), 0) / k
    return np.minimum(a, b) - h * h * k / 4


def _coverage(sd_px):
    """Fraction of each pixel inside a shape, from its signed distance in pixels."""
    return np.clip(0.5 - sd_px, 0, 1)


def _smoothstep(t):
    t = np.clip(t, 0, 1)
    return t * t * (3 - 2 * t)


def _bevel(sd_px, width_px):
    """Height field in [0, 1] that rises from a shape's edge to its flat top over width_px."""
    return _smoothstep(-sd_px / width_px)


def _lighting(height_px, ambient=0.35, diffuse=0.65, specular=0.0, shininess=20.0):
    """Brightness and specular highlight ``(H, W)`` of a height field lit from the top left.

    A flat surface gets brightness ``ambient + diffuse``; slopes facing the light get more.
    """
    gy, gx = np.gradient(height_px)
    nz = 1 / np.sqrt(1 + gx * gx + gy * gy)
    nx, ny = -gx * nz, -gy * nz
    lambert = np.clip(nx * _LIGHT[0] + ny * _LIGHT[1] + nz * _LIGHT[2], 0, None) / _LIGHT[2]
    shine = np.clip(nx * _HALFWAY[0] + ny * _HALFWAY[1] + nz * _HALFWAY[2], 0, None) ** shininess
    return ambient + diffuse * lambert, specular * shine


def _lit(albedo, height_px, **light):
    """Colour ``(H, W, 3)`` of a surface with the given albedo (a colour or an ``(H, W, 3)`` array)."""
    brightness, highlight = _lighting(height_px, **light)
    return albedo * brightness[..., None] + highlight[..., None]


def _smooth_noise(rng, size, cells):
    """``(size, size)`` noise of standard deviation about 0.6 whose blobs are about size/cells wide.

    A small random grid, upsampled with bicubic interpolation.
    """
    grid = rng.standard_normal((cells + 3, cells + 3)).astype(np.float32)
    box = (1.5, 1.5, cells + 1.5, cells + 1.5)
    upsampled = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC, box=box)
    return np.asarray(upsampled, dtype=np.float64)


def _grain(rng, size, sigma=(0.7, 0.7)):
    """``(size, size)`` fine noise with unit-ish amplitude, stretched along an axis by an uneven sigma."""
    noise = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma)
    return noise / (noise.std() + 1e-12)


def _illumination(rng, size, strength=0.08):
    """``(size, size, 1)`` light field around 1: a random ramp, soft blotches and a global gain."""
    x, y = _grid(size)
    a = rng.uniform(0, 2 * np.pi)
    ramp = ((x - size / 2) * np.cos(a) + (y - size / 2) * np.sin(a)) / size
    gain = rng.uniform(0.96, 1.04)
    field = gain * (1 + strength * (ramp + 0.5 * _smooth_noise(rng, size, 3)))
    return field[..., None]


def _drop_shadow(coverage, size, offset=0.012, blur=0.008, strength=0.45):
    """How much light ``(H, W)`` an object of the given coverage takes from the floor below it."""
    shift_px = offset * size
    moved = ndimage.shift(coverage, (1.3 * shift_px, shift_px), order=1, cval=0.0)
    return strength * ndimage.gaussian_filter(moved, blur * size)


def _over(image, colour, coverage):
    """Composite a colour layer over an image with the given coverage ``(H, W)``."""
    c = coverage[..., None]
    return image * (1 - c) + colour * c


def _quantise(image):
    """Float image in [0, 1] to uint8."""
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


class _NoRoom(Exception):
    """The scene has no room for the requested defect (its objects lie outside the image, say)."""


def _pick_point(rng, allowed):
    """A random pixel centre ``(x, y)`` where the boolean ``(H, W)`` array ``allowed`` is True."""
    rows, cols = np.nonzero(allowed)
    if len(rows) == 0:
        raise _NoRoom
    k = rng.integers(len(rows))
    return np.array([cols[k] + 0.5, rows[k] + 0.5])


def _window(size, centre, radius):
    """Slices ``(rows, cols)`` of the pixels within ``radius`` of ``centre`` (x, y), clipped to the image.

    Small objects are rendered only inside their window: much faster than over the whole image.
    None when less than 3 x 3 pixels of the window lie in the image (the object is not drawn).
    """
    x0, x1 = int(max(0, np.floor(centre[0] - radius))), int(min(size, np.ceil(centre[0] + radius)))
    y0, y1 = int(max(0, np.floor(centre[1] - radius))), int(min(size, np.ceil(centre[1] + radius)))
    return (slice(y0, y1), slice(x0, x1)) if x1 - x0 >= 3 and y1 - y0 >= 3 else None


def _draw_strokes(size, strokes):
    """Coverage ``(H, W)`` of polylines ``[(points (n, 2) in pixels, width_px), ...]``, anti-aliased."""
    ss = _SUPERSAMPLE
    canvas = Image.new("L", (size * ss, size * ss), 0)
    draw = ImageDraw.Draw(canvas)
    for points, width in strokes:
        xy = [tuple(p) for p in np.asarray(points) * ss]
        w = max(1, int(round(width * ss)))
        draw.line(xy, fill=255, width=w, joint="curve")
        for p in (xy[0], xy[-1]):  # round caps
            draw.ellipse([p[0] - w / 2, p[1] - w / 2, p[0] + w / 2, p[1] + w / 2], fill=255)
    big = np.asarray(canvas, dtype=np.float64) / 255
    return big.reshape(size, ss, size, ss).mean(axis=(1, 3))


def _blob_sd(size, centre, radius, rng, roughness=0.2, harmonics=6):
    """Signed distance (pixels, approximate) to an irregular blob: a circle with a wavy rim."""
    x, y = _grid(size)
    dx, dy = x - centre[0], y - centre[1]
    theta = np.arctan2(dy, dx)
    k = np.arange(2, 2 + harmonics)
    amplitude = roughness * rng.uniform(0.3, 1.0, harmonics) / k**0.7
    phase = rng.uniform(0, 2 * np.pi, harmonics)
    waves = amplitude[:, None, None] * np.sin(k[:, None, None] * theta + phase[:, None, None])
    return np.hypot(dx, dy) - radius * (1 + waves.sum(axis=0))


def _bezier(p0, p1, p2, p3, n=64):
    """n points ``(n, 2)`` along a cubic Bézier curve."""
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def _random_walk(rng, start, angle, length, step, jag=0.45):
    """Points ``(n, 2)`` of a jagged path that heads in direction ``angle`` (radians) for ``length``."""
    points = [np.asarray(start, dtype=np.float64)]
    heading = angle
    for _ in range(max(2, int(length / step))):
        heading += rng.normal(0, 0.12)  # the crack slowly bends ...
        turn = heading + rng.normal(0, jag)  # ... and zigzags
        points.append(points[-1] + step * np.array([np.cos(turn), np.sin(turn)]))
    return np.array(points)


def _place_layers(image, layers, **shadow):
    """Lay objects ``[(window, colour, coverage), ...]`` on an image, each casting a shadow.

    Returns the new image, the union of their coverages and each one's coverage, all full-size.
    """
    size = image.shape[0]
    covers = []
    for win, _, cover in layers:
        full = np.zeros((size, size))
        full[win] = cover
        covers.append(full)
    union = np.max(covers, axis=0) if covers else np.zeros((size, size))
    image = image * (1 - _drop_shadow(union, size, **shadow))[..., None]
    for win, colour, cover in layers:
        image[win] = _over(image[win], colour, cover)
    return image, union, covers


# ----------------------------------------------------------------------------------------------------
# Defect painters: each returns a new float image with a defect painted inside ``region`` (H, W) in [0, 1].


def _paint_scratch(image, rng, region, colour, strength=0.8, width=(1.2, 2.2), length=(0.12, 0.3)):
    """A thin curved scratch: a cubic Bézier curve, thickest in its middle.

    Widths of strokes are in pixels of a 256-pixel image (scaled with the image, at least 1 pixel).
    """
    size = image.shape[0]
    p0 = _pick_point(rng, region > 0.99)
    angle = rng.uniform(0, 2 * np.pi)
    span = rng.uniform(*length) * size
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    p3 = p0 + span * direction
    p1 = p0 + span / 3 * direction + rng.normal(0, 0.25 * span) * normal
    p2 = p0 + 2 * span / 3 * direction + rng.normal(0, 0.25 * span) * normal
    curve = _bezier(p0, p1, p2, p3)
    w = max(1.0, rng.uniform(*width) * size / 256)
    pieces = np.array_split(np.arange(len(curve)), 8)
    taper = 0.4 + 0.6 * np.sin(np.pi * (np.arange(8) + 0.5) / 8)
    strokes = [(curve[idx[0] : idx[-1] + 2], w * t) for idx, t in zip(pieces, taper)]
    cover = strength * _draw_strokes(size, strokes) * region
    return _over(image, np.asarray(colour), cover)


def _paint_crack(image, rng, region, start=None, angle=None, length=(0.1, 0.2), width=1.5):
    """A dark jagged crack with one or two side branches."""
    size = image.shape[0]
    start = _pick_point(rng, region > 0.99) if start is None else start
    angle = rng.uniform(0, 2 * np.pi) if angle is None else angle
    span = rng.uniform(*length) * size
    step = max(1.5, 0.012 * size)
    main = _random_walk(rng, start, angle, span, step)
    width = max(1.0, width * size / 256)
    strokes = [(main, width)]
    for _ in range(rng.integers(1, 3)):
        fork = main[rng.integers(len(main) // 4, len(main))]
        side = angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
        strokes.append((_random_walk(rng, fork, side, span * rng.uniform(0.2, 0.45), step), 0.7 * width))
    cover = 0.85 * _draw_strokes(size, strokes) * region
    return _over(image, np.array([0.04, 0.035, 0.03]), cover)


def _paint_stain(image, rng, region, tint, radius=(0.03, 0.06), opacity=(0.55, 0.8), centre=None):
    """A soft irregular stain that darkens and tints the surface, a little darker at its rim."""
    size = image.shape[0]
    centre = _pick_point(rng, region > 0.99) if centre is None else centre
    r = rng.uniform(*radius) * size
    sd = _blob_sd(size, centre, r, rng, roughness=0.35)
    inside = _coverage(sd / 1.5)
    rim = np.exp(-((sd + 1.5) / 2.0) ** 2)
    texture = 0.8 + 0.2 * _smooth_noise(rng, size, max(3, int(size / r)))
    alpha = np.clip(rng.uniform(*opacity) * (inside * texture + 0.35 * rim), 0, 1) * region
    multiplier = 1 - alpha[..., None] * (1 - np.asarray(tint))
    return image * multiplier


def _paint_hole(image, rng, region, inside=(0.05, 0.045, 0.04), radius=(0.025, 0.05)):
    """A ragged hole: a dark irregular opening with frayed, lighter edges."""
    size = image.shape[0]
    centre = _pick_point(rng, region > 0.99)
    r = rng.uniform(*radius) * size
    sd = _blob_sd(size, centre, r, rng, roughness=0.45, harmonics=10)
    sd = sd + 0.12 * r * _grain(rng, size, 0.8)  # frayed rim
    opening = _coverage(sd)
    fray = np.exp(-((sd - 1.0) / 1.8) ** 2) * (1 - opening)
    lighter = _over(image, np.array([0.92, 0.88, 0.80]), 0.35 * fray * region)
    return _over(lighter, np.asarray(inside), opening * region)


# ----------------------------------------------------------------------------------------------------
# The four categories. Each has ``sample`` (draw the random scene), ``draw`` (scene -> float image and
# foreground coverage and regions where defects may go) and ``add_defect`` (-> defective float image).


@dataclass
class _Render:
    image: np.ndarray  # (H, W, 3) float in [0, 1], before sensor noise
    foreground: np.ndarray  # (H, W) coverage of the object(s) of interest
    regions: dict  # named (H, W) coverages where defects may be painted


def _pose(rng, size, translation, rotation):
    """Random shift (pixels) and rotation (degrees) of a scene."""
    dx, dy = rng.uniform(-translation, translation, 2) * size
    return float(dx), float(dy), float(rng.uniform(-rotation, rotation))


class _Weave:
    """A plain-weave fabric: threads going over and under each other, with fibres and uneven light."""

    def sample(self, rng, size, translation, rotation):
        period = 0.05 * size
        return dict(
            size=size,
            pose=_pose(rng, size, translation, rotation),
            period=period,
            warp_gain=1 + 0.05 * rng.standard_normal(64),  # each thread a little different
            weft_gain=1 + 0.05 * rng.standard_normal(64),
            wobble=(0.1 * period * _smooth_noise(rng, size, 6), 0.1 * period * _smooth_noise(rng, size, 6)),
            warp_fibres=_grain(rng, size, (5.0, 0.6)),
            weft_fibres=_grain(rng, size, (0.6, 5.0)),
            light=_illumination(rng, size, 0.12),
            tint=1 + 0.01 * rng.standard_normal(3),
        )

    def draw(self, s):
        size, p = s["size"], s["period"]
        dx, dy, angle = s["pose"]
        x, y = _grid(size)
        u, v = _to_local(x, y, size / 2 + dx, size / 2 + dy, angle)
        u, v = u + s["wobble"][0], v + s["wobble"][1]
        i, j = np.floor(u / p), np.floor(v / p)
        fu, fv = u / p - i, v / p - j
        warp_on_top = (i + j) % 2 == 0
        # cross-section of a thread, and its rise and dip as it goes over and under the crossing one
        across_warp, across_weft = np.sin(np.pi * fu) ** 0.6, np.sin(np.pi * fv) ** 0.6
        over_warp = np.where(warp_on_top, 0.3 + 0.7 * np.sin(np.pi * fv), 0.3 * (1 - np.sin(np.pi * fv)))
        over_weft = np.where(warp_on_top, 0.3 * (1 - np.sin(np.pi * fu)), 0.3 + 0.7 * np.sin(np.pi * fu))
        h_warp, h_weft = across_warp * over_warp, across_weft * over_weft
        warp_visible = (h_warp >= h_weft)[..., None]
        height = np.maximum(h_warp, h_weft)
        warp = np.array([0.60, 0.53, 0.40]) * s["warp_gain"][i.astype(int) % 64][..., None]
        weft = np.array([0.52, 0.46, 0.35]) * s["weft_gain"][j.astype(int) % 64][..., None]
        warp = warp * (1 + 0.12 * s["warp_fibres"])[..., None]
        weft = weft * (1 + 0.12 * s["weft_fibres"])[..., None]
        albedo = np.where(warp_visible, warp, weft) * (0.35 + 0.65 * height)[..., None] * s["tint"]
        image = _lit(albedo, 0.25 * p * height, ambient=0.45, diffuse=0.55, specular=0.04, shininess=8)
        image = image * s["light"]
        everywhere = np.ones((size, size))
        return _Render(image, everywhere, {"surface": everywhere})

    def add_defect(self, s, render, defect, rng):
        image, size = render.image, s["size"]
        inner = np.zeros((size, size))
        m = int(0.08 * size)
        inner[m:-m, m:-m] = 1  # keep defects away from the border
        if defect == "scratch":
            return _paint_scratch(image, rng, inner, (0.86, 0.82, 0.72), strength=0.7, width=(1.5, 2.8))
        if defect == "hole":
            return _paint_hole(image, rng, inner)
        if defect == "stain":
            tint = rng.choice([(0.45, 0.32, 0.18), (0.35, 0.35, 0.38), (0.55, 0.25, 0.22)])
            return _paint_stain(image, rng, inner, tint=tint)
        return _paint_crack(image, rng, inner, length=(0.15, 0.3), width=2.0)  # crack: a tear in the fabric


# Bracket shape, in units of the image side, in the bracket's own frame (origin = image centre at rest).
def _bracket_body_sd(u, v):
    """Outline of the bracket (no holes): a long plate and a foot, joined with a fillet."""
    plate = _sd_round_box(u - 0.035, v + 0.075, 0.31, 0.115, 0.04)
    foot = _sd_round_box(u + 0.155, v - 0.085, 0.125, 0.13, 0.04)
    return _smooth_min(plate, foot, 0.04)


def _bracket_holes_sd(u, v):
    big = _sd_circle(u + 0.155, v - 0.11, 0.05)
    small_top = _sd_circle(u - 0.26, v + 0.125, 0.024)
    small_low = _sd_circle(u - 0.26, v + 0.03, 0.024)
    slot = _sd_segment(u, v, -0.05, -0.105, 0.12, -0.105) - 0.022
    return np.minimum(np.minimum(big, slot), np.minimum(small_top, small_low))


class _Bracket:
    """One machined metal bracket, brushed, bevelled and lit, centred on a plain dark background."""

    SCALE = 1.15  # the shape functions above are drawn this much larger

    def sample(self, rng, size, translation, rotation):
        brushed = ndimage.gaussian_filter(rng.standard_normal((size, size)), (0.5, 0.06 * size), mode="wrap")
        return dict(
            size=size,
            pose=_pose(rng, size, translation, rotation),
            brushed=brushed / (brushed.std() + 1e-12),
            steel=np.array([0.60, 0.62, 0.65]) * rng.uniform(0.95, 1.05),
            light=_illumination(rng, size, 0.15),
            floor=_illumination(rng, size, 0.10),
            floor_grain=_grain(rng, size, 1.0),
            cuts=[],  # removed material: signed distances (H, W) in pixels, negative inside the cut
        )

    def _local(self, s):
        size = s["size"]
        dx, dy, angle = s["pose"]
        x, y = _grid(size)
        u, v = _to_local(x, y, size / 2 + dx, size / 2 + dy, angle)
        return u / (size * self.SCALE), v / (size * self.SCALE)

    def draw(self, s):
        size = s["size"]
        u, v = self._local(s)
        body = _bracket_body_sd(u, v) * size * self.SCALE
        sd = np.maximum(body, -_bracket_holes_sd(u, v) * size * self.SCALE)
        for cut in s["cuts"]:
            sd = np.maximum(sd, -cut)
        cover = _coverage(sd)
        floor = np.array([0.20, 0.22, 0.25]) * s["floor"] * (1 + 0.03 * s["floor_grain"])[..., None]
        floor = floor * (1 - _drop_shadow(cover, size))[..., None]
        # brushing follows the part: sample the streak texture in the part's own frame
        tex = ndimage.map_coordinates(s["brushed"], [(v + 0.5) * size, (u + 0.5) * size], order=1, mode="wrap")
        albedo = s["steel"] * (1 + 0.07 * tex)[..., None]
        height = 4.0 * _bevel(sd, 0.014 * size)
        metal = _lit(albedo, height, ambient=0.40, diffuse=0.60, specular=0.35, shininess=12)
        image = _over(floor, metal * s["light"], cover)
        return _Render(image, cover, {"metal": _coverage(sd + 2), "body": body, "sd": sd})

    def add_defect(self, s, render, defect, rng):
        size, image = s["size"], render.image
        metal = render.regions["metal"]
        if defect == "scratch":
            return _paint_scratch(image, rng, metal, (0.93, 0.94, 0.96), strength=0.75, length=(0.1, 0.25))
        if defect == "crack":
            edge = (render.regions["body"] > -2.5) & (render.regions["body"] < -1.5)
            start = _pick_point(rng, edge)
            to_centre = np.array([size / 2 + s["pose"][0], size / 2 + s["pose"][1]]) - start
            angle = np.arctan2(to_centre[1], to_centre[0]) + rng.normal(0, 0.4)
            return _paint_crack(image, rng, metal, start=start, angle=angle, length=(0.12, 0.22), width=1.5)
        if defect == "hole":
            centre = _pick_point(rng, render.regions["sd"] < -0.045 * size)  # well inside the metal
            cut = _blob_sd(size, centre, rng.uniform(0.018, 0.03) * size, rng, roughness=0.3)
        else:  # missing_part: a piece broken off at the outline
            outline = np.abs(render.regions["body"]) < 1
            centre = _pick_point(rng, outline)
            cut = _blob_sd(size, centre, rng.uniform(0.06, 0.10) * size, rng, roughness=0.35)
        broken = dict(s, cuts=s["cuts"] + [cut])
        return self.draw(broken).image


class _Pills:
    """Three to six two-tone capsules at random, non-overlapping places on a tray."""

    HALF_LENGTH, RADIUS = 0.07, 0.052  # capsule axis half-length and radius, units of the image side

    def sample(self, rng, size, translation, rotation):
        n = int(rng.integers(3, 7))
        pills = []
        while len(pills) < n:
            candidate = dict(
                x=rng.uniform(-0.31, 0.31),
                y=rng.uniform(-0.31, 0.31),
                angle=rng.uniform(0, 360),
                shade=rng.uniform(0.95, 1.05),
                cut=None,
            )
            if all(self._gap(candidate, other) > 0.025 for other in pills):
                pills.append(candidate)
        return dict(
            size=size,
            pose=_pose(rng, size, translation, rotation),
            pills=pills,
            light=_illumination(rng, size, 0.06),
            tray_grain=_grain(rng, size, 1.2),
        )

    def _axis(self, pill, n=9):
        a = np.deg2rad(pill["angle"])
        t = np.linspace(-self.HALF_LENGTH, self.HALF_LENGTH, n)
        return np.stack([pill["x"] + t * np.cos(a), pill["y"] - t * np.sin(a)], axis=1)

    def _in_image(self, s, pill, u, v):
        """Image coordinates (pixels) of the point (u, v) of a pill's own frame."""
        size, (dx, dy, angle) = s["size"], s["pose"]
        on_tray = _to_image(u, v, pill["x"], pill["y"], pill["angle"])
        return np.array(_to_image(on_tray[0] * size, on_tray[1] * size, size / 2 + dx, size / 2 + dy, angle))

    def _gap(self, p, q):
        """Free space between two capsules (approximate, from points along their axes)."""
        distances = np.linalg.norm(self._axis(p)[:, None] - self._axis(q)[None], axis=2)
        return distances.min() - 2 * self.RADIUS

    def draw(self, s):
        size = s["size"]
        dx, dy, angle = s["pose"]
        x, y = _grid(size)
        tu, tv = _to_local(x, y, size / 2 + dx, size / 2 + dy, angle)
        tu, tv = tu / size, tv / size
        tray_sd = _sd_round_box(tu, tv, 0.465, 0.465, 0.06) * size
        rim = np.exp(-(((tray_sd + 0.018 * size) / (0.012 * size)) ** 2)) * (tray_sd < 0)
        tray = _lit(np.array([0.74, 0.78, 0.80]), 5.0 * rim, ambient=0.45, diffuse=0.55)
        belt = np.array([0.16, 0.17, 0.18]) * (1 + 0.04 * s["tray_grain"])[..., None]
        tray = tray * (1 + 0.015 * s["tray_grain"])[..., None]
        image = _over(belt, tray, _coverage(tray_sd))

        layers, drawn = [], []  # (window, colour, coverage) and index of each pill in the image
        for k, pill in enumerate(s["pills"]):
            centre = _to_image(pill["x"] * size, pill["y"] * size, size / 2 + dx, size / 2 + dy, angle)
            win = _window(size, centre, (self.HALF_LENGTH + self.RADIUS) * size + 3)
            if win is None:
                continue
            pu, pv = _to_local(tu[win], tv[win], pill["x"], pill["y"], pill["angle"])
            axis_dist = np.hypot(np.maximum(np.abs(pu) - self.HALF_LENGTH, 0), pv)
            sd = (axis_dist - self.RADIUS) * size
            height = np.sqrt(np.clip(1 - (axis_dist / self.RADIUS) ** 2, 0, 1)) * self.RADIUS * size
            red_side = np.clip(0.5 + pu * size, 0, 1)[..., None]
            albedo = red_side * np.array([0.78, 0.20, 0.16]) + (1 - red_side) * np.array([0.93, 0.90, 0.82])
            albedo = albedo * pill["shade"]
            albedo = albedo * (1 - 0.25 * np.clip(1 - np.abs(pu * size), 0, 1))[..., None]  # the seam
            if pill["cut"] is not None:  # a broken pill: the part beyond a jagged line is gone
                side, offset, phases = pill["cut"]  # keep the part where side * u < offset + jag
                jag = 0.012 * np.sin(70 * pv + phases[0]) + 0.006 * np.sin(170 * pv + phases[1])
                cut_sd = (side * pu - offset - jag) * size
                sd = np.maximum(sd, cut_sd)
                height = height * _bevel(cut_sd, 3.0)
                powder = np.clip(1 + cut_sd / 2.5, 0, 1)[..., None]
                albedo = albedo * (1 - powder) + powder * np.array([0.95, 0.94, 0.90])
            colour = _lit(albedo, height, ambient=0.35, diffuse=0.6, specular=0.45, shininess=30)
            layers.append((win, colour, _coverage(sd)))
            drawn.append(k)
        image, all_pills, covers = _place_layers(image, layers, offset=0.01, blur=0.01, strength=0.5)
        image = image * s["light"]
        return _Render(image, all_pills, {"pills": dict(zip(drawn, covers))})

    def add_defect(self, s, render, defect, rng):
        size, image = s["size"], render.image
        inside = {k: ndimage.binary_erosion(cover > 0.99) for k, cover in render.regions["pills"].items()}
        visible = [k for k, region in inside.items() if region.sum() >= 0.002 * size * size]
        if not visible:
            raise _NoRoom
        k = int(rng.choice(visible))
        pill_region = inside[k].astype(float)
        if defect == "crack":  # from the rim of a pill across it
            along = rng.uniform(-0.8, 0.8) * self.HALF_LENGTH
            start = self._in_image(s, s["pills"][k], along, -0.9 * self.RADIUS)
            across = self._in_image(s, s["pills"][k], along, self.RADIUS) - start
            angle = np.arctan2(across[1], across[0]) + rng.normal(0, 0.25)
            length = 2 * self.RADIUS * rng.uniform(0.6, 1.0)
            return _paint_crack(image, rng, pill_region, start, angle, length=(length, length), width=1.8)
        if defect == "stain":
            tint = rng.choice([(0.35, 0.28, 0.20), (0.25, 0.25, 0.28)])
            return _paint_stain(image, rng, pill_region, tint=tint, radius=(0.02, 0.04), opacity=(0.65, 0.85))
        pills = [dict(p) for p in s["pills"]]  # broken: about half of one pill is gone
        pills[k]["cut"] = (rng.choice([-1.0, 1.0]), rng.uniform(-0.02, 0.02), rng.uniform(0, 2 * np.pi, 2))
        return self.draw(dict(s, pills=pills)).image


class _Box:
    """A blue organiser box: two nuts top left, two washers bottom left, one bolt on the right.

    ``layout="free"`` (the default): each nut and washer lies at a random free place in its compartment.
    ``layout="slots"``: every part sits in its own slot, shifted by at most ``BOX_SLOT_JITTER`` (as the items of
    MVTec LOCO's boxes do); the right third of the nut and washer compartments stays empty, which is where
    an extra or misplaced part can go. ``layout="choice"``: the bolt in its slot, and two nuts and two washers in
    two of the three slots of their kind (``BOX_CHOICE_SLOTS``), chosen at random; an extra part fills the
    third slot, so that only the count gives it away.
    """

    # compartments in the box frame (units of the image side): (centre x, centre y, half width, half height)
    COMPARTMENTS = {
        "nuts": (-0.17, -0.195, 0.235, 0.18),
        "washers": (-0.17, 0.195, 0.235, 0.18),
        "bolt": (0.245, 0.0, 0.155, 0.375),
    }
    ROUND_PARTS = ("nut", "nut", "washer", "washer")  # besides the bolt
    HOME = {"nut": "nuts", "washer": "washers", "bolt": "bolt"}
    RADIUS = {"nut": 0.062, "washer": 0.054}  # collision radius of round parts
    def __init__(self, layout="free"):
        self.layout = layout

    def sample(self, rng, size, translation, rotation):
        if self.layout == "slots":
            parts = [self._in_slot(rng, kind, x, y) for kind, x, y in BOX_SLOTS]
            return self._scene(rng, size, translation, rotation, parts)
        if self.layout == "choice":
            parts = [self._in_slot(rng, *BOX_SLOTS[0])]
            for kind, slots in BOX_CHOICE_SLOTS.items():
                filled = sorted(rng.choice(len(slots), size=2, replace=False))
                parts += [self._in_slot(rng, kind, *slots[k]) for k in filled]
            return self._scene(rng, size, translation, rotation, parts)
        x, y, angle = 0.245 + rng.uniform(-0.03, 0.03), rng.uniform(-0.04, 0.04), rng.uniform(-6, 6)
        parts = [dict(kind="bolt", x=x, y=y, angle=angle)]
        while len(parts) < 1 + len(self.ROUND_PARTS):
            kind = self.ROUND_PARTS[len(parts) - 1]
            new = self._place(rng, kind, self.HOME[kind], parts)
            parts = parts + [new] if new is not None else parts[:1]  # a dead end: start again
        return self._scene(rng, size, translation, rotation, parts)

    def _in_slot(self, rng, kind, x, y):
        """A part in the slot at (x, y), shifted and turned by at most ``BOX_SLOT_JITTER``."""
        shift, turn = BOX_SLOT_JITTER
        return dict(kind=kind, x=x + rng.uniform(-shift, shift), y=y + rng.uniform(-shift, shift),
                    angle=rng.uniform(-turn, turn))

    def _empty_slot(self, kind, parts):
        """(x, y) of the ``"choice"`` slot of ``kind`` that no part of that kind is nearest to."""
        slots = BOX_CHOICE_SLOTS[kind]
        taken = {min(range(3), key=lambda k: np.hypot(p["x"] - slots[k][0], p["y"] - slots[k][1]))
                 for p in parts if p["kind"] == kind}
        return slots[min(set(range(3)) - taken)]

    def _scene(self, rng, size, translation, rotation, parts):
        return dict(
            size=size,
            pose=_pose(rng, size, translation, rotation),
            parts=parts,
            light=_illumination(rng, size, 0.10),
            table_grain=_grain(rng, size, 1.0),
            plastic_grain=_grain(rng, size, 0.8),
        )

    def _circles(self, part):
        """Collision circles ``[(x, y, r)]`` of a part."""
        if part["kind"] != "bolt":
            return [(part["x"], part["y"], self.RADIUS[part["kind"]])]
        a = np.deg2rad(part["angle"])
        along = np.linspace(-0.22, 0.24, 9)
        return [(part["x"] + t * np.sin(a), part["y"] + t * np.cos(a), 0.045) for t in along]

    def _place(self, rng, kind, compartment, parts):
        """A new part of the given kind at a random free place in a compartment (None if there is none)."""
        cx, cy, hw, hh = self.COMPARTMENTS[compartment]
        r = self.RADIUS[kind]
        for _ in range(300):
            x, y = cx + rng.uniform(-hw + r, hw - r), cy + rng.uniform(-hh + r, hh - r)
            new = dict(kind=kind, x=x, y=y, angle=rng.uniform(0, 360))
            if all(np.hypot(x - qx, y - qy) > r + q + 0.008 for p in parts for qx, qy, q in self._circles(p)):
                return new
        return None

    def _part(self, kind, u, v, size):
        """Signed distance (pixels) and lit colour ``(H, W, 3)`` of one part in its own frame."""
        if kind == "nut":
            r = np.hypot(u, v)
            sd = np.maximum(_sd_hexagon(u, v, 0.054), 0.026 - r) * size
            chamfer = _smoothstep((r - 0.054) / 0.009)  # corners are turned down
            height = 5.0 * (_bevel(sd, 0.009 * size) - 0.6 * chamfer)
            return sd, _lit(np.array([0.66, 0.67, 0.70]), height, diffuse=0.6, specular=0.5, shininess=15)
        if kind == "washer":
            r = np.hypot(u, v)
            sd = (np.abs(r - 0.036) - 0.016) * size
            profile = np.sqrt(np.clip(1 - ((r - 0.036) / 0.016) ** 2, 0, 1))
            height = 0.3 * 0.016 * size * profile
            return sd, _lit(np.array([0.82, 0.66, 0.32]), height, specular=0.4, shininess=20)
        # bolt, lying on its side along v: a hexagonal head seen side-on and a threaded shank
        head = _sd_round_box(u, v + 0.205, 0.042, 0.024, 0.006)
        shank = _sd_round_box(u, v - 0.045, 0.019, 0.23, 0.008)
        sd = np.minimum(head, shank) * size
        across_head = np.clip(np.abs(u) / 0.042, 0, 1)
        facets = np.where(across_head < 0.5, 1.0, 1 - 1.6 * (across_head - 0.5))
        cylinder = np.sqrt(np.clip(1 - (u / 0.019) ** 2, 0, 1))
        threads = np.where(v > -0.1, 0.25 * np.abs(np.sin(np.pi * v / 0.011)), 0)
        height = np.where(head < shank, facets, cylinder * (1 - threads)) * 0.02 * size
        return sd, _lit(np.array([0.56, 0.58, 0.61]), height, ambient=0.3, specular=0.5, shininess=15)

    def draw(self, s):
        size = s["size"]
        dx, dy, angle = s["pose"]
        x, y = _grid(size)
        bu, bv = _to_local(x, y, size / 2 + dx, size / 2 + dy, angle)
        bu, bv = bu / size, bv / size
        outer = _sd_round_box(bu, bv, 0.43, 0.41, 0.03) * size
        floors = [_sd_round_box(bu - cx, bv - cy, hw, hh, 0.02) for cx, cy, hw, hh in self.COMPARTMENTS.values()]
        floor_sd = np.min(floors, axis=0) * size
        box_cover, floor_cover = _coverage(outer), _coverage(floor_sd)
        table = np.array([0.72, 0.70, 0.66]) * (1 + 0.03 * s["table_grain"])[..., None]
        table = table * (1 - _drop_shadow(box_cover, size, offset=0.014, blur=0.012))[..., None]
        wall_height = np.minimum(_bevel(outer, 0.01 * size), 1 - _bevel(floor_sd, 0.008 * size))
        plastic = np.array([0.26, 0.40, 0.64]) * (1 + 0.02 * s["plastic_grain"])[..., None]
        walls = _lit(plastic, 6.0 * wall_height, ambient=0.35, diffuse=0.6, specular=0.15, shininess=10)
        corner_shade = 1 - 0.35 * ndimage.gaussian_filter(1 - floor_cover, 0.012 * size)
        floor = np.array([0.20, 0.31, 0.52]) * (corner_shade * (1 + 0.02 * s["plastic_grain"]))[..., None]
        box = _over(walls, floor, floor_cover)
        image = _over(table, box, box_cover)

        layers = []  # (window, colour, coverage) of each part
        for part in s["parts"]:
            centre = _to_image(part["x"] * size, part["y"] * size, size / 2 + dx, size / 2 + dy, angle)
            win = _window(size, centre, (0.27 if part["kind"] == "bolt" else 0.07) * size + 3)
            if win is None:
                continue
            pu, pv = _to_local(bu[win], bv[win], part["x"], part["y"], part["angle"])
            sd, colour = self._part(part["kind"], pu, pv, size)
            layers.append((win, colour, _coverage(sd)))
        image, parts_cover, _ = _place_layers(image, layers, offset=0.006, blur=0.005, strength=0.5)
        image = image * s["light"]
        free_floor = np.clip(_coverage(floor_sd + 2) - ndimage.maximum_filter(parts_cover, 5), 0, 1)
        return _Render(image, box_cover, {"free_floor": free_floor})

    def add_defect(self, s, render, defect, rng):
        image = render.image
        free_floor = render.regions["free_floor"]
        if defect == "structural_scratch":
            return _paint_scratch(image, rng, free_floor, (0.78, 0.83, 0.90), strength=0.75, length=(0.08, 0.2))
        if defect == "structural_stain":
            tint = rng.choice([(0.75, 0.65, 0.35), (0.35, 0.30, 0.25)])
            return _paint_stain(image, rng, free_floor, tint, radius=(0.025, 0.05), opacity=(0.7, 0.9))
        parts = [dict(p) for p in s["parts"]]
        round_parts = [k for k, p in enumerate(parts) if p["kind"] != "bolt"]
        if defect == "logical_missing":
            parts.pop(int(rng.integers(len(parts))))
        elif defect == "logical_extra" and self.layout == "choice":  # a third nut or washer, in the empty slot
            kind = str(rng.choice(["nut", "washer"]))
            parts.append(self._in_slot(rng, kind, *self._empty_slot(kind, parts)))
        elif defect == "logical_extra":
            kind = str(rng.choice(["nut", "washer"]))
            parts.append(self._place(rng, kind, self.HOME[kind], parts))  # None (no room) -> drawn again
        elif defect == "logical_swapped":  # a nut and a washer trade places
            nut = int(rng.choice([k for k in round_parts if parts[k]["kind"] == "nut"]))
            washer = int(rng.choice([k for k in round_parts if parts[k]["kind"] == "washer"]))
            parts[nut]["kind"], parts[washer]["kind"] = "washer", "nut"
        else:  # logical_misplaced: a nut or washer lies in a compartment where it does not belong
            k = int(rng.choice(round_parts))
            moved = parts.pop(k)
            wrong = [c for c in self.COMPARTMENTS if c != self.HOME[moved["kind"]]]
            parts.append(self._place(rng, moved["kind"], str(rng.choice(wrong)), parts))
        if None in parts:
            return image  # no room for it this time: unchanged, so render_sample draws again
        return self.draw(dict(s, parts=parts)).image


#: The arrangements a category can be rendered in (``layout=``); the first is its default.
LAYOUTS = {"weave": ("free",), "bracket": ("free",), "pills": ("free",), "box": ("free", "slots", "choice")}
# The drawer of each (category, layout).
_DRAWERS = {("weave", "free"): _Weave(), ("bracket", "free"): _Bracket(), ("pills", "free"): _Pills(),
            **{("box", layout): _Box(layout=layout) for layout in LAYOUTS["box"]}}


# ----------------------------------------------------------------------------------------------------
# Public API: render in memory, write to disk.


@dataclass
class ToySample:
    """One rendered toy image.

    ``image``: ``(H, W, 3)`` uint8. ``mask``: ``(H, W)`` bool, True exactly where ``image`` differs from
    ``reference``, the same scene rendered without the defect (all False for a normal image).
    ``foreground``: ``(H, W)`` bool, the object(s) of the defect-free scene (all True for a texture).
    ``pose``: ``(dx, dy, angle)``, the scene's shift in pixels (x right, y down) and its rotation in
    degrees, counter-clockwise on screen.
    """

    image: np.ndarray
    mask: np.ndarray
    reference: np.ndarray
    foreground: np.ndarray
    category: str
    defect_type: str
    pose: tuple[float, float, float]


def _check_category(category):
    if category not in TOY_CATEGORIES:
        raise ValueError(f"category must be one of {', '.join(TOY_CATEGORIES)}; got {category!r}.")


def _check_count(name, value, minimum=0):
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be a whole number; got {value!r}.") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}.")
    return value


def _is_number_in(value, low, high):
    return isinstance(value, (int, float, np.number)) and low <= value <= high


def _check_layout(category, layout):
    """The category's layout: its default for None, else ``layout`` if it is one of ``LAYOUTS[category]``."""
    if layout is None:
        return LAYOUTS[category][0]
    if layout not in LAYOUTS[category]:
        raise ValueError(f"layout for {category} must be one of {', '.join(LAYOUTS[category])}; got {layout!r}.")
    return layout


def _check_jitter(translation, rotation):
    if translation is not None and not _is_number_in(translation, 0, 0.5):
        raise ValueError(f"translation must be a fraction of the image side in [0, 0.5] or None; got {translation!r}.")
    if rotation is not None and not _is_number_in(rotation, 0, 180):
        raise ValueError(f"rotation must be a maximum angle in degrees in [0, 180] or None; got {rotation!r}.")


def render_sample(
    category, defect_type="good", rng=0, image_size=256, translation=None, rotation=None, layout=None
) -> ToySample:
    """Render one image of a toy category in memory, with its defect mask and defect-free reference.

    ``rng``: a ``numpy.random.Generator`` or a seed. ``defect_type``: ``"good"`` or one of
    ``DEFECT_TYPES[category]``. ``translation`` (max shift, fraction of the image side) and ``rotation``
    (max angle, degrees) override the category's pose jitter ``DEFAULT_JITTER[category]``. ``layout``: one
    of ``LAYOUTS[category]`` (None: the first); the box's ``"slots"`` puts every part in a fixed slot.
    """
    _check_category(category)
    if defect_type != "good" and defect_type not in DEFECT_TYPES[category]:
        names = ", ".join(DEFECT_TYPES[category])
        raise ValueError(f"defect_type for {category} must be 'good' or one of {names}; got {defect_type!r}.")
    size = _check_count("image_size", image_size, _MIN_IMAGE_SIZE)
    _check_jitter(translation, rotation)
    layout = _check_layout(category, layout)
    default_translation, default_rotation = DEFAULT_JITTER[category]
    translation = default_translation if translation is None else float(translation)
    rotation = default_rotation if rotation is None else float(rotation)
    rng = np.random.default_rng(rng)

    kind = _DRAWERS[category, layout]
    min_pixels = max(6, int(4e-4 * size * size))
    for _ in range(10):
        scene = kind.sample(rng, size, translation, rotation)
        render = kind.draw(scene)
        sensor_noise = rng.normal(0, 0.008, (size, size, 1)) + rng.normal(0, 0.004, (size, size, 3))
        reference = _quantise(render.image + sensor_noise)
        no_mask = np.zeros((size, size), bool)
        foreground = render.foreground > 0.5
        sample = ToySample(reference.copy(), no_mask, reference, foreground, category, defect_type, scene["pose"])
        if defect_type == "good":
            return sample
        for _ in range(10):  # a defect that barely shows (a faint stain, say) is drawn again
            try:
                defective = _quantise(kind.add_defect(scene, render, defect_type, rng) + sensor_noise)
            except _NoRoom:
                break  # no place for this defect in this scene: draw another scene
            mask = np.abs(defective.astype(np.int16) - reference).max(axis=2) > DIFF_THRESHOLD
            if mask.sum() >= min_pixels:
                sample.image = np.where(mask[..., None], defective, reference)
                sample.mask = mask
                return sample
    raise RuntimeError(
        f"could not draw a visible {defect_type} on {category} in 10 scenes; "
        f"is translation={translation} pushing the objects out of the image?"
    )


def render_normal(category, rng=0, image_size=256, translation=None, rotation=None) -> np.ndarray:
    """A defect-free image ``(H, W, 3)`` uint8 of a toy category; see :func:`render_sample`."""
    return render_sample(category, "good", rng, image_size, translation, rotation).image


def render_defect(category, defect_type, rng=0, image_size=256, translation=None, rotation=None):
    """A defective image ``(H, W, 3)`` uint8 and its mask ``(H, W)`` bool; see :func:`render_sample`."""
    sample = render_sample(category, defect_type, rng, image_size, translation, rotation)
    return sample.image, sample.mask


def sample_rng(seed, category, split, defect_type, index) -> np.random.Generator:
    """The random generator of one file of the dataset: one stream per (category, split, defect type, index)."""
    key = zlib.crc32(f"{category}/{split}/{defect_type}".encode())
    return np.random.default_rng([seed, key, index])


def _save_png(path, array):
    # noisy images barely compress better at higher levels, which are several times slower
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def _category_jobs(category, n_train, n_validation, n_test_good, n_test_per_defect):
    """(split, defect type, index) of every image of a category."""
    jobs = [("train", "good", i) for i in range(n_train)]
    jobs += [("validation", "good", i) for i in range(n_validation)]
    jobs += [("test", "good", i) for i in range(n_test_good)]
    jobs += [("test", d, i) for d in DEFECT_TYPES[category] for i in range(n_test_per_defect)]
    return jobs


def _new_hidden_folder(parent, name):
    """A new, empty folder ``parent/.name-<random>`` (created with the usual permissions, unlike mkdtemp)."""
    while True:
        folder = parent / f".{name}-{secrets.token_hex(4)}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue


def _write_category(out_dir, category, seed, image_size, counts, translation, rotation, bar, layout=None):
    """Render one category into a temporary folder next to ``out_dir/category``, then move it in place."""
    destination = out_dir / category
    work = _new_hidden_folder(out_dir, f"{category}-partial")
    try:
        for split, defect, index in _category_jobs(category, **counts):
            rng = sample_rng(seed, category, split, defect, index)
            sample = render_sample(category, defect, rng, image_size, translation, rotation, layout)
            folder = work / split / defect
            folder.mkdir(parents=True, exist_ok=True)
            _save_png(folder / f"{index:03d}.png", sample.image)
            if defect != "good":
                masks = work / "ground_truth" / defect
                masks.mkdir(parents=True, exist_ok=True)
                _save_png(masks / f"{index:03d}_mask.png", sample.mask.astype(np.uint8) * 255)
            bar.update(1)
        for split in ("train", "validation", "test"):  # an empty split still gets its folder
            (work / split / "good").mkdir(parents=True, exist_ok=True)
        info = dict(
            generator="toyfactory",
            category=category,
            seed=seed,
            image_size=image_size,
            translation=DEFAULT_JITTER[category][0] if translation is None else translation,
            rotation=DEFAULT_JITTER[category][1] if rotation is None else rotation,
            defect_types=list(DEFECT_TYPES[category]),
            diff_threshold=DIFF_THRESHOLD,
            **counts,
        )
        if _check_layout(category, layout) != LAYOUTS[category][0]:
            info["layout"] = layout  # only when not the default: the default's files stay as they were
        (work / "toy_factory.json").write_text(json.dumps(info, indent=2) + "\n")
        # os.replace cannot overwrite a non-empty folder: move the old one aside first
        old = None
        if destination.exists():
            old = _new_hidden_folder(out_dir, f"{category}-old")
            os.replace(destination, old / category)
        os.replace(work, destination)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return destination


def make_toy_dataset(
    out_dir,
    categories=None,
    seed=0,
    image_size=256,
    n_train=40,
    n_test_good=10,
    n_test_per_defect=6,
    translation=None,
    rotation=None,
    progress=True,
    n_validation=8,
    layout=None,
) -> Path:
    """Write the toy factory to ``out_dir`` in MVTec AD layout and return ``out_dir`` as a Path.

    Each category gets ``train/good`` (n_train), ``validation/good`` (n_validation, held-out normal
    images), ``test/good`` (n_test_good), ``test/DEFECT`` (n_test_per_defect per defect type) and
    ``ground_truth/DEFECT/NNN_mask.png`` (0/255). A category is written to a temporary folder and
    moved into place when complete; an existing category folder is replaced.
    ``translation`` / ``rotation`` override every category's pose jitter (see ``DEFAULT_JITTER``);
    ``layout`` (None: each category's default) must be one of ``LAYOUTS`` of every category written.
    """
    if categories is None:
        categories = TOY_CATEGORIES
    categories = [categories] if isinstance(categories, str) else list(categories)
    if not categories:
        raise ValueError("categories must name at least one toy category (or be None for all).")
    for category in categories:
        _check_category(category)
        _check_layout(category, layout)
    seed = _check_count("seed", seed)
    image_size = _check_count("image_size", image_size, _MIN_IMAGE_SIZE)
    counts = dict(
        n_train=_check_count("n_train", n_train),
        n_validation=_check_count("n_validation", n_validation),
        n_test_good=_check_count("n_test_good", n_test_good),
        n_test_per_defect=_check_count("n_test_per_defect", n_test_per_defect),
    )
    _check_jitter(translation, rotation)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(len(_category_jobs(c, **counts)) for c in categories)
    with tqdm(total=total, desc="toy factory", unit="img", disable=not progress) as bar:
        for category in categories:
            bar.set_postfix_str(category)
            _write_category(out_dir, category, seed, image_size, counts, translation, rotation, bar, layout)
    return out_dir


def make_toy_category(out_dir, category, seed=0, **options) -> Path:
    """Write one category to ``out_dir/category`` and return that folder; options as in make_toy_dataset."""
    _check_category(category)
    return make_toy_dataset(out_dir, [category], seed=seed, **options) / category


def contact_sheet(categories=None, seed=0, image_size=128, translation=None, rotation=None) -> np.ndarray:
    """An overview image ``(H, W, 3)`` uint8: a row per category, a normal image then one per defect type.

    Defect masks are outlined in red.
    """
    categories = list(TOY_CATEGORIES if categories is None else categories)
    columns = 1 + max(len(DEFECT_TYPES[c]) for c in categories)
    label_h, gap = 14, 4
    cell_w, cell_h = image_size + gap, image_size + label_h + gap
    sheet = Image.new("RGB", (columns * cell_w + gap, len(categories) * cell_h + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row, category in enumerate(categories):
        for col, defect in enumerate(("good",) + DEFECT_TYPES[category]):
            rng = sample_rng(seed, category, "test", defect, 0)
            sample = render_sample(category, defect, rng, image_size, translation, rotation)
            tile = sample.image.copy()
            outline = sample.mask & ~ndimage.binary_erosion(sample.mask)
            tile[outline] = (255, 0, 0)
            x, y = gap + col * cell_w, gap + row * cell_h
            draw.text((x, y), f"{category}/{defect}", fill=(0, 0, 0))
            sheet.paste(Image.fromarray(tile), (x, y + label_h))
    return np.asarray(sheet)

