"""Judging taggers and writing what was measured, below training and every application.

:mod:`~hepmpm.evaluation.metrics` (accuracy, AUC, background rejection, with their statistical
uncertainties), :mod:`~hepmpm.evaluation.scoring` (a tagger's scores and metrics on a skim's
jets), :mod:`~hepmpm.evaluation.plots` (mplhep figures) and :mod:`~hepmpm.evaluation.pages`
(markdown + HTML result pages). Training, studies, the quickstart and calibration import from
here; nothing here imports them (scoring reads jets and runs models, the layers below).
"""
