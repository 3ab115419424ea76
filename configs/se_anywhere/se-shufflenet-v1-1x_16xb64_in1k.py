# SE-ShuffleNet 1x (g=3): shufflenet-v1-1x_16xb64_in1k.py with SE (r=16) on the residual
# branch of every adding unit, nothing else changed. 2.4M parameters, as in the paper's
# Table 3 (tests/test_models/test_backbones/test_se_backbone.py counts them).
_base_ = './shufflenet-v1-1x_16xb64_in1k.py'

model = dict(backbone=dict(_delete_=True, type='SEBackbone', backbone=_base_.model.backbone))
