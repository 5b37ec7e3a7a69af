"""Readers for the dark-video datasets: ARID V1.0, ARID V1.5, Dark48 (and the synthetic stand-in).

Every reader turns a local download into ``(SplitInfo, [ClipRecord])``. None of
these datasets can be fetched automatically, so each reader checks the layout it
was given and says exactly what is missing: a malformed split line names the file
and the 1-based line number, a missing clip names the path. A split list is
trusted for labels, so any fault in it (a malformed line, an unknown class, a
path outside the folder of its label's class or outside the video directory)
stops the read whatever ``on_bad_input`` says. With ``on_bad_input="skip"``
listed videos that are missing, empty or not files are dropped and counted in
the returned ``DatasetSplitInfo.report`` instead.

Layouts (FACTS.md "Datasets"):
  ARID V1.0  <root>/[clips_v1/]<Class>/<Class>_a_b.avi,
             ARID_split{1,2,3}_{train,test,other}.txt: ``idx<TAB>label<TAB>Class/Class_a_b.avi``
  ARID V1.5  <root>/clips_v1.5/<Class>/<Class>_a_b.mp4,
             split_{0,1}/split{0,1}_{train,test,other(s)}.txt, same line format
  Dark48     <root>/<class>/<vid>.mp4, annotations/{train,test}_split{1,2,3}.txt:
             ``class/vid.mp4 label``; classInd.txt: ``id<TAB>name``

CLI: ``python -m data_pipelines.datasets check --dataset arid10 --root DIR [--split 1]``
decodes every clip of a split as training does and prints a summary; it exits
1 if any clip is bad and 2 if a list or the root cannot be used.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import dataclasses
import logging
import os
import posixpath
import re
import sys
from pathlib import Path
from typing import Iterable, Sequence

from data_pipelines.bad_input import (EMPTY_VIDEO, VIDEO_NOT_FOUND, BadInputPolicy, DatasetError, run_cli,
                                      video_file_problem)
from data_pipelines.records import ClipRecord, SplitInfo

ARID_CLASSES = ("Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk", "Wave")
DARK48_NUM_CLASSES = 48
DATASETS = ("synthetic", "arid10", "arid15", "dark48")
DEFAULT_SPLIT = {"synthetic": 1, "arid10": 1, "arid15": 0, "dark48": 1}
VALID_SPLITS = {"synthetic": (1, 2, 3), "arid10": (1, 2, 3), "arid15": (0, 1), "dark48": (1, 2, 3)}
SUBSETS = {"synthetic": ("train", "test"), "arid10": ("train", "test", "other"),
           "arid15": ("train", "test", "other"), "dark48": ("train", "test")}
# Lists that not every release ships: ``check --subset all`` only notes their absence.
OPTIONAL_SUBSETS = ("other",)

# Where split lists are looked for when no split_dir is given, relative to the root.
_SPLIT_SUBDIRS = ("", "list_cvt", "lists", "splits", "annotations")
_SHOWN = 5  # how many offending paths an error quotes
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:/")

_log = logging.getLogger(__name__)

MANUAL_DOWNLOAD = {
    "arid10": "ARID V1.0 is distributed on request by its authors (https://xuyu0010.github.io/arid.html).",
    "arid15": "ARID V1.5 is distributed on request by its authors (https://xuyu0010.github.io/arid.html).",
    "dark48": "Dark48 is distributed by the DTCM authors through a cloud drive (see their repository).",
}


@dataclasses.dataclass(frozen=True)
class ReadReport:
    """What a reader kept and dropped from one split list."""

    split_file: str
    num_listed: int
    missing: tuple[str, ...] = ()   # listed videos that are not on disk
    empty: tuple[str, ...] = ()     # listed videos of 0 bytes
    # (path, problem) of listed paths that are no video file: a directory, a symlink loop, unreadable
    unusable: tuple[tuple[str, str], ...] = ()

    @property
    def num_skipped(self) -> int:
        return len(self.missing) + len(self.empty) + len(self.unusable)

    @property
    def num_kept(self) -> int:
        return self.num_listed - self.num_skipped

    def summary(self) -> str:
        text = f"{self.split_file}: {self.num_kept}/{self.num_listed} clips kept"
        if self.missing:
            text += f", {len(self.missing)} missing (e.g. {', '.join(self.missing[:_SHOWN])})"
        if self.empty:
            text += f", {len(self.empty)} empty (e.g. {', '.join(self.empty[:_SHOWN])})"
        if self.unusable:
            text += f", {len(self.unusable)} not video files (e.g. {_quote_problems(self.unusable)})"
        return text


def _quote_problems(problems: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{path}: {problem}" for path, problem in problems[:_SHOWN])


@dataclasses.dataclass(frozen=True)
class DatasetSplitInfo(SplitInfo):
    """A ``SplitInfo`` that also says where the split came from and what was skipped."""

    report: ReadReport | None = None


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One parsed split line, before it is checked against the disk."""

    clip_id: str  # normalised: "Drink/./a.avi" and "Drink/a.avi" are one clip
    label: int
    line_no: int


