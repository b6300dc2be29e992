"""``sb3-sac-ext push``: evaluate a trained model, upload it to the Hub in one commit (:func:`~sb3_sac_ext.hub.push_main`)."""

from sb3_sac_ext.hub import push_main

HELP = "push a trained model to the Hugging Face Hub (see: sb3-sac-ext push --help)"
__all__ = ["HELP", "push_main"]
