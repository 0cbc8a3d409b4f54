"""What ``swarmtrain local`` shows: the per-window table, ``summary.json`` and the plot.

Pure functions turn the collected records (``LocalRunResult``) into a summary
dict; rendering (rich table) and plotting (matplotlib, Agg) take that dict.

Example:
    >>> summary = build_summary(result)
    >>> render(summary, Console()); write_summary(summary, out / "summary.json")
    >>> plot(summary, out / "local.png")        # None (and a message) without matplotlib
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from swarmtrain.localnet import VALIDATOR, LocalRunResult, is_validator_name


def _uid_list(value: Any) -> list[int]:
    """Contributors as uids, whether written as ints or as {"uid": ...} dicts."""
    out = []
    for item in value or []:
        out.append(int(item["uid"]) if isinstance(item, Mapping) else int(item))
    return out


def _uid_map(value: Any) -> dict[int, float]:
    return {int(k): float(v) for k, v in (value or {}).items()}


def _validator_hashes(records: Sequence[Mapping[str, Any]]) -> dict[int, str | None]:
    """{window: θ_{w+1} hash} from a validator's metrics lines."""
    return {int(r["window"]): r.get("model_hash") or r.get("next_model_hash") for r in records if "window" in r}


def window_rows(result: LocalRunResult) -> list[dict[str, Any]]:
    """One row per trained window (the lead's view): loss, contributors, scores, hash agreement.

    ``hash_agree``: every honest miner and every other validator that closed the window
    reports the lead's θ_{w+1} hash; a validator that never closed it counts as disagreeing.
    """
    by_window = {int(r["window"]): r for r in result.validator_records if "window" in r}
    miner_hashes = {
        name: {int(r["window"]): r.get("model_hash") for r in recs if r.get("event") == "window"}
        for name, recs in result.miner_records.items()
    }
    others = {name: _validator_hashes(recs) for name, recs in result.other_validators.items()}
    refusals = _refusals(result)
    honest = [m.name for m in result.cfg.miners if m.honest]
    rows = []
    for w in range(result.first_window, result.first_window + result.cfg.windows):
        rec = by_window.get(w)
        if rec is None:
            continue
        val_hash = rec.get("model_hash") or rec.get("next_model_hash")
        seen = {n: miner_hashes[n][w] for n in honest if w in miner_hashes.get(n, {})}
        validators = {n: hashes.get(w) for n, hashes in others.items()}
        rows.append({
            "window": w,
            "val_loss": rec.get("val_loss"),
            "val_loss_before": rec.get("val_loss_before"),
            "contributors": _uid_list(rec.get("contributors")),
            "scores": _uid_map(rec.get("scores") or rec.get("window_scores")),
            "refused": refusals.get(w, {}),
            "model_hash": val_hash,
            "miners_reporting": sorted(seen),
            "validator_hashes": validators,
            "hash_agree": bool(val_hash) and all(h == val_hash for h in [*seen.values(), *validators.values()]),
        })
    return rows


def _refusals(result: LocalRunResult) -> dict[int, dict[int, str]]:
    """{window: {uid: "status code"}} from what the miners were told."""
    out: dict[int, dict[int, str]] = {}
    for name, records in result.miner_records.items():
        uid = result.uids.get(name)
        for r in records:
            if uid is not None and r.get("event") == "window" and r.get("refused"):
                first = r["refused"][0]
                out.setdefault(int(r["window"]), {})[uid] = f"{first['status']} {first['code']}"
    return out


def build_summary(result: LocalRunResult) -> dict[str, Any]:
    """The JSON summary: val_loss per window, emission per uid, model_hash_agree, and more."""
    rows = window_rows(result)
    neurons = {int(n["uid"]): n for n in result.metagraph.get("neurons", [])}
    names = {uid: name for name, uid in result.uids.items()}
    losses = [r["val_loss"] for r in rows]
    honest_uids = [result.uids[m.name] for m in result.cfg.miners if m.honest and m.name in result.uids]
    return {
        "windows": rows,
        "val_loss": losses,
        "val_loss_initial": rows[0]["val_loss_before"] if rows else None,
        "val_loss_drop": _drop(losses),
        "emission": {uid: float(n.get("emission", 0.0)) for uid, n in neurons.items()},
        "incentive": {uid: float(n.get("incentive", 0.0)) for uid, n in neurons.items()},
        "dividends": {uid: float(n.get("dividends", 0.0)) for uid, n in neurons.items()},
        "names": names,
        "honest_miners": honest_uids,
        "validator_uid": result.uids.get(VALIDATOR),
        "validator_uids": sorted(uid for name, uid in result.uids.items() if is_validator_name(name)),
        "model_hash_agree": bool(rows) and len(rows) == result.cfg.windows and all(r["hash_agree"] for r in rows),
        "restarts": dict(result.restarts),  # {node name: times restarted after it died}
        "block": result.metagraph.get("block"),
        "seconds": round(result.seconds, 1),
        "config": result.cfg.subnet.model_dump(),
    }


