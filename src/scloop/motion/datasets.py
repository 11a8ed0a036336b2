"""Registry of the real datasets scloop supports: where each comes from, its licence, an index
check, and loaders for the two motion sets.

``DATASETS[name]`` is a :class:`DatasetInfo`; :func:`describe` prints it, :func:`check` compares
the files under a data directory with the dataset's index (counts, missing files, checksum
mismatches, files that fail to parse) and returns a :class:`CheckReport`.  Source and licence text
are condensed from the ``LICENSE-or-SOURCE.md`` / ``SOURCE.md`` files of the project's shared data
folder; read those for the full terms.

Folder layout under a data directory ``<dir>`` (as in the shared data)::

    <dir>/mocap/bandai-namco/{index.csv, dataset-1/data/*.bvh, dataset-2/data/*.bvh}
    <dir>/mocap/cmu-deepmimic/{index.csv, "CMU data.csv", cmu*/<subject>/<clip>.txt}
    <dir>/mnist/*-ubyte.gz

For the motion sets ``data_dir`` may also be the dataset folder itself (or ``<dir>/<name>``).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from scloop.core.registry import ConfigError, _suggest
from scloop.motion.skeleton import Clip


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is: ``kind`` (motion / image), ``folder`` (relative to the data directory;
    empty when it ships with a library), ``summary``, ``source``, ``licence``."""

    name: str
    kind: str
    folder: str
    summary: str
    source: str
    licence: str


