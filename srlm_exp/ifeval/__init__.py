"""The IFEval world (data=ifeval, docs/ifeval_world.md): verifiable instruction following graded by IFEval's
own checkers from the `if-verifiable` package.

  tasks.py        base tasks (forms x topics), split by topic into training and held-out
  constraints.py  the IFEval types used and left out, their conflicts, building one constraint deterministically
  prompts.py      a prompt: a base task plus one or two compatible constraints
  parsing.py      reading a prompt's constraints back from its text (any process, any prompt in the library's wording)
  grader.py       strict / loose pass per constraint, the 0-5 rubric, EFT target judgments, IFEval's metrics
  eft.py          from a model's graded samples to EFT rows, IFT rows and ranked sets
  source.py       the seed-data source (conf/data/ifeval.yaml)
"""
