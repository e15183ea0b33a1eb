"""`edge` works where torch cannot be imported (a headset image without the training stack)."""
# Tier: integration (python -c in subprocesses with torch blocked).
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent

BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"


def _run(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter where `import torch` fails; it must exit 0."""
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_edge_imports_and_preprocesses_without_torch():
    result = _run(
        "import numpy as np\n"
        "import edge, edge.preprocess, edge.bundle, edge.stats, edge.bench.flow, edge.live.web, edge.bench.web\n"
        "from edge.preprocess import PreprocessConfig, make_flow_backend, window_to_model_input\n"
        "cfg = PreprocessConfig()\n"
        "assert make_flow_backend(cfg.flow)(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8)).shape == (64, 64, 2)\n"
        "assert window_to_model_input(np.zeros(8000, np.float32), 8000, cfg).shape == (1, 64, 98)\n"
        "assert not any(m.split('.')[0] in ('torch', 'trainer', 'calibration') for m in sys.modules if sys.modules[m])\n"
        "print('ok')\n"
    )
    assert result.stdout.strip() == "ok"


def test_torch_flow_backend_needs_torch_only_when_chosen():
    result = _run(
        "from edge.preprocess import FlowConfig, make_flow_backend\n"
        "try:\n"
        "    make_flow_backend(FlowConfig(backend='torch'))\n"
        "except ImportError:\n"
        "    print('import error')\n"
    )
    assert result.stdout.strip() == "import error"


def test_bench_flow_skips_torch_with_a_note(data_root):
    result = _run(
        "from edge.bench.__main__ import main\n"
        f"sys.exit(main(['flow', '--data-root', {str(data_root)!r}, '--backends', 'torch', 'dis', "
        "'--repeats', '1', '--json']))\n"
    )
    assert "skipping the torch flow backend" in result.stderr
    assert {r["backend"] for r in json.loads(result.stdout)} == {"dis"}
