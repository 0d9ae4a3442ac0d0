"""Filesets and coffea ``Runner`` set-up shared by ``hepmpm skim`` and ``hepmpm tag``.

Inputs are ROOT files, folders of ROOT files, or coffea fileset JSON files
(``{dataset: {"files": [...], "metadata": {"domain": "data", ...}}}``). A folder written by
``hepmpm generate`` carries its preset name as the domain (``sim``/``data``). Executors:
``iterative`` (one process), ``futures`` (a local process pool) and ``dask`` (a local
``distributed`` cluster, or a remote scheduler given by address).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import io
import json
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import uproot
from coffea import processor
from coffea.nanoevents import NanoAODSchema
from coffea.util import coffea_console
from loky import get_reusable_executor

from hepmpm.errors import HepmpmError, one_line_reason

EXECUTORS = ("iterative", "futures", "dask")
TREE_NAME = "Events"


class SkimNanoAODSchema(NanoAODSchema):
    """coffea's ``NanoAODSchema`` without a warning per missing cross-reference.

    PFNano and generated files lack most collections NanoAOD's indices point to (``Muon_jetIdx
    => Jet``, ...); coffea drops those references either way, and a warning for each, in every
    worker, is noise. A class attribute, so it holds in worker processes too (a warnings filter
    set here would act in this process only).
    """

    warn_missing_crossrefs = False

    def __init__(self, base_form: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        # Central NanoAOD stores Photon_mass and Photon_charge, which the schema replaces by
        # zeros with a warning each time; the skim reads neither.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Branch .* already exists", RuntimeWarning)
            super().__init__(base_form, *args, **kwargs)


def _generated_domain(folder: Path) -> str:
    """The preset name recorded by ``hepmpm generate`` in ``folder/generation.json``, else
    ``unknown``."""
    record = folder / "generation.json"
    if record.is_file():
        with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
            return str(json.loads(record.read_text())["settings"]["preset"]["name"])
    return "unknown"


def _check_root_file(path: Path) -> None:
    """A clear error for a missing, truncated or non-ROOT file, or one without an Events tree."""
    if not path.is_file():
        raise HepmpmError(f"input file {path} does not exist")
    try:
        with uproot.open(path) as file:
            if TREE_NAME not in file:
                keys = ", ".join(file.keys()) or "no keys"
                raise HepmpmError(f"{path}: no {TREE_NAME!r} tree; the file has {keys}")
            file[TREE_NAME].num_entries  # noqa: B018 - reads the TTree header
    except HepmpmError:
        raise
    except Exception as err:  # uproot raises many kinds for a damaged file
        raise HepmpmError(
            f"{path}: cannot be read as a ROOT file ({type(err).__name__}: {one_line_reason(err)})"
        ) from None


def is_url(name: str | Path) -> bool:
    """Whether an input names a remote file (``root://``, ``https://``) rather than a path."""
    return "://" in str(name)


def url_dataset(url: str) -> str:
    """The dataset of a remote file given alone, as of a local one: its folder's name
    (``root://host//store/data/Run2018A/x.root`` -> ``Run2018A``)."""
    return PurePosixPath(urlsplit(url).path).parent.name or "default"


#: The modules ``root://`` inputs are read with (the ``xrootd`` extra): uproot opens them through
#: fsspec-xrootd, on the XRootD client.
XROOTD_MODULES = ("XRootD", "fsspec_xrootd")


def missing_xrootd_modules() -> list[str]:
    """Which of :data:`XROOTD_MODULES` are not installed."""
    return [name for name in XROOTD_MODULES if importlib.util.find_spec(name) is None]


def prepare_xrootd() -> None:
    """Before reading ``root://`` inputs: a one-line error when the client is not installed
    (rather than a traceback from inside a worker), and a quiet exit. XRootD's exit handler
    tests every live object with ``isinstance``, which makes torch's deprecated
    ``torch.distributed.reduce_op`` print a FutureWarning about code hepmpm never calls; a
    handler registered after XRootD's runs before it (last in, first out) and filters that."""
    missing = missing_xrootd_modules()
    if missing:
        raise HepmpmError(
            f"root:// inputs need the XRootD client ({', '.join(missing)} not installed): "
            "pip install 'hepmpm[xrootd]'"
        )
    _quiet_xrootd_exit()


@functools.cache  # once per process
def _quiet_xrootd_exit() -> None:
    import XRootD.client  # noqa: F401 - registers its exit handler now, before ours

    atexit.register(
        warnings.filterwarnings,
        "ignore",
        message=r"`torch\.distributed\.reduce_op` is deprecated",
        category=FutureWarning,
    )


def build_fileset(inputs: Sequence[str | Path], domain: str | None = None) -> dict[str, Any]:
    """A coffea fileset from ROOT files, folders of them and fileset JSON files.

    A plain file's dataset is its folder's name; its domain is ``domain`` if given, else the
    preset name of a ``hepmpm generate`` folder, else ``unknown``. A file may be remote
    (``root://`` for XRootD, with the ``xrootd`` extra; ``https://``). Every local file is
    opened once here, so a damaged file fails before any work starts, naming the file.
    """
    fileset: dict[str, dict[str, Any]] = {}

    def add(dataset: str, files: list[str], metadata: dict[str, Any]) -> None:
        entry = fileset.setdefault(
            dataset, {"files": [], "treename": TREE_NAME, "metadata": metadata}
        )
        if entry["metadata"] != metadata:
            raise HepmpmError(f"dataset {dataset!r} given twice with different metadata")
        entry["files"].extend(f for f in files if f not in entry["files"])

    for name in inputs:
        if is_url(name):  # kept as text: a Path would fold root://host//path's double slash
            add(url_dataset(str(name)), [str(name)], {"domain": domain or "unknown"})
            continue
        item = Path(name)
        if item.suffix == ".json":
            for dataset, spec in _read_fileset_json(item).items():
                metadata = dict(spec.get("metadata") or {})
                if domain is not None:
                    metadata["domain"] = domain
                add(dataset, [str(f) for f in spec["files"]], metadata)
        elif item.is_dir():
            files = sorted(str(p.resolve()) for p in item.glob("*.root"))
            if not files:
                raise HepmpmError(f"folder {item} holds no .root files")
            add(item.resolve().name, files, {"domain": domain or _generated_domain(item)})
        else:
            folder = item.parent
            add(
                folder.name or "default",
                [str(item)],
                {"domain": domain or _generated_domain(folder) or "unknown"},
            )
    if not fileset:
        raise HepmpmError("no input files given")
    files = [name for spec in fileset.values() for name in spec["files"]]
    if any(name.startswith("root://") for name in files):
        prepare_xrootd()
    for spec in fileset.values():
        for name in spec["files"]:
            if not is_url(name):  # remote files (root://, https://) are checked by the run
                _check_root_file(Path(name))
    return fileset


def _read_fileset_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise HepmpmError(f"cannot read fileset {path}: {err}") from None
    if not isinstance(data, dict):
        raise HepmpmError(f"fileset {path} must map dataset names to {{'files': [...]}}")
    fileset = {}
    for dataset, spec in data.items():
        if isinstance(spec, list):
            spec = {"files": spec}
        if not isinstance(spec, dict) or "files" not in spec:
            raise HepmpmError(f"fileset {path}: dataset {dataset!r} needs a 'files' list")
        files = spec["files"]
        files = list(files) if isinstance(files, (list, dict)) else [files]
        # Relative paths are relative to the fileset file, as one would expect of a config.
        spec = {
            **spec,
            "files": [
                f if is_url(f) or Path(f).is_absolute() else str(path.parent / f) for f in files
            ],
        }
        fileset[dataset] = spec
    return fileset


def _find_user_error(err: BaseException) -> HepmpmError | None:
    """The :class:`HepmpmError` behind an exception coffea wrapped (chained, or by message),
    or one made of an ``OSError`` behind it (a full disk, a read-only folder).

    Runs re-raise it as it is, so a bad input file or a refused write gives one clear line,
    not a traceback.
    """
    seen, system, reported = set(), None, None
    while err is not None and id(err) not in seen:
        if isinstance(err, HepmpmError):
            return err
        if isinstance(err, OSError) and system is None:
            system = err
        seen.add(id(err))
        # Process-pool executors re-raise a copy without __cause__; the message keeps our repr.
        text = str(err)
        if "HepmpmError(" in text:
            inner = text.split("HepmpmError(", 1)[1].rsplit(")", 1)[0].strip("'\"")
            return HepmpmError(inner.replace("\\'", "'"))
        found = re.search(r"The error was: OSError\((?:\d+, )?'(.*?)'", text)
        reported = reported or (found and found.group(1))
        err = err.__cause__ or err.__context__
    if system is not None:
        where = f"{system.filename}: " if system.filename else ""
        reported = one_line_reason(system)
        return HepmpmError(f"{where}the run could not write its output ({reported})")
    if reported:
        return HepmpmError(f"the run could not write its output ({reported})")
    return None


@contextlib.contextmanager
def make_runner(
    executor: str,
    workers: int = 1,
    chunksize: int = 100_000,
    scheduler: str | None = None,
    show_progress: bool = True,
    savemetrics: bool = False,
) -> Iterator[processor.Runner]:
    """A coffea ``Runner`` on the named executor; a local Dask cluster lives as long as the block.

    ``scheduler`` (``tcp://host:port``) connects to an existing Dask cluster instead. A
    :class:`HepmpmError` raised by a processor leaves the block as itself, not wrapped by coffea.
    With ``savemetrics`` the runner returns ``(output, metrics)``, coffea's access log included.
    """
    if executor not in EXECUTORS:
        raise HepmpmError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if scheduler and executor != "dask":
        raise HepmpmError("--scheduler needs --executor dask")
    with contextlib.ExitStack() as stack:
        # Local chunks are not retried: an error reading a local file is not transient, and a
        # bad input should fail at once. Remote Dask workers keep coffea's retries.
        if executor == "iterative":
            run_executor = processor.IterativeExecutor(status=show_progress, retries=0)
        elif executor == "futures":
            # One loky pool serves coffea's preprocessing and processing and is kept for later
            # runs in this process (quickstart, studies): worker start-up is paid once, not per
            # stage and run (12k jets: 3.5 s -> 1.9 s, then 0.4 s; benchmarks/README.md).
            run_executor = processor.FuturesExecutor(
                pool=get_reusable_executor(max_workers=workers),
                workers=workers,
                status=show_progress,
                retries=0,
            )
        else:
            run_executor = processor.DaskExecutor(
                client=stack.enter_context(dask_client(workers, scheduler)),
                status=show_progress,
            )
        if not show_progress:
            # coffea's iterative and futures executors draw their bars even with status=False
            # (rich's add_task ignores the ``disable`` coffea passes): silence its console.
            stack.callback(setattr, coffea_console, "quiet", coffea_console.quiet)
            coffea_console.quiet = True
        runner = processor.Runner(
            executor=run_executor,
            schema=SkimNanoAODSchema,
            chunksize=chunksize,
            savemetrics=savemetrics,
        )
        # The futures and Dask executors print a failed chunk's traceback before re-raising it:
        # held back, and dropped when the failure is a bad input reported in one line.
        held, user_error = io.StringIO(), None
        try:
            with contextlib.redirect_stderr(held):
                yield runner
        except Exception as err:
            # coffea wraps what a processor raised: a bad input surfaces as its own one line.
            user_error = _find_user_error(err)
            if user_error is None or user_error is err:
                raise
            raise user_error from None
        finally:
            if user_error is None:  # success, or a failure whose traceback matters
                sys.stderr.write(held.getvalue())


@contextlib.contextmanager
def dask_client(workers: int, scheduler: str | None) -> Iterator[Any]:
    """A ``distributed`` client of the running cluster at ``scheduler`` (``tcp://HOST:PORT``),
    else of a local cluster of ``workers`` single-threaded processes, for as long as the
    block lasts (the skim's ``dask`` executor, a study's fine-tunings)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise HepmpmError("running on Dask needs `pip install 'hepmpm[dask]'`") from None
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        # Not daemons: a fine-tuning's data loader may start worker processes of its own.
        dask.config.set({"distributed.worker.daemon": False}),
        # The workers' own logs (a failed task's traceback) stay quiet: the error reaches the
        # client, which reports it (a bad input in one line).
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
