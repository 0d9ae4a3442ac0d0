"""YAML configurations shipped with hepmpm (installed as ``hepmpm.configs``).

``generate/`` holds the generator presets (``sim``, ``data``). Read them with
:func:`hepmpm.config.packaged_config_path`.
"""
