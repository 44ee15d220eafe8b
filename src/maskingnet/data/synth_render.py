"""Renderer of the synthetic Carvana photos used by ``maskingnet.data.synth``.

A car is a handful of parametric surfaces in metres (x forward, y to the car's left, z up, floor at z=0):
a lofted lower body whose cross-sections are superellipses, a greenhouse lofted on top of it, four wheels,
two mirrors and an optional antenna, plus flat details laid on the body (lights, grille, plates, door
seams). Every surface is cut into small polygons, shaded from its normal in a studio environment (soft key
light, bright ceiling, white wall with dark lettering, grey floor) and drawn far to near (painter's
algorithm) at ``SUPERSAMPLE`` times the target size, then box-filtered down. The mask is the union of the
car's own polygons: a pixel is car when the car covers at least half of it, so it is exact by construction
and never includes the shadow, which is drawn on the floor only.

The camera stands still and the car turns, as on Carvana's turntable: angle 1 faces the front of the car,
angle 5 shows its left side with the front to the left of the picture, angle 9 the back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

ANGLES = 16
SUPERSAMPLE = 2
LETTERING = "MASKNET"

# Car colours, how often used cars come in them and how strongly the paint reflects the studio (metallic
# silver most). White and silver on a white backdrop are the hard cases.
PAINTS = [
    ((0.93, 0.93, 0.92), 0.22, 0.9),  # white
    ((0.66, 0.68, 0.70), 0.16, 1.2),  # silver
    ((0.35, 0.36, 0.38), 0.10, 1.1),  # grey
    ((0.03, 0.03, 0.035), 0.17, 1.0),  # black
    ((0.55, 0.04, 0.05), 0.10, 1.0),  # red
    ((0.06, 0.14, 0.40), 0.09, 1.0),  # blue
    ((0.04, 0.06, 0.14), 0.05, 1.0),  # dark blue
    ((0.20, 0.30, 0.22), 0.04, 1.0),  # green
    ((0.55, 0.50, 0.40), 0.04, 1.0),  # beige
    ((0.78, 0.40, 0.06), 0.03, 1.0),  # orange
]


@dataclass(frozen=True)
class Car:
    """Shape (metres) and colours of one car."""

    kind: str  # sedan, hatch, suv, coupe or pickup
    length: float
    width: float
    clearance: float
    belt: float  # height of the shoulder line where the greenhouse starts
    hood_front: float  # height of the body top at the nose
    tail_top: float  # height of the body top at the tail
    roof: float  # total height
    plan_power: float  # rounding of the body seen from above (higher: squarer corners)
    cabin_rear: float  # x where the greenhouse meets the body at the back
    cabin_front: float  # x of the windshield base
    roof_rear: float
    roof_front: float
    roof_taper: float  # roof half-width / greenhouse base half-width
    wheel_radius: float
    wheel_base: float
    wheel_width: float
    rim_fraction: float
    spokes: int
    paint: tuple[float, float, float]
    reflectivity: float
    roof_paint: tuple[float, float, float]
    pillar_paint: tuple[float, float, float]
    mirror_paint: tuple[float, float, float]
    rim_colour: tuple[float, float, float]
    antenna: bool
    roof_rails: bool  # thin bars on the roof, SUVs and estates
    steer: float  # front wheel angle, radians


@dataclass(frozen=True)
class Studio:
    """The photo session: backdrop tones, lettering, camera placement; shared by the 16 views of a car."""

    wall: float
    floor: float
    turntable: float
    letters: float
    seam: float  # seam height as a fraction of the image height
    exposure: float
    tint: tuple[float, float, float]
    distance: float
    camera_height: float
    focal: float  # focal length in image widths
    centre_y: float  # where the car's middle lands, fraction of the height


def sample_car(rng: np.random.Generator) -> Car:
    """A random plausible car: sedan, hatchback, SUV, coupe or pickup proportions."""
    kind = str(rng.choice(["sedan", "hatch", "suv", "coupe", "pickup"], p=[0.36, 0.18, 0.3, 0.08, 0.08]))
    lengths = {"sedan": 4.7, "hatch": 4.2, "suv": 4.6, "coupe": 4.5, "pickup": 5.3}
    length = lengths[kind] * rng.uniform(0.93, 1.07)
    width = rng.uniform(1.75, 1.95) if kind != "hatch" else rng.uniform(1.68, 1.82)
    suv = kind in ("suv", "pickup")
    clearance = rng.uniform(0.20, 0.26) if suv else rng.uniform(0.13, 0.18)
    belt = rng.uniform(1.0, 1.12) if suv else rng.uniform(0.82, 0.95)
    roof = belt + (rng.uniform(0.58, 0.72) if suv else rng.uniform(0.42, 0.56))
    if kind == "coupe":
        roof = belt + rng.uniform(0.38, 0.46)
    half = length / 2
    cabin_front = half * rng.uniform(0.3, 0.42)
    if kind in ("hatch", "suv"):
        cabin_rear = -half * rng.uniform(0.86, 0.93)
        roof_rear = -half * rng.uniform(0.72, 0.82)
    elif kind == "pickup":  # a crew cab with a near-upright back window, then the open bed
        cabin_front = half * rng.uniform(0.22, 0.3)
        roof_rear = cabin_front - (roof - belt) * 1.3 - rng.uniform(1.4, 1.7)
        cabin_rear = roof_rear - 0.1
    else:
        cabin_rear = -half * rng.uniform(0.58, 0.7)
        roof_rear = -half * rng.uniform(0.3, 0.42)
    roof_front = cabin_front - (roof - belt) * rng.uniform(1.3, 1.8)
    paint, reflectivity = _pick_paint(rng)
    black = (0.025, 0.025, 0.03)
    wheel_radius = rng.uniform(0.34, 0.39) if suv else rng.uniform(0.31, 0.35)
    return Car(
        kind=kind,
        length=length,
        width=width,
        clearance=clearance,
        belt=belt,
        hood_front=belt - (rng.uniform(0.08, 0.14) if kind == "pickup" else rng.uniform(0.16, 0.28)),
        tail_top=belt - _tail_drop(kind, rng),
        roof=roof,
        plan_power=rng.uniform(3.2, 5.0),
        cabin_rear=cabin_rear,
        cabin_front=cabin_front,
        roof_rear=roof_rear,
        roof_front=roof_front,
        roof_taper=rng.uniform(0.74, 0.84),
        wheel_radius=wheel_radius,
        wheel_base=length * rng.uniform(0.57, 0.62),
        wheel_width=rng.uniform(0.21, 0.26),
        rim_fraction=rng.uniform(0.64, 0.78),
        spokes=int(rng.choice([5, 5, 6, 7, 10])),
        paint=paint,
        reflectivity=reflectivity,
        roof_paint=black if rng.random() < 0.08 else paint,
        pillar_paint=black if rng.random() < 0.6 else paint,
        mirror_paint=black if rng.random() < 0.25 else paint,
        rim_colour=(0.12, 0.12, 0.13) if rng.random() < 0.15 else (float(rng.uniform(0.7, 0.88)),) * 3,
        antenna=bool(rng.random() < 0.5),
        roof_rails=bool(kind in ("suv", "hatch") and rng.random() < 0.5),
        steer=float(rng.uniform(-0.25, 0.25) if rng.random() < 0.3 else 0.0),
    )


def _tail_drop(kind: str, rng: np.random.Generator) -> float:
    """How much lower the tail is than the shoulder line: a pickup's bed rails run level."""
    if kind == "pickup":
        return rng.uniform(0.0, 0.03)
    return rng.uniform(0.02, 0.08) if kind in ("sedan", "coupe") else rng.uniform(0.05, 0.15)


