"""
``sb3-sac-ext push``: evaluate a trained model and upload it to the Hugging Face Hub in one commit.
The options are those of :func:`sb3_sac_ext.hub.push_main` (``sb3-sac-ext push --help``).
"""

from sb3_sac_ext.hub import push_main

HELP = "push a trained model to the Hugging Face Hub (see: sb3-sac-ext push --help)"


def push(argv: list[str]) -> int:
    """
    :param argv: Arguments after ``push``, parsed by the Hub's own parser
    :return: Exit status (2 with a one-line message for bad input)
    """
    return push_main(argv)
