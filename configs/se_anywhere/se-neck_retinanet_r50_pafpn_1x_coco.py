# RetinaNet R50-PAFPN with SE in the neck: SE after PAFPN's lateral convs and on its five
# output levels (r=16), nothing else changed. A PAFPN checkpoint (load_from) loads
# unchanged and starts the SE layers neutral.
_base_ = './retinanet_r50_pafpn_1x_coco.py'

model = dict(neck=dict(_delete_=True, type='SENeck', neck=_base_.model.neck,
                       se_lateral=True, se_outputs=True))
