"""Omniglot tasks: official layout (folders or zips), one Arrow cache, splits by alphabet, clear errors."""

import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from distmeta.config import OmniglotConfig
from distmeta.errors import ConfigError, DatasetError, NotEnoughClassesError
from distmeta.tasks import omniglot_cache
from distmeta.tasks.omniglot import OmniglotTasks, split_alphabets
from tests.conftest import SHARED_OMNIGLOT

ALPHABETS = ["Alpha", "Beta", "Gamma", "Delta"]


@pytest.fixture(autouse=True)
def _fresh_process_cache():
    omniglot_cache._loaded.clear()
    yield
    omniglot_cache._loaded.clear()


def write_png(path, mark: int):
    """A 105x105 1-bit drawing: white background, a black bar whose row depends on `mark`."""
    pixels = np.ones((105, 105), dtype=bool)
    row = 10 + 8 * (mark % 10)
    pixels[row : row + 6, 10:95] = False
    pixels[10:95, 10:14] = False  # a vertical stroke on the left, so rotations differ
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_tree(root, alphabets=ALPHABETS, characters=3, drawings=6, top=None):
    base = root / top if top else root
    for a, alphabet in enumerate(alphabets):
        for c in range(characters):
            for d in range(drawings):
                write_png(base / alphabet / f"character{c + 1:02d}" / f"{a:02d}{c:02d}_{d:02d}.png", mark=c)
    return root


def zip_tree(folder, archive):
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, path.relative_to(folder.parent))
    return archive


def config(tmp_path, *roots, **values):
    return OmniglotConfig(roots=tuple(str(r) for r in roots), cache_dir=str(tmp_path / "cache"), **values)


def tasks(tmp_path, *roots, split="train", ways=2, shots=1, query=2, **values):
    return OmniglotTasks(config(tmp_path, *roots, **values), split, ways, shots, query)


# ---------------------------------------------------------------- reading and decoding


def test_drawings_are_resized_and_inverted_so_strokes_are_high(tmp_path):
    root = make_tree(tmp_path / "data")
    data = omniglot_cache.load_images((str(root),), str(tmp_path / "cache"), 28)
    assert data.images.shape == (4 * 3 * 6, 28, 28) and data.images.dtype == np.uint8
    image = data.images[0]
    assert image[14, 1] == 0 and image[20, 3] > 200  # background low, the left stroke high
    assert len(data.characters) == 12


@pytest.mark.parametrize("layout", ["folder", "folder with top", "zip with top", "zip without top"])
def test_folders_and_zips_of_the_official_layout_give_the_same_images(tmp_path, layout):
    reference = omniglot_cache.load_images((str(make_tree(tmp_path / "ref")),), str(tmp_path / "c0"), 28)
    if layout == "folder":
        root = make_tree(tmp_path / "a")
    elif layout == "folder with top":
        root = make_tree(tmp_path / "b", top="images_background")
    elif layout == "zip with top":
        root = zip_tree(make_tree(tmp_path / "c", top="images_background") / "images_background", tmp_path / "c.zip")
    else:
        make_tree(tmp_path / "d")
        root = tmp_path / "d.zip"
        with zipfile.ZipFile(root, "w") as z:
            for path in sorted((tmp_path / "d").rglob("*.png")):
                z.write(path, path.relative_to(tmp_path / "d"))
    data = omniglot_cache.load_images((str(root),), str(tmp_path / "c1"), 28)
    assert data.characters == reference.characters
    assert np.array_equal(np.asarray(data.images), np.asarray(reference.images))


def test_a_character_in_two_roots_is_counted_once(tmp_path):
    first = make_tree(tmp_path / "one", ALPHABETS[:3])
    second = make_tree(tmp_path / "two", ALPHABETS[2:])  # Gamma is in both
    data = omniglot_cache.load_images((str(first), str(second)), str(tmp_path / "cache"), 28)
    assert len(data.characters) == 4 * 3
    assert len(data.images) == 4 * 3 * 6


