"""Renderer of the synthetic Carvana cars (see ``maskingnet.data.synth``)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def render_view(car_seed: int, angle: int, size: tuple[int, int]) -> tuple[Image.Image, np.ndarray]:
    """One studio photo of car ``car_seed`` seen from angle ``angle`` (1..16) and its exact mask."""
    width, height = size
    rng = np.random.default_rng([car_seed, angle])
    car = np.random.default_rng(car_seed)
    color = tuple(int(c) for c in car.integers(20, 235, size=3))
    theta = (angle - 1) * 2 * np.pi / 16
    half_length = 0.30 * width * (0.35 + 0.65 * abs(np.sin(theta)))
    cx, cy = width / 2, height * 0.58
    image = Image.new("RGB", size, (232, 232, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, int(height * 0.4), width, height], fill=(170, 172, 178))
    shadow = Image.new("L", size, 0)
    ImageDraw.Draw(shadow).ellipse([cx - half_length, cy + 0.08 * height, cx + half_length, cy + 0.16 * height], 140)
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(1, width // 100)))
    image = Image.composite(Image.new("RGB", size, (60, 60, 64)), image, shadow)
    mask = Image.new("L", size, 0)
    for target, fill in ((image, color), (mask, 1)):
        d = ImageDraw.Draw(target)
        d.rounded_rectangle(
            [cx - half_length, cy - 0.10 * height, cx + half_length, cy + 0.10 * height],
            radius=max(1, int(0.05 * height)),
            fill=fill,
        )
        d.ellipse([cx - 0.6 * half_length, cy - 0.20 * height, cx + 0.6 * half_length, cy], fill=fill)
    noise = rng.normal(0, 2, size=(height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels), np.asarray(mask, dtype=bool)
