"""A PEP 517 build backend for the gpuq package, standard library only.

Why not setuptools: pip builds in an isolated environment and fetches the
backend named in pyproject.toml from an index first, so with setuptools
`pip install ./python` needs the network, and even with
--no-build-isolation older setuptools (< 70.1, e.g. the one bundled with
Python 3.11) also needs the separate `wheel` package.  gpuq is a handful of
.py files: this backend zips them into a py3-none-any wheel with nothing to
download, so `pip install ./python` works offline, isolated or not.

Metadata comes from pyproject.toml's [project] table (the scalar keys used
there: name, version, description, requires-python, readme).
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "gpuq"


def _project():
    """The [project] table's `key = "value"` lines."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    out = {}
    section = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("["):
            section = s
            continue
        m = re.match(r'^([A-Za-z0-9_-]+)\s*=\s*"([^"]*)"\s*(#.*)?$', s)
        if section == "[project]" and m:
            out[m.group(1)] = m.group(2)
    for key in ("name", "version"):
        if key not in out:
            raise RuntimeError("pyproject.toml: [project] has no %s" % key)
    return out


def _names():
    p = _project()
    name = re.sub(r"[-_.]+", "_", p["name"])
    return p, name, "%s-%s.dist-info" % (name, p["version"])


def _metadata():
    p, _, _ = _names()
    lines = ["Metadata-Version: 2.1", "Name: %s" % p["name"],
             "Version: %s" % p["version"]]
    if "description" in p:
        lines.append("Summary: %s" % p["description"])
    if "requires-python" in p:
        lines.append("Requires-Python: %s" % p["requires-python"])
    body = ""
    readme = p.get("readme")
    if readme and os.path.exists(os.path.join(ROOT, readme)):
        lines.append("Description-Content-Type: text/markdown")
        with open(os.path.join(ROOT, readme), encoding="utf-8") as f:
            body = f.read()
    return ("\n".join(lines) + "\n\n" + body).encode("utf-8")


def _wheel_file():
    return (b"Wheel-Version: 1.0\nGenerator: gpuq_build\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n")


def _package_files():
    base = os.path.join(ROOT, PACKAGE)
    for d, dirs, files in os.walk(base):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__")
        for f in sorted(files):
            if f.endswith((".py", ".typed")):
                full = os.path.join(d, f)
                yield full, os.path.relpath(full, ROOT).replace(os.sep, "/")


def _date():
    t = int(os.environ.get("SOURCE_DATE_EPOCH", "315532800"))
    return time.gmtime(max(t, 315532800))[:6]


def _write_wheel(directory, entries):
    """entries: [(archive name, bytes)]; adds the dist-info files."""
    _, name, distinfo = _names()
    p = _project()
    entries = list(entries) + [
        (distinfo + "/METADATA", _metadata()),
        (distinfo + "/WHEEL", _wheel_file()),
        (distinfo + "/top_level.txt", (PACKAGE + "\n").encode()),
    ]
    record = []
    for arc, data in entries:
        digest = base64.urlsafe_b64encode(
            hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (arc, digest, len(data)))
    record.append(distinfo + "/RECORD,,")
    entries.append((distinfo + "/RECORD", ("\n".join(record) + "\n").encode()))
    wheel = "%s-%s-py3-none-any.whl" % (name, p["version"])
    with zipfile.ZipFile(os.path.join(directory, wheel), "w",
                         zipfile.ZIP_DEFLATED) as z:
        for arc, data in entries:
            info = zipfile.ZipInfo(arc, date_time=_date())
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return wheel


def _read(path):
    with open(path, "rb") as f:
        return f.read()


# -- PEP 517 ----------------------------------------------------------------
def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _, _, distinfo = _names()
    d = os.path.join(metadata_directory, distinfo)
    os.makedirs(d, exist_ok=True)
    for fname, data in (("METADATA", _metadata()), ("WHEEL", _wheel_file()),
                        ("top_level.txt", (PACKAGE + "\n").encode())):
        with open(os.path.join(d, fname), "wb") as f:
            f.write(data)
    return distinfo


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _write_wheel(wheel_directory,
                        [(arc, _read(full)) for full, arc in _package_files()])


def build_editable(wheel_directory, config_settings=None,
                   metadata_directory=None):
    # A .pth naming this directory: the source tree is imported in place.
    return _write_wheel(wheel_directory,
                        [("__editable__.gpuq.pth", (ROOT + "\n").encode())])


def build_sdist(sdist_directory, config_settings=None):
    p, name, _ = _names()
    base = "%s-%s" % (name, p["version"])
    out = base + ".tar.gz"
    mtime = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")),
                315532800)

    def add(tar, arc, data, mode=0o644):
        ti = tarfile.TarInfo(base + "/" + arc)
        ti.size = len(data)
        ti.mtime = mtime
        ti.mode = mode
        tar.addfile(ti, io.BytesIO(data))

    with tarfile.open(os.path.join(sdist_directory, out), "w:gz",
                      format=tarfile.PAX_FORMAT) as tar:
        for d, dirs, files in os.walk(ROOT):
            dirs[:] = sorted(x for x in dirs if x not in (
                "__pycache__", "build", "dist") and not x.endswith(
                    ".egg-info") and not x.startswith("."))
            for f in sorted(files):
                if f.endswith((".pyc", ".pyo")):
                    continue
                full = os.path.join(d, f)
                arc = os.path.relpath(full, ROOT).replace(os.sep, "/")
                mode = 0o755 if os.access(full, os.X_OK) else 0o644
                add(tar, arc, _read(full), mode)
        add(tar, "PKG-INFO", _metadata())
    return out
