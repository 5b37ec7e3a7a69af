"""Dataset readers against fake trees on disk (tests/data/fixtures.py)."""

import re
import shutil
from pathlib import Path

import pytest

from data_pipelines import datasets
from data_pipelines.bad_input import DatasetError
from data_pipelines.records import SplitInfo
from tests.data import fixtures

# FACTS.md, "Datasets": ARID ids 0 Drink ... 10 Wave.
FACTS_ARID_IDS = {0: "Drink", 1: "Jump", 2: "Pick", 3: "Pour", 4: "Push", 5: "Run",
                  6: "Sit", 7: "Stand", 8: "Turn", 9: "Walk", 10: "Wave"}


def _expected(fake, subset):
    return [(cid, label, str(fake.video_path(cid))) for cid, label in fake.subsets[subset]]


def _got(records):
    return [(r.clip_id, r.label, r.path) for r in records]


def _rewrite_line(path: Path, line_no: int, new_line: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def arid10_tree(tmp_path_factory):
    return fixtures.write_arid10(tmp_path_factory.mktemp("arid10"))


def test_arid_class_ids_match_facts():
    assert dict(enumerate(datasets.ARID_CLASSES)) == FACTS_ARID_IDS


# ----------------------------------------------------------------------------- good input


def test_arid10_reads_every_listed_clip(arid10_tree):
    for subset in ("train", "test"):
        info, records = datasets.read_arid10(arid10_tree.root, split=1, subset=subset)
        assert _got(records) == _expected(arid10_tree, subset)
        assert all(Path(r.path).is_file() and r.path.endswith(".avi") for r in records)
        assert all(r.clip_id.split("/")[0] == FACTS_ARID_IDS[r.label] for r in records)
        assert isinstance(info, SplitInfo)
        assert (info.dataset, info.split, info.num_classes) == ("arid10", f"split1_{subset}", 11)
        assert info.report.num_listed == len(records) and info.report.num_skipped == 0
    assert len(records) == 11  # 1 test clip per class


def test_arid10_split_and_video_subfolders(tmp_path):
    fake = fixtures.write_arid10(tmp_path, split=2, video_subdir="clips_v1", split_subdir="list_cvt",
                                 clips_per_class={"train": 1, "other": 1})
    _, records = datasets.read_arid10(tmp_path, split=2, subset="other")
    assert _got(records) == _expected(fake, "other")
    # Explicit arguments, the split dir absolute and the video dir relative to the root.
    _, records = datasets.read_arid10(tmp_path, split=2, subset="train", split_dir=tmp_path / "list_cvt",
                                      video_dir="clips_v1")
    assert _got(records) == _expected(fake, "train")


def test_arid15_layout_and_others_name(tmp_path):
    fake = fixtures.write_arid15(tmp_path, split=1, clips_per_class={"train": 1, "test": 1, "other": 1},
                                 other_name="others")
    for subset in ("train", "test", "other"):
        info, records = datasets.read_arid15(tmp_path, split=1, subset=subset)
        assert _got(records) == _expected(fake, subset)
        assert all("clips_v1.5" in r.path for r in records)
        assert info.dataset == "arid15" and info.split == f"split1_{subset}"


@pytest.mark.parametrize("label_base", [1, 0])
def test_dark48_labels_follow_class_index_numbering(tmp_path, label_base):
    fake = fixtures.write_dark48(tmp_path, split=3, label_base=label_base)
    info, records = datasets.read_dark48(tmp_path, split=3, subset="test")
    assert info.class_names == fixtures.DARK48_CLASSES and info.num_classes == 48
    assert _got(records) == _expected(fake, "test")
    assert [r.label for r in records] == list(range(48))  # 0-based whatever the file's base


def test_blank_lines_crlf_and_no_trailing_newline(tmp_path):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1})
    path = fake.split_files["train"]
    lines = path.read_text().splitlines()
    path.write_text("\r\n".join(lines[:3] + ["", "   "] + lines[3:]))  # CRLF, blanks, no final newline
    _, records = datasets.read_arid10(tmp_path)
    assert _got(records) == _expected(fake, "train")


# ----------------------------------------------------------------------------- missing things


def test_missing_root():
    with pytest.raises(DatasetError, match=r"arid10 root /no/such/dir does not exist.*on request"):
        datasets.read_arid10("/no/such/dir")
    with pytest.raises(DatasetError, match="no dataset root given"):
        datasets.read_split("dark48")


def test_missing_split_file_says_where_it_looked(tmp_path):
    fixtures.write_arid10(tmp_path, clips_per_class={"train": 1})
    with pytest.raises(DatasetError, match="looked for") as err:
        datasets.read_arid10(tmp_path, split=3)
    for place in ("", "list_cvt/", "lists/", "splits/", "annotations/"):
        assert f"{tmp_path}/{place}ARID_split3_train.txt" in str(err.value)
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path}/elsewhere/ARID_split1_train.txt")):
        datasets.read_arid10(tmp_path, split_dir=tmp_path / "elsewhere")


