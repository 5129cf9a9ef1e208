"""rnnlab's terminal front ends: the Textual playground (``tui.app``) and the
headless command line (``tui.cli``). Both drive ``engine``; the CLI never
imports Textual, so ``rnnlab train`` starts fast and runs over plain SSH.
"""
