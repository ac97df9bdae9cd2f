"""The results folder: one versioned schema, written atomically, read once and verified.

A folder that datavalue writes results into (``datavalue value --out DIR``,
:meth:`ValuationResult.save`, ``evaluate``, ``clean``, ``fix``, ``explain``, ``compare``) holds a
manifest, ``datavalue-run.json``::

    {"schema": "datavalue-run", "version": 1, "state": "complete",
     "files": {"values.npz": {"sha256": "...", "size": 123}, ...}, ...}

Rules that protect the user's files:

- A folder is written only if it is new, empty, or already holds a manifest. Any other folder
  (the user's project, the current directory, ``--out ''``) is refused before any work starts, and
  nothing in it is touched.
- Only files named in the manifest are ever replaced or deleted; a file the user put beside a run
  is left alone, and a writer that would replace a protected path (its own input data) is refused.
- Writers hold an exclusive ``flock`` on ``.datavalue-run.lock`` (readers a shared one), so two
  processes writing the same folder take turns: the folder ends with one complete run, never a mix.
- New files are staged in a hidden subfolder and moved in with ``os.replace`` after the manifest
  has been marked ``"writing"``; the manifest is marked ``"complete"``, with the SHA-256 of every
  file, last. A writer killed at any point (even SIGKILL) leaves either the previous complete run
  or a folder whose manifest says ``"writing"``: readers then refuse it with a clear error
  instead of reading a mix, and the next writer cleans it up.
- Every file a reader reads is checked against its checksum.

Why a manifest rather than swapping whole folders with ``rename``: a folder swap would move (and
then delete) files the user added to the folder, and it needs two renames with a moment in which
the folder does not exist at all.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from datavalue._core.exceptions import InvalidDataError, InvalidParameterError
from datavalue._core.io import _pid_alive
from datavalue._core.kinds import KINDS
from datavalue._core.kinds import kind as kind_named

try:  # POSIX; on other systems writers are not serialised but the manifest still detects mixes.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MANIFEST",
    "SCHEMA",
    "SCHEMA_VERSION",
    "RunReader",
    "RunWriter",
    "check_output_folder",
    "check_output_file",
    "check_writable_file",
    "is_run_folder",
]

MANIFEST = "datavalue-run.json"
SCHEMA = "datavalue-run"
SCHEMA_VERSION = 1
_LOCK = ".datavalue-run.lock"
_STAGING_PREFIX = ".datavalue-staging-"
#: Files a process fills before committing them to the run without holding the lock (large
#: arrays computed for minutes): ``.datavalue-work-<pid>-<token><suffix>``. Removed by the next
#: writer once their process has ended.
_WORK_PREFIX = ".datavalue-work-"


# ---------------------------------------------------------------------- manifest
def _ours(name: str) -> bool:
    """Bookkeeping entries of a run folder (not user files)."""
    return (name in (MANIFEST, _LOCK) or name.startswith(_STAGING_PREFIX)
            or name.startswith(_WORK_PREFIX)
            # a manifest temporary file left by a kill in an earlier version's manifest writes
            or (name.startswith(f".{MANIFEST}.") and name.endswith(".tmp")))


def _read_manifest(d: Path) -> dict[str, Any] | None:
    """The manifest of ``d`` (None if there is none), with a clear error if it is not ours."""
    p = d / MANIFEST
    if not p.is_file():
        return None
    try:
        manifest = json.loads(p.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidDataError(
            f"{str(p)!r} is not a datavalue run manifest (not valid JSON: {exc})."
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise InvalidDataError(f"{str(p)!r} is not a datavalue run manifest (no schema "
                               f"{SCHEMA!r}).")
    if manifest.get("version") != SCHEMA_VERSION:
        raise InvalidDataError(
            f"{str(p)!r} has schema version {manifest.get('version')!r}; this datavalue reads "
            f"version {SCHEMA_VERSION}. Write the run again with this version."
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or manifest.get("state") not in ("writing", "complete"):
        raise InvalidDataError(f"{str(p)!r} is a damaged datavalue run manifest.")
    for name in files:
        _check_name(name)
    kinds = manifest.get("kinds", {})
    if not isinstance(kinds, dict):
        raise InvalidDataError(f"{str(p)!r} is a damaged datavalue run manifest.")
    for name, version in kinds.items():
        known = KINDS.get(name)
        if known is None or not isinstance(version, int) or version > known.version:
            what = (f"files of a kind this datavalue does not know ({name!r})" if known is None
                    else f"{name!r} files in format {version!r}; this datavalue reads format "
                         f"{known.version}")
            raise InvalidDataError(
                f"{str(d)!r} holds {what}: it was written by a newer datavalue. Upgrade "
                "datavalue to read it, or write the run again with this version.")
    return manifest


def _check_name(name: str) -> None:
    parts = Path(name).parts
    if (not name or Path(name).is_absolute() or ".." in parts or _ours(parts[0])):
        raise InvalidParameterError(f"{name!r} is not a valid file name inside a run folder.")


def _manifest_bytes(state: str, files: dict[str, Any]) -> bytes:
    from datavalue._core.version import __version__

    kinds = sorted({e["kind"] for e in files.values() if e and "kind" in e})
    manifest = {
        "schema": SCHEMA, "version": SCHEMA_VERSION, "state": state,
        "library_version": __version__, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kinds": {k: KINDS[k].version for k in kinds},
        "files": dict(sorted(files.items())),
    }
    return (json.dumps(manifest, indent=2) + "\n").encode("utf-8")


def _write_manifest(d: Path, state: str, files: dict[str, Any]) -> None:
    # Through a staging-named temporary file (not ``atomic_write_bytes``): a writer that checks
    # the folder before taking the lock must see only names it knows to be ours.
    os.replace(_prepared_manifest(d, state, files), d / MANIFEST)


def _prepared_manifest(d: Path, state: str, files: dict[str, Any]) -> Path:
    """A manifest written and synced to a temporary file in ``d``, for ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f"{_STAGING_PREFIX}manifest-", suffix=".json")
    with os.fdopen(fd, "wb") as f:
        f.write(_manifest_bytes(state, files))
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    return Path(tmp)


