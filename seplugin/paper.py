"""The paper's reference results (Hu et al., *Squeeze-and-Excitation Networks*, TPAMI 2019).

In percent, as the paper prints them: Table 2 (ImageNet, the authors' re-implementation of
the baselines), Table 7 (COCO), the Places365 table. ``tools/compare.py`` shows them next to
a comparison and the model zoo lists them as the paper's reference; neither types its own
copy. Standard library only: importing this module imports nothing else.
"""

# key -> (setting, {'baseline': {metric: value}, 'se': {metric: value}})
PAPER_RESULTS = {
    'coco-r50': ('Faster R-CNN, COCO minival, Table 7', {
        'baseline': {'coco/bbox_mAP': 38.0, 'coco/bbox_mAP_50': 57.9},
        'se': {'coco/bbox_mAP': 40.4, 'coco/bbox_mAP_50': 61.0}}),
    'coco-r101': ('Faster R-CNN, COCO minival, Table 7', {
        'baseline': {'coco/bbox_mAP': 39.9, 'coco/bbox_mAP_50': 60.1},
        'se': {'coco/bbox_mAP': 41.9, 'coco/bbox_mAP_50': 62.7}}),
    'imagenet-r50': ('ImageNet val, 224 single crop (100 - error), Table 2', {
        'baseline': {'accuracy/top1': 100 - 24.80, 'accuracy/top5': 100 - 7.48},
        'se': {'accuracy/top1': 100 - 23.29, 'accuracy/top5': 100 - 6.62}}),
    'imagenet-r101': ('ImageNet val, 224 single crop (100 - error), Table 2', {
        'baseline': {'accuracy/top1': 100 - 23.17, 'accuracy/top5': 100 - 6.52},
        'se': {'accuracy/top1': 100 - 22.38, 'accuracy/top5': 100 - 6.07}}),
    'places365-r152': ('Places365 val, single crop (100 - error)', {
        'baseline': {'accuracy/top1': 100 - 41.15, 'accuracy/top5': 100 - 11.61},
        'se': {'accuracy/top1': 100 - 40.37, 'accuracy/top5': 100 - 11.01}}),
}
# The paper's detectors started from its own ImageNet models: the key of their pair's top-1.
PAPER_PRETRAINING = {'coco-r50': 'imagenet-r50', 'coco-r101': 'imagenet-r101'}
