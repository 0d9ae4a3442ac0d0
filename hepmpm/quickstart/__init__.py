"""``hepmpm quickstart``: the whole chain on an embedded sample (:mod:`.chain`) and its report
(:mod:`.report`)."""

from hepmpm.quickstart.chain import QuickstartConfig, load_profile, run_quickstart

__all__ = ["QuickstartConfig", "load_profile", "run_quickstart"]