class ListNotFoundError(DatasetError):
    """A split list or class index that is in none of the places a reader looks."""


# --------------------------------------------------------------------------- parsing


def _split_lines(path: Path) -> Iterable[tuple[int, str]]:
    """(1-based line number, stripped line) of every non-blank line."""
    try:
        # utf-8-sig: Windows editors start UTF-8 files with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: split file is not UTF-8 text ({e})") from e
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield line_no, line


def _bad_line(path: Path, line_no: int, line: str, problem: str) -> DatasetError:
    return DatasetError(f"{path}, line {line_no}: {problem}: {line!r}")


def _parse_int(path: Path, line_no: int, line: str, field: str, what: str) -> int:
    try:
        return int(field)
    except ValueError:
        raise _bad_line(path, line_no, line, f"{what} {field!r} is not an integer") from None


def _clip_path(path: Path, line_no: int, line: str, written_path: str, label: int,
               class_names: Sequence[str], written_label: int | None = None) -> str:
    """The normalised clip path of a split line, which must lie in the folder of its label's class.

    The path is normalised before its folder is read, so "Drink/../Jump/x.avi"
    counts as a Jump clip and "Drink/../../x.avi" as leaving the video
    directory: a label can neither be contradicted nor escaped through "..".
    ``written_label`` is the label as the file writes it, for messages.
    """
    written_label = label if written_label is None else written_label
    slashed = written_path.replace("\\", "/")
    if slashed.startswith("/") or _WINDOWS_DRIVE.match(slashed):
        raise _bad_line(path, line_no, line, f"clip path {written_path!r} is absolute; split lists hold paths "
                                             "relative to the video directory, as Class/clip.avi")
    clip_id = posixpath.normpath(slashed)
    if clip_id == ".." or clip_id.startswith("../"):
        raise _bad_line(path, line_no, line, f"clip path {written_path!r} leads outside the dataset's video "
                                             f"directory (it resolves to {clip_id!r})")
    if not 0 <= label < len(class_names):
        raise _bad_line(path, line_no, line, f"label {label} out of range [0, {len(class_names)})")
    if "/" not in clip_id:
        raise _bad_line(path, line_no, line, f"clip path {written_path!r} has no class folder")
    folder = clip_id.split("/")[0]
    if folder not in class_names:
        raise _bad_line(path, line_no, line, f"unknown class {folder!r} (known: {', '.join(class_names)})")
    if class_names[label] != folder:
        if clip_id != slashed:
            raise _bad_line(path, line_no, line,
                            f"clip path {written_path!r} resolves to {clip_id!r}, outside the folder of its "
                            f"class {class_names[label]!r} (label {written_label})")
        raise _bad_line(path, line_no, line,
                        f"label {written_label} is class {class_names[label]!r} but the clip is in folder {folder!r}")
    return clip_id


def _check_unique(path: Path, entries: Sequence[_Entry]) -> None:
    first_seen: dict[str, int] = {}
    for entry in entries:
        if entry.clip_id in first_seen:
            raise DatasetError(f"{path}, line {entry.line_no}: duplicate entry {entry.clip_id!r} "
                               f"(first listed on line {first_seen[entry.clip_id]}); a clip listed twice "
                               "would be weighted twice")
        first_seen[entry.clip_id] = entry.line_no


