"""The options ``tools/train.py`` and ``tools/test.py`` share, and their ``__main__`` block.

Standard library only at import time, so that ``--help`` answers without torch and the
OpenMMLab libraries. ``import seplugin`` loads those (it registers the models), so the
tools load this file by its path (:func:`runpy.run_path`, two lines at the top of each)
rather than as ``seplugin.cli.options``; :func:`main_block` imports seplugin only after
parsing.
"""
import argparse
from collections.abc import Callable


def add_shared_options(parser: argparse.ArgumentParser, work_dir_help: str,
                       cfg_options_example: str) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher``, ``--dist-backend``,
    ``--local_rank`` and ``--verbose``, as both tools take them."""
    parser.add_argument('--work-dir', help=work_dir_help)
    parser.add_argument('--cfg-options', nargs='+', metavar='KEY=VALUE',
                        help=f'override config settings, e.g. {cfg_options_example}')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--dist-backend', metavar='{nccl,gloo,mpi,ucc}',
                        help='torch.distributed backend of a distributed run (default: the '
                             "config's; nccl on GPUs, gloo without CUDA)")
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--verbose', action='store_true',
                        help="mmengine's full console output (config, hooks, environment) "
                             'and tracebacks on the console')


def main_block(parse_args: Callable[[], argparse.Namespace],
               main: Callable[[argparse.Namespace], object]) -> None:
    """What ``python tools/<tool>.py`` does: parse (``--help`` ends here, nothing heavy
    imported), run ``main`` with one-line errors (:func:`seplugin.cli.console.run_tool`),
    then end the distributed group once the runner is gone."""
    arguments = parse_args()
    from seplugin.cli.config import finish_distributed
    from seplugin.cli.console import run_tool
    run_tool(lambda: main(arguments), arguments.verbose)
    finish_distributed()