def test_missing_videos_fail_lists_count_and_first(tmp_path):
    fake = fixtures.write_arid10(tmp_path)
    gone = [fake.video_path(cid) for cid, _ in fake.subsets["train"][:7]]
    for path in gone:
        path.unlink()
    with pytest.raises(DatasetError, match=r"ARID_split1_train.txt: 7 listed videos are missing") as err:
        datasets.read_arid10(tmp_path)
    assert str(gone[0]) in str(err.value)
    assert str(gone[6]) not in str(err.value)  # only the first few are quoted


def test_skip_drops_and_counts_missing_and_empty(tmp_path):
    fake = fixtures.write_arid10(tmp_path)
    rows = fake.subsets["train"]
    fake.video_path(rows[0][0]).unlink()
    fake.video_path(rows[5][0]).unlink()
    fixtures.write_empty_video(fake.video_path(rows[9][0]))
    with pytest.raises(DatasetError, match=r"1 listed videos are empty, 0 bytes"):
        datasets.read_arid10(tmp_path)
    info, records = datasets.read_arid10(tmp_path, on_bad_input="skip")
    kept = [row for i, row in enumerate(rows) if i not in (0, 5, 9)]
    assert [(r.clip_id, r.label) for r in records] == kept
    report = info.report
    assert (report.num_listed, report.num_kept, report.num_skipped) == (22, 19, 3)
    assert report.missing == (str(fake.video_path(rows[0][0])), str(fake.video_path(rows[5][0])))
    assert report.empty == (str(fake.video_path(rows[9][0])),)
    assert "19/22 clips kept, 2 missing" in report.summary()


def test_no_video_dir_found(tmp_path):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1}, video_subdir="somewhere")
    with pytest.raises(DatasetError, match=r"no video directory .*looked in: .*clips_v1\. Pass video_dir="):
        datasets.read_arid10(tmp_path)
    _, records = datasets.read_arid10(tmp_path, video_dir=fake.video_dir)
    assert len(records) == 11


# ----------------------------------------------------------------------------- malformed lines


@pytest.mark.parametrize("bad_line, problem", [
    ("5\t3", r"expected 3 tab-separated fields \(idx, label, path\), got 2"),
    ("5\t3\tPour/Pour_1_1.avi\textra", "expected 3 tab-separated fields .* got 4"),
    ("5\tthree\tPour/Pour_1_1.avi", "label 'three' is not an integer"),
    ("x\t3\tPour/Pour_1_1.avi", "index 'x' is not an integer"),
    ("5\t11\tWave/Wave_1_1.avi", r"label 11 out of range \[0, 11\)"),
    ("5\t-1\tDrink/Drink_1_1.avi", r"label -1 out of range"),
    ("5\t3\tDance/Dance_1_1.avi", "unknown class 'Dance'"),
    ("5\t3\tPush/Push_1_1.avi", "label 3 is class 'Pour' but the clip is in folder 'Push'"),
    ("5\t3\tPour_1_1.avi", "clip path 'Pour_1_1.avi' has no class folder"),
])
def test_malformed_arid_line_names_file_and_line(arid10_tree, tmp_path, bad_line, problem):
    root = tmp_path / "copy"
    shutil.copytree(arid10_tree.root, root, symlinks=True)
    split_file = root / "ARID_split1_train.txt"
    _rewrite_line(split_file, 4, bad_line)
    pattern = re.escape(f"{split_file}, line 4: ") + problem + ".*" + re.escape(repr(bad_line))
    with pytest.raises(DatasetError, match=pattern):
        datasets.read_arid10(root)


def test_duplicate_entry(tmp_path):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1})
    path = fake.split_files["train"]
    with path.open("a") as f:
        f.write(fixtures.arid_line(99, 1, fake.subsets["train"][1][0]) + "\n")
    with pytest.raises(DatasetError, match=re.escape(f"{path}, line 12: duplicate entry 'Jump/") + r".*line 2"):
        datasets.read_arid10(tmp_path)


def test_dark48_malformed_and_mismatched(tmp_path):
    fake = fixtures.write_dark48(tmp_path, label_base=1)
    split_file = fake.split_files["train"]
    cid = fake.subsets["train"][2][0]   # class index 2, written as label 3 (1-based)
    _rewrite_line(split_file, 3, f"{cid} 2")  # a 0-based label in a 1-based file
    # The label as the file writes it (2, 1-based), not the reader's 0-based 1.
    with pytest.raises(DatasetError, match=re.escape(f"{split_file}, line 3: label 2 is class 'action_01' but the "
                                                     "clip is in folder 'action_02'")):
        datasets.read_dark48(tmp_path)
    _rewrite_line(split_file, 3, f"{cid} 49")
    with pytest.raises(DatasetError, match=r"line 3: label 49 out of range \[1, 49\) of classInd.txt"):
        datasets.read_dark48(tmp_path)
    _rewrite_line(split_file, 3, cid)
    with pytest.raises(DatasetError, match=r"line 3: expected 2 space-separated fields"):
        datasets.read_dark48(tmp_path)