def parse_arid_list(path: Path, class_names: Sequence[str] = ARID_CLASSES) -> list[_Entry]:
    """Parses an ARID split list: ``idx<TAB>label<TAB>Class/Class_a_b.ext`` per line."""
    entries = []
    for line_no, line in _split_lines(path):
        fields = line.split("\t") if "\t" in line else line.split()
        if len(fields) != 3:
            raise _bad_line(path, line_no, line, f"expected 3 tab-separated fields (idx, label, path), got {len(fields)}")
        _parse_int(path, line_no, line, fields[0].strip(), "index")
        label = _parse_int(path, line_no, line, fields[1].strip(), "label")
        clip_id = _clip_path(path, line_no, line, fields[2].strip(), label, class_names)
        entries.append(_Entry(clip_id, label, line_no))
    _check_unique(path, entries)
    return entries


def parse_dark48_class_index(path: Path) -> tuple[tuple[str, ...], int]:
    """Reads ``classInd.txt`` (``id<TAB>name``) -> (names in id order, the id of the first class).

    The ids must be consecutive from 0 or from 1; the split files use the same
    numbering, so the base found here is what is subtracted from their labels.
    """
    ids, names, line_of_id = [], [], {}
    for line_no, line in _split_lines(path):
        fields = line.split(None, 1)
        if len(fields) != 2:
            raise _bad_line(path, line_no, line, "expected 2 fields (id, class name)")
        class_id = _parse_int(path, line_no, line, fields[0], "class id")
        if class_id in line_of_id:
            raise _bad_line(path, line_no, line, f"class id {class_id} is already used on line {line_of_id[class_id]}")
        line_of_id[class_id] = line_no
        ids.append(class_id)
        names.append(fields[1].strip())
    if not ids:
        raise DatasetError(f"{path}: class index is empty")
    base = min(ids)
    if base not in (0, 1):
        raise DatasetError(f"{path}, line {line_of_id[base]}: class ids must be consecutive from 0 or 1, "
                           f"but the smallest is {base}")
    expected = set(range(base, base + len(ids)))
    stray = sorted(set(ids) - expected)
    if stray:
        missing = sorted(expected - set(ids))
        raise DatasetError(f"{path}, line {line_of_id[stray[0]]}: class ids must be consecutive from 0 or 1: "
                           f"the {len(ids)} ids should run {base}..{base + len(ids) - 1}, but "
                           f"{_some(stray)} {'is' if len(stray) == 1 else 'are'} listed and "
                           f"{_some(missing)} {'is' if len(missing) == 1 else 'are'} missing")
    if len(set(names)) != len(names):
        dup = [n for n, c in collections.Counter(names).items() if c > 1]
        raise DatasetError(f"{path}: duplicate class names {dup}")
    if len(names) != DARK48_NUM_CLASSES:
        raise DatasetError(f"{path}: Dark48 has {DARK48_NUM_CLASSES} classes, the class index lists {len(names)}")
    by_id = dict(zip(ids, names))
    return tuple(by_id[i] for i in range(base, base + len(ids))), base


def _some(values: Sequence[int]) -> str:
    return ", ".join(map(str, values[:_SHOWN])) + (f" (and {len(values) - _SHOWN} more)" if len(values) > _SHOWN else "")


def parse_dark48_list(path: Path, class_names: Sequence[str], label_base: int) -> list[_Entry]:
    """Parses a Dark48 split list: ``class/vid.mp4 label`` per line, labels in classInd numbering."""
    entries = []
    for line_no, line in _split_lines(path):
        fields = line.rsplit(None, 1)
        if len(fields) != 2:
            raise _bad_line(path, line_no, line, "expected 2 space-separated fields (path, label)")
        raw = _parse_int(path, line_no, line, fields[1], "label")
        label = raw - label_base
        if not 0 <= label < len(class_names):
            raise _bad_line(path, line_no, line, f"label {raw} out of range [{label_base}, "
                                                 f"{label_base + len(class_names)}) of classInd.txt")
        clip_id = _clip_path(path, line_no, line, fields[0].strip(), label, class_names, written_label=raw)
        entries.append(_Entry(clip_id, label, line_no))
    _check_unique(path, entries)
    return entries


# --------------------------------------------------------------------------- locating


def _check_root(root, dataset: str) -> Path:
    if root is None:
        raise DatasetError(f"{dataset}: no dataset root given. {MANUAL_DOWNLOAD.get(dataset, '')}".strip())
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{dataset} root {root} does not exist or is not a directory. "
                           f"{MANUAL_DOWNLOAD.get(dataset, '')}".strip())
    return root


