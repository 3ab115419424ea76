# Faster R-CNN, the narrow ResNet-18 + FPN on the generated mini COCO dataset, starting from a
# ResNet-18 pretrained on the mini ImageNet with configs/mini/resnet18_mini_imagenet.py: the
# paper's protocol in miniature, through the init_cfg path the COCO configs use
# (MMPretrain classifier checkpoint, prefix='backbone.'). Baseline of
# faster_rcnn_se_r18_fpn_minicoco_pretrained.py. tools/demo.py trains the classifier first
# and sets the checkpoint with --cfg-options model.backbone.init_cfg.checkpoint=...; by hand:
#   python tools/train.py configs/mini/resnet18_mini_imagenet.py \
#       --work-dir work_dirs/demo/pretrain/baseline/seed0
#   python tools/train.py configs/mini/faster_rcnn_r18_fpn_minicoco_pretrained.py
_base_ = './faster_rcnn_r18_fpn_minicoco.py'

model = dict(
    backbone=dict(
        # _delete_: the base has init_cfg=None (from scratch)
        init_cfg=dict(_delete_=True, type='Pretrained',
                      checkpoint='work_dirs/demo/pretrain/baseline/seed0/epoch_20.pth',
                      prefix='backbone.')))
