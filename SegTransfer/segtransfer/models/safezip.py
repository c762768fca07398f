"""Safe reading and writing of zip archives that come from another site.

``zipfile.ZipFile.extractall`` already drops ``..`` and absolute prefixes, but it silently rewrites
such names, extracts symbolic-link entries as regular files and has no size limit.  A package from
a partner is untrusted input, so every member is checked first and anything suspicious refuses the
whole archive with a message naming the member: absolute paths, ``..`` components, backslashes or
drive letters, symbolic links and other special files, encrypted or duplicate members, too many
members, and more than ``max_total_bytes`` of uncompressed data (counted while decompressing, so a
header that under-states a member's size does not help a zip bomb).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from ..errors import InputError
from ..io import atomic_dir, atomic_path

#: Largest total uncompressed size accepted from one archive (2 GiB): far above any segmentation
#: network SegTransfer uses, far below what a zip bomb expands to.
MAX_TOTAL_BYTES = 2 * 1024**3
#: Most members accepted in one archive.
MAX_MEMBERS = 1000
#: Fixed timestamp written into archives so that the same folder always gives the same bytes.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)

_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1024 * 1024


def _member_parts(archive: Path, info: zipfile.ZipInfo) -> list[str]:
    """Path components of a member, or ``InputError`` for a name that could land outside the folder."""
    name = info.filename
    where = f"{archive} (member {name!r})"
    if not name or "\x00" in name:
        raise InputError(where, "empty or NUL-containing member name")
    if name.startswith("/") or _DRIVE.match(name):
        raise InputError(where, "absolute path in archive; refusing to extract anything")
    if "\\" in name:
        raise InputError(where, "backslash in member name (ambiguous path separator); refusing to extract anything")
    parts = name.rstrip("/").split("/") if info.is_dir() else name.split("/")
    if any(p == ".." for p in parts):
        raise InputError(where, "path leads outside the archive folder ('..'); refusing to extract anything")
    if any(p in ("", ".") for p in parts):
        raise InputError(where, "empty or '.' path component; refusing to extract anything")
    return parts


def check_archive(archive: str | os.PathLike, max_total_bytes: int = MAX_TOTAL_BYTES, max_members: int = MAX_MEMBERS) -> list[zipfile.ZipInfo]:
    """Check every member of a zip archive without extracting; returns the members in archive order.

    Raises ``InputError`` naming the archive and member for: not a zip file, too many members,
    unsafe names (absolute, ``..``, backslash, drive letter), symbolic links or other non-regular
    files, encrypted or duplicate members, or a declared total size above ``max_total_bytes``.
    """
    archive = Path(archive)
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except FileNotFoundError:
        raise InputError(archive, "file not found") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(archive, f"not a readable zip archive ({exc})") from None
    if len(infos) > max_members:
        raise InputError(archive, f"archive has {len(infos)} members, more than the {max_members} allowed")
    seen: set[str] = set()
    total = 0
    for info in infos:
        parts = _member_parts(archive, info)
        where = f"{archive} (member {info.filename!r})"
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise InputError(where, "symbolic link in archive; refusing to extract anything")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise InputError(where, "special file (device, pipe or socket) in archive; refusing to extract anything")
        if info.flag_bits & 0x1:
            raise InputError(where, "encrypted member; packages are not encrypted")
        key = "/".join(parts).lower()
        if key in seen:
            raise InputError(where, "duplicate member name (also differing only in case); refusing to extract anything")
        seen.add(key)
        total += info.file_size
        if total > max_total_bytes:
            raise InputError(archive, f"uncompressed size exceeds the limit of {max_total_bytes} bytes (possible zip bomb)")
    return infos


def safe_extract(archive: str | os.PathLike, destination: str | os.PathLike, max_total_bytes: int = MAX_TOTAL_BYTES, max_members: int = MAX_MEMBERS) -> Path:
    """Extract a zip archive into the new folder ``destination`` after checking every member.

    ``destination`` must not exist; it is written atomically, so on any refusal or error nothing is
    left behind (and nothing is ever written outside it).  Returns ``destination``.
    """
    archive, destination = Path(archive), Path(destination)
    if destination.exists():
        raise InputError(destination, "extraction folder already exists")
    infos = check_archive(archive, max_total_bytes, max_members)
    written = 0
    with atomic_dir(destination) as tmp, zipfile.ZipFile(archive) as zf:
        root = tmp.resolve()
        for info in infos:
            target = root.joinpath(*_member_parts(archive, info))
            # Defence in depth: the checked name cannot leave the folder, confirm on the resolved path.
            if root not in target.resolve().parents:
                raise InputError(f"{archive} (member {info.filename!r})", "path leads outside the archive folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            member_bytes = 0
            try:
                with zf.open(info) as src, open(target, "xb") as dst:
                    while chunk := src.read(_CHUNK):
                        member_bytes += len(chunk)
                        written += len(chunk)
                        if written > max_total_bytes or member_bytes > info.file_size:
                            raise InputError(archive, f"uncompressed size exceeds the limit of {max_total_bytes} bytes or the size its header declares (possible zip bomb)")
                        dst.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InputError(f"{archive} (member {info.filename!r})", f"corrupt archive member ({exc})") from None
    return destination


@contextlib.contextmanager
def extracted(archive: str | os.PathLike, max_total_bytes: int = MAX_TOTAL_BYTES, max_members: int = MAX_MEMBERS) -> Iterator[Path]:
    """Context manager: extract ``archive`` safely into a private temporary folder, yield that folder,
    and delete it afterwards."""
    with tempfile.TemporaryDirectory(prefix="segtransfer-zip-") as tmp:
        yield safe_extract(archive, Path(tmp) / "x", max_total_bytes, max_members)


def single_root(folder: Path) -> Path:
    """The folder an archive's content really starts in: ``folder`` itself, or its only entry when
    that entry is a folder (archives made by zipping a folder hold one top-level folder)."""
    entries = [p for p in folder.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return folder


def write_zip(folder: str | os.PathLike, archive: str | os.PathLike, prefix: str = "") -> Path:
    """Write every regular file under ``folder`` into a zip archive, atomically and reproducibly.

    Members are sorted, deflated, stamped with :data:`ZIP_DATE_TIME` and named relative to
    ``folder`` with ``/`` separators, under ``prefix/`` when ``prefix`` is given.  Symbolic links
    are refused.  Returns the archive path.
    """
    folder, archive = Path(folder), Path(archive)
    files = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise InputError(path, "symbolic links are not written into archives")
        if path.is_file():
            files.append(path)
    with atomic_path(archive) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                name = path.relative_to(folder).as_posix()
                info = zipfile.ZipInfo(f"{prefix}/{name}" if prefix else name, date_time=ZIP_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.file_size = path.stat().st_size  # lets zipfile choose ZIP64 for large members
                with open(path, "rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    return archive
