"""``hepmpm skim`` and ``hepmpm tag`` read ``root://`` inputs, as analyses give them in coffea
filesets: a real XRootD server (Debian's ``xrootd-server``) on loopback serves generated NanoAOD
files, read by PyPI's ``xrootd`` client (the ``xrootd`` extra); skims and scores equal those of
the same files read locally."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hepmpm.export import export_tagger
from hepmpm.processors import running
from tagger_models import make_tagger_dir

from hepmpm.cli import main

SERVER = shutil.which("xrootd")


def skip_reason() -> str | None:
    """Why the server tests cannot run here (``None``: they can)."""
    if SERVER is None:
        return (
            "no xrootd server binary: install Debian's xrootd-server (.ci/run does where apt "
            "works) to test root:// inputs"
        )
    missing = running.missing_xrootd_modules()
    if missing:
        return f"no XRootD client ({', '.join(missing)}): pip install 'hepmpm[xrootd]'"
    return None


#: Client settings for a test: a server that is not there fails in seconds, not minutes.
CLIENT_ENV = {"XRD_CONNECTIONRETRY": "1", "XRD_REQUESTTIMEOUT": "30", "XRD_STREAMTIMEOUT": "30"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, server: subprocess.Popen, log: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"xrootd exited with {server.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    pytest.fail(f"xrootd did not listen on port {port} within {seconds} s: {log.read_text()}")


@pytest.fixture(scope="module")
def served(request, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(root://127.0.0.1:PORT/ URL prefix, the served folder): two generated files on a
    loopback XRootD server, for this module only."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    sim_sample = request.getfixturevalue("sim_sample")  # generated only where it is served
    # xrootd refuses to run as root; as root it drops to the package's user, who must read
    # the files (pytest's temporary folders are private to their owner) and write its admin
    # files (kept in the same temporary folder, not in /tmp).
    root = Path(tempfile.mkdtemp(prefix="hepmpm-xrootd-"))
    folder, admin = root / "sim", root / "admin"
    folder.mkdir()
    admin.mkdir()
    for root_file in sorted(sim_sample.glob("*.root"))[:2]:
        shutil.copy(root_file, folder)
    for path in (root, folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    admin.chmod(0o777)
    config = root / "xrootd.cfg"
    config.write_text(f"all.adminpath {admin}\nall.pidpath {admin}\n")
    port = free_port()
    command = [SERVER, "-p", str(port), "-n", "hepmpm-test", "-c", str(config),
               "-s", str(admin / "xrootd.pid")]  # fmt: skip
    if os.geteuid() == 0:
        command += ["-R", "xrootd" if _user_exists("xrootd") else "nobody"]
    log = tmp_path_factory.mktemp("xrootd") / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen([*command, str(folder)], stdout=out, stderr=subprocess.STDOUT)
    saved = {k: os.environ.get(k) for k in CLIENT_ENV}
    os.environ.update(CLIENT_ENV)
    try:
        wait_for_port(port, server, log)
        yield f"root://127.0.0.1:{port}/", folder
    finally:
        server.terminate()
        server.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(root, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def urls(served) -> list[str]:
    prefix, folder = served
    return [prefix + str(path) for path in sorted(folder.glob("*.root"))]  # root://host//abs


def tables(out: Path, pattern: str) -> dict[str, object]:
    """Every parquet file under ``out`` by relative path."""
    found = {str(p.relative_to(out)): pq.read_table(p) for p in sorted(out.rglob(pattern))}
    assert found
    return found


def test_skim_reads_root_urls(served, tmp_path, capsys):
    remote, local = tmp_path / "remote", tmp_path / "local"
    assert main(["skim", *urls(served), "--out", str(remote), "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    files = [str(p) for p in sorted(served[1].glob("*.root"))]
    assert main(["skim", *files, "--out", str(local), "--no-progress", "--domain", "unknown"]) == 0
    remote_shards, local_shards = tables(remote, "*.parquet"), tables(local, "*.parquet")
    assert remote_shards.keys() == local_shards.keys()  # dataset "sim", the files' own ids
    for name, table in remote_shards.items():
        assert table.equals(local_shards[name]), name
    # As an analysis gives them: a coffea fileset JSON of root:// files.
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"sim": {"files": urls(served)}}))
    assert main(["skim", str(fileset), "--out", str(tmp_path / "fileset"), "--no-progress"]) == 0
    from_fileset = tables(tmp_path / "fileset", "*.parquet")
    assert from_fileset.keys() == local_shards.keys()
    assert all(table.equals(local_shards[name]) for name, table in from_fileset.items())


def test_tag_reads_root_urls(served, tmp_path, capsys):
    model = export_tagger(make_tagger_dir(tmp_path / "ft"), tmp_path / "model.onnx").path
    remote, local = tmp_path / "remote", tmp_path / "local"
    args = ["--model", str(model), "--no-progress", "--threads", "1"]
    assert main(["tag", *urls(served), "--out", str(remote), *args]) == 0
    assert "tagged" in capsys.readouterr().out
    files = [str(p) for p in sorted(served[1].glob("*.root"))]
    assert main(["tag", *files, "--out", str(local), *args]) == 0
    remote_scores, local_scores = tables(remote, "*.parquet"), tables(local, "*.parquet")
    assert remote_scores.keys() == local_scores.keys()
    for name, table in remote_scores.items():
        assert table.num_rows > 0 and table.equals(local_scores[name]), name


def test_root_urls_without_the_client_are_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(running, "missing_xrootd_modules", lambda: ["XRootD"])
    url = "root://eos.example.org//store/data/Run2018A/file.root"
    assert main(["skim", url, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "root:// inputs need the XRootD client (XRootD not installed): pip install" in err
    assert not (tmp_path / "out").exists()
