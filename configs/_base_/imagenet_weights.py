# The ImageNet-1k checkpoints the COCO configs start from, each named here and nowhere else.
#
# MMPretrain's published classifiers (mmpretrain checkpoints: backbone under 'backbone.', so
# the detection configs load them with prefix='backbone.'). The URLs, with their hash, are
# exactly those of MMPretrain 1.2's configs/seresnet/metafile.yml and
# configs/resnet/metafile.yml (tests/test_configs/test_detection_configs.py compares them
# with the installed package's); the ImageNet top-1 of each is read from there too
# (seplugin.zoo, configs/metafile.yml).
#
# Why MMPretrain's ResNets for the baselines: they come from the same codebase, data
# pipeline and checkpoint layout as the SE-ResNets (both 8 GPUs x 32 images, SGD with
# momentum). They are not one recipe: the SE-ResNets trained 140 epochs (top-1 77.74 /
# 78.26), the ResNets 100 (76.55 / 77.97). That pretraining gap is a confounder of any
# COCO difference; tools/compare.py prints it next to the results. The paper's own pair
# differed by 1.51 (R50) and 0.79 (R101) top-1 points.
imagenet_weights = dict(
    resnet50='https://download.openmmlab.com/mmclassification/v0/resnet/'
             'resnet50_8xb32_in1k_20210831-ea4938fc.pth',
    resnet101='https://download.openmmlab.com/mmclassification/v0/resnet/'
              'resnet101_8xb32_in1k_20210831-539c63f8.pth',
    seresnet50='https://download.openmmlab.com/mmclassification/v0/se-resnet/'
               'se-resnet50_batch256_imagenet_20200804-ae206104.pth',
    seresnet101='https://download.openmmlab.com/mmclassification/v0/se-resnet/'
                'se-resnet101_batch256_imagenet_20200804-ba5b51d4.pth',
)
