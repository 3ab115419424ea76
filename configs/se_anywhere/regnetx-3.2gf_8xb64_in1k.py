# RegNetX-3.2GF on ImageNet-1k: MMPretrain's recipe unchanged, the baseline of
# se-regnetx-3.2gf_8xb64_in1k.py.
_base_ = 'mmpretrain::regnet/regnetx-3.2gf_8xb64_in1k.py'

custom_imports = dict(imports=['seplugin'], allow_failed_imports=False)