def _find_file(root: Path, split_dir, names: Sequence[str], subdirs: Sequence[str], what: str) -> Path:
    """The first ``dir/name`` that exists; the error lists every place looked."""
    dirs = [Path(split_dir).expanduser()] if split_dir is not None else [root / d if d else root for d in subdirs]
    looked = []
    for directory in dirs:
        for name in names:
            candidate = directory / name
            if candidate.is_file():
                return candidate
            looked.append(str(candidate))
    raise ListNotFoundError(f"{what} not found; looked for: {', '.join(looked)}")


def _find_video_dir(root: Path, video_dir, candidates: Sequence[str], entries: Sequence[_Entry],
                    split_file: Path) -> Path:
    """The directory the split's clip paths are relative to."""
    if video_dir is not None:
        path = Path(video_dir).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.is_dir():
            raise DatasetError(f"video_dir {path} does not exist")
        return path
    folders = {e.clip_id.split("/")[0] for e in entries}
    tried = []
    for name in candidates:
        path = root / name if name else root
        tried.append(str(path))
        if any((path / folder).is_dir() for folder in folders):
            return path
    raise DatasetError(f"no video directory holding the class folders of {split_file} "
                       f"(e.g. {sorted(folders)[:3]}); looked in: {', '.join(tried)}. Pass video_dir=.")


def _records(entries: Sequence[_Entry], video_dir: Path, split_file: Path,
             policy: BadInputPolicy) -> tuple[list[ClipRecord], ReadReport]:
    """Checks every listed clip on disk (a stat each, no decoding: cheap)."""
    records, missing, empty, unusable = [], [], [], []
    for entry in entries:
        path = video_dir / entry.clip_id
        problem = video_file_problem(path)
        if problem is None:
            records.append(ClipRecord(entry.clip_id, entry.label, str(path)))
        elif problem == VIDEO_NOT_FOUND:
            missing.append(str(path))
        elif problem == EMPTY_VIDEO:
            empty.append(str(path))
        else:
            unusable.append((str(path), problem))
    report = ReadReport(str(split_file), len(entries), tuple(missing), tuple(empty), tuple(unusable))
    if report.num_skipped and policy is BadInputPolicy.FAIL:
        parts = []
        if missing:
            parts.append(f"{len(missing)} listed videos are missing (first: {', '.join(missing[:_SHOWN])})")
        if empty:
            parts.append(f"{len(empty)} listed videos are empty, 0 bytes (first: {', '.join(empty[:_SHOWN])})")
        if unusable:
            parts.append(f"{len(unusable)} listed paths are not video files (first: {_quote_problems(unusable)})")
        raise DatasetError(f"{split_file}: {'; '.join(parts)}. Pass on_bad_input='skip' to drop them.")
    if report.num_skipped:
        _log.warning("skipped bad input: %s", report.summary())
    return records, report


def _check_choice(dataset: str, split: int, subset: str) -> None:
    if split not in VALID_SPLITS[dataset]:
        raise DatasetError(f"{dataset}: split must be one of {VALID_SPLITS[dataset]}, got {split!r}")
    if subset not in SUBSETS[dataset]:
        raise DatasetError(f"{dataset}: subset must be one of {SUBSETS[dataset]}, got {subset!r}")


# --------------------------------------------------------------------------- readers


def read_arid10(root, *, split: int = 1, subset: str = "train", split_dir=None, video_dir=None,
                on_bad_input: str | BadInputPolicy = "fail",
                dataset_name: str = "arid10") -> tuple[DatasetSplitInfo, list[ClipRecord]]:
    """Reads ``ARID_split{split}_{subset}.txt`` of an ARID V1.0-format root.

    ``split_dir`` defaults to searching the root, then ``list_cvt/``, ``lists/``,
    ``splits/``, ``annotations/``; ``video_dir`` (absolute or relative to the
    root) defaults to the root or ``clips_v1/``, whichever holds the class folders.
    """
    policy = BadInputPolicy.parse(on_bad_input)
    _check_choice(dataset_name if dataset_name in VALID_SPLITS else "arid10", split, subset)
    root = _check_root(root, dataset_name)
    split_file = _find_file(root, split_dir, [f"ARID_split{split}_{subset}.txt"], _SPLIT_SUBDIRS,
                            f"{dataset_name} split list")
    entries = parse_arid_list(split_file)
    if not entries:
        raise DatasetError(f"{split_file}: split list has no clips")
    videos = _find_video_dir(root, video_dir, ("", "clips_v1"), entries, split_file)
    records, report = _records(entries, videos, split_file, policy)
    info = DatasetSplitInfo(dataset_name, f"split{split}_{subset}", ARID_CLASSES, report)
    return info, records


