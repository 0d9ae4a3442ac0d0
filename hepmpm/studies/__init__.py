"""Studies of what pre-training buys: label efficiency (in domain, new classes, sim-to-real), CWoLa.

``hepmpm study NAME`` (:func:`hepmpm.studies.runner.run_study`); shared plots
(:mod:`~hepmpm.evaluation.plots`), pages (:mod:`~hepmpm.evaluation.pages`) and tagger metrics
(:mod:`~hepmpm.evaluation.metrics`).
"""
