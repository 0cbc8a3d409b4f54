"""scripts/bench_distill.py runs end to end on toy sizes (a tiny teacher, one miner, one window).

Never asserts performance: only that the script works, prints its last line and that its
honest rows show no rejection while its random cheat is caught.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from tests.outputs_fixtures import tiny_teacher  # noqa: F401 (fixture)

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def test_bench_distill_runs_on_toy_sizes(tiny_teacher, tmp_path, capsys):  # noqa: F811
    path, _ = tiny_teacher
    sys.path.insert(0, str(SCRIPTS))
    try:
        bench = importlib.import_module("bench_distill")
        bench.main(["--teacher", str(path), "--samples", "24", "--windows", "1", "--miners", "1", "--secrets", "50",
                    "--cheat-samples", "10", "--tolerance-samples", "4", "--val-samples", "16", "--out", str(tmp_path)])
    finally:
        sys.path.remove(str(SCRIPTS))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    fields = dict(item.split("=") for item in last.split())
    assert list(fields) == ["student_loss_ratio_vs_hard", "vs_full_logits", "bytes_per_token", "verify_cost_share",
                            "false_reject_rate", "min_cheat_detection"]
    assert float(fields["false_reject_rate"]) == 0.0 and float(fields["bytes_per_token"]) > 0
    assert (tmp_path / "distill.json").is_file()
