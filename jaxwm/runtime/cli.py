"""The shared entry point of the experiment binaries in `experiments/`.

Each binary is `--config=experiments/configs/<name>.py:<preset> [--config.<field>=...]` plus
`--workdir` (a rerun with the same workdir resumes); its module docstring is the `--help` text.
Compiled programs are kept in JAX's persistent compilation cache (`--compilation_cache`), so a
rerun or a resumed run skips the compiles of the first calls.
"""
import os
from typing import Any, Callable, Mapping, Optional

import jax
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
    flags.DEFINE_string(
        "compilation_cache", default_cache_dir(), "directory of JAX's persistent compilation "
        "cache ('' turns it off); default $JAX_COMPILATION_CACHE_DIR or ~/.cache/jaxwm/jax")

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        quiet_libraries()
        enable_compilation_cache(flags.FLAGS.compilation_cache)
        summary = train_fn(flags.FLAGS.config, flags.FLAGS.workdir)
        if print_summary:
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()})

    app.run(main)


def default_cache_dir() -> str:
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxwm", "jax")


def enable_compilation_cache(directory: str, min_compile_secs: float = 0.5) -> None:
    """Persist every program that takes at least `min_compile_secs` to compile in `directory`
    ('' leaves the cache off)."""
    if not directory:
        jax.config.update("jax_enable_compilation_cache", False)
        return
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_secs)