# ---------------------------------------------------------------- the cache


def test_the_cache_is_built_once_and_then_memory_mapped(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data")
    first = tasks(tmp_path, root)
    cached = list((tmp_path / "cache").glob("omniglot-*.arrow"))
    assert len(cached) == 1
    omniglot_cache._loaded.clear()

    def no_decoding(*_):
        raise AssertionError("decoded a PNG although the cache exists")

    monkeypatch.setattr(omniglot_cache, "decode", no_decoding)
    second = tasks(tmp_path, root)
    assert torch.equal(first.sample(3, 5).support_x, second.sample(3, 5).support_x)


def test_changed_sources_get_a_new_cache_file(tmp_path):
    root = make_tree(tmp_path / "data")
    tasks(tmp_path, root)
    write_png(root / "Alpha" / "character01" / "extra.png", mark=7)
    omniglot_cache._loaded.clear()
    tasks(tmp_path, root)
    assert len(list((tmp_path / "cache").glob("omniglot-*.arrow"))) == 2


def test_a_truncated_cache_is_refused_naming_it(tmp_path):
    root = make_tree(tmp_path / "data")
    tasks(tmp_path, root)
    cache = next((tmp_path / "cache").glob("omniglot-*.arrow"))
    cache.write_bytes(cache.read_bytes()[:1000])
    omniglot_cache._loaded.clear()
    with pytest.raises(DatasetError, match=f"{cache.name}: is a stale or corrupt Omniglot cache; delete it"):
        tasks(tmp_path, root)


def test_a_cache_dir_that_cannot_be_a_folder_is_refused_naming_the_field_before_decoding(tmp_path):
    root = make_tree(tmp_path / "data")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DatasetError, match="task.omniglot.cache_dir: .*a-file is a file, not a folder"):
        omniglot_cache.load_images((str(root),), str(tmp_path / "a-file"), 28)
    with pytest.raises(DatasetError, match="task.omniglot.cache_dir: .*cannot be made"):
        omniglot_cache.load_images((str(root),), str(tmp_path / "a-file" / "below"), 28)


def test_a_cache_made_from_other_sources_is_refused_naming_it(tmp_path):
    root = make_tree(tmp_path / "data")
    other = make_tree(tmp_path / "other", ["Zeta", "Eta", "Theta"])
    tasks(tmp_path, root)
    tasks(tmp_path, other)
    mine, theirs = sorted((tmp_path / "cache").glob("omniglot-*.arrow"), key=os.path.getmtime)
    os.replace(theirs, mine)  # a cache file under the wrong name
    omniglot_cache._loaded.clear()
    with pytest.raises(DatasetError, match="stale or corrupt"):
        tasks(tmp_path, root)


# ---------------------------------------------------------------- sampling


def test_the_same_seed_gives_identical_batches_and_another_seed_does_not(tmp_path):
    distribution = tasks(tmp_path, make_tree(tmp_path / "data"), ways=3, shots=2, query=3)
    a, b, c = distribution.sample(4, 11), distribution.sample(4, 11), distribution.sample(4, 12)
    for x, y in zip(a.tensors(), b.tensors()):
        assert torch.equal(x, y)
    assert not torch.equal(a.support_x, c.support_x)


def test_batches_have_the_documented_shapes_labels_and_range(tmp_path):
    distribution = tasks(tmp_path, make_tree(tmp_path / "data"), ways=3, shots=2, query=3)
    batch = distribution.sample(4, 0)
    assert batch.support_x.shape == (4, 6, 1, 28, 28) and batch.query_x.shape == (4, 9, 1, 28, 28)
    assert batch.support_x.dtype == torch.float32 and batch.support_y.dtype == torch.int64
    assert 0 <= batch.support_x.min() and batch.support_x.max() <= 1
    for task in range(4):
        labels = batch.support_y[task]
        assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
        assert labels[0] == labels[1]  # class-major: the shots of a class are adjacent
        # each query example's label is that of the support class it was drawn from
        for slot in range(3):
            assert set(batch.query_y[task, 3 * slot : 3 * slot + 3].tolist()) == {labels[2 * slot].item()}


