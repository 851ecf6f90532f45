# A tiny iteration-based run for the tools' tests (seconds on a CPU). Needs this folder on
# PYTHONPATH for `toy_task`.
default_scope = 'mmengine'
custom_imports = dict(imports=['toy_task'], allow_failed_imports=False)

# SyncBN on purpose: it must fall back to BN in one process and on CPU.
model = dict(type='ToyRegressor', sync_bn=True)

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(type='ToyDataset', size=32),
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'))
test_dataloader = dict(
    batch_size=8,
    num_workers=0,
    dataset=dict(type='ToyDataset', size=16),
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'))
test_evaluator = dict(type='ToyMSE')
test_cfg = dict()

train_cfg = dict(by_epoch=False, max_iters=4)
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2),
    dict(type='MultiStepLR', milestones=[3], gamma=0.1, by_epoch=False),
]

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2))
custom_hooks = [dict(type='ParamProbeHook')]
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=120))
