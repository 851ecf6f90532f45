# Copyright (c) mmevo contributors. All rights reserved.
"""End-to-end demo: generate the synthetic data, train and evaluate EATFormer-Mobile models.

For each task (classification with mmpretrain, Mask R-CNN with mmdet, UperNet with mmseg) this
trains the ``configs/demo`` config from scratch on the CPU with MMEngine's Runner (progress and
ETA in the log), evaluates it (Accuracy, COCO box/mask AP through pycocotools, mIoU), draws the
predictions on validation images and prints a summary::

    python tools/demo.py                       # all three tasks, a few minutes each
    python tools/demo.py --task det --work-dir work_dirs/demo
    python tools/demo.py --quick               # a few iterations on a tiny dataset (smoke test)
"""
import argparse
import math
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Optional

# OpenMP threads sleep instead of spin-waiting (libgomp's default) between parallel regions: with
# any other busy process on a 2-core machine, spinning threads slow training down 10-30x.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from mmengine.config import DictAction  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402

import mmevo  # noqa: E402,F401  (safe checkpoint loading, mmevo:: configs)
from mmevo.datasets import demo_data  # noqa: E402
from mmevo.utils import ignore_pkg_resources_warning  # noqa: E402

TASKS = {
    'cls': ('configs/demo/demo_cls_eatformer_mobile.py', 'imagenet'),
    'det': ('configs/demo/demo_mask_rcnn_eatformer_mobile.py', 'coco'),
    'seg': ('configs/demo/demo_upernet_eatformer_mobile.py', 'ade'),
}
# The metrics printed in the summary, per task.
SUMMARY_KEYS = {
    'cls': ['accuracy/top1'],
    'det': ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'],
    'seg': ['mIoU', 'aAcc', 'mAcc'],
}
# Dataset sizes of --quick runs (written to <work-dir>/quick_data, not data/demo).
QUICK_DATA = dict(num_train=8, num_val=4, cls_train_per_class=4, cls_val_per_class=2)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Train and evaluate EATFormer-Mobile on the embedded synthetic demo data '
        '(classification, instance segmentation, semantic segmentation) on the CPU.')
    parser.add_argument('--task', choices=['all', *TASKS], default='all')
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='logs, checkpoints and visualisations go to <work-dir>/<task>')
    parser.add_argument('--data-root', default=None,
                        help='demo data folder (default: data/demo, or <work-dir>/quick_data '
                        'with --quick); generated when missing')
    parser.add_argument('--quick', action='store_true',
                        help='a few iterations on a tiny dataset (a smoke test, not a result)')
    parser.add_argument('--num-vis', type=int, default=8,
                        help='validation images to draw predictions on')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override settings of every task config run, e.g. '
                        'train_cfg.max_epochs=2')
    return parser.parse_args(argv)


def _set_data_root(cfg, task: str, root: str) -> None:
    """Point the demo config's datasets (and COCO evaluator) at ``root``."""
    sub = osp.join(root, TASKS[task][1]) + '/'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].dataset.data_root = sub
    if task == 'det':
        for key in ('val_evaluator', 'test_evaluator'):
            cfg[key].ann_file = osp.join(sub, 'annotations', 'instances_val.json')


def _make_quick(cfg, task: str) -> None:
    """Shorten a run to a few iterations (the data is already tiny)."""
    if task == 'seg':
        cfg.train_cfg.max_iters = 4
        cfg.train_cfg.val_interval = 4
        cfg.default_hooks.checkpoint.interval = 4
        cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    else:
        cfg.train_cfg.max_epochs = 1
        cfg.train_cfg.val_interval = 1
        cfg.default_hooks.checkpoint.interval = 1
        cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True)]
    cfg.default_hooks.logger.interval = 1
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[split].batch_size = 4
        cfg[split].num_workers = 0
        cfg[split].persistent_workers = False


def _rgb(path: str):
    import mmcv
    return mmcv.imread(path, channel_order='rgb')


def _tile(images, cols: int = 4):
    """Tile RGB arrays into one grid image."""
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    rows = math.ceil(len(images) / cols)
    grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        grid[r * h:r * h + im.shape[0], c * w:c * w + im.shape[1]] = im
    return grid


def _draw_cls(image, sample, classes, size: int = 160):
    """One classification tile: the image, ground truth and prediction (green: right)."""
    from PIL import Image, ImageDraw
    tile = Image.fromarray(image).resize((size, size), Image.NEAREST)
    canvas = Image.new('RGB', (size, size + 34), 'white')
    canvas.paste(tile, (0, 0))
    pred = int(sample.pred_label[0])
    gt = int(sample.gt_label[0])
    score = float(sample.pred_score[pred])
    draw = ImageDraw.Draw(canvas)
    colour = (20, 140, 40) if pred == gt else (200, 30, 30)
    draw.text((4, size + 2), f'pred: {classes[pred]} ({score:.2f})', fill=colour)
    draw.text((4, size + 18), f'gt:   {classes[gt]}', fill=(0, 0, 0))
    return np.asarray(canvas)


