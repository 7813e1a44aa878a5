"""Mutation runs: does the suite notice when training does nothing, or trains the wrong way? (issue 40)

    python tests/mutate.py MUTATION [pytest arguments...]
    python tests/mutate.py no-op-after-m1 tests/test_smoke_moves.py tests/test_golden.py -m "not slow"

Each mutation is a textual edit of the committed code (HEAD) in a throw-away git worktree; pytest runs there
(its jobs' `python run.py` too, since tests start them from the repository they live in), and the worktree is
removed afterwards. Nothing in this checkout changes (and what is not committed is not in the mutant). Exit
status: 0 when tests failed (the mutation was caught), 1 when they all passed (the mutant survived), 2 when
pytest gave no verdict (usage error, nothing collected).

Mutations:
- no-step: every Lightning fit skips its optimizer step (the loss and its gradients are still computed);
- flip-sign: every Lightning fit's training loss is negated (trained away from its signal);
- no-op-after-m1: the loop's stages after M1 (M2, M3: DPO, SFT, RLOO, PPO...) take no optimizer step.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Appended to srlm_exp/training/fit.py: every Trainer.fit of the process (the loop's and the tests' own) runs
# through it, whoever built the Trainer.
_WRAP_FIT = '''

def _mutant_fit(fit):
    def wrapped(self, model, *args, **kwargs):
        {body}
        return fit(self, model, *args, **kwargs)
    return wrapped


pl.Trainer.fit = _mutant_fit(pl.Trainer.fit)
'''
# The modules optimise by hand (training/base.py): the optimizer's own step and the backward pass are the points
# to cut. Written for `model` at 8 spaces of indentation; `_indented` moves them.
_NO_STEP = '''configure = model.configure_optimizers

        def without_step():
            out = configure()
            optimizer = out["optimizer"] if isinstance(out, dict) else out
            optimizer.step = lambda closure=None: closure() if closure is not None else None
            return out
        model.configure_optimizers = without_step'''
_FLIP = '''backward = model.manual_backward
        model.manual_backward = lambda loss, *a, **k: backward(-loss, *a, **k)'''


def _indented(code: str, spaces: int, name: str = "model") -> str:
    return code.replace("model.", f"{name}.").replace("\n        ", "\n" + " " * spaces)


# (file, text that must be there, its replacement)
MUTATIONS: dict[str, list[tuple[str, str, str]]] = {
    "no-step": [("srlm_exp/training/fit.py", "        **kwargs,\n    )\n",
                 "        **kwargs,\n    )\n" + _WRAP_FIT.format(body=_NO_STEP))],
    "flip-sign": [("srlm_exp/training/fit.py", "        **kwargs,\n    )\n",
                   "        **kwargs,\n    )\n" + _WRAP_FIT.format(body=_FLIP))],
    "no-op-after-m1": [
        ("srlm_exp/loop.py", "run_fit=self.run_fit(callbacks)", "run_fit=self.run_fit(callbacks, t)"),
        ("srlm_exp/loop.py", "    def run_fit(self, callbacks: list[pl.Callback]):\n"
                             "        def fit(module, loader, epochs: int, max_steps: int):\n",
         "    def run_fit(self, callbacks: list[pl.Callback], t: int = 1):\n"
         "        def fit(module, loader, epochs: int, max_steps: int):\n"
         "            if t >= 2:\n"
         f"                {_indented(_NO_STEP, 16, 'module')}\n"),
    ],
}


def apply(tree: Path, edits: list[tuple[str, str, str]]) -> None:
    for rel, old, new in edits:
        path = tree / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"mutate.py: {rel} no longer holds the text this mutation edits exactly once "
                             f"({text.count(old)} times): update MUTATIONS in {Path(__file__).name}:\n{old}")
        path.write_text(text.replace(old, new))


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in MUTATIONS:
        print(__doc__, file=sys.stderr)
        print(f"MUTATION: one of {', '.join(MUTATIONS)}", file=sys.stderr)
        return 2
    name, pytest_args = argv[0], argv[1:]
    with tempfile.TemporaryDirectory(prefix=f"mutant-{name}-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), "HEAD"], check=True)
        try:
            apply(tree, MUTATIONS[name])
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
            print(f"mutate.py: {name} applied in {tree}; python -m pytest {' '.join(pytest_args)}", flush=True)
            rc = subprocess.run([sys.executable, "-m", "pytest", *pytest_args], cwd=tree, env=env).returncode
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    if rc not in (0, 1):  # 2-5: interrupted, internal or usage error, nothing collected: no verdict
        print(f"mutate.py: {name}: pytest exited {rc} without a verdict (see its output above)")
        return 2
    caught = rc == 1
    print(f"mutate.py: {name}: the tests went {'red: the mutation was caught' if caught else 'GREEN: the mutant survived'}"
          f" (pytest exit {rc})")
    return 0 if caught else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
