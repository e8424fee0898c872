"""The models folder: installing a model set (fetched or imported), checking it.

Layout of the models folder (``ORGSEG_MODELS``: a local or shared path, or an ``s3://``
prefix that tasks stage from)::

    <set name>/orgseg_model_set.json   the set's registry entry, each part's folder and the
                                       sha256 of every installed file (written last)
    <set name>/<part folder>/          dataset.json, plans.json, fold_N/checkpoint_final.pth
    .downloads/                        partial downloads, resumed by the next fetch

A set is installed into a temporary folder and renamed (or uploaded, manifest last) when
complete, so a node never sees half a set. Every node of a run reads the same bytes: the
manifest's sha256 are checked by ``orgseg models check``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orgseg.errors import ConfigError, DataContractError
from orgseg.io.storage import MODEL_SET_MANIFEST
from orgseg.models.download import download, sha256_file, unpacked
from orgseg.models.registry import ModelRegistry, ModelSetEntry, PartEntry, folder_matches

log = logging.getLogger(__name__)

#: environment variable: the models folder
MODELS_ENV = "ORGSEG_MODELS"
#: the installed set's manifest (its presence marks a folder as an installed model set)
SET_MANIFEST = MODEL_SET_MANIFEST
#: files of an nnU-Net result folder that prediction needs
FOLDER_FILES = ("dataset.json", "plans.json", "dataset_fingerprint.json")
CHECKPOINT = "checkpoint_final.pth"
DOWNLOADS = ".downloads"


def models_dir(explicit: str | None = None) -> str:
    """The models folder: ``explicit``, else ``$ORGSEG_MODELS``, else
    ``$XDG_CACHE_HOME/orgseg/models`` (``~/.cache/orgseg/models``)."""
    if explicit:
        return explicit
    if os.environ.get(MODELS_ENV):
        return os.environ[MODELS_ENV]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return os.path.join(cache, "orgseg", "models")


def set_url(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


# --- finding parts ------------------------------------------------------------------


def result_folders(root: Path) -> list[Path]:
    """Every nnU-Net result folder (``plans.json`` + ``dataset.json`` + ``fold_*``) under
    ``root``, ``root`` itself included."""
    out = []
    for plans in sorted(root.rglob("plans.json")):
        folder = plans.parent
        if (folder / "dataset.json").exists() and any(folder.glob("fold_*")):
            out.append(folder)
    return out


def find_part(part: PartEntry, root: Path, candidates: list[Path] | None = None) -> Path | None:
    """The result folder under ``root`` that ``part.folder`` names: its pattern is matched
    against the last path components of each candidate (so a folder fetched or
    downloaded one level deeper is still found). Several matches: the first in order."""
    depth = len(part.folder.strip("/").split("/"))
    for folder in candidates if candidates is not None else result_folders(root):
        rel = folder.relative_to(root).as_posix() if folder != root else folder.name
        tail = "/".join(rel.split("/")[-depth:])
        if folder_matches(part.folder, tail):
            return folder
    return None


# --- installing ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstallResult:
    name: str
    url: str
    parts: tuple[str, ...]  # installed part folders (relative)
    missing: tuple[str, ...]  # part patterns not found in the source
    bytes: int


def _copy_part(source: Path, target: Path) -> dict[str, str]:
    """Copy what prediction needs of one result folder; {relative file: sha256}."""
    target.mkdir(parents=True)
    files: dict[str, str] = {}
    for name in FOLDER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, target / name)
            files[name] = sha256_file(target / name)
    folds = sorted(p for p in source.glob("fold_*") if (p / CHECKPOINT).exists())
    if not folds:
        raise DataContractError(
            f"{source}: no fold_*/{CHECKPOINT}; expected a trained nnU-Net result folder"
        )
    for fold in folds:
        (target / fold.name).mkdir()
        shutil.copy(fold / CHECKPOINT, target / fold.name / CHECKPOINT)
        files[f"{fold.name}/{CHECKPOINT}"] = sha256_file(target / fold.name / CHECKPOINT)
    return files


def _part_dir_name(part: PartEntry, found: Path) -> str:
    """The part's folder inside the installed set: the pattern's components filled in with
    the names found (``Dataset*_Liver-binary/*`` -> ``Dataset804_Liver-binary/nnUNet...``)."""
    depth = len(part.folder.strip("/").split("/"))
    return "/".join(found.parts[-depth:])


def install_set(
    entry: ModelSetEntry,
    sources: list[Path],
    root: str,
    *,
    origin: dict[str, str] | None = None,
    archive_sha256: dict[str, str] | None = None,
    allow_missing: bool = False,
) -> InstallResult:
    """Install ``entry``'s parts found under ``sources`` (folders) into ``root/<name>``.

    Parts not found are an error naming them, unless ``allow_missing`` (a binary set
    whose organs are partly published). The set appears whole or not at all."""
    candidates = [(src, f) for src in sources for f in result_folders(src)]
    found: list[tuple[PartEntry, Path]] = []
    missing: list[str] = []
    for part in entry.parts:
        hit = None
        for src in sources:
            hit = find_part(part, src, [f for s, f in candidates if s == src])
            if hit is not None:
                break
        if hit is None:
            missing.append(part.folder)
        else:
            found.append((part, hit))
    if missing and (not allow_missing or not found):
        seen = sorted({f.name for _, f in candidates})[:8]
        raise DataContractError(
            f"model set {entry.name}: no result folder matches part(s) {missing} in "
            f"{', '.join(map(str, sources))} (result folders found: {seen or 'none'}); "
            "expected each part's folder as the registry names it, with dataset.json, "
            f"plans.json and fold_N/{CHECKPOINT}"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f"orgseg-install-{entry.name}-"))
    try:
        parts_info = []
        total = 0
        for part, folder in found:
            rel = _part_dir_name(part, folder)
            files = _copy_part(folder, tmp / rel)
            total += sum((tmp / rel / f).stat().st_size for f in files)
            parts_info.append(
                {
                    "pattern": part.folder,
                    "folder": rel,
                    "organ": part.organ,
                    "source": (origin or {}).get(part.folder, str(folder)),
                    "archive_sha256": (archive_sha256 or {}).get(part.folder),
                    "files": files,
                }
            )
        manifest = {
            "name": entry.name,
            "entry": dataclasses.asdict(entry),
            "parts": parts_info,
            "missing": missing,
            "installed_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / SET_MANIFEST).write_text(json.dumps(manifest, indent=2))
        url = set_url(root, entry.name)
        _commit(tmp, url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("installed %s (%d parts, %.1f MB) in %s", entry.name, len(found), total / 1e6, url)
    return InstallResult(entry.name, url, tuple(p["folder"] for p in parts_info),
                         tuple(missing), total)  # fmt: skip


def _commit(tmp: Path, url: str) -> None:
    """Put the finished set at ``url``: a rename locally, an upload (manifest last) else."""
    from orgseg.io.storage import is_local, remove, sync_up

    if is_local(url):
        final = Path(url.removeprefix("file://"))
        final.parent.mkdir(parents=True, exist_ok=True)
        staged = final.with_name(f".{final.name}.installing")
        shutil.rmtree(staged, ignore_errors=True)
        shutil.copytree(tmp, staged)
        old = final.with_name(f".{final.name}.old")
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        staged.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        return
    remove(set_url(url, SET_MANIFEST))  # readers trust a set by its manifest only
    sync_up(str(tmp), url)


def import_set(
    registry: ModelRegistry, name: str, path: str | Path, root: str, *, allow_missing: bool
) -> InstallResult:
    """``orgseg models import NAME PATH``: a folder or zip fetched by hand."""
    entry = registry[name]
    path = Path(path)
    if not path.exists():
        raise DataContractError(f"{path} does not exist; give the folder or zip to import")
    with unpacked(path) as folder:
        digest = sha256_file(path) if path.is_file() else None  # one archive, every part
        sha = {p.folder: digest for p in entry.parts} if digest is not None else None
        return install_set(
            entry, [folder], root, origin={p.folder: str(path) for p in entry.parts},
            archive_sha256=sha, allow_missing=allow_missing,
        )  # fmt: skip


# --- fetching -----------------------------------------------------------------------


def fetch_set(
    registry: ModelRegistry,
    name: str,
    root: str,
    *,
    cache_dir: Path | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> InstallResult:
    """``orgseg models fetch NAME``: download each part's archive (resumable, verified),
    unpack and install. Downloads are kept in the cache until the set is installed."""
    entry = registry[name]
    if not entry.fetchable:
        raise ConfigError(
            f"model set {name} cannot be fetched: {entry.manual or 'its parts have no URL'}"
        )
    cache = cache_dir or (
        Path(root) / DOWNLOADS if "://" not in root else Path(tempfile.gettempdir()) / DOWNLOADS
    )
    archives: dict[str, tuple[Path, str, str]] = {}  # part -> (file, url, sha256)
    for part in entry.parts:
        url = entry.archive_url(part)
        assert url is not None
        target = cache / url.rstrip("/").rsplit("/", 1)[-1]
        report = (lambda d, t, _u=url: progress(_u, d, t)) if progress else None
        digest = download(url, target, sha256=part.sha256, progress=report)
        archives[part.folder] = (target, url, digest)
    stack = []
    try:
        folders = []
        for file, _, _ in dict.fromkeys(archives.values()):
            cm = unpacked(file)
            folders.append(cm.__enter__())
            stack.append(cm)
        result = install_set(
            entry,
            folders,
            root,
            origin={k: v[1] for k, v in archives.items()},
            archive_sha256={k: v[2] for k, v in archives.items()},
        )
    finally:
        for cm in reversed(stack):
            cm.__exit__(None, None, None)
    for file, _, _ in set(archives.values()):
        file.unlink(missing_ok=True)
    return result


# --- checking -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PartCheck:
    folder: str
    problems: tuple[str, ...]
    trainer: str = ""
    folds: tuple[int, ...] = ()
    lean: bool = False


def read_manifest(set_dir: str) -> dict:
    from orgseg.io import read_bytes
    from orgseg.io.storage import exists

    url = set_url(set_dir, SET_MANIFEST)
    if not exists(url):
        raise DataContractError(
            f"{set_dir}: no {SET_MANIFEST}; not an installed model set (install it with "
            "`orgseg models fetch NAME` or `orgseg models import NAME PATH`)"
        )
    return json.loads(read_bytes(url))


def check_set(set_dir: str, *, load: bool = True) -> list[PartCheck]:
    """Every part of an installed set: files present and as installed (sha256), plans and
    checkpoints readable, and (``load``) the networks built with the weights loaded."""
    from orgseg.io import local_copy

    manifest = read_manifest(set_dir)
    out = [PartCheck(p, ("not installed: not found where it was imported from",))
           for p in manifest.get("missing", [])]  # fmt: skip
    with local_copy(set_dir) as local:
        for part in manifest["parts"]:
            out.append(_check_part(Path(local) / part["folder"], part, load=load))
    return out


def _check_part(folder: Path, part: dict, *, load: bool) -> PartCheck:
    problems = []
    for rel, digest in part["files"].items():
        path = folder / rel
        if not path.exists():
            problems.append(f"missing {rel}")
        elif sha256_file(path) != digest:
            problems.append(f"{rel} changed since it was installed (sha256 differs)")
    if problems:
        return PartCheck(part["folder"], tuple(problems))
    from orgseg.nnunet.folder import read_folder

    folds = tuple(
        sorted(
            int(p.name.split("_")[1])
            for p in folder.glob("fold_*")
            if (p / CHECKPOINT).exists() and p.name.split("_")[1].isdigit()
        )
    )
    try:
        plan = read_folder(folder, folds[0], CHECKPOINT)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
        return PartCheck(part["folder"], (f"unreadable: {type(exc).__name__}: {exc}",))
    if load:
        try:
            from orgseg.nnunet.predict import Predictor

            Predictor(folder, folds=folds)
        except Exception as exc:  # noqa: BLE001 - reported with its reason
            problems.append(f"cannot be loaded: {exc}")
    return PartCheck(part["folder"], tuple(problems), plan.trainer_name, folds, plan.lean)


def installed_sets(root: str) -> dict[str, dict]:
    """{set name: manifest} of the sets installed under ``root``."""
    from orgseg.io.storage import list_entries

    out = {}
    try:
        entries = list_entries(root)
    except Exception:  # noqa: BLE001 - a folder that does not exist yet holds nothing
        return out
    for url, is_dir in entries:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        if is_dir and not name.startswith("."):
            try:
                out[name] = read_manifest(set_url(root, name))
            except DataContractError:
                continue
    return out


def resolve_model(ref: str, root: str | None = None) -> str:
    """The URL ``--model`` names: a model folder or URL as given, or the installed folder
    of the registry set called ``ref`` (an error says how to install it if it is not)."""
    from orgseg.io.storage import exists
    from orgseg.models.registry import model_registry

    if "/" in ref or "\\" in ref or os.path.exists(ref):
        return ref
    root = models_dir(root)
    registry = model_registry(models_dir=root)
    if ref not in registry:
        raise ConfigError(
            f"--model {ref!r} is neither a model folder nor a model set; known sets: "
            f"{', '.join(registry.names())} (orgseg models list)"
        )
    url = set_url(root, ref)
    if not exists(set_url(url, SET_MANIFEST)):
        entry = registry[ref]
        how = (
            f"orgseg models fetch {ref}"
            if entry.fetchable
            else f"orgseg models import {ref} PATH ({entry.manual or 'files fetched by hand'})"
        )
        raise DataContractError(
            f"model set {ref} is not installed in {root} (ORGSEG_MODELS); install it with: {how}"
        )
    return url