def _pick_paint(rng: np.random.Generator) -> tuple[tuple[float, float, float], float]:
    """A paint colour (a little off its nominal shade) and its reflectivity."""
    weights = np.array([p[1] for p in PAINTS])
    colour, _, reflectivity = PAINTS[int(rng.choice(len(PAINTS), p=weights / weights.sum()))]
    jitter = rng.normal(0, 0.01, size=3)
    shade = np.clip(np.array(colour) * rng.uniform(0.9, 1.08) + jitter, 0.01, 0.97)
    return (float(shade[0]), float(shade[1]), float(shade[2])), reflectivity


def sample_studio(rng: np.random.Generator) -> Studio:
    """Backdrop and camera of one photo session; Carvana's vary a little from car to car."""
    return Studio(
        wall=rng.uniform(0.94, 1.0),
        floor=rng.uniform(0.62, 0.74),
        turntable=rng.uniform(0.56, 0.68),
        letters=rng.uniform(0.36, 0.48),
        seam=rng.uniform(0.36, 0.43),
        exposure=rng.uniform(0.94, 1.04),
        tint=tuple(float(t) for t in 1 + rng.normal(0, 0.005, size=3)),
        distance=rng.uniform(6.3, 7.0),
        camera_height=rng.uniform(1.35, 1.6),
        focal=rng.uniform(1.1, 1.18),
        centre_y=rng.uniform(0.58, 0.62),
    )


# ---------------------------------------------------------------------------------------------- geometry


@dataclass
class Surface:
    """Polygons of one material: ``points (F, K, 3)``, outward unit ``normals (F, 3)``."""

    points: np.ndarray
    normals: np.ndarray
    material: str
    colour: tuple[float, float, float]
    bias: float = 0.0  # metres to draw earlier (positive: later) than its depth says; details on surfaces
    two_sided: bool = False
    smooth: bool = False  # smooth-shaded: its facets are blended together after drawing (car paint)


def _grid_quads(grid: np.ndarray, closed: bool) -> np.ndarray:
    """Quads (F, 4, 3) between neighbouring rows and columns of a grid (rows, cols, 3)."""
    if closed:
        grid = np.concatenate([grid, grid[:, :1]], axis=1)
    a, b = grid[:-1, :-1], grid[:-1, 1:]
    c, d = grid[1:, 1:], grid[1:, :-1]
    return np.stack([a, b, c, d], axis=2).reshape(-1, 4, 3)


def _normals(quads: np.ndarray, outward_from: np.ndarray) -> np.ndarray:
    """Unit normals of quads, turned to point away from ``outward_from`` (one point per quad)."""
    n = np.cross(quads[:, 2] - quads[:, 0], quads[:, 3] - quads[:, 1])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = n / np.maximum(length, 1e-12)
    centre = quads.mean(axis=1)
    flip = np.einsum("ij,ij->i", n, centre - outward_from) < 0
    n[flip] *= -1
    return n


def _bulge(rel: np.ndarray) -> np.ndarray:
    """Width factor over relative height (-1 bottom .. 1 top): widest just below the middle, so the upper
    sides lean in and catch the bright wall and the lower sides lean out and catch the floor."""
    return 1 - 0.07 * ((rel + 0.15) / 1.15) ** 2


def _even_samples(power_top: float, power_bottom: float, count: int) -> np.ndarray:
    """Parameters t of ``count`` points round a superellipse, spaced by arc length plus turning angle so
    that the rounded corners get as many points as the flat sides."""
    t = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    cy, cz = _superellipse(t, np.where(np.sin(t) >= 0, power_top, power_bottom))
    cy = cy * _bulge(cz)
    seg = np.diff(np.stack([cy, cz], -1), axis=0, append=np.stack([cy[:1], cz[:1]], -1))
    length = np.linalg.norm(seg, axis=1)
    heading = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
    turn = np.abs(np.diff(heading, append=heading[:1] + 2 * np.pi))
    measure = np.concatenate([[0], np.cumsum(length / length.sum() + turn / turn.sum())])[:-1]
    return np.interp(np.linspace(0, measure[-1], count, endpoint=False), measure, t)


