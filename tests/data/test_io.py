"""read_image / read_mask / list_images on every awkward file a user can hand us, each made by the test."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from maskingnet.data.io import BadInputError, image_size, list_images, read_image, read_mask

RGB = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)


def save(path, image: Image.Image, **options):
    image.save(path, **options)
    return path


def photo() -> Image.Image:
    return Image.fromarray(RGB)


def test_rgb_png_reads_unchanged(tmp_path):
    image = read_image(save(tmp_path / "a.png", photo()))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), RGB)


def test_grey_becomes_rgb_with_equal_channels(tmp_path):
    array = np.asarray(read_image(save(tmp_path / "g.png", photo().convert("L"))))
    assert array.shape == (30, 40, 3) and np.array_equal(array[..., 0], array[..., 2])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    image = read_image(save(tmp_path / "c.jpg", photo().convert("CMYK"), quality=95))
    assert image.mode == "RGB" and np.abs(np.asarray(image).astype(int) - RGB).mean() < 20


def test_rgba_drops_alpha_without_compositing(tmp_path):
    rgba = np.dstack([RGB, np.zeros((30, 40), np.uint8)])
    image = read_image(save(tmp_path / "t.png", Image.fromarray(rgba, "RGBA")))
    assert np.array_equal(np.asarray(image), RGB)


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.full((4, 6), 65535, np.uint16)
    values[0, 0] = 257 * 100
    array = np.asarray(read_image(save(tmp_path / "d.png", Image.fromarray(values))))
    assert array[0, 0, 0] == 100 and array[1, 1, 1] == 255


def test_palette_gif_becomes_rgb(tmp_path):
    image = read_image(save(tmp_path / "p.gif", photo().convert("P")))
    assert image.mode == "RGB" and image.size == (40, 30)


def test_webp_reads(tmp_path):
    image = read_image(save(tmp_path / "w.webp", photo(), lossless=True))
    assert np.array_equal(np.asarray(image), RGB)


def test_exif_orientation_is_applied(tmp_path):
    exif = photo().getexif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    path = save(tmp_path / "r.png", photo(), exif=exif)
    image = read_image(path)
    assert image.size == (30, 40) and image_size(path) == (30, 40)
    assert np.array_equal(np.asarray(image), np.rot90(RGB, k=-1))


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (3, 7)])
def test_odd_and_tiny_sizes(tmp_path, size):
    assert read_image(save(tmp_path / "o.png", Image.new("RGB", size, (1, 2, 3)))).size == size


def test_names_with_spaces_and_non_ascii(tmp_path):
    path = save(tmp_path / "mon auto é 車.jpg", photo())
    assert read_image(path).size == (40, 30)
    assert list_images(tmp_path)[0] == [path]


def test_jpeg_is_drafted_to_a_reduced_scale_that_still_covers_the_target(tmp_path):
    path = save(tmp_path / "big.jpg", Image.new("RGB", (400, 320), (90, 90, 90)))
    assert read_image(path, target_size=(100, 80)).size == (100, 80)
    assert read_image(path, target_size=(120, 80)).size == (200, 160)
    assert read_image(path).size == (400, 320)


def test_error_text_is_path_colon_reason(tmp_path):
    error = BadInputError(tmp_path / "x.jpg", "broken")
    assert str(error) == f"{tmp_path / 'x.jpg'}: broken" and error.reason == "broken"
    assert isinstance(error, ValueError)


def test_zero_byte_file_is_bad_input(tmp_path):
    (tmp_path / "z.jpg").write_bytes(b"")
    with pytest.raises(BadInputError, match="empty file"):
        read_image(tmp_path / "z.jpg")


def test_truncated_jpeg_is_bad_input(tmp_path):
    data = save(tmp_path / "full.jpg", photo()).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="truncated"):
        read_image(tmp_path / "cut.jpg")


def test_text_file_is_not_an_image(tmp_path):
    (tmp_path / "n.jpg").write_text("not a photo")
    with pytest.raises(BadInputError, match="not an image"):
        read_image(tmp_path / "n.jpg")


def test_garbage_after_a_png_signature_is_bad_input(tmp_path):
    (tmp_path / "g.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(BadInputError):
        read_image(tmp_path / "g.png")


def test_missing_file_is_bad_input(tmp_path):
    with pytest.raises(BadInputError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_decompression_bomb_is_bad_input(tmp_path):
    path = save(tmp_path / "bomb.png", Image.new("1", (400, 300)))
    with pytest.raises(BadInputError, match="decompression bomb"):
        read_image(path, max_pixels=100_000)


def test_pil_own_bomb_error_becomes_bad_input(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    path = save(tmp_path / "bomb.png", Image.new("1", (100, 100)))
    with pytest.raises(BadInputError, match="decompression bomb"):
        read_image(path, max_pixels=1_000)


@pytest.mark.parametrize("high", [1, 255])
def test_mask_any_non_zero_pixel_is_car(tmp_path, high):
    values = np.zeros((6, 8), np.uint8)
    values[2:4, 3:6] = high
    assert np.array_equal(read_mask(save(tmp_path / "m.png", Image.fromarray(values))), values > 0)


def test_palette_gif_mask_reads_by_index(tmp_path):
    values = np.zeros((6, 8), np.uint8)
    values[1, 1] = 1
    gif = Image.fromarray(values, "P")
    gif.putpalette([0, 0, 0, 255, 255, 255])
    assert np.array_equal(read_mask(save(tmp_path / "m.gif", gif)), values > 0)


def test_jpeg_mask_noise_is_not_car(tmp_path):
    values = np.zeros((32, 32), np.uint8)
    values[8:24, 8:24] = 255
    mask = read_mask(save(tmp_path / "m.jpg", Image.fromarray(values), quality=50))
    assert (mask != (values > 0)).mean() < 0.02 and not mask[:4].any()


def test_rgba_mask_uses_colour_not_alpha(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[1, 2, 1] = 9
    assert read_mask(save(tmp_path / "m.png", Image.fromarray(rgba, "RGBA"))).sum() == 1


def test_list_images_walks_folders_by_content(tmp_path):
    (tmp_path / "sub").mkdir()
    first = save(tmp_path / "a.jpg", photo())
    nested = save(tmp_path / "sub" / "b.png", photo())
    unnamed = tmp_path / "c"
    unnamed.write_bytes(first.read_bytes())
    (tmp_path / "notes.txt").write_text("hello")
    save(tmp_path / ".hidden.png", photo())
    paths, problems = list_images(tmp_path)
    assert paths == [first, unnamed, nested] and problems == []


def test_list_images_can_stay_at_the_top_level(tmp_path):
    (tmp_path / "sub").mkdir()
    top = save(tmp_path / "a.png", photo())
    save(tmp_path / "sub" / "b.png", photo())
    assert list_images([tmp_path], recursive=False) == ([top], [])


def test_list_images_expands_globs_and_drops_duplicates(tmp_path):
    one = save(tmp_path / "one.png", photo())
    save(tmp_path / "two.jpg", photo())
    assert list_images([str(tmp_path / "*.png"), one]) == ([one], [])


def test_list_images_reports_each_unusable_input(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "fake.png").write_text("text")
    good = save(tmp_path / "good.png", photo())
    inputs = [tmp_path / "missing.jpg", str(tmp_path / "*.gif"), tmp_path / "fake.png", tmp_path]
    paths, problems = list_images(inputs)
    assert paths == [good]
    assert problems == [
        f"{tmp_path / 'missing.jpg'}: no such file or folder",
        f"{tmp_path / '*.gif'}: no file matches this pattern",
        f"{tmp_path / 'fake.png'}: not an image (unrecognised content)",
        f"{tmp_path / 'empty.jpg'}: empty file (0 bytes)",
    ]


def test_bytes_and_streams_read_like_files(tmp_path):
    data = save(tmp_path / "a.png", photo()).read_bytes()
    assert np.array_equal(np.asarray(read_image(data)), RGB)
    with open(tmp_path / "a.png", "rb") as stream:
        assert read_image(stream).size == (40, 30)


def test_empty_bytes_are_bad_input():
    with pytest.raises(BadInputError, match="<bytes>: empty file"):
        read_image(b"")


def test_garbage_bytes_are_bad_input():
    with pytest.raises(BadInputError, match="<bytes>: not an image"):
        read_image(b"GET / HTTP/1.1\r\n")


def test_draft_respects_exif_orientation(tmp_path):
    exif = Image.new("RGB", (1, 1)).getexif()
    exif[0x0112] = 6
    path = save(tmp_path / "side.jpg", Image.new("RGB", (400, 320), (50, 60, 70)), exif=exif)
    assert read_image(path).size == (320, 400)
    assert read_image(path, target_size=(80, 100)).size == (80, 100)


def test_draft_uses_only_scales_that_divide_the_size_exactly(tmp_path):
    path = save(tmp_path / "odd.jpg", Image.new("RGB", (404, 300), (90, 90, 90)))
    assert read_image(path, target_size=(50, 37)).size == (101, 75)
    path = save(tmp_path / "carvana.jpg", Image.new("RGB", (1918, 1280), (90, 90, 90)))
    assert read_image(path, target_size=(256, 256)).size == (959, 640)


@pytest.mark.parametrize("fmt", ["BMP", "PPM", "TIFF"])
def test_other_formats_are_found_by_content_without_a_name(tmp_path, fmt):
    unnamed = tmp_path / "photo"
    photo().save(unnamed, format=fmt)
    assert list_images(tmp_path) == ([unnamed], [])
    assert read_image(unnamed).size == (40, 30)


def test_text_that_starts_like_a_signature_is_not_an_image(tmp_path):
    (tmp_path / "notes").write_text("BMW and P1 notes")
    (tmp_path / "P1").write_text("P1x")
    assert list_images(tmp_path) == ([], [f"{tmp_path}: no images in this folder"])


def test_thirty_two_bit_integer_image_is_scaled_like_sixteen_bit(tmp_path):
    values = np.full((4, 6), 65535, np.int32)
    values[0, 0] = 257 * 40
    path = save(tmp_path / "i.tif", Image.fromarray(values, "I"))
    assert Image.open(path).mode == "I"
    array = np.asarray(read_image(path))
    assert array[0, 0, 0] == 40 and array[3, 5, 2] == 255


def test_an_empty_folder_is_a_problem_not_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert list_images(tmp_path / "empty") == ([], [f"{tmp_path / 'empty'}: no images in this folder"])


def test_a_symlink_loop_is_reported_once_and_the_walk_ends(tmp_path):
    good = save(tmp_path / "a.png", photo())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up").symlink_to(tmp_path)
    loop = f"{tmp_path / 'sub' / 'up'}: symbolic link loop (leads back to a folder above it)"
    assert list_images(tmp_path) == ([good], [loop])


def test_a_dangling_link_is_reported(tmp_path):
    good = save(tmp_path / "a.png", photo())
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    paths, problems = list_images(tmp_path)
    assert paths == [good] and problems == [
        f"{tmp_path / 'gone.jpg'}: dangling symbolic link (to {tmp_path / 'missing.jpg'})"
    ]


def test_a_link_to_itself_is_reported_as_a_loop(tmp_path):
    save(tmp_path / "a.png", photo())
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    assert list_images(tmp_path)[1] == [f"{tmp_path / 'self.jpg'}: symbolic link loop"]


def test_a_linked_folder_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    inside = save(tmp_path / "real" / "a.png", photo())
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "linked").symlink_to(tmp_path / "real")
    assert list_images(tmp_path / "in") == ([tmp_path / "in" / "linked" / inside.name], [])


def test_a_folder_named_like_an_image_is_reported_when_not_descended(tmp_path):
    good = save(tmp_path / "a.png", photo())
    (tmp_path / "car.jpg").mkdir()
    problem = f"{tmp_path / 'car.jpg'}: is a folder, not an image"
    assert list_images(tmp_path, recursive=False) == ([good], [problem])


def test_problems_name_their_path(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (problem,) = list_images(tmp_path)[1]
    assert problem.path == tmp_path / "empty.jpg"


def test_a_folder_named_like_an_image_with_no_image_in_it_is_reported(tmp_path):
    good = save(tmp_path / "a.png", photo())
    (tmp_path / "car.jpg").mkdir()
    problem = f"{tmp_path / 'car.jpg'}: is a folder, not an image (and holds none)"
    assert list_images(tmp_path) == ([good], [problem])
