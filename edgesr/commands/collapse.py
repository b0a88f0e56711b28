"""``edgesr collapse CKPT -o DEPLOY.pt``: reparameterize a training checkpoint.

Writes the deploy form (``model.collapse()``: plain convs with biases, identities folded,
BN folded) as a checkpoint with ``form: deploy``, and prints the parameter counts and the
largest difference between the two forms on a real photograph. A model with no training-only
form (already plain, e.g. eSR-MAX, a deploy checkpoint) is its own deploy form: it is written as
such, with a note.
"""

from __future__ import annotations

from edgesr.commands._args import add_out_argument, existing_file, output_file
from edgesr.core.checkpoint import load_checkpoint, save_checkpoint
from edgesr.core.collapse import collapse_checked


def add_arguments(p) -> None:
    p.add_argument("checkpoint", type=existing_file, help="training checkpoint from `edgesr train`")
    add_out_argument(p, "deploy checkpoint to write (.pt)", required=True, type=output_file(".pt", ".pth"))


def run(args) -> int:
    model, state = load_checkpoint(args.checkpoint)
    config = state.get("config", {})
    if not hasattr(model, "collapse"):  # already plain: the deploy form is the model itself
        params = sum(p.numel() for p in model.parameters())
        save_checkpoint(args.out, model, step=state.get("step", 0), config=config, form="deploy")
        print(f"{args.checkpoint} -> {args.out}: {getattr(model, 'registry_name', type(model).__name__)} has no "
              f"training-only form; written as its deploy checkpoint ({params:,} parameters)")
        return 0
    deploy, report = collapse_checked(model)
    save_checkpoint(args.out, deploy, step=state.get("step", 0), config=config, form="deploy")
    print(f"{args.checkpoint} -> {args.out}: {report['params']:,} -> {report['params_deploy']:,} parameters, "
          f"max |train - deploy| = {report['max_abs_err']:.2e} on a real photo")
    return 0