def _superellipse(t: np.ndarray, power: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(t), np.sin(t)
    return np.sign(c) * np.abs(c) ** (2 / power), np.sign(s) * np.abs(s) ** (2 / power)


class BodyShape:
    """The lower body: for each station ``x`` a superellipse cross-section of half-width ``w(x)``
    between ``bottom(x)`` and ``top(x)``; wheel arches lift the bottom."""

    top_power = 5.0
    bottom_power = 7.0

    def __init__(self, car: Car):
        self.car = car
        self.half = car.length / 2
        self.wheels_x = np.array([car.wheel_base / 2, -car.wheel_base / 2]) + car.length * 0.01

    def half_width(self, x: np.ndarray) -> np.ndarray:
        u = np.clip(np.abs(x) / self.half, 0, 1)
        power = self.car.plan_power * np.where(x > 0, 1.0, 1.25)
        return self.car.width / 2 * (1 - u**power) ** (1 / power)

    def top(self, x: np.ndarray) -> np.ndarray:
        car = self.car
        front = np.clip((x - car.cabin_front) / (self.half - car.cabin_front), 0, 1)
        rear = np.clip((car.cabin_rear - x) / (self.half + car.cabin_rear), 0, 1)
        z = car.belt - (car.belt - car.hood_front) * front**1.6 - (car.belt - car.tail_top) * rear**2.2
        return z

    def bottom(self, x: np.ndarray) -> np.ndarray:
        car = self.car
        u = np.abs(x) / self.half
        z = car.clearance + 0.9 * np.clip(u - 0.82, 0, None) ** 1.5 * (car.belt - car.clearance)
        arch = car.wheel_radius * 1.13
        for wx in self.wheels_x:
            dx = np.clip(np.abs(x - wx) / arch, 0, 1)
            z = np.maximum(z, np.where(dx < 1, car.wheel_radius + arch * np.sqrt(1 - dx**2), 0))
        return np.minimum(z, self.top(x) - 0.06)

    def stations(self, count: int, arch_count: int = 11) -> np.ndarray:
        s = np.linspace(-1, 1, count)
        x = 0.998 * self.half * (0.55 * np.sin(s * np.pi / 2) + 0.45 * s)
        arch = self.car.wheel_radius * 1.13
        extra = [wx + arch * np.linspace(-1, 1, arch_count) for wx in self.wheels_x]
        x = np.unique(np.round(np.concatenate([x, *extra]), 5))
        return x[np.abs(x) <= 0.998 * self.half]

    def section(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Points (len(x), len(t), 3) on the surface; t=0 is the left side, pi/2 the top."""
        power = np.where(np.sin(t) >= 0, self.top_power, self.bottom_power)
        cy, cz = _superellipse(t, power)
        cy = cy * _bulge(cz)
        top, bottom = self.top(x)[:, None], self.bottom(x)[:, None]
        y = self.half_width(x)[:, None] * cy[None, :]
        z = (top + bottom) / 2 + (top - bottom) / 2 * cz[None, :]
        return np.stack([np.broadcast_to(x[:, None], y.shape), y, z], axis=-1)

    def side_point(self, x: np.ndarray, z: np.ndarray, side: float) -> np.ndarray:
        """The surface point at station x and height z on the left (+1) or right (-1) side."""
        top, bottom = self.top(x), self.bottom(x)
        rel = np.clip((z - (top + bottom) / 2) / np.maximum((top - bottom) / 2, 1e-6), -0.999, 0.999)
        power = np.where(rel >= 0, self.top_power, self.bottom_power)
        y = self.half_width(x) * _bulge(rel) * (1 - np.abs(rel) ** power) ** (1 / power)
        return np.stack([x, side * y, z], axis=-1)

    def end_point(self, y: np.ndarray, z: np.ndarray, front: bool) -> np.ndarray:
        """The surface point at lateral y and height z on the nose (front) or the tail.

        Walks in from the end of the car to the first station whose cross-section holds (y, z), then
        bisects between that station and the one before it. Points outside the body's end silhouette are
        first pulled towards the middle of the end until the body holds them, so details never stick out.
        """
        sign = 1.0 if front else -1.0
        steps = sign * self.half * np.linspace(1.0, 0.82, 40)
        y, z = np.array(y, dtype=float), np.array(z, dtype=float)
        middle = float((self.top(steps[:1]) + self.bottom(steps[:1]))[0] / 2)
        for _ in range(20):
            inside = self._inside(steps[:, None], y[None, :], z[None, :])
            outside = ~inside.any(axis=0)
            if not outside.any():
                break
            y = np.where(outside, y * 0.95, y)
            z = np.where(outside, middle + (z - middle) * 0.95, z)
        first = np.where(inside.any(axis=0), inside.argmax(axis=0), 0)
        hit = steps[first]
        miss = steps[np.maximum(first - 1, 0)]
        for _ in range(14):
            mid = (hit + miss) / 2
            now_inside = self._inside(mid, y, z)
            hit, miss = np.where(now_inside, mid, hit), np.where(now_inside, miss, mid)
        # A little inside the exact surface: the polygon mesh cuts the rounded corners a little.
        return np.stack([hit - sign * 0.006 * self.half, y, z], axis=-1)

    def top_point(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The surface point above (x, y) on the top of the body."""
        top, bottom = self.top(x), self.bottom(x)
        middle, half_height = (top + bottom) / 2, (top - bottom) / 2
        rel = np.ones_like(np.asarray(x, dtype=float))
        for _ in range(4):  # the width depends on the height through the bulge: a few fixed-point steps
            across = np.clip(np.abs(y) / (self.half_width(x) * _bulge(rel)), 0, 1)
            rel = (1 - across**self.top_power) ** (1 / self.top_power)
        return np.stack([x, y, middle + half_height * rel], axis=-1)

    def _inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        top, bottom = self.top(x), self.bottom(x)
        rel = (z - (top + bottom) / 2) / np.maximum((top - bottom) / 2, 1e-6)
        power = np.where(rel >= 0, self.top_power, self.bottom_power)
        w = np.maximum(self.half_width(x) * _bulge(rel), 1e-6)
        return np.abs(y / w) ** power + np.abs(rel) ** power < 1

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        """Outward normals at surface points, from the gradient of the inside test's level function."""
        eps = 0.01
        grads = []
        for axis in range(3):
            step = np.zeros(3)
            step[axis] = eps
            grads.append(self._level(points + step) - self._level(points - step))
        n = np.stack(grads, axis=-1)
        return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)

    def _level(self, p: np.ndarray) -> np.ndarray:
        x, y, z = p[..., 0], p[..., 1], p[..., 2]
        top, bottom = self.top(x), self.bottom(x)
        rel = (z - (top + bottom) / 2) / np.maximum((top - bottom) / 2, 1e-6)
        power = np.where(rel >= 0, self.top_power, self.bottom_power)
        w = np.maximum(self.half_width(x) * _bulge(rel), 1e-6)
        return np.abs(y / w) ** power + np.abs(rel) ** power


def body_surfaces(car: Car, shape: BodyShape, detail: float = 1.0) -> list[Surface]:
    x = shape.stations(_count(72, detail), _count(13, detail))
    t = _even_samples(shape.top_power, shape.bottom_power, 2 * _count(28, detail))
    grid = shape.section(x, t)
    quads = _grid_quads(grid, closed=True)
    centre = np.array([0.0, 0.0, (car.belt + car.clearance) / 2])
    normals = _normals(quads, np.broadcast_to(centre, (len(quads), 3)))
    centres = quads.mean(axis=1)
    in_arch = np.zeros(len(quads), dtype=bool)
    for wx in shape.wheels_x:
        in_arch |= (np.abs(centres[:, 0] - wx) < car.wheel_radius * 1.2) & (np.abs(normals[:, 1]) < 0.6)
    under = (normals[:, 2] < -0.4) | (in_arch & (centres[:, 2] < shape.bottom(centres[:, 0]) + 0.05))
    caps = np.stack([grid[-1], grid[0]])
    return [
        Surface(quads[~under], normals[~under], "paint", car.paint, smooth=True),
        Surface(quads[under], normals[under], "matte", (0.05, 0.05, 0.055)),
        # The flat ends are big polygons: drawn as if further away, so the lights and plates on them win.
        Surface(caps, np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), "paint", car.paint, bias=-0.4),
    ]


# The greenhouse cross-section from the sill to the roof centre: (lateral fraction, height fraction, part).
# Lateral fractions below 1 lean the side glass in (tumblehome); "taper" stands for the roof taper.
CABIN_PROFILE = [
    (1.0, 0.0, "sill"),
    (0.985, 0.08, "side"),
    (None, 0.33, "side"),
    (None, 0.58, "side"),
    (None, 0.82, "rail"),
    ("taper", 0.92, "corner"),
    ("taper-", 0.975, "top"),
    (0.7, 1.0, "top"),
    (0.35, 1.012, "top"),
    (0.0, 1.016, None),
]


