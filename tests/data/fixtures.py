"""Small fake ARID V1.0 / ARID V1.5 / Dark48 trees with real (tiny) H.264 clips.

Shared by the data tests: every writer returns a ``FakeDataset`` saying what it
wrote, so a test can check a reader against it without re-deriving the layout.
Clips are deterministic in (seed, clip index) and small (8 frames of 32x48 by
default) so a whole tree is written in well under a second.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import av
import numpy as np

from data_pipelines.video_io import encode_video, write_video

ARID_CLASSES = ("Drink", "Jump", "Pick", "Pour", "Push", "Run", "Sit", "Stand", "Turn", "Walk", "Wave")
DARK48_CLASSES = tuple(f"action_{i:02d}" for i in range(48))


@dataclasses.dataclass
class FakeDataset:
    """What a writer put on disk."""

    root: Path
    class_names: tuple[str, ...]
    # subset name ("train", "test", ...) -> [(clip_id, 0-based label)] in list order
    subsets: dict[str, list[tuple[str, int]]]
    split_files: dict[str, Path]
    video_dir: Path

    def video_path(self, clip_id: str) -> Path:
        return self.video_dir / clip_id


def clip_frames(seed: int, num_frames: int = 8, height: int = 32, width: int = 48) -> np.ndarray:
    """A dark, moving uint8 (T, H, W, 3) clip: a bright square sliding over noise."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 40, size=(num_frames, height, width, 3), dtype=np.uint8)
    size = max(4, height // 4)
    for t in range(num_frames):
        y = (seed * 3 + t) % (height - size)
        x = (seed * 5 + 2 * t) % (width - size)
        frames[t, y:y + size, x:x + size] = 90 + (seed * 37) % 100
    return frames


def write_clip(path: Path, seed: int, **frame_kwargs) -> None:
    write_video(path, clip_frames(seed, **frame_kwargs), fps=30)


def write_split_list(path: Path, lines: Sequence[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def arid_line(idx: int, label: int, clip_id: str) -> str:
    return f"{idx}\t{label}\t{clip_id}"


def _arid_like(root: Path, *, class_names: Sequence[str], clips_per_class: dict[str, int], ext: str,
               video_dir: Path, list_path, seed: int, frame_kwargs: dict) -> FakeDataset:
    """Shared writer of the two ARID layouts: actors 1.. per class, one take each."""
    subsets: dict[str, list[tuple[str, int]]] = {}
    split_files: dict[str, Path] = {}
    clip_index = 0
    for subset, per_class in clips_per_class.items():
        rows = []
        for label, name in enumerate(class_names):
            for take in range(per_class):
                clip_index += 1
                clip_id = f"{name}/{name}_{clip_index}_{take + 1}{ext}"
                write_clip(video_dir / clip_id, seed * 100_003 + clip_index, **frame_kwargs)
                rows.append((clip_id, label))
        subsets[subset] = rows
        split_files[subset] = write_split_list(
            list_path(subset), [arid_line(i, label, cid) for i, (cid, label) in enumerate(rows)])
    return FakeDataset(Path(root), tuple(class_names), subsets, split_files, video_dir)


def write_arid10(root, *, split: int = 1, class_names: Sequence[str] = ARID_CLASSES,
                 clips_per_class: dict[str, int] | None = None, ext: str = ".avi",
                 video_subdir: str = "", split_subdir: str = "", seed: int = 0, **frame_kwargs) -> FakeDataset:
    """ARID V1.0: ``<root>/<video_subdir>/<Class>/<Class>_a_b<ext>`` and
    ``<root>/<split_subdir>/ARID_split<split>_<subset>.txt``.

    ``ext=".avi"`` names the files as the real release does (the content is H.264
    in an mp4 container; PyAV probes the content, not the name).
    """
    root = Path(root)
    clips_per_class = clips_per_class or {"train": 2, "test": 1}
    list_dir = root / split_subdir if split_subdir else root
    return _arid_like(root, class_names=class_names, clips_per_class=clips_per_class, ext=ext,
                      video_dir=root / video_subdir if video_subdir else root,
                      list_path=lambda subset: list_dir / f"ARID_split{split}_{subset}.txt",
                      seed=seed, frame_kwargs=frame_kwargs)


def write_arid15(root, *, split: int = 0, clips_per_class: dict[str, int] | None = None,
                 other_name: str = "other", seed: int = 0, **frame_kwargs) -> FakeDataset:
    """ARID V1.5: ``<root>/clips_v1.5/<Class>/*.mp4`` and ``<root>/split_<n>/split<n>_<subset>.txt``
    (the "other" list named ``split<n>_<other_name>.txt``)."""
    root = Path(root)
    clips_per_class = clips_per_class or {"train": 2, "test": 1}

    def list_path(subset: str) -> Path:
        name = other_name if subset == "other" else subset
        return root / f"split_{split}" / f"split{split}_{name}.txt"

    return _arid_like(root, class_names=ARID_CLASSES, clips_per_class=clips_per_class, ext=".mp4",
                      video_dir=root / "clips_v1.5", list_path=list_path, seed=seed, frame_kwargs=frame_kwargs)


def write_dark48(root, *, split: int = 1, clips_per_class: dict[str, int] | None = None,
                 label_base: int = 1, class_names: Sequence[str] = DARK48_CLASSES, seed: int = 0,
                 **frame_kwargs) -> FakeDataset:
    """Dark48: ``<root>/<class>/<vid>.mp4``, ``annotations/classInd.txt`` (``id<TAB>name``, ids from
    ``label_base``) and ``annotations/{train,test}_split<n>.txt`` (``class/vid.mp4 label``, same numbering).

    48 classes of one short clip each by default: one encoded clip is reused for
    every file so the tree stays cheap; ``FakeDataset.subsets`` holds 0-based labels.
    """
    root = Path(root)
    clips_per_class = clips_per_class or {"train": 1, "test": 1}
    annotations = root / "annotations"
    write_split_list(annotations / "classInd.txt",
                     [f"{i + label_base}\t{name}" for i, name in enumerate(class_names)])
    data = encode_video(clip_frames(seed, **frame_kwargs), fps=30)
    subsets, split_files = {}, {}
    for subset, per_class in clips_per_class.items():
        rows = []
        for label, name in enumerate(class_names):
            for k in range(per_class):
                clip_id = f"{name}/{name}_{subset}_{k:03d}.mp4"
                path = root / clip_id
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                rows.append((clip_id, label))
        subsets[subset] = rows
        split_files[subset] = write_split_list(annotations / f"{subset}_split{split}.txt",
                                               [f"{cid} {label + label_base}" for cid, label in rows])
    return FakeDataset(root, tuple(class_names), subsets, split_files, root)


def write_synthetic_like(root, *, splits: Sequence[int] = (1, 2, 3), seed: int = 0, **frame_kwargs) -> FakeDataset:
    """The embedded synthetic dataset's layout (ARID V1.0 with .mp4, train/test lists for
    every split, no "other"); returns the description of split ``splits[0]``.

    The clips are written once and listed by every split.
    """
    first = write_arid10(root, split=splits[0], ext=".mp4", seed=seed, **frame_kwargs)
    for split in splits[1:]:
        for subset, rows in first.subsets.items():
            write_split_list(Path(root) / f"ARID_split{split}_{subset}.txt",
                             [arid_line(i, label, cid) for i, (cid, label) in enumerate(rows)])
    return first


# --------------------------------------------------------------------------- bad files


def write_empty_video(path) -> Path:
    """A 0-byte file where a video should be."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def write_corrupt_video(path, seed: int = 0) -> Path:
    """Random bytes with a video name: no container can open it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    return path


def write_truncated_video(path, seed: int = 0, keep_fraction: float = 0.5, **frame_kwargs) -> Path:
    """A real clip cut off part way: the header may parse, the stream does not fully decode.

    mp4 puts its index (moov) after the data by default, so cutting the tail
    makes the file unopenable, as a half-finished download usually is.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_video(clip_frames(seed, **frame_kwargs), fps=30)
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path


def write_short_stream_video(path, seed: int = 0, header_frames: int = 32, stream_frames: int = 21,
                             **frame_kwargs) -> Path:
    """An mp4 whose header promises ``header_frames`` but whose stream ends after ``stream_frames``.

    The index (moov) is written first ("faststart"), so cutting the file at a
    packet boundary keeps it openable with the full frame count in its header:
    a download that stopped part way through the frame data. Every frame is
    its own packet (no B-frames), so the cut leaves exactly ``stream_frames``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = clip_frames(seed, num_frames=header_frames, **frame_kwargs)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "threads=1:bframes=0"}
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    with av.open(str(path)) as container:
        offsets = sorted(packet.pos for packet in container.demux(video=0) if packet.size)
    path.write_bytes(path.read_bytes()[: offsets[stream_frames]])
    return path