@dataclass(frozen=True)
class CheckReport:
    """Result of :func:`check`.  ``expected``: entries in the index; ``found``: of those, present;
    ``missing`` / ``mismatched`` (checksum or frame count differs from the index) /
    ``unreadable`` (fails to parse, with the reason) / ``extra`` (data files not in the index):
    relative paths.  ``ok`` when nothing is missing, mismatched or unreadable."""

    name: str
    root: str
    expected: int
    found: int
    missing: tuple[str, ...] = ()
    mismatched: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unreadable)

    def __str__(self) -> str:
        lines = [f"{self.name} at {self.root}: {'OK' if self.ok else 'PROBLEMS'} -- "
                 f"{self.found}/{self.expected} indexed files found"]
        for label, items in (("missing", self.missing), ("mismatched", self.mismatched),
                             ("unreadable", self.unreadable), ("not in index", self.extra)):
            if items:
                shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
                lines.append(f"  {label}: {shown}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


DATASETS: dict[str, DatasetInfo] = {
    "bandai-namco": DatasetInfo(
        name="bandai-namco", kind="motion", folder="mocap/bandai-namco",
        summary="524 BVH clips (174 of dataset-1, 350 of dataset-2), 22 joints, 30 fps, ~48.6 min; "
                "labelled by content (walk, run, bow, wave-*, ...) and style (happy, old, tired, ...).",
        source="Bandai-Namco-Research-Motiondataset (github.com/BandaiNamcoResearchInc/"
               "Bandai-Namco-Research-Motiondataset, commit 74ead3b), (c) 2022 Bandai Namco Research Inc.; "
               "optical mocap of three professional actors. Cite Kobayashi et al., arXiv:2306.08861 (2023).",
        licence="CC BY-NC 4.0: non-commercial use only, with attribution, a link to the licence and an "
                "indication of changes. Full legal code in the folder's LICENSE.",
    ),
    "cmu-deepmimic": DatasetInfo(
        name="cmu-deepmimic", kind="motion", folder="mocap/cmu-deepmimic",
        summary="84 CMU clips retargeted to DeepMimic's humanoid3d (JSON, 44 numbers per frame, 30 fps, "
                "~5 min): runs, jumps, walks, get-ups, cartwheels; CMU text descriptions in the index. "
                "Subject 88's three clips probably play twice too fast (see timing_note).",
        source="CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu), retargeted by arpspoof/Jump "
               "(Yin et al., SIGGRAPH 2021; commit 1c9c1bd, data/vae/txt/cmu*); descriptions from "
               "DragonForgedTheArtist/IClone-CMU-Mocap's 'CMU data.csv'.",
        licence="CMU terms: free for research; may be included in commercial products but not resold "
                "directly, even converted. Acknowledge: 'The data used in this project was obtained from "
                "mocap.cs.cmu.edu. The database was created with funding from NSF EIA-0196217.'",
    ),
    "mnist": DatasetInfo(
        name="mnist", kind="image", folder="mnist",
        summary="MNIST handwritten digits, IDX files (28x28 uint8). The shared copy has the 10,000 test "
                "images and both label files; the 60,000 training images are absent (tasks split the "
                "test set).",
        source="Y. LeCun, C. Cortes, C.J.C. Burges, The MNIST database (yann.lecun.com/exdb/mnist), via the "
               "nature24/Minist repository (commit 61e43b7). Cite LeCun et al., Proc. IEEE 86(11), 1998.",
        licence="CC BY-SA 3.0: attribution; share-alike for redistributed adaptations.",
    ),
    "digits": DatasetInfo(
        name="digits", kind="image", folder="",
        summary="scikit-learn's 8x8 handwritten digits: 1,797 images, 17 grey levels (sklearn.datasets."
                "load_digits); ships with scikit-learn, no data directory needed.",
        source="UCI Optical Recognition of Handwritten Digits (E. Alpaydin, C. Kaynak, 1998), test part, "
               "as bundled by scikit-learn.",
        licence="UCI: CC BY 4.0; bundled in scikit-learn (BSD-3-Clause).",
    ),
}


def _info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(f"dataset {name!r} unknown; known datasets: {', '.join(DATASETS)}."
                          f"{_suggest(str(name), list(DATASETS))}")
    return DATASETS[name]


def describe(name: str) -> str:
    """A few lines: what the dataset is, where it comes from, its licence."""
    d = _info(name)
    where = f"<data_dir>/{d.folder}" if d.folder else "ships with scikit-learn"
    return (f"{d.name} ({d.kind}; {where})\n  {d.summary}\n  Source: {d.source}\n  Licence: {d.licence}")


# ----------------------------------------------------------------------------- locating folders

_INDEX_MARKER = {"bandai-namco": "content_id", "cmu-deepmimic": "cmu_clip"}


def dataset_dir(name: str, data_dir: str | Path) -> Path:
    """The folder of motion dataset ``name``: ``data_dir`` itself, ``data_dir/<folder>`` or
    ``data_dir/<name>``, whichever holds that dataset's ``index.csv``.  Raises FileNotFoundError
    listing the places tried."""
    info = _info(name)
    data_dir = Path(data_dir).expanduser()
    tried = [data_dir, data_dir / info.folder, data_dir / name]
    for cand in tried:
        index = cand / "index.csv"
        if index.is_file():
            with open(index, newline="") as f:
                header = f.readline()
            if _INDEX_MARKER[name] in header.split(","):
                return cand
    raise FileNotFoundError(f"{name}: no index.csv of this dataset in any of "
                            f"{', '.join(str(p) for p in dict.fromkeys(tried))}")


def read_index(folder: Path) -> list[dict[str, str]]:
    """The rows of ``folder/index.csv`` (a motion dataset's index), in file order."""
    with open(folder / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- checks


def _check_indexed(name: str, folder: Path, pattern: str, parse) -> CheckReport:
    """Shared by the motion sets: every index row's file exists, has the listed sha256, and
    (``parse``) reads with the listed frame count; data files on disk missing from the index are
    ``extra``."""
    rows = read_index(folder)
    missing, mismatched, unreadable = [], [], []
    found = 0
    for row in rows:
        rel = row["file"]
        path = folder / rel
        if not path.is_file():
            missing.append(rel)
            continue
        found += 1
        if row.get("sha256") and _sha256(path) != row["sha256"]:
            mismatched.append(f"{rel} (sha256)")
        if parse is not None:
            try:
                n = parse(path)
            except ValueError as exc:
                unreadable.append(f"{rel} ({exc})")
                continue
            if row.get("frames") and n != int(row["frames"]):
                mismatched.append(f"{rel} (frames {n}, index says {row['frames']})")
    indexed = {r["file"] for r in rows}
    on_disk = (str(p.relative_to(folder)) for p in folder.glob(pattern))
    extra = sorted(rel for rel in on_disk if rel not in indexed)
    return CheckReport(name, str(folder), len(rows), found, tuple(missing), tuple(mismatched),
                       tuple(unreadable), tuple(extra))


def _check_mnist(data_dir: Path) -> CheckReport:
    import gzip

    from scloop.data.mnist import _MD5, _locate

    missing, mismatched, unreadable, notes = [], [], [], []
    found = 0
    for stem, md5 in _MD5.items():
        path = _locate(data_dir, stem)
        if path is None:
            if stem == "train-images-idx3-ubyte":  # optional: tasks split the test set without it
                notes.append(f"{stem} absent (optional; download with `scloop data download mnist`)")
            else:
                missing.append(stem)
            continue
        found += 1
        try:
            blob = path.read_bytes()
            raw = gzip.decompress(blob) if path.suffix == ".gz" else blob
        except (OSError, EOFError) as exc:
            unreadable.append(f"{path.name} ({exc})")
            continue
        if hashlib.md5(raw).hexdigest() != md5:
            mismatched.append(f"{path.name} (md5 of contents)")
    root = data_dir / "mnist" if (data_dir / "mnist").is_dir() else data_dir
    return CheckReport("mnist", str(root), len(_MD5), found, tuple(missing), tuple(mismatched),
                       tuple(unreadable), (), tuple(notes))


def _check_digits() -> CheckReport:
    try:
        from sklearn.datasets import load_digits

        n = len(load_digits().images)
    except Exception as exc:  # noqa: BLE001 -- any failure to load is the finding
        return CheckReport("digits", "scikit-learn", 1, 0, unreadable=(f"load_digits ({exc})",))
    if n != 1797:
        return CheckReport("digits", "scikit-learn", 1, 1, mismatched=(f"load_digits ({n} images, expected 1797)",))
    return CheckReport("digits", "scikit-learn", 1, 1, notes=("1797 images from sklearn.datasets.load_digits",))


def check(name: str, data_dir: str | Path, *, parse: bool = True) -> CheckReport:
    """Compare what is under ``data_dir`` with dataset ``name``'s index.

    bandai-namco / cmu-deepmimic: every ``index.csv`` row's file exists and matches its sha256;
    with ``parse`` each file is also read (:func:`~scloop.motion.bvh.read_bvh` /
    :func:`~scloop.motion.deepmimic.read_deepmimic`) and its frame count compared with the index
    (all 524 BVH take ~5 s, the 84 DeepMimic clips ~0.2 s).  mnist: the four IDX files, md5 of the
    decompressed contents (training images optional).  digits: scikit-learn loads 1,797 images."""
    _info(name)
    data_dir = Path(data_dir).expanduser()
    if name == "digits":
        return _check_digits()
    if name == "mnist":
        return _check_mnist(data_dir)
    try:
        folder = dataset_dir(name, data_dir)
    except FileNotFoundError as exc:
        return CheckReport(name, str(data_dir), 0, 0, missing=("index.csv",), notes=(str(exc),))
    if name == "bandai-namco":
        from scloop.motion.bvh import read_bvh

        return _check_indexed(name, folder, "dataset-*/data/*.bvh",
                              (lambda p: read_bvh(p).n_frames) if parse else None)
    from scloop.motion.deepmimic import read_deepmimic

    return _check_indexed(name, folder, "cmu*/*/*.txt",
                          (lambda p: read_deepmimic(p).n_frames) if parse else None)


# ----------------------------------------------------------------------------- loaders


def _select(rows: list[dict[str, str]], key: str, wanted: Iterable[str] | None, what: str) -> list[dict[str, str]]:
    if wanted is None:
        return rows
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    known = sorted({r[key] for r in rows})
    for w in wanted:
        if w not in known:
            raise ConfigError(f"bandai-namco {what} {w!r} unknown; known: {', '.join(known)}.{_suggest(w, known)}")
    return [r for r in rows if r[key] in set(wanted)]


def load_bandai(data_dir: str | Path, *, contents: Iterable[str] | None = None,
                styles: Iterable[str] | None = None, limit: int | None = None) -> list[Clip]:
    """Bandai-Namco clips (``read_bvh``: Z up, metres, 22 joints with the static ``joint_Root``
    placeholder; see :func:`scloop.motion.representation.canonicalize`), in index order, filtered
    by ``contents`` / ``styles`` (index values, e.g. ``["walk", "run"]``, ``["happy"]``), at most
    ``limit``.  Labels: ``action`` (content), ``style``, ``text`` (the index description, e.g.
    "bow (active style)"), ``dataset``, ``take``."""
    from scloop.motion.bvh import read_bvh

    folder = dataset_dir("bandai-namco", data_dir)
    rows = _select(_select(read_index(folder), "content", contents, "content"), "style", styles, "style")
    if limit is not None:
        rows = rows[: max(int(limit), 0)]
    return [read_bvh(folder / r["file"], labels={"action": r["content"], "style": r["style"],
                                                 "text": r["description"], "dataset": r["dataset"],
                                                 "take": r["take"]})
            for r in rows]


def load_cmu_deepmimic(data_dir: str | Path, *, limit: int | None = None) -> list[Clip]:
    """The CMU clips in DeepMimic format (``read_deepmimic``: humanoid3d, Z up, metres, 30 fps as
    the files say), in index order, at most ``limit``.  Labels: ``text`` (CMU's motion
    description, e.g. "run/jog"; also as ``description``), ``subject``, ``trial``, ``cmu_clip`` and, for subject 88,
    ``timing_note`` (those clips probably play twice too fast)."""
    from scloop.motion.deepmimic import read_deepmimic

    folder = dataset_dir("cmu-deepmimic", data_dir)
    rows = read_index(folder)
    if limit is not None:
        rows = rows[: max(int(limit), 0)]
    clips = []
    for r in rows:
        labels = {"text": r["description"], "description": r["description"], "subject": r["subject"],
                  "trial": r["trial"], "cmu_clip": r["cmu_clip"]}
        if r.get("timing_note"):
            labels["timing_note"] = r["timing_note"]
        clips.append(read_deepmimic(folder / r["file"], labels=labels))
    return clips
