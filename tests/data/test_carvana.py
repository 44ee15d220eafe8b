"""The Carvana/plain layout reader, its problem lines, the splits by car and the training dataset."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from maskingnet.data.carvana import (
    Record,
    SegmentationDataset,
    kfold_by_car,
    load_mask,
    parse_name,
    scan,
    split_by_car,
    thesis_split,
)
from maskingnet.data.coords import coord_maps, resized_coord_maps
from maskingnet.data.io import BadInputError, read_mask

SYNTH_IMAGES = 48  # 3 cars x 16 angles


@pytest.fixture
def carvana(synth_dir, tmp_path) -> Path:
    """A private copy of the synthetic Carvana set that a test may break."""
    return Path(shutil.copytree(synth_dir, tmp_path / "carvana", ignore=shutil.ignore_patterns("test")))


def first_image(root: Path) -> Path:
    return sorted((root / "train").glob("*.jpg"))[0]


def mask_of(image: Path) -> Path:
    return image.parent.parent / "train_masks" / f"{image.stem}_mask.gif"


def fake_records(cars: int, angles: int = 16) -> list[Record]:
    return [
        Record(f"{car:012x}_{angle:02d}", f"{car:012x}", angle, Path(f"{car:012x}_{angle:02d}.jpg"))
        for car in range(cars)
        for angle in range(1, angles + 1)
    ]


def test_parse_name_reads_car_and_angle():
    assert parse_name("00087a6bd4dc_07") == ("00087a6bd4dc", 7)
    assert parse_name("my red car") == ("my red car", None)


def test_scan_finds_every_synthetic_image_with_its_gif(synth_dir):
    result = scan(synth_dir)
    assert len(result.records) == SYNTH_IMAGES and result.problems == [] and result.layout == "carvana"
    assert len(result.cars) == 3 and {r.angle for r in result.records} == set(range(1, 17))
    assert all(r.mask_path is not None and r.size == (96, 64) for r in result.records)


def test_scan_result_unpacks_into_records_and_problems(synth_dir):
    records, problems = scan(synth_dir)
    assert len(records) == SYNTH_IMAGES and problems == []


def test_scan_accepts_the_train_folder_itself(synth_dir):
    assert len(scan(synth_dir / "train").records) == SYNTH_IMAGES


def test_scan_reads_metadata(synth_dir):
    result = scan(synth_dir)
    assert set(result.cars) <= set(result.metadata) and "make" in result.metadata[result.cars[0]]


def test_masks_come_from_the_csv_when_gifs_are_absent(carvana, synth_dir):
    shutil.rmtree(carvana / "train_masks")
    records, problems = scan(carvana)
    assert len(records) == SYNTH_IMAGES and problems == [] and all(r.rle for r in records)
    gif = read_mask(mask_of(synth_dir / "train" / f"{records[5].id}.jpg"))
    assert np.array_equal(load_mask(records[5]), gif)


def test_image_without_mask_is_reported_and_the_rest_loads(carvana):
    image = first_image(carvana)
    mask_of(image).unlink()
    (carvana / "train_masks.csv").unlink()
    records, problems = scan(carvana)
    assert len(records) == SYNTH_IMAGES - 1
    assert problems == [f"{image}: no mask (no train_masks/{image.stem}_mask.gif and no train_masks.csv row)"]


def test_mask_without_image_is_reported(carvana):
    image = first_image(carvana)
    image.unlink()
    records, problems = scan(carvana)
    assert len(records) == SYNTH_IMAGES - 1 and problems == [f"{mask_of(image)}: mask without image"]


def test_mask_of_another_size_is_reported(carvana):
    image = first_image(carvana)
    Image.new("P", (50, 40)).save(mask_of(image))
    records, problems = scan(carvana)
    assert len(records) == SYNTH_IMAGES - 1
    assert problems == [f"{mask_of(image)}: mask is 50x40, image is 96x64"]


def test_zero_byte_image_is_reported(carvana):
    image = first_image(carvana)
    image.write_bytes(b"")
    records, problems = scan(carvana)
    assert len(records) == SYNTH_IMAGES - 1 and problems == [f"{image}: empty file (0 bytes)"]


def test_unreadable_mask_is_reported(carvana):
    image = first_image(carvana)
    mask_of(image).write_text("not a gif")
    records, problems = scan(carvana)
    assert len(records) == SYNTH_IMAGES - 1 and problems[0].startswith(f"{mask_of(image)}: not an image")


def test_csv_row_without_image_is_reported(carvana):
    shutil.rmtree(carvana / "train_masks")
    with open(carvana / "train_masks.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["ffffffffffff_01.jpg", "1 5"])
    records, problems = scan(carvana)
    assert len(records) == SYNTH_IMAGES
    assert problems == [
        f"{carvana / 'train_masks.csv'}:{SYNTH_IMAGES + 2}: ffffffffffff_01.jpg: row without image"
    ]


def test_bad_rle_row_is_reported(carvana):
    shutil.rmtree(carvana / "train_masks")
    rows = list(csv.reader(open(carvana / "train_masks.csv", newline="")))
    rows[1][1] = "5 3 1 1"
    with open(carvana / "train_masks.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    records, problems = scan(carvana)
    assert len(records) == SYNTH_IMAGES - 1 and len(problems) == 1 and "comes before" in problems[0]


def test_verify_catches_a_truncated_image(carvana):
    image = first_image(carvana)
    data = image.read_bytes()
    image.write_bytes(data[: len(data) * 3 // 4])
    assert len(scan(carvana).records) == SYNTH_IMAGES
    records, problems = scan(carvana, verify=True)
    assert len(records) == SYNTH_IMAGES - 1 and problems[0].startswith(f"{image}: truncated")


def test_a_folder_that_is_no_data_folder_raises(tmp_path):
    with pytest.raises(BadInputError, match="not a data folder"):
        scan(tmp_path)


def write_plain(root: Path) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    values = np.zeros((20, 30), np.uint8)
    values[5:15, 10:20] = 1
    for name, high, suffix in [("shop one", 255, ".png"), ("b", 1, ".gif"), ("c_mask", 255, ".png")]:
        Image.new("RGB", (30, 20), (200, 10, 10)).save(root / "images" / f"{name.removesuffix('_mask')}.jpg")
        Image.fromarray(values * high).save(root / "masks" / f"{name}{suffix}")


def test_plain_layout_pairs_images_and_masks_by_stem(tmp_path):
    write_plain(tmp_path)
    result = scan(tmp_path)
    assert result.layout == "plain" and result.problems == []
    assert [(r.id, r.car_id, r.angle) for r in result.records] == [
        ("b", "b", None),
        ("c", "c", None),
        ("shop one", "shop one", None),
    ]
    assert all(load_mask(r).sum() == 100 for r in result.records)


def test_plain_layout_reports_an_ambiguous_mask(tmp_path):
    write_plain(tmp_path)
    Image.new("L", (30, 20)).save(tmp_path / "masks" / "b.png")
    records, problems = scan(tmp_path)
    assert [r.id for r in records] == ["c", "shop one"]
    assert [line.split(": ")[1] for line in problems] == [
        "ambiguous, one id has several files (b.gif, b.png)"
    ] * 2


def test_split_by_car_keeps_each_car_on_one_side(synth_dir):
    records = scan(synth_dir).records
    train, val = split_by_car(records, val_fraction=0.34, seed=1)
    assert {r.car_id for r in train}.isdisjoint({r.car_id for r in val})
    assert len(train) + len(val) == SYNTH_IMAGES and len(val) == 16


def test_split_by_car_depends_on_the_seed_only():
    records = fake_records(20)
    assert split_by_car(records, seed=3) == split_by_car(records, seed=3)
    assert split_by_car(records, seed=3)[1] != split_by_car(records, seed=4)[1]


def test_thesis_split_gives_the_thesis_numbers_on_the_full_set():
    train, val = thesis_split(fake_records(318))
    assert (len(train), len(val)) == (4071, 1017)
    straddling = {r.car_id for r in train} & {r.car_id for r in val}
    assert len(straddling) == 1


def test_thesis_split_keeps_the_proportion_on_the_real_sample_size():
    train, val = thesis_split(fake_records(25))
    assert (len(train), len(val)) == (320, 80)
    assert {r.car_id for r in train}.isdisjoint({r.car_id for r in val})


def test_kfold_folds_partition_the_cars():
    records = fake_records(10, angles=2)
    vals = [kfold_by_car(records, k=3, fold=fold, seed=0)[1] for fold in range(3)]
    ids = [r.id for val in vals for r in val]
    assert sorted(ids) == sorted(r.id for r in records) and len(ids) == len(set(ids))
    train, val = kfold_by_car(records, k=3, fold=0)
    assert {r.car_id for r in train}.isdisjoint({r.car_id for r in val})


@pytest.mark.parametrize(("k", "fold"), [(1, 0), (11, 0), (3, 3)])
def test_kfold_rejects_impossible_folds(k, fold):
    with pytest.raises(ValueError):
        kfold_by_car(fake_records(10, angles=2), k=k, fold=fold)


def test_dataset_item_has_the_contract_keys_shapes_and_types(synth_dir):
    item = SegmentationDataset(scan(synth_dir).records, size=(64, 32))[3]
    assert item["image"].shape == (3, 32, 64) and item["image"].dtype == torch.float32
    assert item["coords"].shape == (2, 32, 64) and item["coords"].dtype == torch.float32
    assert item["mask"].shape == (32, 64) and item["mask"].dtype == torch.int64
    assert (
        set(item["mask"].unique().tolist()) == {0, 1} and item["index"] == 3 and isinstance(item["id"], str)
    )


def test_dataset_at_original_size_has_the_photo_coords_and_mask(synth_dir):
    record = scan(synth_dir).records[0]
    item = SegmentationDataset([record])[0]
    np.testing.assert_allclose(item["coords"].numpy(), coord_maps(64, 96), atol=1e-7)
    assert np.array_equal(item["mask"].numpy(), read_mask(record.mask_path).astype(np.int64))


def test_dataset_coords_are_the_original_photo_coords_resized(synth_dir):
    item = SegmentationDataset(scan(synth_dir).records, size=(48, 32))[0]
    np.testing.assert_allclose(item["coords"].numpy(), resized_coord_maps((48, 32), (96, 64)), atol=1e-6)


def test_augmented_items_repeat_for_a_seed_and_change_with_the_epoch(synth_dir):
    records = scan(synth_dir).records[:2]
    dataset = SegmentationDataset(records, size=(48, 32), augment=True, seed=5)
    first, again = dataset[1], dataset[1]
    dataset.set_epoch(1)
    later = dataset[1]
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["coords"], again["coords"])
    assert not torch.equal(first["image"], later["image"])


def test_augmentation_does_not_depend_on_the_worker(synth_dir):
    dataset = SegmentationDataset(scan(synth_dir).records[:4], size=(48, 32), augment=True, seed=2)
    serial = [item["coords"] for item in dataset]
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    assert all(torch.equal(a, b["coords"]) for a, b in zip(serial, loader, strict=True))


def test_crop_cuts_a_window_after_resizing(synth_dir):
    dataset = SegmentationDataset(scan(synth_dir).records[:1], size=(96, 64), crop=(32, 32))
    item = dataset[0]
    assert item["image"].shape == (3, 32, 32)
    np.testing.assert_allclose(item["coords"].numpy(), coord_maps(64, 96)[:, 16:48, 32:64], atol=1e-7)


def test_real_sample_scans_clean_and_loads_drafted(real_sample):
    result = scan(real_sample)
    assert len(result.records) == 400 and result.problems == [] and len(result.cars) == 25
    item = SegmentationDataset(result.records[:1], size=(240, 160))[0]
    np.testing.assert_allclose(
        item["coords"].numpy(), resized_coord_maps((240, 160), (1918, 1280)), atol=1e-6
    )
    assert 0.05 < item["mask"].float().mean() < 0.5


def test_every_public_data_name_resolves():
    import maskingnet.data

    assert all(getattr(maskingnet.data, name) is not None for name in maskingnet.data.__all__)
    assert maskingnet.data.scan is scan


def test_scan_reads_headers_not_pixels(synth_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("scan decoded pixels")

    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    assert len(scan(synth_dir).records) == SYNTH_IMAGES


def test_plain_scan_reads_headers_not_pixels(tmp_path, monkeypatch):
    write_plain(tmp_path)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda *args: pytest.fail("scan decoded pixels"))
    assert len(scan(tmp_path).records) == 3


def test_scan_verb_summarises_a_clean_folder(synth_dir):
    from typer.testing import CliRunner

    from maskingnet.cli import app

    result = CliRunner().invoke(app, ["scan", str(synth_dir)])
    assert result.exit_code == 0 and "carvana layout, 48 images of 3 cars" in result.stdout


def test_scan_verb_names_each_bad_file_and_exits_non_zero(carvana):
    from typer.testing import CliRunner

    from maskingnet.cli import app

    image = first_image(carvana)
    image.write_bytes(b"")
    result = CliRunner().invoke(app, ["scan", str(carvana)])
    assert result.exit_code == 1 and f"{image}: empty file (0 bytes)" in result.stderr
    assert "47 images" in result.stdout and "1 files or rows were skipped" in result.stderr


def test_random_crop_cuts_image_mask_and_coords_at_the_same_place(synth_dir):
    record = scan(synth_dir).records[0]
    whole = SegmentationDataset([record], size=(96, 64))[0]
    dataset = SegmentationDataset([record], size=(96, 64), crop=(40, 24), random_crop=True, seed=3)
    item = dataset[0]
    # the crop's position is read back from its coordinate maps, then image and mask must match there
    coords = whole["coords"].numpy()
    left = int(np.argmin(np.abs(coords[0, 0] - item["coords"][0, 0, 0].item())))
    top = int(np.argmin(np.abs(coords[1, :, 0] - item["coords"][1, 0, 0].item())))
    window = (slice(top, top + 24), slice(left, left + 40))
    assert np.array_equal(item["coords"].numpy(), coords[:, window[0], window[1]])
    assert torch.equal(item["image"], whole["image"][:, window[0], window[1]])
    assert torch.equal(item["mask"], whole["mask"][window])


def test_random_crops_move_between_epochs(synth_dir):
    dataset = SegmentationDataset(scan(synth_dir).records[:1], size=(96, 64), crop=(32, 32), random_crop=True)
    places = set()
    for epoch in range(6):
        dataset.set_epoch(epoch)
        item = dataset[0]
        places.add((item["coords"][0, 0, 0].item(), item["coords"][1, 0, 0].item()))
    assert len(places) > 1
