"""``sb3-sac-ext pull``: download a model from the Hub, verify and load it (:func:`~sb3_sac_ext.hub.pull_main`)."""

from sb3_sac_ext.hub import pull_main

HELP = "download, verify and load a model from the Hugging Face Hub (see: sb3-sac-ext pull --help)"
__all__ = ["HELP", "pull_main"]
