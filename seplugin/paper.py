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
# Table 2's GFLOPs and the parameter counts of Tables 10 and 13, which tools/complexity.py
# sets beside its own counts.
PAPER_COMPLEXITY = dict(
    # Table 2: GFLOPs at 224x224, (ResNet, SE-ResNet)
    gflops={50: (3.86, 3.87), 101: (7.58, 7.60), 152: (11.30, 11.32)},
    # parameters in millions where the paper gives them: SE-ResNet-50 at r=16 (Table 10),
    # ResNet-50 (Table 13); it prints no exact counts
    params_m={('SEResNet', 50): 28.1, ('ResNet', 50): 25.6},
    # Table 10: SE-ResNet-50 parameters (millions) per reduction ratio
    ratio_params_m={2: 45.7, 4: 35.7, 8: 30.7, 16: 28.1, 32: 26.9},
    # Table 13: ResNet-50 with SE in one stage (conv2_x = stage 2 = our layer1) or all
    stage_params_m={'ResNet-50': 25.6, 'SE_Stage_2': 25.6, 'SE_Stage_3': 25.7,
                    'SE_Stage_4': 26.4, 'SE_All': 28.1},
)
