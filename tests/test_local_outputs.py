"""Outputs mode end to end on 127.0.0.1: devnet + validator + 2 honest miners labelling with the
teacher + 1 miner sending random outputs, as processes. The student's validation loss falls,
every node holds the same student, the honest miners earn and the cheat earns nothing."""

from __future__ import annotations

import sys

from swarmtrain.localnet import MinerSpec
from swarmtrain.localnet_report import build_summary
from tests.localnet_fixtures import running_localnet, tiny_subnet
from tests.outputs_fixtures import tiny_teacher  # noqa: F401 (fixture)

WINDOWS = 2
CHEAT = MinerSpec("cheat", honest=False, entry=(sys.executable, "-m", "swarmtrain.cheat_miner", "--cheat", "random"))


def test_outputs_network_distils_agrees_and_pays_only_honest_labels(tmp_path_factory, tiny_teacher):  # noqa: F811
    path, digest = tiny_teacher
    subnet = tiny_subnet(task="outputs", teacher=str(path), teacher_hash=digest, seq_len=32, outputs_samples=16,
                         outputs_topk=8, outputs_spot_checks=24, inner_lr=3e-3, outer_lr=1.0)
    with running_localnet(tmp_path_factory.mktemp("local-outputs"), subnet=subnet,
                          miners=[MinerSpec("miner1"), MinerSpec("miner2"), CHEAT], windows=WINDOWS,
                          timeout_s=150) as (_, result):
        summary = build_summary(result)
        uid = result.uids
        assert summary["model_hash_agree"] is True, summary["windows"]
        losses = summary["val_loss"]
        assert losses[-1] < summary["val_loss_initial"], losses
        for row in summary["windows"]:
            assert row["scores"].get(uid["cheat"], 0.0) == 0.0, row
            assert uid["cheat"] not in row["contributors"]
        contributed = {u for row in summary["windows"] for u in row["contributors"]}
        assert {uid["miner1"], uid["miner2"]} <= contributed
        emission = summary["emission"]
        assert emission[uid["miner1"]] > 0 and emission[uid["miner2"]] > 0, emission
        assert emission[uid["cheat"]] == 0.0
        honest = [r for r in result.miner_records["miner1"] if r.get("submitted")]
        assert honest and honest[0]["samples"] == 16 and honest[0]["tokens_per_s"] > 0