def _digest(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _digest_file(path: Path) -> dict[str, Any]:
    """:func:`_digest` of a file read in chunks (files of the influence store can be larger
    than memory)."""
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
            size += len(chunk)
    return {"sha256": h.hexdigest(), "size": size}


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def is_run_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a datavalue run manifest."""
    return (Path(path) / MANIFEST).is_file()


# ---------------------------------------------------------------------- checks before work
def _nearest_existing(p: Path) -> Path:
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _check_writable_dir(d: Path, what: str, target: Path) -> None:
    if not d.is_dir():
        raise InvalidParameterError(
            f"{what} {str(target)!r} cannot be created: {str(d)!r} is a file, not a folder."
        )
    if not os.access(d, os.W_OK | os.X_OK):
        raise InvalidParameterError(f"{what} {str(target)!r} is not writable (no write "
                                    f"permission in {str(d)!r}).")


def check_output_folder(
    path: str | os.PathLike, *, what: str = "The output folder",
    protect: Iterable[str | os.PathLike] = (),
) -> Path:
    """Check, before any work starts, that a run can be written into ``path``; touch nothing.

    ``path`` must be new, an empty folder, or a folder holding a datavalue run (its manifest),
    and be writable. ``protect`` lists files (the run's inputs) that the run must not replace
    or delete. Raises :class:`InvalidParameterError` naming ``what`` otherwise.
    """
    if str(path).strip() == "":
        raise InvalidParameterError(f"{what} is empty: give the name of a new folder.")
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise InvalidParameterError(f"{what} {str(d)!r} is a file, not a folder.")
    if not d.exists():
        _check_writable_dir(_nearest_existing(d), what, d)
        return d
    _check_writable_dir(d, what, d)
    manifest = _read_manifest(d)
    if manifest is None:
        foreign = sorted(e for e in os.listdir(d) if not _ours(e))
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise InvalidParameterError(
                f"{what} {str(d)!r} already holds files that datavalue did not write ({shown}); "
                "nothing was written. Choose a new or empty folder, or a folder of an earlier "
                "datavalue run."
            )
        return d
    owned = {(d / n).resolve() for n in manifest["files"]}
    for p in protect:
        if Path(p).resolve() in owned:
            raise InvalidParameterError(
                f"{what} {str(d)!r} holds a datavalue run whose file {str(p)!r} is also this "
                "command's input; writing the run would replace it. Choose another folder or "
                "copy the input elsewhere first."
            )
    return d


def check_output_file(path: str | os.PathLike, *, what: str, marker: bytes) -> Path:
    """Check that a single output file (a report) may be written: new, or an earlier file of
    ours (it contains ``marker``). Touches nothing."""
    if str(path).strip() == "":
        raise InvalidParameterError(f"{what} is empty: give a file name.")
    p = Path(path)
    if p.is_dir():
        raise InvalidParameterError(f"{what} {str(p)!r} is a folder; give a file name.")
    if p.exists():
        try:
            with open(p, "rb") as f:
                head = f.read(4096)
        except OSError as exc:
            raise InvalidParameterError(f"{what} {str(p)!r} cannot be read: {exc.strerror}.") \
                from exc
        if marker not in head:
            raise InvalidParameterError(
                f"{what} {str(p)!r} already exists and was not written by datavalue; nothing "
                "was written. Choose another file name."
            )
        if not os.access(p, os.W_OK):
            raise InvalidParameterError(f"{what} {str(p)!r} is not writable.")
    _check_writable_dir(_nearest_existing(p.parent) if not p.parent.exists() else p.parent,
                        what, p)
    return p


def check_writable_file(path: str | os.PathLike, *, what: str) -> Path:
    """Check that a file can be created at ``path`` (its folder exists or can be made and is
    writable), so a long run does not fail at its end. Touches nothing."""
    if str(path).strip() == "":
        raise InvalidParameterError(f"{what} is empty: give a file name.")
    p = Path(path)
    if p.is_dir():
        raise InvalidParameterError(f"{what} {str(p)!r} is a folder; give a file name.")
    parent = p.parent if p.parent.exists() else _nearest_existing(p.parent)
    _check_writable_dir(parent, what, p)
    if p.exists() and not os.access(p, os.W_OK):
        raise InvalidParameterError(f"{what} {str(p)!r} is not writable.")
    return p


# ---------------------------------------------------------------------- locking
class _Lock:
    def __init__(self, d: Path, exclusive: bool) -> None:
        self.fd: int | None = None
        if fcntl is None:
            return
        flags = os.O_RDWR | os.O_CREAT if exclusive else os.O_RDONLY
        try:
            self.fd = os.open(d / _LOCK, flags, 0o666)
        except OSError as exc:
            if exclusive or exc.errno not in (errno.ENOENT, errno.EACCES, errno.EROFS):
                raise
            return  # a reader of a folder without a lock file: the checksums still protect it
        fcntl.flock(self.fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


# ---------------------------------------------------------------------- writing
class RunWriter:
    """Stage files, then move them into a run folder as one unit (see the module docstring).

    Use as a context manager; files are committed when the block ends without an exception,
    and nothing in the folder changes if it raises.

    Parameters
    ----------
    directory : path
        The run folder (checked with :func:`check_output_folder`).
    replace : bool
        True for a new run: files of the previous run in the folder that this writer does not
        write again are deleted (they described the old values). False to add files to a run.
    protect : paths
        Files this writer must never replace or delete (the command's inputs).
    what : str
        How error messages name the folder (e.g. "--out").
    based_on : dict, optional
        Manifest entries ({file name: entry}) of the files the new files were computed from
        (:attr:`RunReader.manifest`); if the run changed since they were read, nothing is
        written and an error says so (two commands on one folder at once).
    kind : str
        The kind of files written (:data:`datavalue._core.kinds.KINDS`): only the files it
        declares may be written, and the manifest records the kind and its format version.
    """

    def __init__(self, directory: str | os.PathLike, *, kind: str, replace: bool = False,
                 protect: Iterable[str | os.PathLike] = (), what: str = "The output folder",
                 based_on: dict[str, Any] | None = None):
        self.kind = kind_named(kind)
        self.based_on = based_on
        self.directory = Path(directory)
        self.replace = replace
        self.protect = [Path(p) for p in protect]
        self.what = what
        self._staged: dict[str, dict[str, Any]] = {}
        self._lock: _Lock | None = None
        self._staging: Path | None = None

    def __enter__(self) -> RunWriter:
        d = check_output_folder(self.directory, what=self.what, protect=self.protect)
        d.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(d, exclusive=True)
        try:
            # Checked again under the lock: another writer may have changed the folder.
            check_output_folder(d, what=self.what, protect=self.protect)
            for entry in os.listdir(d):
                if entry.startswith(_STAGING_PREFIX):  # left by a killed writer
                    if (d / entry).is_dir():
                        shutil.rmtree(d / entry, ignore_errors=True)
                    else:
                        (d / entry).unlink(missing_ok=True)
                elif entry.startswith(_WORK_PREFIX):
                    pid = entry[len(_WORK_PREFIX):].split("-", 1)[0]
                    if pid.isdigit() and not _pid_alive(int(pid)):  # its process was killed
                        (d / entry).unlink(missing_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=d))
        except BaseException:
            self._lock.release()
            raise
        return self

    def path(self, name: str) -> Path:
        """Where to write the file ``name`` (inside the staging folder); it is recorded and
        moved into the run at commit. Use for writers that need a path (``savefig``)."""
        if self._staging is None:
            raise RuntimeError("RunWriter.path() is only valid inside 'with RunWriter(...)'.")
        _check_name(name)
        if not self.kind.allows(name):
            raise InvalidParameterError(
                f"A {self.kind.name!r} run does not write {name!r}: its files are "
                f"{', '.join(pattern for pattern, _ in self.kind.files)} "
                "(datavalue._core.kinds; declare a new file there first).")
        p = self._staging / name
        p.parent.mkdir(parents=True, exist_ok=True)
        self._staged[name] = {}
        return p

    def adopt(self, name: str, work_file: Path) -> None:
        """Move ``work_file`` (from :func:`work_file`, filled outside the lock) into the run as
        ``name``."""
        os.replace(work_file, self.path(name))

    def write_bytes(self, name: str, data: bytes) -> None:
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data)

    def write_text(self, name: str, text: str) -> None:
        self.write_bytes(name, text.encode("utf-8"))

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging = None
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def _commit(self) -> None:
        d, staging = self.directory, self._staging
        assert staging is not None
        old = _read_manifest(d)
        old_files: dict[str, Any] = {} if old is None else dict(old["files"])
        if old is not None and old["state"] != "complete" and not self.replace:
            raise InvalidDataError(
                f"The run in {str(d)!r} was left half-written by a writer that was stopped; "
                "run 'datavalue value' into it again (or use a new folder)."
            )
        for name, entry in (self.based_on or {}).items():
            if old is None or old["files"].get(name) != entry:
                raise InvalidDataError(
                    f"The run in {str(d)!r} was replaced while this command read it ({name} "
                    "changed); nothing was written. Run the command again."
                )
        new = sorted(self._staged)
        for name in new:
            p = staging / name
            if not p.is_file():
                raise InvalidParameterError(f"Nothing was written to {name!r} in the run.")
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
            self._staged[name] = {**_digest_file(p), "kind": self.kind.name}
        remove = [n for n in old_files if n not in self._staged] if self.replace else []
        protected = {p.resolve() for p in self.protect}
        for name in [*new, *remove]:
            if (d / name).resolve() in protected:
                raise InvalidParameterError(
                    f"Writing the run into {str(d)!r} would replace {str(d / name)!r}, which is "
                    "this command's input; nothing was written. Choose another folder."
                )
        for name in new:
            target = d / name
            if target.is_dir():
                raise InvalidParameterError(f"{str(target)!r} is a folder; it cannot be replaced "
                                            "by a file of the run.")
        files = {} if self.replace else {n: v for n, v in old_files.items() if v is not None}
        files.update(self._staged)
        # The final manifest is written and synced to disk beforehand, so the moment in which a
        # kill leaves the run incomplete is a few renames long (not a few fsyncs).
        final = _prepared_manifest(d, "complete", files)
        try:
            # 1. Mark the run as being written, naming every file that may change: a crash from
            # here on leaves a folder that readers refuse and the next writer cleans up.
            _write_manifest(d, "writing", {**old_files, **{n: None for n in new}})
            for name in new:
                (d / name).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / name, d / name)
            for name in remove:
                try:
                    (d / name).unlink()
                except FileNotFoundError:
                    pass
            os.replace(final, d / MANIFEST)  # 3. complete
        except BaseException:
            if final.exists():
                final.unlink()
            raise
        for parent in sorted({(d / n).parent for n in [*new, *remove]} | {d}):
            _fsync_dir(parent)


def work_file(directory: str | os.PathLike, suffix: str = "") -> Path:
    """A new private file name in ``directory`` (created if needed) for a file that is filled
    without holding the run's lock and then committed with :meth:`RunWriter.adopt`. The folder
    must have passed :func:`check_output_folder`."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{_WORK_PREFIX}{os.getpid()}-{os.urandom(6).hex()}{suffix}"


# ---------------------------------------------------------------------- reading
class RunReader:
    """Read files of a run folder, each checked against the manifest's checksum.

    Use as a context manager: it holds a shared lock, so a writer cannot change the folder
    while it is read.
    """

    def __init__(self, directory: str | os.PathLike, *, what: str = "folder") -> None:
        self.directory = Path(directory)
        self.what = what
        self.manifest: dict[str, Any] = {}
        self._lock: _Lock | None = None

    def __enter__(self) -> RunReader:
        d = self.directory
        if not d.exists():
            raise InvalidParameterError(f"The {self.what} {str(d)!r} does not exist.")
        if not d.is_dir():
            raise InvalidParameterError(
                f"{str(d)!r} is a file; give the {self.what} written by datavalue that holds it."
            )
        self._lock = _Lock(d, exclusive=False)
        try:
            manifest = _read_manifest(d)
            if manifest is None:
                raise InvalidParameterError(
                    f"{str(d)!r} is not a folder written by datavalue (it has no {MANIFEST})."
                )
            if manifest["state"] != "complete":
                raise InvalidDataError(
                    f"The run in {str(d)!r} is incomplete: the process writing it was stopped "
                    "(killed or crashed) before it finished. Run the command that wrote it again."
                )
        except BaseException:
            self._lock.release()
            raise
        self.manifest = manifest
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @property
    def kinds(self) -> dict[str, int]:
        """The kinds of the folder's files and their format versions (empty for a folder
        written before kinds were recorded)."""
        return dict(self.manifest.get("kinds", {}))

    def has(self, name: str) -> bool:
        return name in self.manifest.get("files", {})

    def read_bytes(self, name: str) -> bytes:
        d = self.directory
        entry = self.manifest["files"].get(name)
        if entry is None:
            raise InvalidParameterError(f"The run in {str(d)!r} has no {name}.")
        try:
            data = (d / name).read_bytes()
        except FileNotFoundError as exc:
            raise InvalidDataError(
                f"{str(d / name)!r} is listed in the run's {MANIFEST} but missing: the folder "
                "was changed after datavalue wrote it."
            ) from exc
        if _digest(data) != {"sha256": entry.get("sha256"), "size": entry.get("size")}:
            raise InvalidDataError(
                f"{str(d / name)!r} is not the file datavalue wrote into this run (its checksum "
                "differs: it was changed, or mixed with another run); run the command that wrote "
                "it again."
            )
        return data

    def verified_path(self, name: str) -> Path:
        """The path of the file ``name`` after checking it against its checksum (read in
        chunks), for readers that map it into memory rather than read it."""
        d = self.directory
        entry = self.manifest["files"].get(name)
        if entry is None:
            raise InvalidParameterError(f"The run in {str(d)!r} has no {name}.")
        if not (d / name).is_file():
            raise InvalidDataError(
                f"{str(d / name)!r} is listed in the run's {MANIFEST} but missing: the folder "
                "was changed after datavalue wrote it.")
        if _digest_file(d / name) != {"sha256": entry.get("sha256"), "size": entry.get("size")}:
            raise InvalidDataError(
                f"{str(d / name)!r} is not the file datavalue wrote into this folder (its "
                "checksum differs: it was changed); delete the folder or use a new one.")
        return d / name

    def read_json(self, name: str) -> Any:
        data = self.read_bytes(name)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidDataError(f"{str(self.directory / name)!r} is not valid JSON: {exc}") \
                from exc
