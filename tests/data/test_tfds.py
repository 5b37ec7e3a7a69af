"""TFDS array_record builders: round trip of encoded clips, no TensorFlow, clear errors."""

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from data_pipelines import tfds_builders
from data_pipelines.bad_input import DatasetError
from data_pipelines.video_io import VideoError, decode_video
from tests.data import fixtures

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synthetic_built(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    fake = fixtures.write_synthetic_like(root, splits=(2,))
    data_dir = tmp_path_factory.mktemp("tfds")
    tfds_builders.build("synthetic", root=root, data_dir=data_dir, split=2)
    return fake, data_dir


def test_round_trip_bytes_labels_ids_and_metadata(synthetic_built):
    fake, data_dir = synthetic_built
    for subset in ("train", "test"):
        source = tfds_builders.data_source("synthetic", data_dir=data_dir, split=2, subset=subset)
        assert source.split_info.class_names == fixtures.ARID_CLASSES
        assert source.split_info.split == f"split2_{subset}"
        expected = dict(fake.subsets[subset])
        assert len(source) == len(expected)
        seen = set()
        for i in range(len(source)):
            example = source[i]
            clip_id = example["clip_id"]
            assert isinstance(clip_id, str) and isinstance(example["video"], bytes)
            assert type(example["label"]) is int and example["label"] == expected[clip_id]
            on_disk = fake.video_path(clip_id)
            assert example["video"] == on_disk.read_bytes()
            frames = decode_video(example["video"], name=clip_id)
            np.testing.assert_array_equal(frames, decode_video(on_disk))
            assert (example["num_frames"], example["height"], example["width"]) == frames.shape[:3]
            assert example["fps"] == 30.0
            seen.add(clip_id)
        assert seen == set(expected)


def test_source_pickles_and_batches(synthetic_built):
    _, data_dir = synthetic_built
    source = tfds_builders.data_source("synthetic", data_dir=data_dir, split=2, subset="test")
    copy = pickle.loads(pickle.dumps(source))   # grain workers receive the source pickled
    batch = copy.__getitems__([3, 0])
    assert [e["clip_id"] for e in batch] == [source[3]["clip_id"], source[0]["clip_id"]]
    assert batch[1]["video"] == source[0]["video"]


def test_build_is_a_no_op_once_built(synthetic_built, tmp_path):
    _, data_dir = synthetic_built
    (tmp_path / "unrelated").mkdir()  # a non-empty root that is NOT the dataset: must not be read
    builder = tfds_builders.build("synthetic", root=tmp_path, data_dir=data_dir, split=2)
    assert builder.info.splits["train"].num_examples == 22


def test_no_tensorflow_needed(tmp_path):
    """Build and read back in a fresh interpreter where `import tensorflow` fails.

    A shadow `tensorflow` package first on the path raises on import, so this
    also holds on a machine that has TensorFlow installed.
    """
    shadow = tmp_path / "shadow" / "tensorflow"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("tensorflow is blocked in this test")\n')
    script = textwrap.dedent(f"""
        import json, sys
        from tests.data import fixtures
        from data_pipelines import tfds_builders
        fake = fixtures.write_arid10({str(tmp_path / "arid")!r}, clips_per_class={{"train": 1, "test": 1}})
        tfds_builders.build("arid10", root=fake.root, data_dir={str(tmp_path / "tfds")!r})
        source = tfds_builders.data_source("arid10", data_dir={str(tmp_path / "tfds")!r}, subset="test")
        got = sorted((source[i]["clip_id"], source[i]["label"]) for i in range(len(source)))
        loaded = [m for m, mod in sys.modules.items() if mod is not None
                  and (m == "tensorflow" or m.startswith("tensorflow."))]
        print(json.dumps({{"got": got, "tf": loaded}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONPATH": f"{shadow.parent}{os.pathsep}{REPO}"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["tf"] == []
    assert out["got"] == sorted([f"{name}/{name}_{12 + i}_1.avi", i] for i, name in enumerate(fixtures.ARID_CLASSES))


def test_dark48_class_names_come_from_class_index(tmp_path):
    fake = fixtures.write_dark48(tmp_path / "dark48", split=3, clips_per_class={"train": 1, "test": 1})
    tfds_builders.build("dark48", root=fake.root, data_dir=tmp_path / "tfds", split=3)
    source = tfds_builders.data_source("dark48", data_dir=tmp_path / "tfds", split=3, subset="train")
    assert source.split_info.class_names == fixtures.DARK48_CLASSES
    labels = {source[i]["clip_id"]: source[i]["label"] for i in range(len(source))}
    assert labels == dict(fake.subsets["train"])   # 0-based although classInd.txt starts at 1


def test_arid15_other_subset_and_missing_subset(tmp_path):
    fake = fixtures.write_arid15(tmp_path / "a15", clips_per_class={"train": 1, "test": 1, "other": 1},
                                 other_name="others")
    tfds_builders.build("arid15", root=fake.root, data_dir=tmp_path / "tfds")
    other = tfds_builders.data_source("arid15", data_dir=tmp_path / "tfds", subset="other")
    assert sorted(other[i]["clip_id"] for i in range(len(other))) == sorted(c for c, _ in fake.subsets["other"])
    fake10 = fixtures.write_arid10(tmp_path / "a10", clips_per_class={"train": 1, "test": 1})
    tfds_builders.build("arid10", root=fake10.root, data_dir=tmp_path / "tfds")
    with pytest.raises(DatasetError, match=r"arid10/split1 in .* has no subset 'other'; it has \['test', 'train'\]"):
        tfds_builders.data_source("arid10", data_dir=tmp_path / "tfds", subset="other")


def test_unreadable_video_fails_or_is_skipped(tmp_path):
    fake = fixtures.write_arid10(tmp_path / "arid", clips_per_class={"train": 1, "test": 1})
    corrupt = fake.video_path(fake.subsets["test"][4][0])
    fixtures.write_corrupt_video(corrupt)
    with pytest.raises(VideoError, match=str(corrupt) + ": not a readable video"):
        tfds_builders.build("arid10", root=fake.root, data_dir=tmp_path / "fail")
    tfds_builders.build("arid10", root=fake.root, data_dir=tmp_path / "skip", on_bad_input="skip")
    source = tfds_builders.data_source("arid10", data_dir=tmp_path / "skip", subset="test")
    assert len(source) == 10
    assert fake.subsets["test"][4][0] not in {source[i]["clip_id"] for i in range(len(source))}


def test_missing_manual_dir_gives_download_instructions(tmp_path):
    for root in (None, tmp_path / "nowhere", tmp_path):   # tmp_path exists but is empty
        with pytest.raises(DatasetError, match=r"manual dir .* does not exist or is empty\.\nARID V1\.0 cannot "
                                               r"be downloaded automatically: request it from its authors"):
            tfds_builders.build("arid10", root=root, data_dir=tmp_path / "tfds")
    # TFDS's own path (no manual_dir configured) carries the same instructions.
    builder = tfds_builders.Dark48(config="split1", data_dir=str(tmp_path / "tfds"), file_format="array_record")
    with pytest.raises(AssertionError, match=r"does not exist or is empty(.|\n)*Dark48 cannot be downloaded"):
        builder.download_and_prepare()


def test_data_source_before_build_and_unknown_dataset(tmp_path):
    with pytest.raises(DatasetError, match=r"dark48/split2 is not built in .*; run .*build\('dark48'"):
        tfds_builders.data_source("dark48", data_dir=tmp_path, split=2)
    with pytest.raises(DatasetError, match="unknown dataset 'kinetics'"):
        tfds_builders.build("kinetics", root=tmp_path, data_dir=tmp_path)


def test_build_synthetic_without_root_generates_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLUMOS_DATA_DIR", str(tmp_path / "cache"))
    tfds_builders.build("synthetic", data_dir=tmp_path / "tfds", synthetic_preset="tiny", seed=0)
    source = tfds_builders.data_source("synthetic", data_dir=tmp_path / "tfds", subset="test")
    from data_pipelines import synthetic

    root = synthetic.default_root("tiny", 0)
    assert tmp_path in root.parents
    rows = [line.split("\t") for line in (root / "ARID_split1_test.txt").read_text().splitlines() if line]
    got = {source[i]["clip_id"]: source[i]["label"] for i in range(len(source))}
    assert got == {clip_id: int(label) for _, label, clip_id in rows}
    assert source[0]["video"] == (root / source[0]["clip_id"]).read_bytes()
