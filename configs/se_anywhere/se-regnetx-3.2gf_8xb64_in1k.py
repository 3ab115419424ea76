# SE-RegNetX-3.2GF: regnetx-3.2gf_8xb64_in1k.py with the paper's SE (r=16 of the block's
# output width, after its last BN, before the addition), nothing else changed. (RegNetY
# puts its SE after the 3x3 conv, with r=4 of the block's input width: another design.)
_base_ = './regnetx-3.2gf_8xb64_in1k.py'

model = dict(backbone=dict(_delete_=True, type='SEBackbone', backbone=_base_.model.backbone))
