"""The rule that chose the temporal model's defaults (trainer.studies.live.choose), on made-up rows:
the targets first, then accuracy (ties within 0.01), one patch per hop, the lower latency (ties
within 0.1 s), the shorter mood_seconds."""

from __future__ import annotations

from trainer.studies.live import choose


def row(acc: float, latency: float, within: bool = True, kind: str = "mood_filter", **settings: float) -> dict:
    figures = {"m/clean": {"latency_median_s": latency}, "m/room": {"latency_median_s": latency}}
    chosen = {"patches": 1, "mood_seconds": 120.0} | settings
    return {"kind": kind, "settings": chosen, "figures": figures, "within_targets": within, "mean_accuracy": acc}


def test_within_the_targets_beats_more_accuracy() -> None:
    rows = [row(0.95, 3.0, within=False, mood_seconds=1.0), row(0.80, 5.0, mood_seconds=2.0)]
    assert choose(rows)[0]["settings"]["mood_seconds"] == 2.0
    assert len(choose(rows)) == 2


def test_the_old_smoother_is_never_chosen_even_when_best() -> None:
    rows = [row(0.99, 1.0, kind="ema", mood_seconds=1.0), row(0.80, 5.0, mood_seconds=2.0)]
    assert choose(rows)[0]["kind"] == "mood_filter"


def test_ties_go_to_one_patch_then_lower_latency_then_shorter_memory() -> None:
    rows = [
        row(0.900, 4.00, patches=3, mood_seconds=10.0),  # best, but three patches
        row(0.895, 5.00, mood_seconds=20.0),  # tied on accuracy, slower
        row(0.893, 4.26, mood_seconds=900.0),
        row(0.892, 4.30, mood_seconds=300.0),  # within 0.1 s of the fastest: tied, and shorter
        row(0.880, 3.00, mood_seconds=30.0),  # faster, but not tied on accuracy
    ]
    assert choose(rows)[0]["settings"]["mood_seconds"] == 300.0
    rows[3]["figures"]["m/clean"]["latency_median_s"] = 4.5  # now 0.14 s slower on the mean: not tied
    assert choose(rows)[0]["settings"]["mood_seconds"] == 900.0


def test_the_record_is_json_with_one_candidate_per_line_and_the_chosen_first() -> None:
    import json

    from trainer.studies.live import as_record

    rows = choose([row(0.81234567, 5.0, mood_seconds=2.0), row(0.9, 4.0, within=False)])
    text = as_record({"temperatures": {"m": 0.9}, "chosen": rows[0]}, rows)
    study = json.loads(text)
    assert study["chosen"] == study["rows"][0] and study["chosen"]["mean_accuracy"] == 0.8123
    lines = [line for line in text.splitlines() if line.startswith("  {")]
    assert [json.loads(line.rstrip(",")) for line in lines] == study["rows"]
