"""Shared fixtures: small real samples made once per test session with real Pythia 8 + FastJet."""

from __future__ import annotations

from pathlib import Path

import pytest

from hepmpm.generate.preset import load_preset
from hepmpm.generate.sample import SampleRequest, generate_sample
from hepmpm.jetclass import CLASS_NAMES

JETS_PER_CLASS = 48

#: The real CMS files beside the project (../shared/data/cms); tests that need them skip without.
CMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cms"
needs_cms = pytest.mark.skipif(
    not (CMS / "pfnano.root").is_file(), reason=f"shared CMS files not found in {CMS}"
)


def make_sample(out: Path, preset: str = "sim", classes=CLASS_NAMES, jets=JETS_PER_CLASS, **kw):
    request = SampleRequest(
        preset=load_preset(preset),
        classes=tuple(classes),
        jets_per_class=jets,
        seed=kw.pop("seed", 7),
        naming=kw.pop("naming", "pfnano"),
        out=out,
        jets_per_file=kw.pop("jets_per_file", 5000),
        **({"compression": kw.pop("compression")} if "compression" in kw else {}),
        workers=kw.pop("workers", 2),
    )
    assert not kw, kw
    return generate_sample(request, show_progress=False)


@pytest.fixture(scope="session")
def sim_sample(tmp_path_factory) -> Path:
    """All ten classes, ``JETS_PER_CLASS`` jets each, preset ``sim``, PFNano naming."""
    out = tmp_path_factory.mktemp("sim")
    make_sample(out)
    return out


@pytest.fixture(scope="session")
def shift_samples(tmp_path_factory) -> tuple[Path, Path]:
    """W and top jets from the ``sim`` and the ``data`` preset, same seed."""
    dirs = []
    for preset in ("sim", "data"):
        out = tmp_path_factory.mktemp(preset)
        make_sample(out, preset, classes=("Wqq", "Tbqq"), jets=64)
        dirs.append(out)
    return dirs[0], dirs[1]


def make_skim(inputs, out: Path, **request_fields) -> dict:
    """Skim ``inputs`` (files, folders) into ``out`` with the real coffea Runner; the manifest."""
    from hepmpm.skim import SkimRequest, run_skim

    manifest, _ = run_skim(
        SkimRequest(inputs=inputs, out=out, **request_fields), show_progress=False
    )
    return manifest


def generated_skim(tmp_path_factory, name: str, classes, jets: int, seed: int) -> Path:
    """A sample of ``jets`` per class generated and skimmed (part17) in temporary folders."""
    generated = tmp_path_factory.mktemp(f"{name}_generated")
    make_sample(generated, classes=classes, jets=jets, seed=seed)
    out = tmp_path_factory.mktemp(f"{name}_skim")
    make_skim([generated], out)
    return out


@pytest.fixture(scope="session")
def skim_dir(sim_sample, tmp_path_factory) -> Path:
    """The ``sim_sample`` skimmed (iterative executor, part17): a folder with manifest.json."""
    out = tmp_path_factory.mktemp("skim")
    make_skim([sim_sample], out)
    return out


def rewrite_events(source: Path, target: Path, edit) -> None:
    """Copy a generated NanoAOD file, letting ``edit(branches)`` change its jagged branches.

    ``branches`` maps branch names (``PFCands_pt``, ...) to awkward arrays; collections are
    re-zipped on writing so the copy keeps NanoAOD's ``nX`` counters.
    """
    import awkward as ak
    import uproot

    tree = uproot.open(source)["Events"]
    branches = {b.name: b.array() for b in tree.branches if not b.name.startswith("n")}
    edit(branches)
    collections: dict[str, dict] = {}
    columns = {}
    for name, array in branches.items():
        if "_" in name:
            prefix, field = name.split("_", 1)
            collections.setdefault(prefix, {})[field] = array
        else:
            columns[name] = array
    columns.update({prefix: ak.zip(fields) for prefix, fields in collections.items()})
    with uproot.recreate(target) as file:
        file.mktree("Events", {k: v.type for k, v in columns.items()})
        file["Events"].extend(columns)
