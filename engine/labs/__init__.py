"""The chapter's labs, headless: experiments a reader runs to see an answer in numbers.

One module per lab, pure functions (and generators where the work is long),
no UI code; ``rnnlab lab …`` (``tui.cli.lab``) prints their figures and the
Labs screen plots them:

* :mod:`engine.labs.bptt` (torch-free: options, power iteration, summaries) and
  :mod:`engine.labs.bptt_grads` (the cells) — D2L 8.7: power iteration on a
  matrix with a chosen spectrum, the gradient ‖∂L_T/∂h_t‖ reaching every time
  step of a recurrent cell (and how scaling W_hh changes it), per-step gradient
  norms and clipping during a short training run; :mod:`engine.labs.truncation` trains one
  model with regular, randomised and no truncation side by side, and shows PyTorch refusing a
  step between minibatches that share a graph.
* :mod:`engine.labs.sequence` (with :mod:`~engine.labs.sequence_config`, torch-free options;
  :mod:`~engine.labs.sequence_models`, the models; :mod:`~engine.labs.series`, the data) —
  D2L 8.1 and 8.6's RNN for it: linear, MLP and recurrent models predicting a noisy sine one,
  k and many steps ahead; τ swept, the exact σ = 0 case, block features, a regime change, and a
  switching series where a recurrent model beats every window.
* :mod:`engine.labs.iterators` — D2L 8.3.4 and exercise 8.3.5: the minibatches of every sampler
  printed as X/Y (the book's 0..34 and a real corpus), and how evenly each sampler reads the text
  over epochs (coverage: min / max / mean / std of the counts, positions never read).

Left out: anything that needs a corpus screen or a run folder to be open
(the labs take ids, configs and models as arguments).
"""
