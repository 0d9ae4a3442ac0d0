"""``hepmpm quickstart``: the whole chain on an embedded sample (:mod:`.chain`), its profile
(:mod:`.config`) and its report (:mod:`.report`)."""

from hepmpm.quickstart.chain import run_quickstart
from hepmpm.quickstart.config import QuickstartConfig, load_profile

__all__ = ["QuickstartConfig", "load_profile", "run_quickstart"]
