"""Training: learns on real photos, resumes exactly, and data-parallel replicas agree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from edgesr.core.checkpoint import load_checkpoint, read_checkpoint
from edgesr.core.train import TrainConfig, train, weights_checksum

TINY = dict(model="sesr_m3", model_kwargs={"expansion": 16}, batch=4, lr_patch=16, progress=False)


def test_training_lowers_loss_and_raises_validation_psnr(tmp_path):
    ckpt = train(TrainConfig(**TINY, out=str(tmp_path), steps=80, val_every=10, lr=2e-3))
    hist = read_checkpoint(ckpt)["history"]
    assert hist[-1]["step"] == 80
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["val_psnr_y"] > hist[0]["val_psnr_y"]


def test_resume_after_interruption_continues_exactly(tmp_path):
    cfg = dict(TINY, steps=6, val_every=0, checkpoint_every=3)
    whole = train(TrainConfig(**cfg, out=str(tmp_path / "a")))

    def interrupt(step):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(**cfg, out=str(tmp_path / "b")), on_step=interrupt)
    assert read_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["step"] == 3
    resumed = train(TrainConfig(**cfg, out=str(tmp_path / "b")))
    a, _ = load_checkpoint(whole)
    b, state = load_checkpoint(resumed)
    assert state["step"] == 6 and state["optimizer"] is not None
    assert weights_checksum(a) == weights_checksum(b)


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    from edgesr.core.errors import EdgesrError

    train(TrainConfig(**TINY, out=str(tmp_path), steps=1, val_every=0))
    with pytest.raises(EdgesrError, match="sesr_m3"):
        train(TrainConfig(**{**TINY, "model": "sesr_m5"}, out=str(tmp_path), steps=2, val_every=0))


def test_checkpoint_is_written_atomically(tmp_path):
    train(TrainConfig(**TINY, out=str(tmp_path), steps=2, val_every=0))
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name != "last.pt"]
    assert leftovers == []


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")), reason="torchrun not installed")
def test_torchrun_two_cpu_replicas_hold_identical_weights(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "edgesr.cli", "train", "--model", "sesr_m3",
           "--expansion", "16", "--steps", "4", "--batch", "4", "--lr-patch", "16", "--val-every", "0",
           "--out", str(tmp_path), "--no-progress", "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    sums = state["replica_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    # The replicas trained on different batches, yet agree: the gradients were all-reduced.
    torch.manual_seed(0)
    from edgesr.core.models import create

    init = create("sesr_m3", scale=2, expansion=16)
    model, _ = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert weights_checksum(model) == sums[0] != weights_checksum(init)


def test_lut_networks_train_through_the_one_trainer_with_mse(tmp_path):
    """SR-LUT trains with edgesr.core.train (MSE, its authors' loss): the loss falls on real photos."""
    ckpt = train(TrainConfig(model="srlut_s", scale=2, out=str(tmp_path), steps=40, batch=4, lr_patch=12, lr=2e-3,
                             loss="mse", val_every=0, checkpoint_every=40, progress=False, device="cpu"))
    _, state = load_checkpoint(ckpt)
    assert state["config"]["loss"] == "mse" and state["model"] == "srlut_s"
    from edgesr.core.data import embedded_images, eval_pairs
    from edgesr.core.models import create
    from edgesr.core.train import validate

    torch.manual_seed(0)  # the trainer's initialization (seed 0)
    untrained = validate(create("srlut_s", scale=2), eval_pairs(embedded_images("val"), 2))
    assert state["history"][-1]["val_psnr_y"] > untrained + 0.5


def test_unknown_loss_is_refused_before_training(tmp_path):
    from edgesr.core.errors import EdgesrError

    with pytest.raises(EdgesrError, match="unknown training loss 'l3'"):
        train(TrainConfig(model="sesr_m3", out=str(tmp_path), steps=1, loss="l3"))
    assert not (tmp_path / "checkpoints").exists()