def read_arid15(root, *, split: int = 0, subset: str = "train", split_dir=None, video_dir=None,
                on_bad_input: str | BadInputPolicy = "fail") -> tuple[DatasetSplitInfo, list[ClipRecord]]:
    """Reads ``split_{split}/split{split}_{subset}.txt`` of an ARID V1.5 root.

    ``subset="other"`` accepts either ``..._other.txt`` or ``..._others.txt``;
    videos default to ``clips_v1.5/`` (or the root).
    """
    policy = BadInputPolicy.parse(on_bad_input)
    _check_choice("arid15", split, subset)
    root = _check_root(root, "arid15")
    names = [f"split{split}_{subset}.txt"] + ([f"split{split}_others.txt"] if subset == "other" else [])
    subdirs = [f"split_{split}"] + [f"{d}/split_{split}" if d else "" for d in _SPLIT_SUBDIRS]
    split_file = _find_file(root, split_dir, names, subdirs, "arid15 split list")
    entries = parse_arid_list(split_file)
    if not entries:
        raise DatasetError(f"{split_file}: split list has no clips")
    videos = _find_video_dir(root, video_dir, ("clips_v1.5", ""), entries, split_file)
    records, report = _records(entries, videos, split_file, policy)
    return DatasetSplitInfo("arid15", f"split{split}_{subset}", ARID_CLASSES, report), records


def read_dark48(root, *, split: int = 1, subset: str = "train", split_dir=None, video_dir=None,
                on_bad_input: str | BadInputPolicy = "fail") -> tuple[DatasetSplitInfo, list[ClipRecord]]:
    """Reads ``annotations/{subset}_split{split}.txt`` of a Dark48 root.

    Class names and the label numbering come from ``classInd.txt`` (searched in
    ``split_dir``, ``annotations/`` and the root): if its ids start at 1, the split
    labels do too and 1 is subtracted; returned labels are always 0-based.
    """
    policy = BadInputPolicy.parse(on_bad_input)
    _check_choice("dark48", split, subset)
    root = _check_root(root, "dark48")
    subdirs = ("annotations", "", "list_cvt", "lists", "splits")
    split_file = _find_file(root, split_dir, [f"{subset}_split{split}.txt"], subdirs, "dark48 split list")
    class_file = _find_file(root, split_dir, ["classInd.txt"], subdirs, "dark48 class index")
    class_names, base = parse_dark48_class_index(class_file)
    entries = parse_dark48_list(split_file, class_names, base)
    if not entries:
        raise DatasetError(f"{split_file}: split list has no clips")
    videos = _find_video_dir(root, video_dir, ("", "videos", "clips"), entries, split_file)
    records, report = _records(entries, videos, split_file, policy)
    return DatasetSplitInfo("dark48", f"split{split}_{subset}", class_names, report), records


def read_split(dataset: str, *, root=None, split: int | None = None, subset: str = "train",
               synthetic_preset: str = "tiny", seed: int = 0,
               on_bad_input: str | BadInputPolicy = "fail") -> tuple[DatasetSplitInfo, list[ClipRecord]]:
    """One entry for configs: ``dataset`` in ``DATASETS``, ``split=None`` picks its default.

    ``"synthetic"`` generates (or reuses) the embedded ARID-format dataset
    ``synthetic_preset``/``seed`` (in ``root`` if given) and reads it like ARID V1.0.
    """
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    split = DEFAULT_SPLIT[dataset] if split is None else split
    if dataset == "synthetic":
        from data_pipelines import synthetic  # generating is heavy; only load it when asked

        _check_choice("synthetic", split, subset)
        path = synthetic.ensure_dataset(synthetic_preset, seed, root)
        return read_arid10(path, split=split, subset=subset, on_bad_input=on_bad_input, dataset_name="synthetic")
    reader = {"arid10": read_arid10, "arid15": read_arid15, "dark48": read_dark48}[dataset]
    return reader(root, split=split, subset=subset, on_bad_input=on_bad_input)


# --------------------------------------------------------------------------- full check


