"""trainer.data: spec strings, splits, γ, determinism; folder from tmp files, elpv and Fashion-MNIST real."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from agad_stream.errors import AgadError
from agad_stream.preprocess import prepare_image
from trainer.data import DataSet, Split, load_dataset
from trainer.data import elpv as elpv_module
from trainer.data.cache import cache_key, cached_array
from trainer.data.sampling import anomalies_for, draw_labelled, rng_for


def _ids(split: Split) -> set[str]:
    return set(split.ids)


def _assert_disjoint(ds: DataSet) -> None:
    assert not _ids(ds.train) & _ids(ds.val)
    assert not _ids(ds.train) & _ids(ds.test)
    assert not _ids(ds.val) & _ids(ds.test)
    for split in (ds.train, ds.val, ds.test):
        assert len(_ids(split)) == len(split)
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.int64
        assert split.images.shape[1:] == (ds.image_size, ds.image_size, ds.channels)


# --- sampling ----------------------------------------------------------------------------------


def test_gamma_arithmetic() -> None:
    assert anomalies_for(5400, 0.0) == 0
    assert anomalies_for(5400, 0.05) == 284  # 284 / (5400 + 284) = 0.04997
    assert anomalies_for(10, 0.01) == 1  # at least one when gamma > 0


def test_labelled_draws_are_nested_in_gamma_and_disjoint() -> None:
    small = draw_labelled(100, 5, 2, rng_for(0, 1), what="t")
    large = draw_labelled(100, 20, 6, rng_for(0, 1), what="t")
    assert set(small[0]) <= set(large[0]) and set(small[1]) <= set(large[1])
    assert not set(large[0]) & set(large[1])
    with pytest.raises(AgadError, match="pool holds 100"):
        draw_labelled(100, 90, 20, rng_for(0, 1), what="t")
    train, val = draw_labelled(10, 90, 20, rng_for(0, 1), what="t", cap=True)
    assert (len(train), len(val)) == (8, 2)


# --- folder: ------------------------------------------------------------------------------------


def _write_folder(root: Path, colour: bool = False) -> None:
    rng = np.random.default_rng(0)
    layout = {"train/good": 20, "train/crack": 6, "test/good": 4, "test/crack": 3, "test/scratch": 2}
    for sub, count in layout.items():
        (root / sub).mkdir(parents=True)
        for i in range(count):
            shape = (24, 30, 3) if colour else (24, 30)
            cv2.imwrite(str(root / sub / f"{i:03d}.png"), rng.integers(0, 256, shape, dtype=np.uint8))
    (root / "train/good/notes.txt").write_text("not an image")
    (root / "ground_truth/crack").mkdir(parents=True)  # MVTec masks: ignored


def test_folder_layout_labels_groups_and_ids(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    ds = load_dataset(f"folder:{tmp_path}", 16)
    assert ds.channels == 1  # single-channel PNGs
    assert (len(ds.train), len(ds.val)) == (18, 2) and ds.train.n_anomalous == ds.val.n_anomalous == 0
    assert ds.test.summary()["groups"] == {"crack": 3, "good": 4, "scratch": 2}
    assert ds.test.n_anomalous == 5 and set(ds.test.groups[ds.test.labels == 0]) == {"good"}
    assert all(i.startswith("train/good/") for i in ds.train.ids + ds.val.ids)
    _assert_disjoint(ds)
    # Pixels are exactly what a scorer makes of the same file.
    first = ds.test.ids[0]
    expected = prepare_image((tmp_path / first).read_bytes(), "image/png", image_size=16, channels=1)
    np.testing.assert_array_equal(ds.test.images[0], expected)
    assert ds.headline_test().ids == ds.test.ids
    assert set(ds.test_subsets()) == {"headline", "crack", "scratch"}
    assert len(ds.test_subsets()["crack"]) == 4 + 3


def test_folder_gamma_uses_train_defects_and_caps(tmp_path: Path) -> None:
    _write_folder(tmp_path, colour=True)
    ds = load_dataset(f"folder:{tmp_path}", 16, gamma=0.2, seed=3)
    assert ds.channels == 3
    # 0.2 asks for 4 (train) + 1 (val) labelled anomalies; 6 are there.
    assert (ds.train.n_anomalous, ds.val.n_anomalous) == (4, 1)
    assert ds.gamma_effective == pytest.approx(4 / 22)
    assert all(i.startswith("train/crack/") for i in ds.train.ids[-4:])
    _assert_disjoint(ds)
    capped = load_dataset(f"folder:{tmp_path}", 16, gamma=0.5, seed=3)
    assert capped.train.n_anomalous + capped.val.n_anomalous == 6
    assert capped.summary()["gamma_effective"] < 0.5
    assert load_dataset(f"folder:{tmp_path}", 16, channels=1).channels == 1


def test_folder_is_deterministic_by_seed(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    a, b = (load_dataset(f"folder:{tmp_path}", 16, gamma=0.1, seed=1) for _ in range(2))
    assert a.summary() == b.summary() and a.train.ids == b.train.ids
    np.testing.assert_array_equal(a.train.images, b.train.images)
    other = load_dataset(f"folder:{tmp_path}", 16, gamma=0.1, seed=2)
    assert other.val.ids != a.val.ids and other.test.ids == a.test.ids
    # The normal train/val split does not move with gamma.
    assert load_dataset(f"folder:{tmp_path}", 16, seed=1).val.ids == [i for i in a.val.ids if "good" in i]


def test_folder_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(AgadError, match="train/good"):
        load_dataset(f"folder:{tmp_path}", 16)
    (tmp_path / "train/good").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"train/good/{i}.png"), np.zeros((16, 16), np.uint8))
    with pytest.raises(AgadError, match="needs labelled anomalies"):
        load_dataset(f"folder:{tmp_path}", 16, gamma=0.1)
    assert len(load_dataset(f"folder:{tmp_path}", 16).test) == 0  # no test/: empty test split
    (tmp_path / "train/good/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(AgadError, match=r"broken\.png: cannot decode"):
        load_dataset(f"folder:{tmp_path}", 16)


@pytest.mark.parametrize(
    ("spec", "size", "message"),
    [
        ("mnist:3", 32, "unknown data set spec"),
        ("fmnist:hat", 32, "unknown Fashion-MNIST class"),
        ("elpv", 4, "image size"),
        ("folder:", 32, "unknown data set spec"),
    ],
)
def test_bad_specs(spec: str, size: int, message: str) -> None:
    with pytest.raises(AgadError, match=message):
        load_dataset(spec, size)


def test_split_validates_and_summarises() -> None:
    split = Split(np.zeros((2, 8, 8, 1), np.uint8), np.array([0, 1]), np.array(["good", "x"]), ["a", "b"])
    assert split.summary()["groups"] == {"good": 1, "x": 1}
    assert split.take([1]).ids == ["b"] and split.select_groups(["good"]).ids == ["a"]
    with pytest.raises(ValueError, match="differ in length"):
        Split(np.zeros((2, 8, 8, 1), np.uint8), np.array([0]), np.array(["good"]), ["a"])


# --- Fashion-MNIST -------------------------------------------------------------------------------


def test_fmnist_one_class_protocol() -> None:
    ds = load_dataset("fmnist:bag", 32, gamma=0.05, seed=0)
    assert ds.image_size == 32 and ds.channels == 1
    assert (ds.train.n_normal, ds.val.n_normal) == (5400, 600)
    assert (ds.train.n_anomalous, ds.val.n_anomalous) == (284, 32)
    assert ds.gamma_effective == pytest.approx(0.05, abs=1e-3)
    assert (ds.test.n_normal, ds.test.n_anomalous) == (1000, 9000)
    assert set(ds.test.groups[ds.test.labels == 0]) == {"bag"}
    assert "bag" not in set(ds.train.groups[ds.train.labels == 1])
    assert all(i.startswith("fmnist/train/") for i in ds.train.ids + ds.val.ids)
    assert all(i.startswith("fmnist/test/") for i in ds.test.ids)
    _assert_disjoint(ds)
    plain = load_dataset("fmnist:8", 32)
    assert plain.val.ids == [i for i, y in zip(ds.val.ids, ds.val.labels, strict=True) if y == 0]
    np.testing.assert_array_equal(plain.test.images, ds.test.images)


def test_fewer_normals_keep_the_share_of_validation_and_the_test_split() -> None:
    full = load_dataset("fmnist:bag", 32, gamma=0.05, seed=0)
    few = full.with_normals(400, seed=1)
    assert (few.train.n_normal, few.val.n_normal) == (360, 40)
    assert (few.train.n_anomalous, few.val.n_anomalous) == (284, 32)
    assert set(few.train.ids + few.val.ids) <= set(full.train.ids + full.val.ids)
    assert few.test is full.test and few.source["normals"] == 400
    _assert_disjoint(few)
    assert full.with_normals(400, 1).train.ids == few.train.ids != full.with_normals(400, 2).train.ids
    with pytest.raises(ValueError, match="holds 6000 good"):
        full.with_normals(6001)


def test_fmnist_missing_files_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGAD_FMNIST_DIR", str(tmp_path))
    with pytest.raises(AgadError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fmnist:0", 32)


# --- elpv ----------------------------------------------------------------------------------------


def test_elpv_committed_split_matches_installed_data() -> None:
    rows = elpv_module.read_split()
    labels = elpv_module.read_labels(elpv_module.data_dir())
    assert [(r.path, r.probability, r.cell_type) for r in rows] == labels
    assert rows == elpv_module.make_split(labels, seed=0)  # the file is what seed 0 makes
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r.probability, r.split)] = counts.get((r.probability, r.split), 0) + 1
    assert counts == {
        ("0.000", "train"): 1056, ("0.000", "val"): 150, ("0.000", "test"): 302,
        ("1.000", "pool"): 286, ("1.000", "test"): 429,
        ("0.333", "test"): 295, ("0.667", "test"): 106,
    }  # fmt: skip


@pytest.fixture(scope="module")
def elpv_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[float, DataSet]:
    """elpv at 32 px for three γ, decoded once into a private cache (the first load is ~3.5 s)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGAD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        return {g: load_dataset("elpv", 32, gamma=g, seed=0) for g in (0.0, 0.01, 0.05)}


