"""Bad input through the public API: an error naming the file and the problem, or a counted skip.

Each test builds a small bad tree in tmp_path (tests/data/fixtures.py) and
checks the readers, the decoders, the ``check`` command and the CLI error
boundary that the command-line tools share.
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest

from data_pipelines import bad_input, datasets
from data_pipelines.bad_input import DatasetError, InputError, run_cli
from data_pipelines.frame_reader import read_yuv_frames
from data_pipelines.loader import ClipFileSource
from data_pipelines.records import ClipRecord
from data_pipelines.video_io import VideoError, decode_video
from tests.data import fixtures


def _rewrite_line(path: Path, line_no: int, new_line: str) -> None:
    lines = path.read_text().splitlines()
    lines[line_no - 1] = new_line
    path.write_text("\n".join(lines) + "\n")


def _check(root, *args) -> list[str]:
    return ["check", "--dataset", "arid10", "--root", str(root), "--workers", "0", *args]


# ----------------------------------------------------------------------------- the CLI error boundary


def test_input_errors_share_one_base():
    assert issubclass(DatasetError, InputError) and issubclass(VideoError, InputError)
    assert issubclass(InputError, ValueError)  # callers catching ValueError keep working


def test_run_cli_prints_input_errors_without_traceback(capsys):
    def refuse(path):
        raise DatasetError(f"{path}, line 3: label 11 out of range [0, 11)")

    assert run_cli(refuse, "lists/a.txt", verbose=False) == 2
    err = capsys.readouterr().err
    assert err == "error: lists/a.txt, line 3: label 11 out of range [0, 11)\n"
    assert run_cli(refuse, "lists/a.txt", verbose=False, prog="tool", exit_code=1) == 1
    assert capsys.readouterr().err.startswith("tool: error: lists/a.txt, line 3")
    with pytest.raises(DatasetError, match="label 11"):  # --verbose: the traceback shows
        run_cli(refuse, "lists/a.txt", verbose=True)


def test_run_cli_ctrl_c_bugs_and_exit_codes(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert run_cli(interrupted, verbose=False) == 130
    assert capsys.readouterr().err == "interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        run_cli(interrupted, verbose=True)

    def bug():
        raise KeyError("a bug, not bad input")

    with pytest.raises(KeyError, match="a bug"):  # unexpected errors keep their traceback
        run_cli(bug, verbose=False)
    assert run_cli(lambda code: code, 1, verbose=False) == 1
    assert run_cli(lambda: None, verbose=False) == 0


def test_check_cli_error_is_one_line_and_verbose_shows_traceback(tmp_path, capsys):
    missing = tmp_path / "no_such_root"
    assert datasets.main(_check(missing)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: arid10 root {missing} does not exist") and "Traceback" not in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    with pytest.raises(DatasetError, match="does not exist"):
        datasets.main(_check(missing, "--verbose"))


def test_converter_cli_uses_the_boundary(tmp_path, capsys):
    from actlumos_jax import convert

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    assert convert.run([str(garbage), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {garbage}: not a readable PyTorch checkpoint")
    assert "Traceback" not in err
    with pytest.raises(convert.ConversionError, match="not a readable PyTorch checkpoint"):
        convert.run([str(garbage), str(tmp_path / "out"), "--verbose"])
    assert issubclass(convert.ConversionError, InputError)


# ----------------------------------------------------------------------------- split list paths


def _arid10(tmp_path):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1})
    return fake, lambda label, path: fixtures.arid_line(1, label, path), lambda: datasets.read_arid10(tmp_path)


def _arid15(tmp_path):
    fake = fixtures.write_arid15(tmp_path, clips_per_class={"train": 1})
    return fake, lambda label, path: fixtures.arid_line(1, label, path), lambda: datasets.read_arid15(tmp_path)


def _dark48(tmp_path):
    fake = fixtures.write_dark48(tmp_path, clips_per_class={"train": 1}, label_base=1)
    return fake, lambda label, path: f"{path} {label + 1}", lambda: datasets.read_dark48(tmp_path)


READERS = {"arid10": _arid10, "arid15": _arid15, "dark48": _dark48}


@pytest.mark.parametrize("reader", READERS)
def test_path_climbing_into_another_class_folder_is_refused(tmp_path, reader):
    fake, line, read = READERS[reader](tmp_path)
    first, second = fake.class_names[:2]
    other_clip = fake.subsets["train"][1][0]  # exists on disk: the label, not the file, is wrong
    climbing = f"{first}/../{other_clip}"
    written_label = "1" if reader == "dark48" else "0"
    _rewrite_line(fake.split_files["train"], 2, line(0, climbing))
    with pytest.raises(DatasetError, match=re.escape(
            f"{fake.split_files['train']}, line 2: clip path {climbing!r} resolves to {other_clip!r}, "
            f"outside the folder of its class {first!r} (label {written_label})")):
        read()


@pytest.mark.parametrize("reader", READERS)
def test_path_escaping_the_video_directory_is_refused(tmp_path, reader):
    fake, line, read = READERS[reader](tmp_path)
    first = fake.class_names[0]
    outside = tmp_path.parent / "elsewhere" / "x.avi"
    fixtures.write_clip(outside, seed=1)  # the target exists: only the path's shape refuses it
    escaping = f"{first}/../../{tmp_path.name}/../elsewhere/x.avi"
    _rewrite_line(fake.split_files["train"], 1, line(0, escaping))
    with pytest.raises(DatasetError, match=re.escape(
            f"{fake.split_files['train']}, line 1: clip path {escaping!r} leads outside the dataset's video "
            f"directory (it resolves to '../elsewhere/x.avi')")):
        read()


@pytest.mark.parametrize("reader", READERS)
def test_absolute_path_has_its_own_message(tmp_path, reader):
    fake, line, read = READERS[reader](tmp_path)
    absolute = str(fake.video_path(fake.subsets["train"][0][0]))
    _rewrite_line(fake.split_files["train"], 1, line(0, absolute))
    with pytest.raises(DatasetError, match=re.escape(
            f"{fake.split_files['train']}, line 1: clip path {absolute!r} is absolute; split lists hold paths "
            "relative to the video directory")) as err:
        read()
    assert "unknown class" not in str(err.value)


def test_windows_paths_are_normalised_and_checked(tmp_path):
    fake, line, read = _arid10(tmp_path)
    split_file = fake.split_files["train"]
    _rewrite_line(split_file, 1, line(0, "Drink\\.\\Drink_1_1.avi"))  # a harmless detour: same clip
    _, records = read()
    assert records[0].clip_id == "Drink/Drink_1_1.avi" and Path(records[0].path).is_file()
    _rewrite_line(split_file, 1, line(0, "C:\\ARID\\Drink\\Drink_1_1.avi"))
    with pytest.raises(DatasetError, match=r"line 1: clip path .* is absolute"):
        read()
    _rewrite_line(split_file, 1, line(0, "Drink/Drink_1_1.avi"))
    _rewrite_line(split_file, 3, line(1, "Jump/../Jump/Jump_2_1.avi"))  # line 2's clip, written otherwise
    with pytest.raises(DatasetError, match=r"line 3: duplicate entry 'Jump/Jump_2_1.avi' \(first listed on line 2\)"):
        read()


def test_check_refuses_a_climbing_path_with_exit_code_2(tmp_path, capsys):
    fake = fixtures.write_arid10(tmp_path)
    split_file = fake.split_files["test"]
    _rewrite_line(split_file, 1, fixtures.arid_line(0, 0, "Drink/../Jump/Jump_24_1.avi"))
    assert datasets.main(_check(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before any clip is decoded
    assert f"error: {split_file}, line 1: clip path 'Drink/../Jump/Jump_24_1.avi'" in captured.err


# ----------------------------------------------------------------------------- encodings and Dark48 ids


def test_split_list_and_class_index_with_utf8_bom(tmp_path):
    fake = fixtures.write_arid10(tmp_path / "arid", clips_per_class={"train": 1})
    path = fake.split_files["train"]
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    _, records = datasets.read_arid10(tmp_path / "arid")
    assert records[0].clip_id == fake.subsets["train"][0][0]
    fake = fixtures.write_dark48(tmp_path / "dark", clips_per_class={"train": 1})
    for path in (tmp_path / "dark" / "annotations" / "classInd.txt", fake.split_files["train"]):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    info, records = datasets.read_dark48(tmp_path / "dark")
    assert info.class_names == fixtures.DARK48_CLASSES and len(records) == 48


@pytest.mark.parametrize("ids, problem", [
    # One id out of sequence: the message names it and the id it left out.
    (list(range(1, 30)) + [77] + list(range(31, 49)), "line 30: class ids must be consecutive from 0 or 1: "
                                                      "the 48 ids should run 1..48, but 77 is listed and 30 is missing"),
    (list(range(1, 48)) + [5], "line 48: class id 5 is already used on line 5"),
    (list(range(3, 51)), "line 1: class ids must be consecutive from 0 or 1, but the smallest is 3"),
])
def test_dark48_class_id_errors_name_the_offending_id(tmp_path, ids, problem):
    fixtures.write_dark48(tmp_path, clips_per_class={"train": 1})
    class_file = tmp_path / "annotations" / "classInd.txt"
    class_file.write_text("".join(f"{class_id}\tclass_{k}\n" for k, class_id in enumerate(ids)))
    with pytest.raises(DatasetError, match=re.escape(f"{class_file}, {problem}")):
        datasets.read_dark48(tmp_path)


# ----------------------------------------------------------------------------- what stands where a video should


def test_directory_instead_of_a_video(tmp_path):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1})
    video = fake.video_path(fake.subsets["train"][3][0])
    video.unlink()
    video.mkdir()
    (video / "frame_0001.jpg").write_bytes(b"not a video")  # a folder of frames, say
    with pytest.raises(DatasetError, match=re.escape(
            f"1 listed paths are not video files (first: {video}: is a directory, not a video file)")):
        datasets.read_arid10(tmp_path)
    info, records = datasets.read_arid10(tmp_path, on_bad_input="skip")
    assert len(records) == 10 and info.report.unusable == ((str(video), "is a directory, not a video file"),)
    assert "1 not video files" in info.report.summary()
    with pytest.raises(VideoError, match=re.escape(f"{video}: is a directory, not a video file")):
        decode_video(video)
    result = datasets.validate_dataset("arid10", root=tmp_path)
    assert result.bad == ((str(video), "is a directory, not a video file"),)


def test_symlink_loop_is_named_or_skipped_never_a_raw_oserror(tmp_path):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1})
    video = fake.video_path(fake.subsets["train"][5][0])
    video.unlink()
    os.symlink(video.name, video)  # points at itself
    with pytest.raises(DatasetError, match=re.escape(f"{video}: symlink loop")):
        datasets.read_arid10(tmp_path)
    info, records = datasets.read_arid10(tmp_path, on_bad_input="skip")
    assert len(records) == 10 and info.report.num_skipped == 1
    assert info.report.unusable[0][0] == str(video) and "symlink loop" in info.report.unusable[0][1]
    # Read directly, as a loader worker reads a record: a VideoError naming the path.
    with pytest.raises(VideoError, match=re.escape(f"{video}: symlink loop")):
        decode_video(video)
    with pytest.raises(VideoError, match=re.escape(f"{video}: symlink loop")):
        ClipFileSource([ClipRecord("Run/loop.avi", 5, str(video))])[0]
    assert "symlink loop" in bad_input.video_file_problem(video)


# ----------------------------------------------------------------------------- check decodes as training does


def test_check_reports_a_stream_shorter_than_its_header(tmp_path, capsys):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1, "test": 1})
    short = fake.video_path(fake.subsets["test"][4][0])
    fixtures.write_short_stream_video(short, header_frames=32, stream_frames=21)
    assert len(decode_video(short)) == 21  # a plain decode stops quietly at the end of the stream
    problem = "truncated video: the header says 32 frames but the stream ends after 21"
    with pytest.raises(VideoError, match=problem):  # training reads up to the header's count
        read_yuv_frames(short.read_bytes(), lambda length: [np.array([length - 1])], name=str(short))
    result = datasets.validate_dataset("arid10", root=tmp_path, subset="test")
    assert result.bad == ((str(short), problem),)
    assert datasets.main(_check(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "arid10 split1_train: 11 clips" in out and f"{short}: {problem}" in out
    assert "note: arid10 split list not found" in out and "ARID_split1_other.txt" in out


def test_check_fails_on_a_missing_split_list_without_a_spurious_other(tmp_path, capsys):
    fake = fixtures.write_arid10(tmp_path, clips_per_class={"train": 1, "test": 1})
    fake.split_files["test"].unlink()
    assert datasets.main(_check(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: arid10 split list not found; looked for: ")
    assert "ARID_split1_test.txt" in captured.err and "_other" not in captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert datasets.main(_check(tmp_path, "--subset", "other")) == 2  # asked for by name: an error
    assert "ARID_split1_other.txt" in capsys.readouterr().err
    assert datasets.main(_check(tmp_path, "--subset", "train")) == 0