def _cabin_profile(taper: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    side_top = taper + 0.05
    lateral, height, parts = [], [], []
    for y, z, part in CABIN_PROFILE:
        if y is None:
            y = 0.985 + (side_top - 0.985) * (z - 0.08) / (0.82 - 0.08)
        elif y == "taper":
            y = taper
        elif y == "taper-":
            y = taper - 0.07
        lateral.append(y)
        height.append(z)
        parts.append(part)
    return np.array(lateral), np.array(height), parts[:-1]


def greenhouse_surfaces(car: Car, shape: BodyShape, detail: float = 1.0) -> list[Surface]:
    """Greenhouse: side glass, windshield and rear window; painted sills, rails, pillars and roof."""
    x = np.concatenate(
        [
            np.linspace(car.cabin_rear, car.roof_rear, _count(14, detail), endpoint=False),
            np.linspace(car.roof_rear, car.roof_front, _count(16, detail), endpoint=False),
            np.linspace(car.roof_front, car.cabin_front, _count(16, detail)),
        ]
    )
    base_z = shape.top(x) - 0.03
    height = _cabin_height(car, x, base_z)
    base_w = shape.half_width(x) * 0.95
    lateral, level, parts = _cabin_profile(car.roof_taper)
    lateral = np.concatenate([lateral, -lateral[-2::-1]])
    level = np.concatenate([level, level[-2::-1]])
    parts = parts + parts[::-1]
    grid = np.stack(
        [
            np.broadcast_to(x[:, None], (len(x), len(lateral))),
            base_w[:, None] * lateral[None, :],
            base_z[:, None] + height[:, None] * level[None, :],
        ],
        axis=-1,
    )
    quads = _grid_quads(grid, closed=False)
    centres = quads.mean(axis=1)
    inner = np.stack([centres[:, 0], np.zeros(len(quads)), np.full(len(quads), car.belt - 0.3)], axis=-1)
    normals = _normals(quads, inner)
    part = np.tile(np.array(parts), len(x) - 1)
    station_x = centres[:, 0]
    on_slope = (station_x > car.roof_front) | (station_x < car.roof_rear)
    b_pillar = np.abs(station_x - ((car.roof_front + car.roof_rear) / 2 + 0.1)) < 0.05
    glass = ((part == "side") & ~b_pillar) | ((part == "top") & on_slope)
    roof = (part == "top") & ~on_slope
    pillar = (part == "corner") | ((part == "side") & b_pillar)
    frame = ~glass & ~roof & ~pillar
    return [
        Surface(quads[glass], normals[glass], "glass", (0.03, 0.035, 0.04)),
        Surface(quads[roof], normals[roof], "paint", car.roof_paint),
        Surface(quads[frame], normals[frame], "paint", car.paint),
        Surface(quads[pillar], normals[pillar], "paint", car.pillar_paint),
    ]


def _cabin_height(car: Car, x: np.ndarray, base_z: np.ndarray) -> np.ndarray:
    rise = np.clip((x - car.cabin_rear) / max(car.roof_rear - car.cabin_rear, 1e-3), 0, 1)
    fall = np.clip((car.cabin_front - x) / max(car.cabin_front - car.roof_front, 1e-3), 0, 1)
    profile = np.minimum(np.sin(rise * np.pi / 2) ** 0.8, np.sin(fall * np.pi / 2) ** 0.7)
    bulge = 0.03 * np.cos(np.clip(x / (car.length / 2), -1, 1) * np.pi / 2)
    return np.maximum((car.roof + bulge - base_z) * profile, 0.005)


def wheel_surfaces(car: Car, shape: BodyShape, detail: float = 1.0) -> list[Surface]:
    """Four wheels (tread, sidewalls, spoked rim; the front pair maybe steered) and their wheel wells."""
    surfaces: list[Surface] = []
    r = car.wheel_radius
    ring = np.linspace(0, 2 * np.pi, _count(28, detail), endpoint=False)
    for wx, steer in zip(shape.wheels_x, (car.steer, 0.0), strict=True):
        for side in (1.0, -1.0):
            y_out = side * (car.width / 2 - 0.05)
            y_in = y_out - side * car.wheel_width
            centre = np.array([wx, (y_out + y_in) / 2, r])
            rot = _yaw(steer)

            def place(pts, centre=centre, rot=rot):
                return (pts - centre) @ rot.T + centre

            outer_ring = np.stack(
                [wx + r * np.cos(ring), np.full_like(ring, y_out), r + r * np.sin(ring)], -1
            )
            inner_ring = outer_ring.copy()
            inner_ring[:, 1] = y_in
            tread = np.stack(
                [outer_ring, np.roll(outer_ring, -1, 0), np.roll(inner_ring, -1, 0), inner_ring], 1
            )
            tread = place(tread)
            tread_n = _normals(tread, np.broadcast_to(place(centre), (len(tread), 3)))
            surfaces.append(Surface(tread, tread_n, "tyre", (0.045, 0.045, 0.05)))
            for y, sign in ((y_out, side), (y_in, -side)):
                disc = outer_ring.copy()
                disc[:, 1] = y
                normal = rot @ np.array([0.0, sign, 0.0])
                surfaces.append(Surface(place(disc)[None], normal[None], "tyre", (0.05, 0.05, 0.055)))
            surfaces.extend(_rim(car, wx, y_out + side * 0.004, side, place, rot))
            surfaces.extend(_wheel_well(car, wx, side))
    return surfaces


def _wheel_well(car: Car, wx: float, side: float) -> list[Surface]:
    """The dark drum and back wall above a wheel, so the arch never shows the floor through the car."""
    r = car.wheel_radius * 1.13
    a = np.linspace(-0.35, np.pi + 0.35, 16)
    y_out, y_in = side * (car.width / 2 - 0.02), side * (car.width / 2 - 0.55)
    arc = np.stack([wx + r * np.cos(a), np.zeros_like(a), car.wheel_radius + r * np.sin(a)], -1)
    outer, inner = arc + [0.0, y_out, 0.0], arc + [0.0, y_in, 0.0]
    band = np.stack([outer[:-1], outer[1:], inner[1:], inner[:-1]], 1)
    normals = _normals(band, np.broadcast_to([wx, y_out, 5.0], (len(band), 3)))
    # The back wall is wider than the arch: seen in perspective it slides towards the middle of the car.
    around = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    wall = np.stack(
        [
            wx + 1.3 * r * np.cos(around),
            np.full_like(around, y_in),
            np.maximum(car.wheel_radius + 1.3 * r * np.sin(around), car.clearance + 0.03),
        ],
        -1,
    )
    dark = (0.02, 0.02, 0.022)
    return [
        Surface(band, normals, "matte", dark, bias=-0.3, two_sided=True),
        Surface(wall[None], np.array([[0.0, side, 0.0]]), "matte", dark, bias=-0.3, two_sided=True),
    ]


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _rim(car: Car, wx: float, y: float, side: float, place, rot: np.ndarray) -> list[Surface]:
    r = car.wheel_radius * car.rim_fraction
    normal = (rot @ np.array([0.0, side, 0.0]))[None]

    def disc(radius: float, start: float = 0.0, stop: float = 2 * np.pi, inner: float = 0.0, n: int = 24):
        a = np.linspace(start, stop, n)
        outer = np.stack(
            [wx + radius * np.cos(a), np.full_like(a, y), car.wheel_radius + radius * np.sin(a)], -1
        )
        if inner <= 0:
            return place(outer)[None]
        back = np.stack(
            [wx + inner * np.cos(a[::-1]), np.full_like(a, y), car.wheel_radius + inner * np.sin(a[::-1])], -1
        )
        return place(np.concatenate([outer, back]))[None]

    parts = [Surface(disc(r), normal, "metal", car.rim_colour, bias=0.01)]
    step = 2 * np.pi / car.spokes
    for k in range(car.spokes):
        start = k * step + step * 0.22
        hole = disc(r * 0.86, start, start + step * 0.56, inner=r * 0.34, n=8)
        parts.append(Surface(hole, normal, "matte", (0.03, 0.03, 0.035), bias=0.02))
    parts.append(Surface(disc(r * 0.2), normal, "metal", tuple(c * 0.8 for c in car.rim_colour), bias=0.03))
    return parts


def roof_rail_surfaces(car: Car, shape: BodyShape) -> list[Surface]:
    """Two thin bars on short posts along the roof (a thin part, as the thesis's hard cases want)."""
    if not car.roof_rails:
        return []
    x0, x1 = car.roof_rear + 0.08, car.roof_front - 0.08
    xs = np.linspace(x0, x1, 9)
    base_z = shape.top(xs) - 0.03
    roof_z = float(np.max(base_z + _cabin_height(car, xs, base_z) * 1.016))
    half = float(np.min(shape.half_width(xs))) * 0.95 * (car.roof_taper - 0.1)
    surfaces = []
    for side in (1.0, -1.0):
        y = side * half
        parts = [
            _box(np.array([x0, y - 0.025, roof_z + 0.035]), np.array([x1, y + 0.025, roof_z + 0.065])),
            _box(np.array([x0, y - 0.02, roof_z - 0.02]), np.array([x0 + 0.07, y + 0.02, roof_z + 0.04])),
            _box(np.array([x1 - 0.07, y - 0.02, roof_z - 0.02]), np.array([x1, y + 0.02, roof_z + 0.04])),
        ]
        for quads, normals in parts:
            surfaces.append(Surface(quads, normals, "metal", (0.3, 0.3, 0.32), bias=0.03))
    return surfaces


def mirror_surfaces(car: Car, shape: BodyShape) -> list[Surface]:
    surfaces = []
    x0 = car.cabin_front - 0.22
    z0 = shape.top(np.array([x0]))[0] + 0.05
    for side in (1.0, -1.0):
        y0 = side * shape.half_width(np.array([x0]))[0] * 0.93
        lo = np.array([x0 - 0.06, y0 + side * 0.03, z0])
        hi = np.array([x0 + 0.03, y0 + side * 0.18, z0 + 0.1])
        quads, normals = _box(lo, hi)
        glass_face = normals[:, 0] < -0.5
        surfaces.append(
            Surface(quads[~glass_face], normals[~glass_face], "paint", car.mirror_paint, bias=0.02)
        )
        surfaces.append(Surface(quads[glass_face], normals[glass_face], "glass", (0.1, 0.1, 0.11), bias=0.02))
        stalk_lo = np.array([x0 - 0.03, y0 - side * 0.02, z0 + 0.02])
        stalk_hi = np.array([x0 + 0.02, y0 + side * 0.05, z0 + 0.06])
        q, n = _box(np.minimum(stalk_lo, stalk_hi), np.maximum(stalk_lo, stalk_hi))
        surfaces.append(Surface(q, n, "paint", car.mirror_paint, bias=0.01))
    return surfaces


def _box(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    corners = np.array(
        [[hi[0] if i & 1 else lo[0], hi[1] if i & 2 else lo[1], hi[2] if i & 4 else lo[2]] for i in range(8)]
    )
    faces = [(0, 2, 6, 4), (1, 3, 7, 5), (0, 1, 5, 4), (2, 3, 7, 6), (0, 1, 3, 2), (4, 5, 7, 6)]
    quads = corners[np.array(faces)]
    return quads, _normals(quads, np.broadcast_to((lo + hi) / 2, (6, 3)))


def detail_surfaces(car: Car, shape: BodyShape, rng: np.random.Generator) -> list[Surface]:
    """Lights, grille, plates, door seams and handles: thin polygons laid just outside the body."""
    w = car.width / 2
    front_top = car.hood_front
    front_bottom = shape.bottom(np.array([shape.half * 0.97]))[0]
    h = front_top - front_bottom
    lamp_z = front_top - h * 0.22
    lamp_hw = rng.uniform(0.15, 0.24)
    surfaces = []
    for side in (1.0, -1.0):
        inner, outer = side * (w * 0.8 - lamp_hw), side * w * 0.86
        housing = _outline_rect(inner - side * 0.02, outer, lamp_z - 0.09, lamp_z + 0.05)
        surfaces.append(_end_detail(shape, housing, True, "lamp", (0.12, 0.12, 0.13), bias=0.11))
        lamp = _outline_rect(inner, outer - side * 0.03, lamp_z - 0.065, lamp_z + 0.03)
        surfaces.append(_end_detail(shape, lamp, True, "lamp", (0.8, 0.82, 0.85)))
        tail_z = car.tail_top - 0.12
        tail = _outline_rect(side * w * 0.5, side * w * 0.86, tail_z - 0.09, tail_z + 0.05)
        surfaces.append(_end_detail(shape, tail, False, "lamp", (0.5, 0.02, 0.03)))
    grille = _outline_rect(-w * 0.27, w * 0.27, lamp_z - 0.1, lamp_z + 0.01)
    surfaces.append(_end_detail(shape, grille, True, "matte", (0.09, 0.09, 0.1)))
    intake = _outline_rect(-w * 0.52, w * 0.52, front_bottom + 0.05, front_bottom + 0.14)
    surfaces.append(_end_detail(shape, intake, True, "matte", (0.05, 0.05, 0.055)))
    for front in (True, False):
        z = front_bottom + 0.15 if front else car.tail_top - 0.38
        plate = _outline_rect(-0.26, 0.26, z, z + 0.12)
        surfaces.append(_end_detail(shape, plate, front, "matte", (0.88, 0.88, 0.86), bias=0.13))
    surfaces.extend(_door_seams(car, shape))
    if car.kind == "pickup":
        surfaces.append(_bed(car, shape))
    return surfaces


def _bed(car: Car, shape: BodyShape) -> Surface:
    """The open load bed of a pickup: a dark liner on the top of the body behind the cab."""
    x0, x1 = -shape.half * 0.95, car.cabin_rear - 0.06
    xs = np.linspace(x0, x1, 10)
    edge = np.minimum(shape.half_width(xs), shape.half_width(np.full_like(xs, x0))) * 0.86
    outline_x = np.concatenate([xs, xs[::-1]])
    outline_y = np.concatenate([edge, -edge[::-1]])
    points = shape.top_point(outline_x, outline_y) + np.array([0.0, 0.0, 0.006])
    return Surface(points[None], np.array([[0.0, 0.0, 1.0]]), "matte", (0.07, 0.07, 0.075), bias=0.15)


def _outline_rect(y0: float, y1: float, z0: float, z1: float, n: int = 6) -> np.ndarray:
    ys = np.linspace(y0, y1, n)
    zs = np.linspace(z0, z1, n)
    top = np.stack([ys, np.full(n, z1)], -1)
    right = np.stack([np.full(n, y1), zs[::-1]], -1)
    bottom = np.stack([ys[::-1], np.full(n, z0)], -1)
    left = np.stack([np.full(n, y0), zs], -1)
    return np.concatenate([top, right, bottom, left])


def _end_detail(
    shape: BodyShape, outline: np.ndarray, front: bool, material: str, colour, bias: float = 0.12
):
    pts = shape.end_point(outline[:, 0], outline[:, 1], front)
    normals = shape.normal_at(pts)
    pts = pts + normals * 0.006
    normal = normals.mean(axis=0)
    return Surface(pts[None], (normal / np.linalg.norm(normal))[None], material, colour, bias=bias)


def _door_seams(car: Car, shape: BodyShape) -> list[Surface]:
    seams = []
    xs = [car.cabin_front - 0.05, (car.roof_front + car.roof_rear) / 2 + 0.1]
    if car.cabin_rear < -shape.half * 0.7 or car.length > 4.4:
        xs.append(car.roof_rear + 0.1)
    for side in (1.0, -1.0):
        for x in xs:
            z = np.linspace(car.clearance + 0.12, shape.top(np.array([x]))[0] - 0.04, 8)
            left = shape.side_point(np.full_like(z, x - 0.006), z, side)
            right = shape.side_point(np.full_like(z, x + 0.006), z, side)
            poly = np.concatenate([left, right[::-1]])
            poly = poly + np.array([0.0, side * 0.004, 0.0])
            seams.append(
                Surface(poly[None], np.array([[0.0, side, 0.0]]), "matte", (0.02, 0.02, 0.02), bias=0.1)
            )
        for x in xs[1:]:
            z0 = car.belt - 0.16
            x0 = x - 0.28
            xx = np.array([x0, x0 + 0.16, x0 + 0.16, x0])
            zz = np.array([z0, z0, z0 + 0.035, z0 + 0.035])
            handle = shape.side_point(xx, zz, side) + np.array([0.0, side * 0.01, 0.0])
            seams.append(Surface(handle[None], np.array([[0.0, side, 0.0]]), "paint", car.paint, bias=0.11))
    return seams


def antenna_line(car: Car) -> np.ndarray:
    x = car.roof_rear + 0.12
    return np.array([[x, 0.0, car.roof], [x - 0.18, 0.0, car.roof + 0.32]])


# ---------------------------------------------------------------------------------------------- camera


@dataclass(frozen=True)
class Camera:
    position: np.ndarray
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    focal: float  # pixels
    centre: tuple[float, float]  # pixels

    def project(self, points: np.ndarray) -> np.ndarray:
        d = points - self.position
        depth = np.maximum(d @ self.forward, 1e-3)
        u = self.centre[0] + self.focal * (d @ self.right) / depth
        v = self.centre[1] - self.focal * (d @ self.up) / depth
        return np.stack([u, v], axis=-1)


def camera_for(angle: int, size: tuple[int, int], studio: Studio, jitter: float) -> Camera:
    """Camera in the car's frame: angle 1 in front of it, going round the car's left side."""
    width, height = size
    phi = (angle - 1) * 2 * np.pi / ANGLES + jitter
    position = np.array([studio.distance * np.cos(phi), studio.distance * np.sin(phi), studio.camera_height])
    target = np.array([0.0, 0.0, 0.62])
    forward = target - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return Camera(position, right, up, forward, studio.focal * width, (width / 2, studio.centre_y * height))


# ---------------------------------------------------------------------------------------------- shading


def environment(direction: np.ndarray, studio: Studio) -> np.ndarray:
    """Brightness the studio sends back along ``direction``: ceiling lights, wall, lettering, floor."""
    z = direction[..., 2]
    azimuth = np.arctan2(direction[..., 1], direction[..., 0])
    wall = studio.wall * np.ones_like(z)
    lettering = (z > 0.06) & (z < 0.22) & (np.sin(azimuth * 9.0) > 0.2)
    wall = np.where(lettering, studio.letters + 0.15, wall)
    value = np.interp(z, [-1.0, -0.35, -0.04, 0.0, 0.35, 0.7, 1.0], [0.08, 0.35, 0.62, 0.8, 0.92, 0.97, 1.0])
    return np.where((z > 0.0) & (z < 0.35), np.minimum(wall, value + 0.15), value)


MATERIALS = {
    # ambient, diffuse, base reflectance, reflection weight, specular, shininess
    "paint": (0.42, 0.6, 0.05, 0.9, 0.18, 12.0),
    "glass": (0.6, 0.3, 0.04, 0.6, 0.25, 20.0),
    "tyre": (0.7, 0.45, 0.02, 0.12, 0.05, 8.0),
    "matte": (0.75, 0.35, 0.02, 0.1, 0.05, 10.0),
    "metal": (0.6, 0.4, 0.55, 0.8, 0.3, 15.0),
    "lamp": (0.45, 0.35, 0.12, 0.8, 0.3, 20.0),
}


def material_params(material: str, reflectivity: float = 1.0) -> np.ndarray:
    """One row of shading parameters: the material's six, extra reflection, paint reflectivity."""
    extra = 0.25 * MATERIALS[material][3] if material in ("metal", "glass") else 0.0
    return np.array([*MATERIALS[material], extra, reflectivity])


def shade(
    colours: np.ndarray, normals: np.ndarray, to_eye: np.ndarray, params: np.ndarray, studio: Studio
) -> np.ndarray:
    """Colours (N, 3) in 0..1 of polygons with unit ``normals`` seen along unit ``to_eye`` (both (N, 3)),
    with ``params`` rows from ``material_params``."""
    ambient, diffuse, r0, weight, specular, shininess, extra, reflectivity = params.T
    light = np.array([0.35, 0.0, 0.94])
    n_dot_v = np.clip(np.einsum("ij,ij->i", normals, to_eye), 0, 1)
    reflected = 2 * n_dot_v[:, None] * normals - to_eye
    lit = ambient + diffuse * np.clip(normals @ light, 0, 1) + 0.15 * n_dot_v
    fresnel = r0 + (1 - r0) * (1 - n_dot_v) ** 5
    mix = np.clip(fresnel * weight * reflectivity + extra, 0, 1)[:, None]
    env = environment(reflected, studio)[:, None]
    half = to_eye + light
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    gloss = specular * np.clip(np.einsum("ij,ij->i", normals, half), 0, 1) ** shininess
    return colours * lit[:, None] * (1 - mix) + env * mix + gloss[:, None]


# ---------------------------------------------------------------------------------------------- studio


FLOOR_TINT = np.array([-0.04, -0.01, 0.035], dtype=np.float32)  # Carvana's floor is a cool grey
DIRT = np.array([0.92, 0.86, 0.78], dtype=np.float32)  # tyre dust on the turntable, brownish


def studio_background(size: tuple[int, int], studio: Studio, rng: np.random.Generator) -> np.ndarray:
    """The backdrop (H, W, 3) in 0..1: white wall with lettering, cove, grey floor and turntable."""
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    v = yy / height
    u = xx / width
    seam = studio.seam + 0.015 * ((u - 0.5) * 2) ** 2
    wall = studio.wall * (1.0 - 0.06 * (1 - v / studio.seam) ** 2)
    floor = studio.floor + 0.08 * (v - seam) + 0.03 * np.cos((u - 0.5) * np.pi)
    cove = np.clip((v - seam) / 0.02, 0, 1)
    image = wall * (1 - cove) + floor * cove
    image = image - 0.06 * np.exp(-(((v - seam) / 0.006) ** 2))
    rx, ry = 0.64, 0.40
    cy = studio.centre_y + 0.2
    inside = ((u - 0.5) / rx) ** 2 + ((v - cy) / ry) ** 2
    turntable = (inside < 1) & (v > seam + 0.01)
    image = np.where(turntable, image - (studio.floor - studio.turntable), image)
    edge = np.exp(-(((np.sqrt(inside) - 1) * 90) ** 2)) * (v > seam + 0.01)
    image = image + 0.05 * edge
    smudge = _low_frequency_noise(rng, (height, width), 7) * 0.012 * cove
    image = (image + smudge)[..., None] * (1 + cove[..., None] * FLOOR_TINT)
    dirt = np.clip(_low_frequency_noise(rng, (height, width), 6) - 0.7, 0, 1) * turntable * 0.35
    image = image * (1 - dirt[..., None]) + DIRT * dirt[..., None] * image
    letters = _lettering(size, studio) * (1 - cove)
    return image * (1 - letters[..., None]) + studio.letters * letters[..., None]


def _low_frequency_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    small = rng.normal(0, 1, size=(cells, int(cells * shape[1] / shape[0]) + 1)).astype(np.float32)
    image = Image.fromarray(small, mode="F").resize((shape[1], shape[0]), Image.BICUBIC)
    return np.asarray(image)


def _lettering(size: tuple[int, int], studio: Studio) -> np.ndarray:
    width, height = size
    font_size = max(6, int(height * 0.2))
    font = ImageFont.load_default(size=font_size)
    text_width = font.getlength(LETTERING)
    font_size = max(6, int(font_size * 0.8 * width / max(text_width, 1)))
    font = ImageFont.load_default(size=font_size)
    layer = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    left, top, right, bottom = draw.textbbox((0, 0), LETTERING, font=font, stroke_width=0)
    x = (width - (right - left)) / 2 - left
    y = studio.seam * height - 0.01 * height - bottom
    draw.text((x, y), LETTERING, fill=255, font=font)
    return np.asarray(layer, dtype=np.float32) / 255


def _shadow(car: Car, shape: BodyShape, camera: Camera, size: tuple[int, int]) -> Image.Image:
    """How much light the floor keeps (L, 255 = all) under the car's soft shadow and the tyres' contact
    patches. Drawn and blurred at a quarter of the size: it is smooth anyway."""
    width, height = size
    shrink = 4 if min(size) >= 256 else 1
    small = (max(1, width // shrink), max(1, height // shrink))
    scale = (small[0] / width, small[1] / height)
    x = np.linspace(-shape.half, shape.half, 40)
    w = shape.half_width(x) + 0.12
    outline = np.concatenate([np.stack([x, w, 0 * x], -1), np.stack([x[::-1], -w[::-1], 0 * x], -1)])
    body = Image.new("L", small, 0)
    ImageDraw.Draw(body).polygon([tuple(p * scale) for p in camera.project(outline)], fill=150)
    body = body.filter(ImageFilter.GaussianBlur(max(0.6, small[0] * 0.018)))
    contact = Image.new("L", small, 0)
    draw = ImageDraw.Draw(contact)
    corners = ((-0.3, -0.15), (0.3, -0.15), (0.3, 0.15), (-0.3, 0.15))
    for wx in shape.wheels_x:
        for side in (1.0, -1.0):
            y = side * (car.width / 2 - 0.05 - car.wheel_width / 2)
            patch = np.array([[wx + dx, y + dy, 0.0] for dx, dy in corners])
            draw.polygon([tuple(p * scale) for p in camera.project(patch)], fill=230)
    contact = contact.filter(ImageFilter.GaussianBlur(max(0.5, small[0] * 0.005)))
    darkness = np.maximum(np.asarray(body, np.float32), np.asarray(contact, np.float32))
    kept = Image.fromarray((255 - 0.62 * darkness).astype(np.uint8), mode="L")
    return kept.resize(size, Image.BILINEAR) if shrink > 1 else kept


# ---------------------------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class PolygonBatch:
    """All polygons of a scene with the same number of corners, and what shading needs per polygon."""

    points: np.ndarray  # (N, K, 3)
    normals: np.ndarray  # (N, 3)
    colours: np.ndarray  # (N, 3)
    params: np.ndarray  # (N, 8), rows of material_params
    bias: np.ndarray  # (N,)
    two_sided: np.ndarray  # (N,) bool
    smooth: np.ndarray  # (N,) bool


def pack(surfaces: list[Surface], car: Car) -> list[PolygonBatch]:
    """Group the surfaces' polygons by corner count, so that a view shades and projects them in a few
    array operations instead of one per surface."""
    groups: dict[int, list[Surface]] = {}
    for surface in surfaces:
        groups.setdefault(surface.points.shape[1], []).append(surface)
    batches = []
    for corners in sorted(groups):
        members = groups[corners]
        counts = [len(m.points) for m in members]

        def per_polygon(values, counts=counts):
            return np.repeat(np.stack([np.asarray(v) for v in values]), counts, axis=0)

        reflectivity = [car.reflectivity if m.material == "paint" else 1.0 for m in members]
        batches.append(
            PolygonBatch(
                points=np.concatenate([m.points for m in members]),
                normals=np.concatenate([m.normals for m in members]),
                colours=per_polygon([m.colour for m in members]),
                params=per_polygon(
                    [material_params(m.material, r) for m, r in zip(members, reflectivity, strict=True)]
                ),
                bias=per_polygon([m.bias for m in members]),
                two_sided=per_polygon([m.two_sided for m in members]),
                smooth=per_polygon([m.smooth for m in members]),
            )
        )
    return batches


@dataclass(frozen=True)
class Scene:
    car: Car
    shape: BodyShape
    batches: list[PolygonBatch]
    studio: Studio


def detail_for(size: tuple[int, int]) -> float:
    """How finely to cut the surfaces: small pictures need few polygons, full-size ones many."""
    return float(np.clip(size[0] / 1200, 0.3, 1.4))


def _count(base: int, detail: float) -> int:
    return max(4, int(round(base * detail)))


def build_scene(car_seed: int, detail: float = 1.0) -> Scene:
    """The car and the photo session of ``car_seed``; the same for its 16 views."""
    rng = np.random.default_rng([car_seed, 1])
    car = sample_car(rng)
    studio = sample_studio(rng)
    shape = BodyShape(car)
    surfaces = (
        body_surfaces(car, shape, detail)
        + greenhouse_surfaces(car, shape, detail)
        + wheel_surfaces(car, shape, detail)
        + mirror_surfaces(car, shape)
        + roof_rail_surfaces(car, shape)
        + detail_surfaces(car, shape, rng)
    )
    return Scene(car, shape, pack([s for s in surfaces if len(s.points)], car), studio)


def _draw_car(
    scene: Scene, camera: Camera, size: tuple[int, int], scale: int
) -> tuple[Image.Image, Image.Image]:
    """The car alone at ``scale`` times ``size``: RGBA, colour on black with alpha 255 where car, and an L
    layer that is 255 where the visible surface is smooth-shaded paint."""
    big = (size[0] * scale, size[1] * scale)
    canvas = Image.new("RGBA", big, (0, 0, 0, 0))
    smooth_layer = Image.new("L", big, 0)
    draw, draw_smooth = ImageDraw.Draw(canvas), ImageDraw.Draw(smooth_layer)
    polygons, colours, keys, smooth = [], [], [], []
    for batch in scene.batches:
        to_eye = camera.position - batch.points.mean(axis=1)
        distance = np.linalg.norm(to_eye, axis=1)
        to_eye /= distance[:, None]
        facing = np.einsum("ij,ij->i", batch.normals, to_eye)
        flip = batch.two_sided & (facing < 0)
        normals = np.where(flip[:, None], -batch.normals, batch.normals)
        visible = np.abs(facing) * np.where(batch.two_sided, 1, np.sign(facing)) > 0
        if not visible.any():
            continue
        colours.append(
            shade(
                batch.colours[visible], normals[visible], to_eye[visible], batch.params[visible], scene.studio
            )
        )
        polygons.extend(camera.project(batch.points[visible]) * scale)
        keys.append(distance[visible] - batch.bias[visible])
        smooth.append(batch.smooth[visible])
    smooth_fill = (np.concatenate(smooth) * 255).tolist()
    order = np.argsort(-np.concatenate(keys), kind="stable")
    grade = scene.studio.exposure * np.array(scene.studio.tint) * 255
    rgb = np.clip(np.concatenate(colours) * grade, 0, 255).astype(np.uint8)
    fills = [(r, g, b, 255) for r, g, b in rgb.tolist()]
    for index in order.tolist():
        corners = polygons[index].ravel().tolist()
        draw.polygon(corners, fill=fills[index])
        draw_smooth.polygon(corners, fill=smooth_fill[index])
    if scene.car.antenna:
        tip = camera.project(antenna_line(scene.car)) * scale
        line_width = max(scale, int(round(size[0] * 0.0016 * scale)))
        draw.line([tuple(p) for p in tip], fill=(20, 20, 22, 255), width=line_width)
        draw_smooth.line([tuple(p) for p in tip], fill=0, width=line_width)
    return canvas, smooth_layer


def _smooth_paint(
    car: Image.Image, paint: Image.Image, paint_cover: Image.Image, radius: float
) -> Image.Image:
    """Blend the flat-shaded facets of the paint into smooth shading, leaving everything else alone.

    ``car`` is the car's colour on black, ``paint`` the part of it that is smooth paint and ``paint_cover``
    how much of each pixel that paint covers. The paint's colour is replaced by a blur of the paint alone,
    divided by the blur of its cover (a normalised convolution), so no colour leaks in from glass, tyres
    or the background and the silhouette, and so the mask, do not move.
    """
    blur = ImageFilter.GaussianBlur(radius)
    cover = np.asarray(paint_cover, dtype=np.float32)[..., None] / 255
    blurred = np.asarray(paint.filter(blur), dtype=np.float32)
    blurred_cover = np.asarray(paint_cover.filter(blur), dtype=np.float32)[..., None] / 255
    smooth = blurred / np.maximum(blurred_cover, 1e-3)
    pixels = np.asarray(car, dtype=np.float32) - np.asarray(paint, dtype=np.float32) + smooth * cover
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), mode="RGB")


def backdrop(car_seed: int, scene: Scene, size: tuple[int, int]) -> Image.Image:
    """The studio behind the car (RGB), shared by its 16 views."""
    studio = scene.studio
    pixels = studio_background(size, studio, np.random.default_rng([car_seed, 3]))
    grade = studio.exposure * np.array(studio.tint, dtype=np.float32) * 255
    return Image.fromarray(np.clip(pixels * grade, 0, 255).astype(np.uint8), mode="RGB")


def _blend_paint_facets(car: Image.Image, smooth_layer: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The supersampled car reduced to ``size``, its paint smoothed (only around the paint, for speed)."""
    small = car.reduce(SUPERSAMPLE)
    found = smooth_layer.getbbox()
    if found is None:
        return small
    radius = max(0.6, size[0] * 0.004)
    pad = int(3 * radius) + 2
    box = (
        max(0, found[0] // SUPERSAMPLE - pad),
        max(0, found[1] // SUPERSAMPLE - pad),
        min(size[0], -(-found[2] // SUPERSAMPLE) + pad),
        min(size[1], -(-found[3] // SUPERSAMPLE) + pad),
    )
    big_box = tuple(v * SUPERSAMPLE for v in box)
    cover = smooth_layer.crop(big_box)
    paint = ImageChops.multiply(car.crop(big_box), Image.merge("RGB", (cover,) * 3)).reduce(SUPERSAMPLE)
    small.paste(_smooth_paint(small.crop(box), paint, cover.reduce(SUPERSAMPLE), radius), box[:2])
    return small


def render_angle(
    car_seed: int, scene: Scene, studio_image: Image.Image, angle: int
) -> tuple[Image.Image, np.ndarray]:
    """One view of a built scene over its backdrop: the photo and its exact mask."""
    if not 1 <= angle <= ANGLES:
        raise ValueError(f"angle must be 1..{ANGLES}, not {angle}")
    size = studio_image.size
    rng = np.random.default_rng([car_seed, 2, angle])
    camera = camera_for(angle, size, scene.studio, jitter=float(rng.normal(0, 0.012)))
    layer, smooth_layer = _draw_car(scene, camera, size, SUPERSAMPLE)
    red, green, blue, alpha = layer.split()
    coverage = alpha.reduce(SUPERSAMPLE)
    car = _blend_paint_facets(Image.merge("RGB", (red, green, blue)), smooth_layer, size)
    floor_light = _shadow(scene.car, scene.shape, camera, size)
    behind = ImageChops.multiply(studio_image, Image.merge("RGB", (floor_light,) * 3))
    uncovered = ImageChops.invert(coverage)
    photo = ImageChops.add(car, ImageChops.multiply(behind, Image.merge("RGB", (uncovered,) * 3)))
    grain = rng.integers(-2, 3, size=(size[1], size[0], 3), dtype=np.int16)
    pixels = np.clip(np.asarray(photo, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB"), np.asarray(coverage) >= 128


def render_car(car_seed: int, size: tuple[int, int]) -> Iterator[tuple[int, Image.Image, np.ndarray]]:
    """The 16 views ``(angle, photo, mask)`` of car ``car_seed`` at ``size`` = (W, H)."""
    scene = build_scene(car_seed, detail_for(size))
    studio_image = backdrop(car_seed, scene, size)
    for angle in range(1, ANGLES + 1):
        yield (angle, *render_angle(car_seed, scene, studio_image, angle))


def render_view(car_seed: int, angle: int, size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """One studio photo (RGB, ``size`` = (W, H)) of car ``car_seed`` from ``angle`` (1..16), and its mask."""
    scene = build_scene(car_seed, detail_for(size))
    return render_angle(car_seed, scene, backdrop(car_seed, scene, size), angle)