def test_elpv_splits_are_disjoint_and_gamma_is_honoured(elpv_sets: dict[float, DataSet]) -> None:
    rows = {r.path: r for r in elpv_module.read_split()}
    base = elpv_sets[0.0]
    assert base.hard_groups == ("prob_0.333", "prob_0.667")
    assert base.test.summary()["groups"] == {
        "prob_0.0": 302,
        "prob_0.333": 295,
        "prob_0.667": 106,
        "prob_1.0": 429,
    }
    assert set(base.headline_test().groups) == {"prob_0.0", "prob_1.0"}
    for gamma, ds in elpv_sets.items():
        _assert_disjoint(ds)
        assert ds.test.ids == base.test.ids  # one test set for every gamma
        assert ds.gamma_effective == pytest.approx(gamma, abs=2e-3)
        assert ds.train.n_normal == 1056 and ds.val.n_normal == 150
        for i, y in zip(ds.train.ids + ds.val.ids, np.r_[ds.train.labels, ds.val.labels], strict=True):
            assert rows[i].split == ("pool" if y else ("train" if i in ds.train.ids else "val"))
    assert (elpv_sets[0.05].train.n_anomalous, elpv_sets[0.05].val.n_anomalous) == (56, 8)
    assert _ids(elpv_sets[0.01].train) <= _ids(elpv_sets[0.05].train)  # more gamma only adds images