def _upscale(image, sample, task: str, factor: int):
    """Enlarge a small image and its drawn results (nearest neighbour) for readable drawings."""
    import torch
    import torch.nn.functional as F
    from mmengine.structures import PixelData
    image = np.repeat(np.repeat(image, factor, 0), factor, 1)
    h, w = image.shape[:2]
    if task == 'seg':
        for key in ('gt_sem_seg', 'pred_sem_seg'):
            if key in sample:
                data = sample.get(key).data
                setattr(sample, key, PixelData(data=F.interpolate(
                    data[None].float(), size=(h, w), mode='nearest')[0].to(data.dtype)))
    else:
        for key in ('gt_instances', 'pred_instances'):
            if key not in sample:
                continue
            instances = sample.get(key)
            instances.bboxes = instances.bboxes * factor
            masks = instances.get('masks')
            if masks is None:
                continue
            if not isinstance(masks, torch.Tensor):  # mmdet BitmapMasks / PolygonMasks
                instances.masks = masks.resize((h, w))
            elif len(masks):
                instances.masks = F.interpolate(
                    masks[:, None].float(), size=(h, w), mode='nearest')[:, 0].bool()
    return image


def visualize(runner, task: str, out_dir: str, num: int, min_side: int = 256) -> str:
    """Draw predictions of the trained model on the first ``num`` validation images.

    Detection and segmentation use the task library's visualizer (ground truth left,
    prediction right); classification draws a labelled grid. Returns the grid's path.
    """
    import torch
    from mmengine.dataset import pseudo_collate
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    dataset = runner.val_dataloader.dataset
    model = runner.model
    model.eval()
    visualizer = runner.visualizer
    visualizer.dataset_meta = dataset.metainfo
    tiles = []
    # Spread over the dataset (the classification folders are sorted by class).
    indices = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, min(num, len(dataset)))})
    with torch.no_grad():
        samples = model.test_step(pseudo_collate([dataset[i] for i in indices]))
    for i, sample in zip(indices, samples):
        image = _rgb(sample.img_path)
        name = osp.splitext(osp.basename(sample.img_path))[0]
        out_file = osp.join(out_dir, f'{i:04d}_{name}.png')  # class folders repeat names
        if task == 'cls':
            tile = _draw_cls(image, sample, dataset.metainfo['classes'])
            Image.fromarray(tile).save(out_file)
        else:
            factor = max(1, min_side // min(image.shape[:2]))
            if factor > 1:
                image = _upscale(image, sample, task, factor)
            kwargs = dict(pred_score_thr=0.5) if task == 'det' else dict()
            visualizer.add_datasample(
                name, image, sample, draw_gt=True, draw_pred=True, show=False,
                out_file=out_file, **kwargs)
            tile = _rgb(out_file)
        tiles.append(tile)
    grid_path = osp.join(out_dir, f'{task}_predictions.png')
    Image.fromarray(_tile(tiles, cols=4 if task == 'cls' else 2)).save(grid_path)
    return grid_path


class KeepMetrics(Hook):
    """Remembers the metrics of the last validation."""

    priority = 'VERY_LOW'

    def __init__(self):
        self.metrics: Dict[str, float] = {}

    def after_val_epoch(self, runner, metrics=None):
        if metrics:
            self.metrics = dict(metrics)


def run_task(task: str, args: argparse.Namespace, data_root: str) -> dict:
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(osp.join(ROOT, TASKS[task][0]))
    cfg.work_dir = osp.join(args.work_dir, task)
    cfg.launcher = 'none'
    _set_data_root(cfg, task, data_root)
    if args.quick:
        _make_quick(cfg, task)
    cfg.merge_from_dict(args.cfg_options)
    start = time.time()
    runner = Runner.from_cfg(cfg)
    keep = KeepMetrics()
    runner.register_hook(keep)
    runner.train()
    metrics = keep.metrics or runner.val()
    train_time = time.time() - start
    grid = visualize(runner, task, osp.join(cfg.work_dir, 'vis'), args.num_vis)
    return dict(task=task, metrics=metrics, seconds=train_time, vis=grid,
                vis_dir=osp.dirname(grid), work_dir=cfg.work_dir)


def main(argv: Optional[List[str]] = None) -> List[dict]:
    ignore_pkg_resources_warning()
    args = parse_args(argv)
    data_root = args.data_root or (osp.join(args.work_dir, 'quick_data')
                                   if args.quick else 'data/demo')
    t0 = time.time()
    demo_data.generate(data_root, **(QUICK_DATA if args.quick else {}))
    print(f'[demo] data in {data_root} ({time.time() - t0:.0f} s)', flush=True)
    tasks = list(TASKS) if args.task == 'all' else [args.task]
    results = []
    for task in tasks:
        print(f'[demo] ===== {task}: training {TASKS[task][0]} =====', flush=True)
        results.append(run_task(task, args, data_root))
    print('\n[demo] summary' + (' (--quick: a smoke test, not a result)' if args.quick else ''))
    for res in results:
        shown = ', '.join(f'{k}={res["metrics"][k]:.4g}' for k in SUMMARY_KEYS[res['task']]
                          if k in res['metrics'])
        print(f'[demo] {res["task"]}: {shown} | train+eval {res["seconds"] / 60:.1f} min | '
              f'predictions drawn in {res["vis_dir"]} (grid: {res["vis"]})')
    return results


if __name__ == '__main__':
    main()
