"""Training: supervised fine-tuning on TRL, from the same rendered tokens evaluation uses.

Importing this package loads neither torch nor TRL; :func:`codevision.train.sft.train` does.
"""

from codevision.train.config import ConfigError, SFTSettings, load_config

__all__ = ["ConfigError", "SFTSettings", "load_config"]
