"""coffea processors of hepmpm (installed as ``hepmpm.processors``).

- :mod:`~hepmpm.processors.constituent_skim`: NanoAOD/PFNano FatJets -> parquet training shards.
- :mod:`~hepmpm.processors.tagger`: the ``TaggerProcessor``, an exported ONNX tagger run over
  events, filling ``hist`` histograms and per-jet scores.
- :mod:`~hepmpm.processors.fatjet_scores`: ``tag_fatjets``, scores as a column of the analyst's
  own ``events.FatJet``.
- :mod:`~hepmpm.processors.jet_constituents` and :mod:`~hepmpm.processors.jet_selection`: one
  code path from FatJets to model inputs, shared by all of them;
  :mod:`~hepmpm.processors.running`: filesets and the coffea executors.
"""
