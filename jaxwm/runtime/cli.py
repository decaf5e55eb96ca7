"""The shared entry point of the experiment binaries in `experiments/`.

Each binary is `--config=experiments/configs/<name>.py:<preset> [--config.<field>=...]` plus
`--workdir` (a rerun with the same workdir resumes); its module docstring is the `--help` text.
"""
from typing import Any, Callable, Mapping, Optional

from absl import app, flags
from ml_collections import config_flags

from jaxwm.runtime.logging import quiet_libraries

TrainFn = Callable[[Any, str], Optional[Mapping[str, Any]]]


def run(name: str, train_fn: TrainFn, description: str, print_summary: bool = True) -> None:
    """Defines --config and --workdir, then runs `train_fn(config, workdir)` under absl and prints
    the summary dict it returns."""
    config_flags.DEFINE_config_file("config", f"experiments/configs/{name}.py:cpu",
                                    f"{description} config file with a preset")
    flags.DEFINE_string("workdir", f"runs/{name}", "output directory (resumes if it exists)")

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        quiet_libraries()
        summary = train_fn(flags.FLAGS.config, flags.FLAGS.workdir)
        if print_summary:
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()})

    app.run(main)
