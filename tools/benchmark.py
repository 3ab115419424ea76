"""What SE costs in time and memory: seplugin's SE-ResNet-50 against plain ResNet-50 and
against MMPretrain's and timm's SE-ResNet-50, and SE-R50-FPN against R50-FPN Faster R-CNN.

    python tools/benchmark.py              # everything (about 17 min on 2 CPU cores)
    python tools/benchmark.py --measure memory training --repeats 5 --plot ratios.png
    python tools/benchmark.py --measure inference training --no-peers --compiled-models

All models of a measurement run interleaved in one process, each round in a new random
order (A B C, C A B, ...), so machine noise falls on all of them alike. A time ratio is
the median over the rounds of each round's ratio (a busy round slows both models and
cancels), with a 95% distribution-free confidence interval of that median from order
statistics (ranks from the binomial(n, 1/2) distribution; its coverage is at least 95% at
any number of rounds from 6 on); a target is met when the interval's upper end is within
it. An identical copy of ResNet-50 runs as one more model: its ratio to ResNet-50 should be
1, and how far it is from 1 is the resolution of that measurement. ``--compiled-tail``
times one more SE-ResNet-50 in training, with the compiled SE tail backward (README, "Speed
and memory"); its row says whether the compiled backward actually ran or the eager
fallback did. ``--compiled-models`` adds ``torch.compile(model)`` of ResNet-50 and
SE-ResNet-50 (contiguous inference and training step; the first, compiling call is timed
apart and reported as the compile time). Freed memory is kept by malloc
(``--system-malloc`` to not). Memory is exact: the peak of the tensor storages created
during one training step (forward, backward, optimizer step; parameters and optimizer
state updated in place are not new), and the storages autograd keeps for backward; it
does not depend on timing. ``--device cuda`` measures the same on a GPU (the default when
there is one). The logic lives in ``seplugin.analysis.benchmark``.
"""
import argparse
import sys

# Only the standard library up here: --help answers without loading torch or mmengine.
MEASUREMENTS = ('memory', 'inference', 'training', 'detection')  # seplugin's, checked there


def at_least(minimum: int):
    """An argparse type: an integer of at least ``minimum``, else an error naming the value."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{value!r} is not an integer') from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f'{number}: expected an integer >= {minimum}')
        return number
    parse.__name__ = f'integer >= {minimum}'
    return parse


positive, count = at_least(1), at_least(0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=positive, default=8, help='classifier batch size')
    parser.add_argument('--size', type=positive, default=224, help='classifier input size')
    parser.add_argument('--repeats', type=positive, default=15, help='timed runs per model')
    parser.add_argument('--warmup', type=count, default=2, help='untimed runs per model')
    parser.add_argument('--measure', nargs='+', choices=MEASUREMENTS, default=MEASUREMENTS,
                        help='what to measure (default: all)')
    parser.add_argument('--det-batch', type=positive, default=2)
    parser.add_argument('--det-size', type=positive, default=320)
    parser.add_argument('--det-repeats', type=positive, default=15)
    parser.add_argument('--json', help='write the measurements and ratios here')
    parser.add_argument('--plot', help='write a bar chart of the ratios here (PNG)')
    parser.add_argument('--no-peers', dest='peers', action='store_false',
                        help="leave out MMPretrain's and timm's models (a shorter run)")
    parser.add_argument('--system-malloc', action='store_true',
                        help="leave malloc's defaults (see keep_freed_memory)")
    parser.add_argument('--compiled-tail', action='store_true',
                        help='time one more SE-ResNet-50 training step, with the compiled '
                        'SE tail backward')
    parser.add_argument('--compiled-models', action='store_true',
                        help='also time torch.compile(model) of ResNet-50 and SE-ResNet-50 '
                        '(contiguous inference, training step); compiling takes minutes')
    parser.add_argument('--device', help="'cpu', 'cuda' or 'cuda:N' (default: cuda when "
                        'there is a GPU, else cpu)')
    parser.add_argument('--verbose', action='store_true',
                        help='on an error, print its traceback')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from seplugin.cli.console import hide_setuptools_notice
    hide_setuptools_notice()
    from seplugin.analysis.benchmark import main as benchmark
    benchmark(args)


if __name__ == '__main__':
    try:
        main()
    except Exception as error:
        from seplugin.cli.console import exit_on_error
        exit_on_error(error, verbose='--verbose' in sys.argv)
