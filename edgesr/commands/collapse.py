"""``edgesr collapse CKPT -o DEPLOY.pt``: reparameterize a training checkpoint.

Writes the deploy form (``model.collapse()``: plain convs with biases, identities folded,
BN folded) as a checkpoint with ``form: deploy``, and prints the parameter counts and the
largest difference between the two forms on a real photograph.
"""

from __future__ import annotations

from edgesr.core.checkpoint import load_checkpoint, save_checkpoint
from edgesr.core.collapse import collapse_checked


def add_arguments(p) -> None:
    p.add_argument("checkpoint", help="training checkpoint from `edgesr train`")
    p.add_argument("-o", "--output", required=True, help="deploy checkpoint to write")


def run(args) -> int:
    model, state = load_checkpoint(args.checkpoint)
    deploy, report = collapse_checked(model)
    save_checkpoint(args.output, deploy, step=state.get("step", 0), config=state.get("config", {}), form="deploy")
    print(f"{args.checkpoint} -> {args.output}: {report['params']:,} -> {report['params_deploy']:,} parameters, "
          f"max |train - deploy| = {report['max_abs_err']:.2e} on a real photo")
    return 0
