"""Figure helpers: arms in the note's order, loss curves against optimiser steps."""

from descentlab.rag.viz import loss_steps, ordered_arms, plot_training


def test_arms_follow_the_notes_order_whatever_the_result_order():
    result = {"variants": {"resplit": {}, "mine": {}, "full": {}, "closed_book": {},
                           "split": {}}}
    assert ordered_arms(result) == ["closed_book", "full", "split", "resplit", "mine"]


def test_loss_steps_from_the_result_or_from_log_every():
    curves = {"full": [3.0, 2.0, 1.5]}
    assert loss_steps({"loss_curves": curves, "loss_steps": [10, 20, 25]}) == [10, 20, 25]
    assert loss_steps({"loss_curves": curves, "log_every": 4}) == [4, 8, 12]  # older JSON


def test_training_figure_is_written(tmp_path):
    hist = [{"step": s, "loss": 5.0 / s, "lr": 1e-3} for s in (2, 4, 6)] + [{"step": 6}]
    path = plot_training(hist, tmp_path / "loss.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
