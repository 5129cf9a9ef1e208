"""rnnlab's engine: corpora, tokenizers, samplers, statistics, RNN models, the
trainer, generation and run folders.

Headless by design: nothing here imports Textual, prints, plots or sleeps.
Long work is a generator the caller drives (``train`` yields progress events,
``generate`` yields tokens); cancellation is a plain ``threading.Event``.
"""

__version__ = "0.1.0"
