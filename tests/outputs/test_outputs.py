import numpy as np
import pytest

from maskingnet.outputs.layout import output_suffix
from maskingnet.outputs.pictures import (
    EDGE_TILE,
    OUTPUT_KINDS,
    CellColours,
    EdgeConfig,
    alpha_from_probs,
    background_image,
    binary_mask,
    car_region,
    cutout_image,
    decontaminate,
    dilate,
    edge_band,
    erode,
    make_matte,
    mask_image,
    overlay_image,
    parse_color,
    parse_kinds,
    render_all,
)


def disc_probs(height: int = 40, width: int = 60, radius: float = 12.0, ramp: float = 3.0) -> np.ndarray:
    """A car-like blob: probability 1 inside a disc, falling linearly to 0 over ``ramp`` pixels."""
    ys, xs = np.mgrid[0:height, 0:width]
    distance = np.hypot(ys - height / 2, xs - width / 2)
    return np.clip((radius - distance) / ramp + 0.5, 0, 1).astype(np.float32)


def two_tone_photo(probs: np.ndarray) -> np.ndarray:
    """Red car on a green backdrop, the hard mask deciding which is which."""
    photo = np.zeros((*probs.shape, 3), np.uint8)
    photo[..., 1] = 200
    car = probs > 0.5
    photo[car] = (220, 0, 0)
    return photo


def test_mask_image_is_0_or_255_and_thresholded_strictly():
    probs = np.array([[0.2, 0.5], [0.51, 1.0]], np.float32)
    assert np.array_equal(np.asarray(mask_image(probs)), [[0, 0], [255, 255]])


def test_hard_alpha_equals_the_binary_mask():
    probs = disc_probs()
    assert np.array_equal(alpha_from_probs(probs) == 255, binary_mask(probs))


def test_soft_alpha_is_hard_outside_the_edge_band():
    probs = disc_probs()
    hard = binary_mask(probs)
    alpha = alpha_from_probs(probs, EdgeConfig(soft=True, band_px=1))
    far = ~dilate(hard, 1) | ~dilate(~hard, 1)
    assert np.array_equal(alpha[far], hard[far].astype(np.uint8) * 255)


def test_soft_alpha_has_intermediate_values_on_the_boundary():
    alpha = alpha_from_probs(disc_probs(), EdgeConfig(soft=True, band_px=2))
    assert ((alpha > 0) & (alpha < 255)).sum() > 10


def test_soft_alpha_leaves_no_halo_beyond_the_band():
    probs = disc_probs(ramp=12.0)  # a very blurry model: probability leaks far out
    hard = binary_mask(probs)
    alpha = alpha_from_probs(probs, EdgeConfig(soft=True, band_px=2))
    assert alpha[~dilate(hard, 2)].max() == 0


def test_soft_cutout_edges_carry_no_background_colour():
    probs = disc_probs()
    photo = two_tone_photo(probs)
    photo[(probs > 0.2) & (probs < 0.8)] = (110, 100, 0)  # edge pixels mixed with the green backdrop
    cut = np.asarray(cutout_image(photo, probs, EdgeConfig(soft=True, band_px=2)))
    visible = cut[..., 3] > 0
    assert cut[visible, 1].max() < 50


def test_cutout_is_rgba_at_the_photo_size():
    probs = disc_probs()
    cut = cutout_image(two_tone_photo(probs), probs)
    assert cut.mode == "RGBA" and cut.size == (60, 40)


def test_background_image_fills_the_background_with_the_colour():
    probs = disc_probs()
    out = np.asarray(background_image(two_tone_photo(probs), probs, (255, 255, 255)))
    assert (out[~binary_mask(probs)] == 255).all()


def test_background_image_keeps_the_car_pixels():
    probs = disc_probs()
    photo = two_tone_photo(probs)
    out = np.asarray(background_image(photo, probs, (0, 0, 255)))
    car = binary_mask(probs)
    assert np.array_equal(out[car], photo[car])


def test_overlay_changes_only_the_car():
    probs = disc_probs()
    photo = two_tone_photo(probs)
    out = np.asarray(overlay_image(photo, probs))
    assert np.array_equal(out[~binary_mask(probs)], photo[~binary_mask(probs)])


def test_parse_color_accepts_names_hex_and_triplets():
    assert [parse_color("white"), parse_color("#ff0000"), parse_color("0,128,255")] == [
        (255, 255, 255),
        (255, 0, 0),
        (0, 128, 255),
    ]


def test_parse_color_rejects_out_of_range_triplets():
    with pytest.raises(ValueError):
        parse_color("0,300,0")


def test_parse_kinds_rejects_unknown_names():
    with pytest.raises(ValueError, match="choose from"):
        parse_kinds("mask,sticker")


def test_non_white_background_output_is_not_named_white():
    assert output_suffix("white", background=(0, 0, 0)) == "_bg.jpg"


def test_decontaminate_reaches_far_for_isolated_edge_pixels():
    rgb = np.zeros((50, 50, 3), np.uint8)
    rgb[0, 0] = (10, 20, 30)
    source = np.zeros((50, 50), bool)
    source[0, 0] = True
    fill = np.zeros((50, 50), bool)
    fill[49, 49] = True
    assert decontaminate(rgb, fill, source)[49, 49].tolist() == [10, 20, 30]