def test_elpv_pixels_come_from_the_shared_preprocessing(elpv_sets: dict[float, DataSet]) -> None:
    root = elpv_module.data_dir()
    for test in (elpv_sets[0.0].test, elpv_sets[0.05].test):  # freshly decoded, then from the cache
        for k in (0, len(test) - 1):
            expected = prepare_image(
                (root / test.ids[k]).read_bytes(), "image/png", image_size=32, channels=1
            )
            np.testing.assert_array_equal(test.images[k], expected)


def test_cache_builds_once_and_keys_on_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGAD_CACHE_DIR", str(tmp_path))
    calls = []

    def build() -> np.ndarray:
        calls.append(1)
        return np.arange(6, dtype=np.uint8).reshape(1, 2, 3, 1)

    for _ in range(2):
        np.testing.assert_array_equal(cached_array("x", cache_key("a", 1), build), build())
    assert len(calls) == 3  # one build through the cache, two direct calls
    assert cache_key("a", 1) != cache_key("a", 2)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npy"]


def test_elpv_gamma_beyond_the_pool_is_refused(elpv_sets: dict[float, DataSet]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGAD_CACHE_DIR", str(Path(elpv_module.__file__).parent / "no-such-dir-never-written"))
        mp.setattr(
            elpv_module, "cached_array", lambda name, key, build: np.zeros((2624, 32, 32, 1), np.uint8)
        )
        with pytest.raises(AgadError, match="pool holds 286"):
            load_dataset("elpv", 32, gamma=0.3)
