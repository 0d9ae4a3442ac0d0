"""Judging taggers and writing what was measured, below training and every application.

:mod:`~hepmpm.evaluation.metrics` (accuracy, AUC, background rejection, with their statistical
uncertainties), :mod:`~hepmpm.evaluation.plots` (mplhep figures) and
:mod:`~hepmpm.evaluation.pages` (markdown + HTML result pages). Training, studies, the quickstart
and calibration import from here; nothing here imports them.
"""