@dataclasses.dataclass(frozen=True)
class ValidationResult:
    info: DatasetSplitInfo
    num_clips: int
    per_class: dict[str, int]
    bad: tuple[tuple[str, str], ...]   # (path, error) of every clip that did not decode
    frame_counts: tuple[int, ...]

    def summary(self) -> str:
        lines = [f"{self.info.dataset} {self.info.split}: {self.num_clips} clips, {self.info.num_classes} classes"]
        if self.info.report is not None:
            lines.append(f"  list: {self.info.report.summary()}")
        for name in self.info.class_names:
            lines.append(f"  {name:<24s}{self.per_class.get(name, 0):6d}")
        if self.frame_counts:
            lines.append(f"  frames per clip: min {min(self.frame_counts)}, max {max(self.frame_counts)}")
        lines.append(f"  bad videos: {len(self.bad)}")
        lines += [f"    {path}: {error}" for path, error in self.bad]
        return "\n".join(lines)


def _decode_check(path: str) -> tuple[str, int, str | None]:
    """(path, frames, None) if training can read every frame of the clip, else (path, 0, problem).

    Reads exactly as the training loader does (the file's bytes, then
    ``read_yuv_frames``), asking for every frame the header promises: whatever
    frames a training epoch samples, this read would have failed first.
    """
    import numpy as np

    from data_pipelines.frame_reader import read_yuv_frames
    from data_pipelines.video_io import VideoError, read_video_file

    try:
        (clip,) = read_yuv_frames(read_video_file(path), lambda length: [np.arange(length)], name=path)
        return path, len(clip), None
    except VideoError as e:
        return path, 0, str(e).removeprefix(f"{path}: ")


def _check_clips(info: DatasetSplitInfo, records: Sequence[ClipRecord], num_workers: int) -> ValidationResult:
    paths = [r.path for r in records]
    if num_workers > 0:
        with concurrent.futures.ProcessPoolExecutor(num_workers) as pool:
            results = list(pool.map(_decode_check, paths, chunksize=4))
    else:
        results = [_decode_check(p) for p in paths]
    report = info.report
    bad = [(p, "missing") for p in report.missing] + [(p, "empty (0 bytes)") for p in report.empty]
    bad += list(report.unusable)
    bad += [(path, error) for path, _, error in results if error is not None]
    good = {path for path, _, error in results if error is None}
    per_class = collections.Counter(info.class_names[r.label] for r in records if r.path in good)
    frames = tuple(n for _, n, error in results if error is None)
    return ValidationResult(info, len(records), dict(per_class), tuple(bad), frames)


def validate_dataset(dataset: str, *, root=None, split: int | None = None, subset: str = "train",
                     num_workers: int = 0, **read_kwargs) -> ValidationResult:
    """Reads a split (skipping missing/empty files, which are reported) and decodes every clip as training would.

    A one-off check of a real download; training detects decode failures lazily.
    A malformed split list is a ``DatasetError``, as in training.
    """
    info, records = read_split(dataset, root=root, split=split, subset=subset, on_bad_input="skip", **read_kwargs)
    return _check_clips(info, records, num_workers)


def _check(args: argparse.Namespace) -> int:
    """``check``: 0 if every listed clip decodes, 1 if some do not; a bad list or root raises."""
    subsets = SUBSETS[args.dataset] if args.subset == "all" else (args.subset,)
    # Every list is read before any clip is decoded: a broken test list is
    # reported at once, not after an hour of decoding the train clips.
    splits, notes = [], []
    for subset in subsets:
        try:
            splits.append(read_split(args.dataset, root=args.root, split=args.split, subset=subset,
                                     on_bad_input="skip"))
        except ListNotFoundError as e:
            if args.subset != "all" or subset not in OPTIONAL_SUBSETS:
                raise
            notes.append(f"{e} (not every release has a {subset!r} list)")
    any_bad = False
    for info, records in splits:
        result = _check_clips(info, records, args.workers)
        print(result.summary(), flush=True)
        any_bad = any_bad or bool(result.bad)
    for note in notes:
        print(f"note: {note}")
    return 1 if any_bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_pipelines.datasets", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check", help="decode every clip of a split as training does and print a summary",
        description="Exit status: 0 if every listed clip decodes, 1 if some are missing or do not decode, "
                    "2 if a split list, the class index or the root cannot be used.")
    check.add_argument("--dataset", required=True, choices=DATASETS)
    check.add_argument("--root", default=None)
    check.add_argument("--split", type=int, default=None)
    check.add_argument("--subset", default="all", help="train, test, other, or all (default)")
    check.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    check.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    return run_cli(_check, args, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
