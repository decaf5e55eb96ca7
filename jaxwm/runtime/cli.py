"""The shared entry point of the experiment binaries in `experiments/`.

Each binary is `--config=experiments/configs/<name>.py:<preset> [--config.<field>=...]` plus
`--workdir` (a rerun with the same config resumes; `jaxwm.runtime.workdir`); `--help` shows
its module docstring, these flags, the presets and an example. Compiled programs are kept in
JAX's persistent compilation cache (`--compilation_cache`), so a rerun or a resumed run skips
the compiles of the first calls. On a CPU-only machine XLA's LLVM optimization level is 1
(`--xla_cpu_optimization_level`): it compiles the cpu presets' training calls 1.3-2x faster than
XLA's default at the same speed per call (`benchmarks/xla_flags.py`). User errors (a bad flag or
config value, env name, dataset, a workdir of another run) print one line `error: ...` and exit
with status 2.
"""
import importlib.metadata
import importlib.util
import os
import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
from absl import app, flags, logging
from jax._src import xla_bridge
from ml_collections import config_flags

from jaxwm.runtime.logging import quiet_libraries
from jaxwm.runtime.workdir import UserError

TrainFn = Callable[[Any, str], Optional[Mapping[str, Any]]]


def run(name: str, train_fn: TrainFn, description: str, presets: Sequence[str] = (),
        print_summary: bool = True) -> None:
    """Defines --config and --workdir, then runs `train_fn(config, workdir)` under absl and prints
    the summary dict it returns."""
    config_flags.DEFINE_config_file("config", f"experiments/configs/{name}.py:cpu",
                                    f"{description} config file with a preset")
    main_module = sys.modules["__main__"]
    main_module.__doc__ = (main_module.__doc__ or "") + usage(name, presets)
    flags.DEFINE_string("workdir", f"runs/{name}", "output directory (resumes if it exists)")
    flags.DEFINE_string(
        "compilation_cache", default_cache_dir(), "directory of JAX's persistent compilation "
        "cache ('' turns it off); default $JAX_COMPILATION_CACHE_DIR or ~/.cache/jaxwm/jax")
    flags.DEFINE_integer(
        "xla_cpu_optimization_level", CPU_OPTIMIZATION_LEVEL, "XLA's backend (LLVM) optimization "
        "level when JAX runs on the CPU only (-1: XLA's default; a level in XLA_FLAGS wins)")

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        quiet_libraries()
        set_cpu_optimization_level(flags.FLAGS.xla_cpu_optimization_level)
        enable_compilation_cache(flags.FLAGS.compilation_cache)
        try:
            summary = train_fn(flags.FLAGS.config, flags.FLAGS.workdir)
        except UserError as e:
            exit_user_error(e)
        if print_summary:
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in summary.items()})

    app.run(main, flags_parser=parse_flags)


def usage(name: str, presets: Sequence[str]) -> str:
    """The flags part of a binary's --help text."""
    return (f"\nFlags:\n  --config=experiments/configs/{name}.py:<preset>   presets: "
            f"{', '.join(presets) or 'see the config file'}\n"
            "      any field can be overridden: --config.seed=1 (a run's fields: its config.json)\n"
            f"  --workdir=runs/{name}   outputs; rerunning with the same config resumes there\n"
            "  --compilation_cache=DIR   JAX's persistent compilation cache ('' turns it off)\n"
            "  --xla_cpu_optimization_level=N   XLA's LLVM level on CPU (default 1; -1: XLA's)\n"
            f"Example:\n  python experiments/{name}.py --config=experiments/configs/{name}.py:"
            f"smoke --workdir=/tmp/{name}_smoke\n")


def exit_user_error(error: Exception) -> None:
    """Print `error: <message>` on one line to stderr and exit with status 2."""
    print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list) -> list:
    """absl's flag parsing with one-line errors (exit 2) for an unknown flag, an unknown or
    badly typed --config.<field>, or an unreadable config file."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        message = str(e)
        if isinstance(e, AttributeError):
            message = f"unknown config field {message.strip(chr(34) + chr(39))}"
        exit_user_error(UserError(message))


CPU_OPTIMIZATION_LEVEL = 1
OPTIMIZATION_LEVEL_FLAG = "--xla_backend_optimization_level"


def accelerator_installed() -> bool:
    """Whether JAX may find a GPU or TPU: JAX_PLATFORMS names one, or a PJRT plugin (the CUDA and
    ROCm wheels) or libtpu is installed. Checked without initializing a backend."""
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return any(p.strip() not in ("", "cpu") for p in platforms.split(","))
    if importlib.util.find_spec("libtpu") is not None:
        return True
    if importlib.util.find_spec("jax_plugins") is not None:
        return True
    return any(True for _ in importlib.metadata.entry_points(group="jax_plugins"))


def set_cpu_optimization_level(level: int) -> bool:
    """Add `--xla_backend_optimization_level=level` to XLA_FLAGS when JAX will run on the CPU
    only; no-op for level < 0, when XLA_FLAGS already sets a level, or with a GPU/TPU. XLA reads
    its flags once, when the first backend starts: after that this warns and does nothing.
    Returns whether the level was set."""
    flags_env = os.environ.get("XLA_FLAGS", "")
    if level < 0 or OPTIMIZATION_LEVEL_FLAG in flags_env or accelerator_installed():
        return False
    if getattr(xla_bridge, "backends_are_initialized", lambda: False)():
        logging.warning("XLA optimization level %d not set: a JAX backend already runs", level)
        return False
    os.environ["XLA_FLAGS"] = f"{flags_env} {OPTIMIZATION_LEVEL_FLAG}={level}".strip()
    return True


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
