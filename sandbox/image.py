"""Builds the sandbox image once, tagged with a content hash of its inputs.

    ensure_image()                  # offline: this machine's Python + its ldd libraries + numpy, docker import
    ensure_image(method="dockerfile")   # sandbox/image/Dockerfile, for machines that can pull python:3.11-slim

The offline build packages the interpreter that runs this code (``sys.base_prefix``): its binary,
libpython, the standard library with its byte-code (no tests, no tkinter, no site-packages), the
shared libraries ``ldd`` reports for the binary and every extension module, and numpy (imported from
the current environment: the ``sandbox`` extra installs it) placed in the standard library directory,
so that ``python3 -s -S`` finds it without site processing. The tar goes to ``docker import``; no
network is needed. The tag is ``rest-em-sandbox:<sha256 of every input>``; when that tag exists the
build is skipped, so calling this again costs a directory walk.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import py_compile
import re
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

REPOSITORY = "rest-em-sandbox"
BUILDER_VERSION = "1"  # bump when the layout below changes in a way the file list does not show
HERE = Path(__file__).resolve().parent
GUEST_FILES = ("runner.py", "guest.py", "wire.py")
DOCKERFILE = HERE / "image" / "Dockerfile"
# Not needed to run solutions, and large (the stdlib's test suite alone is 120 MB).
SKIP_DIRS = {"test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3",
             "site-packages", "dist-packages", "pydoc_data", "__phello__"}
SKIP_MODULES = re.compile(r"^_tkinter\.|^_test|^xxlimited|^_ctypes_test")
LIB_PATH = "/usr/local/lib:/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu:/lib64:/lib:/usr/lib"


class ImageBuildError(RuntimeError):
    """The sandbox image could not be built."""


@dataclass(frozen=True)
class Entry:
    """One file of the image: where it goes, and its bytes or the host file it is copied from."""

    arcname: str
    source: str | None = None
    data: bytes | None = None
    mode: int = 0o644

    def fingerprint(self) -> str:
        if self.data is not None:
            return f"{self.arcname} {hashlib.sha256(self.data).hexdigest()}"
        st = os.stat(self.source)
        return f"{self.arcname} {st.st_size} {st.st_mtime_ns} {self.mode:o}"


def _python_layout() -> dict[str, Path]:
    base = Path(sys.base_prefix)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    exe = base / "bin" / f"python{ver}"
    if not exe.exists():
        exe = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths(vars={"installed_base": str(base), "base": str(base)})["stdlib"])
    return {"exe": exe, "stdlib": stdlib, "dynload": stdlib / "lib-dynload", "ver": Path(ver)}


def _ldd(paths: list[Path]) -> set[str]:
    """Shared libraries (resolved paths) needed by ``paths``, as ldd reports them."""
    libs: set[str] = set()
    for chunk in range(0, len(paths), 64):
        out = subprocess.run(["ldd", *map(str, paths[chunk:chunk + 64])], capture_output=True, text=True).stdout
        for line in out.splitlines():
            m = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(0x", line)
            if m:
                libs.add(m.group(1))
    return libs


def _walk(root: Path, dest: str, skip_pyc_opt: bool = True) -> Iterator[Entry]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("config-"))
        for name in sorted(filenames):
            if skip_pyc_opt and (".opt-1.pyc" in name or ".opt-2.pyc" in name):
                continue
            if SKIP_MODULES.match(name):
                continue
            src = Path(dirpath) / name
            if src.is_symlink() and not src.exists():
                continue
            rel = src.relative_to(root)
            yield Entry(f"{dest}/{rel}", str(src), mode=0o755 if os.access(src, os.X_OK) and name.endswith(".so") else 0o644)


def _numpy_root() -> Path:
    spec = importlib.util.find_spec("numpy")
    if spec is None or not spec.origin:
        raise ImageBuildError("numpy is not installed in this environment; install the 'sandbox' extra "
                              "(pip install -e '.[sandbox]'): the image copies it so solutions can import it")
    return Path(spec.origin).parent


def offline_entries() -> list[Entry]:
    """Every file of the offline image, in a stable order."""
    lay = _python_layout()
    ver = str(lay["ver"])
    lib_dest = f"usr/local/lib/python{ver}"
    entries = [Entry("usr/local/bin/python3", str(lay["exe"]), mode=0o755)]
    entries += _walk(lay["stdlib"], lib_dest)
    np_root = _numpy_root()
    np_libs = np_root.parent / "numpy.libs"
    entries += [e for e in _walk(np_root, f"{lib_dest}/numpy") if not e.arcname.endswith(".pyc")]
    if np_libs.is_dir():
        entries += _walk(np_libs, f"{lib_dest}/numpy.libs")
    binaries = [lay["exe"]] + sorted(lay["dynload"].glob("*.so")) + sorted(np_root.rglob("*.so"))
    binaries = [b for b in binaries if not SKIP_MODULES.match(b.name) and "tests" not in b.parts]
    for lib in sorted(_ldd(binaries)):
        if "numpy.libs" in lib:
            continue  # already copied beside numpy, found through its $ORIGIN rpath
        name = Path(lib).name
        if name.startswith("libpython"):
            entries.append(Entry(f"usr/local/lib/{name}", os.path.realpath(lib), mode=0o755))
        else:
            entries.append(Entry(lib.lstrip("/"), os.path.realpath(lib), mode=0o755))
    for name in GUEST_FILES:
        entries.append(Entry(f"opt/sandbox/{name}", str(HERE / name)))
    entries.append(Entry("etc/passwd", data=b"root:x:0:0:root:/root:/bin/false\nnobody:x:65534:65534:nobody:/tmp:/bin/false\n"))
    entries.append(Entry("etc/group", data=b"root:x:0:\nnogroup:x:65534:\n"))
    return entries


def content_hash(entries: list[Entry], method: str) -> str:
    """The image tag's hash: every entry but compiled ``.pyc`` files. The interpreter writes new stdlib
    ``.pyc`` files whenever a process first imports a module (as root it may), so hashing them made the
    tag change mid-run and a later build delete the image a running test session used; a ``.pyc`` only
    caches its ``.py``, which is hashed."""
    h = hashlib.sha256()
    h.update(f"builder {BUILDER_VERSION} method {method} python {sys.version}\n".encode())
    for e in entries:
        if e.arcname.endswith(".pyc") or "/__pycache__/" in e.arcname:  # also the interpreter's temp .pyc files
            continue
        h.update(e.fingerprint().encode() + b"\n")
    return h.hexdigest()[:16]


def _pyc_bytes(src: str, tmpdir: str) -> bytes:
    """Byte-code that needs no source check: the image's root is read-only, so a missing or stale
    .pyc would be recompiled on every import (seconds for numpy)."""
    out = os.path.join(tmpdir, "x.pyc")
    py_compile.compile(src, cfile=out, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    with open(out, "rb") as fh:
        return fh.read()


def _write_tar(entries: list[Entry], path: str) -> None:
    ver = f"{sys.version_info.major}{sys.version_info.minor}"
    dirs: set[str] = set()
    with tarfile.open(path, "w") as tar, tempfile.TemporaryDirectory() as tmp:
        def add_dir(name: str, mode: int = 0o755) -> None:
            if name in dirs or not name:
                return
            parent = os.path.dirname(name)
            add_dir(parent)
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
            dirs.add(name)

        for top, mode in (("tmp", 0o1777), ("proc", 0o555), ("sys", 0o555), ("dev", 0o755), ("etc", 0o755)):
            add_dir(top, mode)

        def add_bytes(name: str, data: bytes, mode: int, mtime: int = 0) -> None:
            add_dir(os.path.dirname(name))
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, mtime
            tar.addfile(info, io.BytesIO(data))

        for e in entries:
            if e.data is not None:
                add_bytes(e.arcname, e.data, e.mode)
                continue
            with open(e.source, "rb") as fh:
                data = fh.read()
            # Keep the source's mtime: the stdlib's timestamp-checked .pyc files stay valid.
            add_bytes(e.arcname, data, e.mode, int(os.stat(e.source).st_mtime))
            # numpy and the guest modules: a candidate's interpreter imports them on every job.
            if e.arcname.endswith(".py") and ("/numpy/" in e.arcname or e.arcname.startswith("opt/sandbox/")):
                d, base = os.path.split(e.arcname)
                add_bytes(f"{d}/__pycache__/{base[:-3]}.cpython-{ver}.pyc", _pyc_bytes(e.source, tmp), 0o644)


def _docker_client():
    import docker

    return docker.from_env(timeout=120)


def image_exists(client: Any, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def build_offline(client: Any, tag: str, entries: list[Entry]) -> None:
    with tempfile.TemporaryDirectory(prefix="rest-em-image-") as tmp:
        path = os.path.join(tmp, "rootfs.tar")
        _write_tar(entries, path)
        log.info("importing %s (%.1f MB)", tag, os.path.getsize(path) / 1e6)
        repo, _, version = tag.partition(":")
        changes = [
            f"ENV LD_LIBRARY_PATH={LIB_PATH}",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            "ENV PYTHONHOME=/usr/local",
            "USER 65534:65534",
            "WORKDIR /tmp",
            'CMD ["/usr/local/bin/python3", "-s", "-S", "/opt/sandbox/runner.py"]',
        ]
        # import_image_from_stream sends chunks that dockerd 20.10 rejects ("header line too long").
        with open(path, "rb") as fh:
            client.api.import_image_from_data(fh.read(), repository=repo, tag=version, changes=changes)


def build_dockerfile(client: Any, tag: str) -> None:
    _, logs = client.images.build(path=str(HERE), dockerfile=str(DOCKERFILE.relative_to(HERE)), tag=tag, rm=True)
    for chunk in logs:
        if "stream" in chunk:
            log.debug(chunk["stream"].rstrip())


def _dockerfile_entries() -> list[Entry]:
    return [Entry(f"opt/sandbox/{n}", str(HERE / n)) for n in GUEST_FILES] + [Entry("Dockerfile", str(DOCKERFILE))]


def image_tag(method: str = "offline") -> str:
    entries = offline_entries() if method == "offline" else _dockerfile_entries()
    return f"{REPOSITORY}:{content_hash(entries, method)}"


def ensure_image(client: Any = None, method: str = "offline", force: bool = False) -> str:
    """The sandbox image's tag, building it first if no image has that tag. Idempotent."""
    if method not in ("offline", "dockerfile"):
        raise ValueError(f"unknown image build method {method!r}; choose offline or dockerfile")
    client = client or _docker_client()
    entries = offline_entries() if method == "offline" else _dockerfile_entries()
    tag = f"{REPOSITORY}:{content_hash(entries, method)}"
    if image_exists(client, tag) and not force:
        log.debug("sandbox image %s exists", tag)
        return tag
    log.info("building sandbox image %s (%s)", tag, method)
    try:
        if method == "offline":
            build_offline(client, tag, entries)
        else:
            build_dockerfile(client, tag)
    except ImageBuildError:
        raise
    except Exception as exc:
        raise ImageBuildError(f"building {tag} ({method}) failed: {exc}") from exc
    if not image_exists(client, tag):
        raise ImageBuildError(f"docker reported success but {tag} is missing")
    _remove_older(client, tag)
    return tag


# Sandbox images of other sources kept besides the current one. Several checkouts (or virtual
# environments) sharing one Docker engine each build their own tag; removing every other tag would
# delete an image another checkout just built and is about to start containers from.
KEEP_OTHER_IMAGES = 3


def _remove_older(client: Any, keep: str) -> None:
    """Remove sandbox images of earlier sources (each is ~130 MB), all but the ``KEEP_OTHER_IMAGES``
    newest. Docker refuses to remove one that a container still uses, so a pool running it keeps it."""
    others = [img for img in client.images.list(name=REPOSITORY) if keep not in img.tags]
    others.sort(key=lambda img: img.attrs.get("Created", ""), reverse=True)
    for img in others[KEEP_OTHER_IMAGES:]:
        try:
            client.images.remove(img.id)
            log.info("removed old sandbox image %s", ", ".join(img.tags) or img.short_id)
        except Exception as exc:
            log.debug("keeping old sandbox image %s: %s", img.short_id, exc)
