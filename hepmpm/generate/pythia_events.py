"""Pythia 8 events as numpy arrays, a batch at a time.

``Pythia.nextBatch`` hands over a batch of whole event records as one awkward array, so no
Python code touches single particles; :class:`EventBatch` flattens the fields we need into numpy
arrays indexed by a global particle index (``offsets[i]`` is event ``i``'s first particle).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np
import pythia8mc
import vector

from hepmpm.errors import HepmpmError
from hepmpm.generate.detector import GenParticles
from hepmpm.generate.preset import PythiaConfig
from hepmpm.generate.processes import NEUTRINOS, JetProcess

#: Pythia's random seed must lie in [1, 900_000_000].
MAX_PYTHIA_SEED = 900_000_000


@dataclass(frozen=True)
class EventBatch:
    """A batch of full event records, flattened. Momenta in GeV, vertices in mm.

    Daughter indices stay local to their event, as Pythia writes them (0 means none);
    :func:`hepmpm.generate.truth.daughters` turns them into global indices.
    """

    offsets: np.ndarray  # [n_events + 1] first particle of each event
    pdg_id: np.ndarray  # [n_particles]
    status: np.ndarray
    daughter1: np.ndarray  # local (per-event) indices, Pythia conventions
    daughter2: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    energy: np.ndarray
    vx: np.ndarray  # production vertex, mm
    vy: np.ndarray
    vz: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_awkward(cls, batch: ak.Array) -> EventBatch:
        """Flatten the ``prt`` records of a ``Pythia.nextBatch`` result."""
        prt = batch["prt"]
        counts = ak.to_numpy(ak.num(prt, axis=1))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        p4 = prt["p"]
        vprod = prt["vProd"]

        def flat(values: ak.Array, dtype: type) -> np.ndarray:
            return ak.to_numpy(ak.flatten(ak.fill_none(values, 0), axis=1)).astype(dtype)

        return cls(
            offsets=offsets,
            pdg_id=flat(prt["id"], np.int32),
            status=flat(prt["status"], np.int32),
            daughter1=flat(prt["daughter1"], np.int64),
            daughter2=flat(prt["daughter2"], np.int64),
            px=flat(p4["px"], np.float64),
            py=flat(p4["py"], np.float64),
            pz=flat(p4["pz"], np.float64),
            energy=flat(p4["e"], np.float64),
            vx=flat(vprod["px"], np.float64),
            vy=flat(vprod["py"], np.float64),
            vz=flat(vprod["pz"], np.float64),
        )

    def event_index(self) -> np.ndarray:
        """[n_particles] the event each particle belongs to."""
        return np.repeat(np.arange(self.n_events), np.diff(self.offsets))

    def momentum(self, index: np.ndarray) -> vector.MomentumNumpy4D:
        """Four-momenta (GeV) of the particles at global ``index``."""
        return vector.array(
            {
                "px": self.px[index],
                "py": self.py[index],
                "pz": self.pz[index],
                "E": self.energy[index],
            }
        )

    def visible_final_state(self) -> np.ndarray:
        """Global indices of final-state particles a detector can see (no neutrinos)."""
        final = self.status > 0
        invisible = np.isin(np.abs(self.pdg_id), list(NEUTRINOS))
        return np.flatnonzero(final & ~invisible)

    def visible_particles(self, charge_of: ChargeTable) -> GenParticles:
        """The visible final state as the detector's input (GeV, mm)."""
        visible = self.visible_final_state()
        pdg_id = self.pdg_id[visible]
        return GenParticles(
            event=self.event_index()[visible],
            pdg_id=pdg_id,
            charge=charge_of(pdg_id),
            momentum=self.momentum(visible),
            vx=self.vx[visible],
            vy=self.vy[visible],
            vz=self.vz[visible],
        )


def _rejected(line: str) -> str:
    return (
        f"Pythia 8 rejected the setting {line!r} (preset key pythia.settings): an unknown "
        "setting name or a value it does not accept"
    )


def check_pythia_settings(config: PythiaConfig) -> None:
    """Read the preset's own ``settings`` into a Pythia instance (no initialisation): a
    :class:`~hepmpm.errors.HepmpmError` naming the first one Pythia rejects, raised before any
    worker starts."""
    pythia = pythia8mc.Pythia("", False)
    pythia.readString("Print:quiet = on")
    for line in config.settings:
        if not pythia.readString(line):
            raise HepmpmError(_rejected(line))


class PythiaGenerator:
    """A configured Pythia 8 instance for one process, seeded, quiet."""

    def __init__(self, process: JetProcess, config: PythiaConfig, seed: int) -> None:
        if not 1 <= seed <= MAX_PYTHIA_SEED:
            raise ValueError(f"Pythia seed must be in [1, {MAX_PYTHIA_SEED}], got {seed}")
        self._pythia = pythia8mc.Pythia("", False)
        lines = [
            f"Beams:eCM = {config.sqrt_s}",
            f"PhaseSpace:pTHatMin = {config.pt_hat_min}",
            f"PhaseSpace:pTHatMax = {config.pt_hat_max}",
            "ParticleDecays:limitTau0 = on",
            f"ParticleDecays:tau0Max = {config.tau0_max_mm}",
            "Random:setSeed = on",
            f"Random:seed = {seed}",
            "Print:quiet = on",
            *config.settings,
            *process.settings,
        ]
        for line in lines:
            if not self._pythia.readString(line):
                raise HepmpmError(_rejected(line))
        if not self._pythia.init():
            raise RuntimeError("Pythia failed to initialise; check the preset's settings")

    @property
    def particle_data(self) -> pythia8mc.ParticleData:
        return self._pythia.particleData

    def next_batch(self, n_events: int) -> EventBatch:
        """Generate ``n_events`` events (failed ones are skipped by Pythia)."""
        return EventBatch.from_awkward(self._pythia.nextBatch(n_events))


class ChargeTable:
    """Electric charge (units of e) by PDG id, looked up once per id in Pythia's particle data."""

    def __init__(self, generator: PythiaGenerator) -> None:
        self._particle_data = generator.particle_data
        self._cache: dict[int, int] = {}

    def __call__(self, pdg_id: np.ndarray) -> np.ndarray:
        unique, inverse = np.unique(pdg_id, return_inverse=True)
        for pid in unique.tolist():
            if pid not in self._cache:
                self._cache[pid] = round(self._particle_data.charge(pid))
        return np.array([self._cache[pid] for pid in unique.tolist()], dtype=np.int32)[inverse]