def test_a_class_gets_distinct_drawings_of_one_character_and_any_share_draws_the_same_tasks(tmp_path):
    distribution = tasks(tmp_path, make_tree(tmp_path / "data", characters=4), ways=3, shots=2, query=2)
    images = distribution._images
    character_of = omniglot_cache._loaded[next(iter(omniglot_cache._loaded))].character_of
    # every image a flat grey level equal to its row, so that an example names the drawing it shows
    distribution._images = np.repeat(np.arange(len(images), dtype=np.uint8), 28 * 28).reshape(images.shape)
    whole = distribution.sample(40, 3)
    for task in range(40):
        drawings = torch.cat([whole.support_x[task], whole.query_x[task]]).mul(255).round().long()[:, 0, 0, 0]
        labels = torch.cat([whole.support_y[task], whole.query_y[task]])
        for label in range(3):  # two classes may be one character turned two ways: compare within a class
            of_class = drawings[labels == label].tolist()
            assert len(set(of_class)) == 4 and len({character_of[d] for d in of_class}) == 1
    share = distribution.sample(15, 3, first=25)
    assert all(torch.equal(a[25:], b) for a, b in zip(whole.tensors(), share.tensors()))


def test_rotations_make_four_classes_of_each_character(tmp_path):
    root = make_tree(tmp_path / "data", characters=3)
    with_rotations = tasks(tmp_path, root, split="test")
    without = tasks(tmp_path, root, split="test", rotations=False)
    assert with_rotations.num_classes == 4 * without.num_classes == 4 * 3


def test_support_and_query_of_a_class_share_one_rotation(tmp_path):
    distribution = tasks(tmp_path, make_tree(tmp_path / "data"), ways=4, shots=1, query=2)
    batch = distribution.sample(8, 3)
    for task in range(8):
        for slot in range(4):
            support = batch.support_x[task, slot, 0]
            left_stroke = support[:, :6].sum() > support[:, -6:].sum()
            for query in batch.query_x[task, 2 * slot : 2 * slot + 2, 0]:
                assert (query[:, :6].sum() > query[:, -6:].sum()) == left_stroke


def test_a_tasks_alphabets_are_its_classes_and_its_family_the_one_most_of_them_come_from(tmp_path):
    # every character of every alphabet gets its own bar row, so an image says which alphabet it is from
    for a, alphabet in enumerate(ALPHABETS):
        for c in range(2):
            for d in range(3):
                write_png(tmp_path / "data" / alphabet / f"character{c + 1:02d}" / f"{d:02d}.png", mark=2 * a + c)
    distribution = tasks(tmp_path, tmp_path / "data", ways=3, shots=1, query=1, rotations=False)

    def alphabet_of(image):
        row = int(image[0, :, 8:24].mean(dim=1).argmax())  # the bar's row, in the 28-pixel image
        mark = round((row * 105 / 28 - 13) / 8)
        return ALPHABETS[mark // 2]

    for seed in range(6):
        alphabets = [alphabet_of(image) for image in distribution.sample(1, seed).support_x[0]]
        assert set(alphabets) <= set(distribution.alphabets)
        assert sorted(distribution.task_alphabets(seed)) == sorted(alphabets)  # support images are in label order
        assert distribution.task_family(seed) == max(sorted(set(alphabets)), key=alphabets.count)


def test_splits_are_disjoint_by_alphabet_and_fixed_by_the_split_seed(tmp_path):
    names = [f"A{i}" for i in range(10)]
    cfg = OmniglotConfig(roots=("x",), split_seed=3, val_fraction=0.2, test_fraction=0.3)
    split = split_alphabets(names, cfg)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (5, 2, 3)
    assert sorted(sum(split.values(), [])) == names
    assert split == split_alphabets(list(reversed(names)), cfg)
    assert split != split_alphabets(
        names, OmniglotConfig(roots=("x",), split_seed=4, val_fraction=0.2, test_fraction=0.3)
    )


# ---------------------------------------------------------------- bad data


def test_a_missing_root_is_named(tmp_path):
    with pytest.raises(DatasetError, match="nowhere: does not exist"):
        tasks(tmp_path, tmp_path / "nowhere")


def test_a_root_without_pngs_says_what_layout_was_expected(tmp_path):
    (tmp_path / "empty" / "Alpha").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"empty: holds no PNG files; expected <root>/<Alphabet>/characterNN"):
        tasks(tmp_path, tmp_path / "empty")


