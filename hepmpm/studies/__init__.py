"""Studies of what pre-training buys: label scans, new classes, CWoLa, sim-to-real.

``hepmpm study NAME`` (:func:`hepmpm.studies.runner.run_study`); shared plots
(:mod:`~hepmpm.studies.plots`), pages (:mod:`~hepmpm.studies.pages`) and tagger metrics
(:mod:`~hepmpm.studies.metrics`).
"""
