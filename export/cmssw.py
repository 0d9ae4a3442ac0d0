"""``preprocess.json`` for CMSSW's ONNX Runtime jet-tag producers (weaver-core's format).

weaver-core's ``DataConfig.export_json`` writes, per model input group, the variable names and
per variable ``median``, ``norm_factor``, ``replace_inf_value``, ``lower_bound``, ``upper_bound``
and ``pad``, plus the group's length (``var_length``, or ``min_length``/``max_length`` for
dynamic lengths), ``input_names`` and ``output_names``. CMSSW's
``BoostedJetONNXJetTagsProducer`` (ParticleNet, ParT/GloParT AK8) reads it and, for each
variable, fills the input tensor with ``clip((x - median) * norm_factor, lower_bound,
upper_bound)`` (``replace_inf_value`` for non-finite ``x``), pads with ``pad`` and pads the
mask with 0.

**Choice: identity transforms.** hepmpm's normalisation lives inside the exported graph (the
same torch code that trained the model, see :mod:`hepmpm.models.embedding`), and it is not
always affine: ``mpm7id`` takes the log of pT and the asinh of impact parameters, which
``preprocess.json`` cannot express. So each variable is declared as weaver declares an
untransformed one (``median`` 0, ``norm_factor`` 1, bounds ±1e32, pad 0): the producer hands the
**raw** features to the graph, which normalises them exactly as in training. One place holds
the normalisation, so it cannot drift between the JSON and the weights. Non-finite raw values
are replaced by 0 (``replace_inf_value``), the value the skim would have dropped the jet for.
"""

from __future__ import annotations

from typing import Any

from hepmpm.export.metadata import ModelInfo

#: weaver's bounds for a variable without a transform.
UNBOUNDED = 1e32
MASK_VARIABLE = "part_mask"


def _identity() -> dict[str, float]:
    return {
        "median": 0.0,
        "norm_factor": 1.0,
        "replace_inf_value": 0.0,
        "lower_bound": -UNBOUNDED,
        "upper_bound": UNBOUNDED,
        "pad": 0.0,
    }


def preprocess_record(
    info: ModelInfo, min_length: int = 1, fixed_length: int | None = None
) -> dict[str, Any]:
    """The ``preprocess.json`` content of a ``cmssw``-layout model.

    Lengths are dynamic (``min_length``..``info.max_particles`` particles, the graph takes any
    P) unless ``fixed_length`` is given (``var_length``: every jet padded to that many slots).
    """
    record: dict[str, Any] = {
        "output_names": [f"prob{name}" for name in info.class_names],
        "input_names": ["pf_features", "pf_mask"],
    }
    for group, names in (("pf_features", list(info.features)), ("pf_mask", [MASK_VARIABLE])):
        entry: dict[str, Any] = {"var_names": names}
        if fixed_length is not None:
            entry["var_length"] = int(fixed_length)
        else:
            entry["min_length"] = int(min_length)
            entry["max_length"] = int(info.max_particles)
        entry["var_infos"] = {name: _identity() for name in names}
        record[group] = entry
    return record