def test_dark48_class_index_problems(tmp_path):
    fixtures.write_dark48(tmp_path)
    class_file = tmp_path / "annotations" / "classInd.txt"
    lines = class_file.read_text().splitlines()
    class_file.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DatasetError, match=re.escape(f"{class_file}: Dark48 has 48 classes, the class index lists 47")):
        datasets.read_dark48(tmp_path)
    class_file.write_text("\n".join(f"{i + 2}\tc{i}" for i in range(48)) + "\n")
    with pytest.raises(DatasetError, match="class ids must be consecutive from 0 or 1"):
        datasets.read_dark48(tmp_path)
    class_file.unlink()
    with pytest.raises(DatasetError, match=r"dark48 class index not found; looked for: .*annotations/classInd.txt"):
        datasets.read_dark48(tmp_path)


def test_bad_arguments(arid10_tree):
    with pytest.raises(DatasetError, match=r"split must be one of \(0, 1\), got 2"):
        datasets.read_arid15(arid10_tree.root, split=2)
    with pytest.raises(DatasetError, match="subset must be one of"):
        datasets.read_arid10(arid10_tree.root, subset="val")
    with pytest.raises(DatasetError, match="unknown dataset 'ucf101'"):
        datasets.read_split("ucf101", root=arid10_tree.root)
    with pytest.raises(ValueError, match="on_bad_input must be one of"):
        datasets.read_arid10(arid10_tree.root, on_bad_input="ignore")


# ----------------------------------------------------------------------------- dispatcher, full check


def test_read_split_dispatch_and_default_splits(tmp_path):
    fixtures.write_arid15(tmp_path / "a15", clips_per_class={"test": 1})
    info, records = datasets.read_split("arid15", root=tmp_path / "a15", subset="test")
    assert info.split == "split0_test" and len(records) == 11
    fixtures.write_dark48(tmp_path / "d48")
    info, records = datasets.read_split("dark48", root=tmp_path / "d48")
    assert info.split == "split1_train" and len(records) == 48


def test_validate_dataset_finds_undecodable_clips(tmp_path, capsys):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1})
    rows = fake.subsets["train"]
    fixtures.write_corrupt_video(fake.video_path(rows[1][0]))
    fixtures.write_truncated_video(fake.video_path(rows[2][0]))
    fixtures.write_empty_video(fake.video_path(rows[3][0]))
    result = datasets.validate_dataset("arid10", root=tmp_path, subset="train")
    assert result.num_clips == 10  # the empty one is dropped at read time
    assert sorted(p for p, _ in result.bad) == sorted(str(fake.video_path(rows[i][0])) for i in (1, 2, 3))
    assert result.per_class == {name: 1 for name in datasets.ARID_CLASSES if name not in ("Jump", "Pick", "Pour")}
    assert set(result.frame_counts) == {8}
    # The CLI prints the same summary and fails because of the bad files. The tree has
    # no test list, so only the train list is checked (a missing list is an error).
    assert datasets.main(["check", "--dataset", "arid10", "--root", str(tmp_path), "--subset", "train",
                          "--workers", "0"]) == 1
    out = capsys.readouterr().out
    assert "arid10 split1_train: 10 clips, 11 classes" in out and "bad videos: 3" in out
    assert f"{fake.video_path(rows[2][0])}: not a readable video" in out


def test_read_split_synthetic_generates_and_reads_like_arid(tmp_path, monkeypatch):
    monkeypatch.setenv("ACTLUMOS_DATA_DIR", str(tmp_path))  # the default cache root
    info, records = datasets.read_split("synthetic", subset="test")   # split defaults to 1
    assert (info.dataset, info.split, info.class_names) == ("synthetic", "split1_test", fixtures.ARID_CLASSES)
    root = Path(records[0].path).parents[1]
    assert tmp_path in root.parents
    # The split list, parsed independently: idx<TAB>label<TAB>Class/Class_a_b.mp4.
    rows = [line.split("\t") for line in (root / "ARID_split1_test.txt").read_text().splitlines() if line]
    assert [(r.clip_id, r.label, r.path) for r in records] == [(c, int(l), str(root / c)) for _, l, c in rows]
    assert {r.label for r in records} == set(range(11))
    assert all(Path(r.path).stat().st_size > 0 for r in records)
    info3, records3 = datasets.read_split("synthetic", split=3, subset="train")
    assert info3.split == "split3_train" and Path(records3[0].path).parents[1] == root