def aborted_summary(result: LocalRunResult, reason: str) -> dict[str, Any]:
    """The summary of a run that did not finish (Ctrl-C, a node that kept dying, a bug):
    what the nodes wrote until then, ``aborted`` saying why."""
    return {**build_summary(result), "aborted": reason}


def _drop(losses: Sequence[float | None]) -> float | None:
    """Relative fall of the loss from the first window to the last: (first − last) / first."""
    vals = [v for v in losses if v is not None]
    if len(vals) < 2 or vals[0] <= 0:
        return None
    return (vals[0] - vals[-1]) / vals[0]


def write_summary(summary: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, sort_keys=False), encoding="utf-8")
    return path


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def window_table(summary: Mapping[str, Any]) -> Table:
    """Window | val loss | contributors | one score column per miner | hashes agree.

    A miner's cell is its window score, ``-`` when not evaluated, or the refusal it got.
    """
    names = {int(k): v for k, v in summary["names"].items()}
    miner_uids = sorted(uid for uid, name in names.items() if not is_validator_name(name))
    table = Table(title="swarmtrain local: per window")
    for col in ("window", "val loss", "contributors"):
        table.add_column(col, justify="right")
    for uid in miner_uids:
        table.add_column(f"{names[uid]} (uid {uid})", justify="right")
    table.add_column("hashes agree")
    for row in summary["windows"]:
        scores = {int(k): v for k, v in row["scores"].items()}
        refused = {int(k): v for k, v in row.get("refused", {}).items()}
        table.add_row(
            str(row["window"]), _fmt(row["val_loss"]), ",".join(map(str, row["contributors"])) or "-",
            *[refused.get(uid) or _fmt(scores.get(uid), 3) for uid in miner_uids],
            "yes" if row["hash_agree"] else "NO",
        )
    return table


def emission_table(summary: Mapping[str, Any]) -> Table:
    names = {int(k): v for k, v in summary["names"].items()}
    table = Table(title="emission per uid (last epoch)")
    for col in ("uid", "node", "incentive", "dividends", "emission"):
        table.add_column(col, justify="right")
    for uid, value in sorted((int(k), v) for k, v in summary["emission"].items()):
        table.add_row(
            str(uid), names.get(uid, "?"), _fmt(summary["incentive"].get(uid)),
            _fmt(summary["dividends"].get(uid)), _fmt(value, 6),
        )
    return table


def render(summary: Mapping[str, Any], console: Console) -> None:
    console.print(window_table(summary))
    console.print(emission_table(summary))
    drop = summary.get("val_loss_drop")
    console.print(
        f"validation loss fell {100 * drop:.1f}% from the first window to the last;"
        if drop is not None else "validation loss: not enough windows to compare;",
        f"model hashes agree: {summary['model_hash_agree']}",
    )
    if any(summary.get("restarts", {}).values()):
        console.print("restarted after dying: " + ", ".join(f"{n} ×{k}" for n, k in summary["restarts"].items()),
                      markup=False)


def plot(summary: Mapping[str, Any], path: Path) -> Path | None:
    """PNG: validation loss per window (left), emission per miner (right)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = {int(k): v for k, v in summary["names"].items()}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    windows = [r["window"] for r in summary["windows"]]
    left.plot(windows, summary["val_loss"], marker="o")
    left.set_xlabel("window")
    left.set_ylabel("validation loss")
    left.set_title("validation loss (after each window)")
    emission = sorted((int(k), v) for k, v in summary["emission"].items())
    right.bar([f"{names.get(u, u)}\nuid {u}" for u, _ in emission], [v for _, v in emission])
    right.set_title("emission per uid")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
