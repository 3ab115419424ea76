"""Record SE gate activations per class (the paper's Sec. 7.2 / Fig. 6 study)."""
from collections import defaultdict
from collections.abc import Iterable

import torch
from torch import nn


class ExcitationRecorder:
    """Collects the gate of every SE layer of a backbone, summed per class.

    Forward hooks on each SE layer's gate activation (its output is the gate) keep the model
    untouched; use it as a context manager so the hooks go away afterwards.
    """

    def __init__(self, backbone: nn.Module) -> None:
        if not hasattr(backbone, 'se_layers'):
            raise TypeError(f'{type(backbone).__name__} has no SE layers to record; '
                            'expected a seplugin SEResNet/SEResNeXt backbone')
        self.layers = dict(backbone.se_layers())
        self.sums: dict[str, dict[int, torch.Tensor]] = defaultdict(dict)
        self.counts: dict[int, int] = defaultdict(int)
        self._gates: dict[str, torch.Tensor] = {}
        self._handles = []

    def __enter__(self) -> 'ExcitationRecorder':
        for name, layer in self.layers.items():
            # the gate's activation: its output is the gate
            self._handles.append(layer.conv2.activate.register_forward_hook(
                lambda module, args, out, name=name: self._gates.__setitem__(
                    name, out.detach().flatten(1).float().cpu())))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def add(self, labels: Iterable[int]) -> None:
        """Assign the gates of the last forward pass to the images' labels."""
        labels = torch.as_tensor(list(labels))
        for name, gates in self._gates.items():
            for label in labels.unique().tolist():
                chosen = gates[labels == label].sum(0)
                sums = self.sums[name]
                sums[label] = sums[label] + chosen if label in sums else chosen
        for label in labels.tolist():
            self.counts[label] += 1
        self._gates.clear()

    def means(self) -> dict[str, dict[int, torch.Tensor]]:
        """{SE layer: {class: mean gate per channel}}."""
        return {name: {label: total / self.counts[label] for label, total in per.items()}
                for name, per in self.sums.items()}


def plot_excitations(means: dict[str, dict[int, torch.Tensor]], class_names: dict[int, str],
                     path: str, max_channels: int = 64) -> None:
    """One panel per SE layer: mean gate of the first channels, one line per class."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(means)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for label, gate in sorted(means[name].items()):
            name_ = class_names.get(label, str(label)).split(',')[0]  # ImageNet synonyms
            ax.plot(gate[:max_channels].numpy(), label=name_, linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel('channel index')
        ax.set_ylabel('activation')
        ax.set_ylim(0, 1.02 if all(g.max() <= 1 for g in means[name].values()) else None)
    for ax in list(axes.flat)[len(names):]:
        ax.axis('off')
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc='center right', fontsize=8)
    fig.suptitle('SE excitation per class (mean over images)')
    fig.tight_layout(rect=(0, 0, 0.85, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