def studio_scene(height: int = 90, width: int = 140) -> tuple[np.ndarray, np.ndarray]:
    """A noisy photo and a blurry car touching the bottom of the frame, with a 1-pixel antenna (edge
    pixels with no car interior in reach) and a far speck (an island of its own)."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    ys, xs = np.mgrid[0:height, 0:width]
    probs = np.clip((30 - np.hypot((ys - height) / 1.2, xs - width / 2)) / 4 + 0.5, 0, 1)
    probs[10:60, 40] = 0.9
    probs[5:7, 120:122] = 0.8
    return photo, probs.astype(np.float32)


@pytest.mark.parametrize("soft", [False, True])
def test_render_gives_the_pixels_of_the_reference_render_path(soft):
    from maskingnet.bench.outputs import load_reference

    reference = load_reference()

    photo, probs = studio_scene()
    edges = EdgeConfig(soft=soft, band_px=2)
    before = reference.render_all(OUTPUT_KINDS, photo, probs, edges, (10, 20, 30))
    after = render_all(OUTPUT_KINDS, photo, probs, edges, (10, 20, 30))
    for kind in OUTPUT_KINDS:
        assert np.array_equal(np.asarray(before[kind]), np.asarray(after[kind])), kind


def test_edge_band_on_the_car_box_equals_the_band_on_the_frame():
    _, probs = studio_scene()
    hard = binary_mask(probs)
    assert np.array_equal(edge_band(hard, 3), dilate(hard, 3) & ~erode(hard, 3))


def test_car_region_is_the_widened_bounding_box_clipped_to_the_frame():
    mask = np.zeros((20, 30), bool)
    mask[2:5, 10:12] = True
    assert car_region(mask, 3) == (slice(0, 8), slice(7, 15))
    assert car_region(np.zeros((4, 4), bool), 3) is None


def test_decontaminate_gives_the_rounded_mean_of_the_source_pixels_in_reach():
    rgb = np.zeros((9, 9, 3), np.uint8)
    source = np.zeros((9, 9), bool)
    rgb[0, 0], rgb[0, 2], rgb[8, 8] = (10, 0, 255), (21, 0, 0), (200, 200, 200)
    source[0, 0] = source[0, 2] = source[8, 8] = True
    fill = np.zeros((9, 9), bool)
    fill[1, 1] = True
    assert decontaminate(rgb, fill, source, reach=1)[1, 1].tolist() == [16, 0, 128]


def test_decontaminate_reaches_across_the_tiles_it_works_in():
    rgb = np.zeros((EDGE_TILE + 4, 3, 3), np.uint8)
    rgb[EDGE_TILE + 1] = (50, 60, 70)
    source = np.zeros(rgb.shape[:2], bool)
    source[EDGE_TILE + 1] = True
    fill = np.zeros_like(source)
    fill[EDGE_TILE - 1, 1] = True
    assert decontaminate(rgb, fill, source, reach=2)[EDGE_TILE - 1, 1].tolist() == [50, 60, 70]


def test_decontaminate_changes_only_the_fill_pixels():
    photo, probs = studio_scene()
    fill, source = binary_mask(probs, 0.3) & ~binary_mask(probs, 0.7), binary_mask(probs, 0.7)
    out = decontaminate(photo, fill, source, reach=2)
    assert np.array_equal(out[~fill], photo[~fill]) and not np.array_equal(out[fill], photo[fill])


def test_cell_colours_hold_the_sums_of_the_source_pixels_in_each_cell():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    source = rng.random((23, 37)) > 0.6
    source[:4] = False
    cells = CellColours(rgb, source, 5)
    padded = np.zeros((25, 40), np.int64)
    padded[:23, :37] = source
    counts = padded.reshape(5, 5, 8, 5).sum(axis=(1, 3))
    assert cells.cell == 5 and np.array_equal(cells.counts, counts)
    assert cells.sums[2, 3].tolist() == (rgb[10:15, 15:20][source[10:15, 15:20]].sum(axis=0)).tolist()


def test_background_image_blends_the_soft_edge_pixels_with_the_colour():
    photo, probs = studio_scene()
    matte = make_matte(photo, probs, EdgeConfig(soft=True, band_px=2))
    out = np.asarray(background_image(photo, probs, (0, 0, 0), matte=matte)).astype(np.float32)
    partial = (matte.alpha > 0) & (matte.alpha < 255)
    expected = matte.rgb[partial] * (matte.alpha[partial, None] / 255.0)
    assert partial.any() and np.abs(out[partial] - expected).max() <= 0.5


def test_overlay_draws_the_outline_in_the_colour():
    probs = disc_probs()
    out = np.asarray(overlay_image(two_tone_photo(probs), probs, color=(1, 2, 3)))
    hard = binary_mask(probs)
    outline = hard & ~erode(hard, 1)
    assert outline.any() and (out[outline] == (1, 2, 3)).all()
