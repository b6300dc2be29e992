"""
``sb3-sac-ext pull``: download a model from the Hugging Face Hub, verify it against its sha256 manifest and load it.
The options are those of :func:`sb3_sac_ext.hub.pull_main` (``sb3-sac-ext pull --help``).
"""

from sb3_sac_ext.hub import pull_main

HELP = "download, verify and load a model from the Hugging Face Hub (see: sb3-sac-ext pull --help)"


def pull(argv: list[str]) -> int:
    """
    :param argv: Arguments after ``pull``, parsed by the Hub's own parser
    :return: Exit status (2 with a one-line message for bad input)
    """
    return pull_main(argv)
