"""RNN language models (D2L 8.5-8.6) built from recurrent cells.

* :mod:`engine.models.lm` — ``RNNLM`` (encoder, recurrent core, output layer),
  ``build_model``, ``detach_state``, and ``RecurrentCore`` (the cells over
  real-valued inputs);
* :mod:`engine.models.cell` — the ``Cell`` interface every kind implements, and
  ``cell_class(kind)``, which finds a kind's class through the torch-free
  registry ``engine.config.CELLS`` and imports its module on first use;
* one module per cell (``engine.models.scratch`` for D2L 8.5's RNN, ``gru`` …;
  ``engine.config.CELLS`` lists them all), each with its whole-sequence forward
  and backward and its one-token step.

Adding a cell is one module here and one line in ``engine.config.CELLS``.
Left out: the model's options (``engine.config.ModelConfig``) and training.
"""

from engine.models.cell import Cell, State, cell_class
from engine.models.lm import RNNLM, RecurrentCore, build_model, detach_state

__all__ = ["Cell", "State", "cell_class", "RNNLM", "RecurrentCore", "build_model", "detach_state"]