def test_a_png_in_the_wrong_place_is_named(tmp_path):
    root = make_tree(tmp_path / "data")
    write_png(root / "stray.png", mark=1)
    with pytest.raises(DatasetError, match="stray.png: is not where Omniglot keeps drawings"):
        tasks(tmp_path, root)


def test_a_corrupt_png_is_named_inside_its_zip(tmp_path):
    folder = make_tree(tmp_path / "data", top="images_background") / "images_background"
    (folder / "Beta" / "character02" / "0101_03.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    archive = zip_tree(folder, tmp_path / "background.zip")
    with pytest.raises(
        DatasetError,
        match=r"background.zip:images_background/Beta/character02/0101_03.png: "
        r"is not a readable PNG",
    ):
        tasks(tmp_path, archive)


def test_a_damaged_zip_is_named(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DatasetError, match="broken.zip: is not a readable zip"):
        tasks(tmp_path, tmp_path / "broken.zip")


def test_fewer_classes_than_ways_is_both_a_dataset_and_a_config_error(tmp_path):
    root = make_tree(tmp_path / "data", characters=2)
    with pytest.raises(NotEnoughClassesError) as error:
        tasks(tmp_path, root, split="test", ways=9)
    assert isinstance(error.value, DatasetError) and isinstance(error.value, ConfigError)
    assert error.value.field == "task.ways"
    assert "9 ways asked for, but the test split" in str(error.value) and "only 8 classes" in str(error.value)


def test_too_few_classes_for_wider_meta_training_tasks_names_task_train_ways(tmp_path):
    root = make_tree(tmp_path / "data", characters=2)
    with pytest.raises(NotEnoughClassesError) as error:
        OmniglotTasks(config(tmp_path, root), "train", 99, 1, 2, ways_field="task.train_ways")
    assert error.value.field == "task.train_ways" and str(error.value).startswith("task.train_ways: 99 ways")


def test_fewer_drawings_than_support_plus_query_names_the_character(tmp_path):
    root = make_tree(tmp_path / "data", drawings=6)
    with pytest.raises(DatasetError, match=r"character\d\d: has 6 drawings, fewer than shots \+ query_shots = 2 \+ 5"):
        tasks(tmp_path, root, shots=2, query=5)


# ---------------------------------------------------------------- the real data, when it is there

needs_shared_data = pytest.mark.skipif(
    not SHARED_OMNIGLOT.is_dir(), reason=f"Omniglot subsets not found at {SHARED_OMNIGLOT}"
)


@needs_shared_data
def test_the_two_small_background_sets_hold_8_alphabets_and_242_characters(tmp_path):
    roots = sorted(SHARED_OMNIGLOT.glob("images_background_small*.zip"))
    data = omniglot_cache.load_images(tuple(map(str, roots)), str(tmp_path / "cache"), 28)
    assert len({a for a, _ in data.characters}) == 8
    assert len(data.characters) == 242 and len(data.images) == 4840
    splits = {s: tasks(tmp_path, *roots, split=s, ways=5, shots=1, query=5) for s in ("train", "val", "test")}
    assert sum(d.num_classes for d in splits.values()) == 242 * 4
    batch = splits["test"].sample(2, 0)
    assert batch.support_x.shape == (2, 5, 1, 28, 28)
    # strokes are thin: most of an inverted Omniglot image is background
    assert 0.02 < batch.support_x.mean() < 0.25
