"""Entry point: `python run.py [overrides]` or `python run.py -m judge=additive5 train=dpo,sft`."""
import hydra
from omegaconf import DictConfig

from srlm_exp.main import run


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
