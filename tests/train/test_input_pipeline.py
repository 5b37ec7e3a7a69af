"""Config -> loaders: the files path and the TFDS array_record path see the same clips."""

import numpy as np
import pytest

from actlumos_jax.train import input_pipeline
from actlumos_jax.train.stages import make_stage
from configs import base
from data_pipelines.bad_input import InputError
from data_pipelines.records import ClipRecord, SplitInfo
from tests.train.helpers import tiny_config


def _eval_clips(config, data):
    """(label, pixel sum) of every real clip the eval loader yields, sorted: order-free identity."""
    seen = []
    for batch in input_pipeline.make_eval_loader(config, data.test, data.info, "supervised"):
        for video, label, real in zip(batch["video"], batch["label"], batch["mask"]):
            if real:
                seen.append((int(label), int(video.astype(np.int64).sum())))
    return sorted(seen)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_tfds_source_builds_once_and_matches_the_files(tfds_dir):
    files_config = tiny_config("teacher")
    tfds_config = tiny_config("teacher", **{"dataset.source": "tfds", "dataset.tfds_data_dir": tfds_dir})
    from_files = input_pipeline.read_stage_data(files_config)
    from_tfds = input_pipeline.read_stage_data(tfds_config)  # builds the array_record copy
    assert from_tfds.info.class_names == from_files.info.class_names
    assert (len(from_tfds.train), len(from_tfds.test)) == (len(from_files.train), len(from_files.test))
    assert _eval_clips(tfds_config, from_tfds) == _eval_clips(files_config, from_files)
    assert sorted(from_tfds.train.labels()) == sorted(r.label for r in from_files.train)


def test_tfds_source_feeds_balanced_and_transductive_ssl_loaders(tfds_dir):
    # No validation carve: the tiny preset's 2 training actors give each class the 2 clips a group needs.
    balanced = tiny_config("teacher", **{"dataset.source": "tfds", "dataset.tfds_data_dir": tfds_dir,
                                         "train.class_balanced": True, "train.batch_size": 4,
                                         "dataset.val_fraction": 0.0})
    data = input_pipeline.read_stage_data(balanced)
    batch = next(iter(input_pipeline.make_train_loader(balanced, data.train, data.info, "balanced")))
    labels = batch["label"]
    assert len(set(labels.tolist())) == 2 and all(np.sum(labels == c) == 2 for c in set(labels.tolist()))

    ssl = tiny_config("ssl", **{"dataset.source": "tfds", "dataset.tfds_data_dir": tfds_dir,
                                "ssl.unlabeled_pool": "train_and_test"})
    ssl_data = input_pipeline.read_stage_data(ssl)
    pool = make_stage(ssl).training_source(ssl_data.train, ssl_data.test)
    assert len(pool) == len(ssl_data.train) + len(ssl_data.test)
    assert pool[len(ssl_data.train)]["clip_id"] == ssl_data.test[0]["clip_id"]
    with pytest.raises(IndexError):
        pool[len(pool)]


def test_tfds_source_needs_a_data_dir_for_real_datasets():
    c = base.get_config("dataset=arid10,root=/nonexistent")
    c.dataset.source = "tfds"
    with pytest.raises(ValueError, match="tfds_data_dir"):
        input_pipeline.tfds_data_dir(c.dataset)
    c.dataset.source = "parquet"
    with pytest.raises(ValueError, match="dataset.source"):
        base.validate(c)


@pytest.mark.parametrize("field, value", [("fusion", "attention"), ("stream_norm", "mixed")])
def test_model_choices_are_validated_before_anything_is_built(field, value):
    c = base.get_config("")
    c.model[field] = value
    with pytest.raises(ValueError, match=f"config.model.{field} must be one of"):
        base.validate(c)


@pytest.mark.parametrize("balanced", [True, False])
def test_clips_per_class_below_one_is_refused_by_name(balanced):
    c = tiny_config("teacher", **{"train.class_balanced": balanced, "train.clips_per_class": 0})
    with pytest.raises(InputError, match=r"^config.train.clips_per_class must be >= 1 .*, got 0$"):
        base.validate(c)
    # Built without validate: a stage that does not balance its batches never reads it, one that does names it.
    clips = [ClipRecord(f"c{i % 2}/{i}.mp4", i % 2, f"/nowhere/{i}.mp4") for i in range(16)]
    info = SplitInfo("synthetic", "train", ("c0", "c1"))
    if balanced:
        with pytest.raises(InputError, match=r"need config.train.clips_per_class >= 1, got 0"):
            input_pipeline.make_train_loader(c, clips, info, "balanced")
    else:
        assert input_pipeline.make_train_loader(c, clips, info, "supervised").steps_per_epoch == 2


@pytest.mark.parametrize("resize, crop", [((1, 2), 32), ((36, 31), 32), ((64, 20), 32)])
def test_a_resize_smaller_than_the_crop_is_refused_before_anything_is_built(resize, crop):
    c = tiny_config("teacher", **{"data.resize": resize, "data.crop": crop})
    with pytest.raises(InputError, match=rf"^config.data.resize=\({resize[0]}, {resize[1]}\) is smaller than "
                                         rf"config.data.crop={crop}: "):
        base.validate(c)
    base.validate(tiny_config("teacher", **{"data.resize": (crop, crop), "data.crop": crop}))


def test_parse_arg_types_booleans_and_names_a_bad_value():
    parsed = base.parse_arg("flag=False,count=3", flag=True, count=0)
    assert parsed.flag is False and parsed.count == 3
    assert base.parse_arg("flag=true", flag=False).flag is True
    with pytest.raises(ValueError, match="flag='maybe' is not a boolean"):
        base.parse_arg("flag=maybe", flag=True)
    with pytest.raises(ValueError, match="split='two' is not an integer"):
        base.get_config("split=two")


def test_paper_size_without_weights_warns_and_names_the_workdir(capsys):
    import main

    from configs import kd_student

    paper = kd_student.get_config("size=paper")
    assert paper.size == "paper" and base.get_config("").size == "tiny"
    main._warn_if_paper_size_from_scratch(paper)
    assert "FROM SCRATCH" in capsys.readouterr().err
    paper.prerequisites.teacher.init.backbone_checkpoint = "/ckpt/r2plus1d_34_ig65m"
    main._warn_if_paper_size_from_scratch(paper)
    main._warn_if_paper_size_from_scratch(kd_student.get_config("size=tiny"))
    assert capsys.readouterr().err == ""
