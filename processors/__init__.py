"""coffea processors of hepmpm (installed as ``hepmpm.processors``).

The constituent skim (NanoAOD -> parquet training shards) and the tagger-inference
processor arrive with their issues; this package is where they live.
"""
