"""The engine is headless: importing it must not pull in Textual or the TUI."""

import subprocess
import sys

ENGINE_MODULES = [
    "engine",
    "engine.corpus",
    "engine.tokenizers",
    "engine.vocab",
    "engine.data",
    "engine.stats",
    "engine.models",
    "engine.trainer",
    "engine.generate",
    "engine.runs",
    "engine.compare",
    "engine.export",
    "engine.labs.bptt",
    "engine.labs.bptt_grads",
    "engine.labs.sequence",
]


def test_engine_does_not_import_textual_or_tui():
    code = (
        "import importlib, sys\n"
        f"for m in {ENGINE_MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui', 'textual_plotext', 'plotext', 'rich'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"engine imported UI modules: {out.stdout.strip()}"
    
    
def test_cli_parser_does_not_import_textual():
    code = (
        "import sys\n"
        "from tui.cli import build_parser\n"
        "build_parser()\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
