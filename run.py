"""Entry point: `python run.py [overrides]` or `python run.py -m judge=additive5 train=dpo,sft`.

The same app as the installed `srlm-run` (srlm_exp/app.py), reading the configs from this checkout's conf/.
Only Hydra is imported before the job runs: `--help` and Tab completion stay fast."""
import hydra
from omegaconf import DictConfig

from srlm_exp.app import task


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    task(cfg)


if __name__ == "__main__":
    main()
