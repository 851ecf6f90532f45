# Copyright (c) mmevo contributors. All rights reserved.
"""A small synthetic dataset for the end-to-end demo, generated deterministically (no downloads).

Scenes of textured shapes (circle, square, triangle, star; each class has its own colours and
texture, jittered per instance) on textured backgrounds, placed so that later shapes may occlude
earlier ones. The same generator writes three datasets in the formats the OpenMMLab libraries
read natively::

    <out>/coco/annotations/instances_{train,val}.json   COCO instances (RLE masks of the
    <out>/coco/{train,val}/*.jpg                          visible parts, bbox, area, iscrowd)
    <out>/ade/images/{training,validation}/*.jpg        ADE20K-style semantic segmentation:
    <out>/ade/annotations/{training,validation}/*.png   0 = ignore (a 1-px band on every
                                                         boundary), 1 = background, 2.. = shapes
                                                         (``reduce_zero_label=True``)
    <out>/imagenet/{train,val}/<class>/*.png            ImageNet-style class folders (one
                                                         partly occluded shape per image)

The detection and segmentation datasets show the same scenes. Everything is drawn from one
``numpy.random.Generator`` seeded with ``seed``: the same arguments give byte-identical files.

Command line::

    python -m mmevo.datasets.demo_data --out data/demo
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

#: Object classes, in COCO category-id order (ids start at 1).
CLASSES = ('circle', 'square', 'triangle', 'star')
#: Semantic-segmentation classes after ``reduce_zero_label`` (PNG value ``i + 1``).
SEG_CLASSES = ('background', ) + CLASSES
#: Colours for visualising :data:`SEG_CLASSES`.
SEG_PALETTE = [[90, 90, 90], [230, 60, 50], [50, 100, 230], [60, 200, 80], [245, 200, 40]]

# Per class: two RGB colours and the texture blending them.
_STYLES = {
    'circle': ((225, 65, 50), (125, 20, 25), 'stripes'),
    'square': ((55, 95, 225), (20, 30, 110), 'checker'),
    'triangle': ((70, 195, 80), (20, 90, 35), 'dots'),
    'star': ((245, 195, 45), (160, 95, 15), 'blotches'),
}
# Bump when the drawing changes, so that ``generate`` rewrites stale data.
_FORMAT_VERSION = 1
_META_FILE = 'demo_data.json'


def _coords(size: int) -> Tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x, y


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a random ``cells`` x ``cells`` grid, bilinearly upsampled."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, size, endpoint=False, dtype=np.float32)
    i = t.astype(np.int64)
    f = t - i
    f = f * f * (3 - 2 * f)  # smoothstep
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None] + rows[:, i + 1] * f[None]


def _texture(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """A blend weight map in [0, 1] of the given texture kind."""
    x, y = _coords(size)
    theta = rng.uniform(0, np.pi)
    u = x * np.cos(theta) + y * np.sin(theta)
    v = -x * np.sin(theta) + y * np.cos(theta)
    if kind == 'stripes':
        period = rng.uniform(5, 9)
        return (np.sin(2 * np.pi * u / period + rng.uniform(0, 2 * np.pi)) > 0).astype(
            np.float32)
    if kind == 'checker':
        cell = rng.uniform(4, 7)
        return ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    if kind == 'dots':
        period = rng.uniform(5, 8)
        phase = rng.uniform(0, 2 * np.pi, 2)
        d = np.sin(2 * np.pi * u / period + phase[0]) * np.sin(2 * np.pi * v / period +
                                                                  phase[1])
        return (d > 0.35).astype(np.float32)
    if kind == 'blotches':
        return (_smooth_noise(rng, size, 10) > 0.5).astype(np.float32)
    raise ValueError(f'unknown texture {kind!r}')


def _jitter(rng: np.random.Generator, colour, amount: float = 25.) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A muted, low-saturation textured background (smooth noise, faint stripes, blobs)."""
    grey = rng.uniform(70, 190)
    c1 = np.clip(grey + rng.uniform(-25, 25, 3), 0, 255).astype(np.float32)
    c2 = np.clip(c1 + rng.uniform(-60, 60), 0, 255).astype(np.float32)
    w = 0.7 * _smooth_noise(rng, size, int(rng.integers(2, 6)))
    x, y = _coords(size)
    theta = rng.uniform(0, np.pi)
    w += 0.3 * (np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) /
                       rng.uniform(10, 30)) * 0.5 + 0.5)
    img = c1 * (1 - w[..., None]) + c2 * w[..., None]
    # A few soft distractor blobs in background colours.
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(size / 16, size / 5, 2)
        blob = (((x - cx) / rx)**2 + ((y - cy) / ry)**2) < 1
        img[blob] = img[blob] * 0.6 + np.clip(grey + rng.uniform(-40, 40, 3), 0, 255) * 0.4
    return img


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Boolean mask of one shape of circumradius ``r`` centred at ``(cx, cy)``."""
    if kind == 'circle':
        x, y = _coords(size)
        return (x + 0.5 - cx)**2 + (y + 0.5 - cy)**2 <= (0.8 * r)**2
    if kind == 'square':
        n, radii = 4, [r * 0.95]
    elif kind == 'triangle':
        n, radii = 3, [r]
    elif kind == 'star':
        n, radii = 5, [r, 0.45 * r]
    else:
        raise ValueError(f'unknown shape {kind!r}')
    pts = []
    for k in range(n * len(radii)):
        rad = radii[k % len(radii)]
        a = angle + 2 * np.pi * k / (n * len(radii))
        pts.append((cx + rad * np.cos(a), cy + rad * np.sin(a)))
    canvas = Image.new('L', (size, size), 0)
    ImageDraw.Draw(canvas).polygon(pts, fill=1)
    return np.asarray(canvas, dtype=bool)


def _paint(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, kind: str) -> None:
    c1, c2, texture = _STYLES[kind]
    w = _texture(rng, texture, img.shape[0])[..., None]
    fill = _jitter(rng, c1) * (1 - w) + _jitter(rng, c2) * w
    img[mask] = fill[mask]


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    img = img + rng.normal(0, 5, img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _render_scene(rng: np.random.Generator, size: int, max_objects: int
                  ) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]], np.ndarray]:
    """Draw one scene.

    Returns:
        tuple: The image, ``(class_index, visible_mask)`` per annotated instance, and the
        class map of all painted pixels (0 background, ``1 + class`` shapes).
    """
    img = _background(rng, size)
    class_map = np.zeros((size, size), np.uint8)
    objects: List[Tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        label = int(rng.integers(len(CLASSES)))
        r = rng.uniform(0.09, 0.24) * size
        cx, cy = rng.uniform(0.6 * r, size - 0.6 * r, 2)
        mask = _shape_mask(CLASSES[label], size, cx, cy, r, rng.uniform(0, 2 * np.pi))
        _paint(img, mask, rng, CLASSES[label])
        class_map[mask] = label + 1
        # Later shapes occlude earlier ones: keep only what stays visible.
        objects = [(lab, m & ~mask) for lab, m in objects]
        objects.append((label, mask))
    # Nearly hidden fragments get no instance annotation (they stay in the class map).
    kept = [(lab, m) for lab, m in objects if m.sum() >= 20]
    return _finish(rng, img), kept, class_map


def _rle(mask: np.ndarray) -> Dict:
    """Uncompressed COCO RLE (column-major run lengths, starting with a run of zeros)."""
    flat = np.asfortranarray(mask).reshape(-1, order='F').astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return dict(size=[int(mask.shape[0]), int(mask.shape[1])], counts=counts)


def _semantic_map(class_map: np.ndarray) -> np.ndarray:
    """PNG labels: 1 background, ``2 + class`` shapes, 0 (ignore) on a 1-px boundary band."""
    seg = class_map + 1
    edge = np.zeros(seg.shape, dtype=bool)
    edge[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    edge[1:, :] |= seg[1:, :] != seg[:-1, :]
    seg[edge] = 0
    return seg


def _write_split(rng: np.random.Generator, out: str, split: str, ade_split: str, num: int,
                 size: int, max_objects: int) -> None:
    coco_dir = osp.join(out, 'coco', split)
    ade_img_dir = osp.join(out, 'ade', 'images', ade_split)
    ade_ann_dir = osp.join(out, 'ade', 'annotations', ade_split)
    for d in (coco_dir, ade_img_dir, ade_ann_dir):
        os.makedirs(d, exist_ok=True)
    images, annotations = [], []
    for idx in range(num):
        img, objects, class_map = _render_scene(rng, size, max_objects)
        name = f'{split}_{idx:05d}'
        Image.fromarray(img).save(osp.join(coco_dir, name + '.jpg'), quality=95)
        Image.fromarray(img).save(osp.join(ade_img_dir, name + '.jpg'), quality=95)
        Image.fromarray(_semantic_map(class_map)).save(
            osp.join(ade_ann_dir, name + '.png'))
        image_id = idx + 1
        images.append(dict(id=image_id, file_name=name + '.jpg', width=size, height=size))
        for label, mask in objects:
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=image_id,
                    category_id=label + 1,
                    segmentation=_rle(mask),
                    area=int(mask.sum()),
                    bbox=[x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
                    iscrowd=0))
    coco = dict(
        info=dict(description='mmevo synthetic shapes demo', version=str(_FORMAT_VERSION)),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(CLASSES)
        ])
    ann_dir = osp.join(out, 'coco', 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    with open(osp.join(ann_dir, f'instances_{split}.json'), 'w') as f:
        json.dump(coco, f)


def _write_classification(rng: np.random.Generator, out: str, split: str, per_class: int,
                          size: int) -> None:
    for name in CLASSES:
        os.makedirs(osp.join(out, 'imagenet', split, name), exist_ok=True)
    # Interleave the classes so that every class sees the same RNG stream statistics.
    for idx in range(per_class):
        for name in CLASSES:
            img = _background(rng, size)
            r = rng.uniform(0.28, 0.42) * size
            cx, cy = rng.uniform(0.45 * size, 0.55 * size, 2)
            mask = _shape_mask(name, size, cx, cy, r, rng.uniform(0, 2 * np.pi))
            _paint(img, mask, rng, name)
            # An occluder: a textured grey bar or disc over part of the shape.
            x, y = _coords(size)
            if rng.random() < 0.5:
                theta = rng.uniform(0, np.pi)
                d = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta) - rng.uniform(
                    0.2, 0.6) * r
                occ = np.abs(d) < rng.uniform(0.1, 0.2) * size
            else:
                a = rng.uniform(0, 2 * np.pi)
                ox, oy = cx + 0.9 * r * np.cos(a), cy + 0.9 * r * np.sin(a)
                occ = (x - ox)**2 + (y - oy)**2 < (rng.uniform(0.3, 0.5) * r)**2
            grey = _jitter(rng, (128, 128, 128), 50)
            img[occ] = grey * (0.75 + 0.25 * _smooth_noise(rng, size, 4)[occ][:, None])
            Image.fromarray(_finish(rng, img)).save(
                osp.join(out, 'imagenet', split, name, f'{split}_{idx:05d}.png'))


def generate(out: str = 'data/demo',
             seed: int = 0,
             num_train: int = 320,
             num_val: int = 80,
             image_size: int = 128,
             max_objects: int = 4,
             cls_train_per_class: int = 120,
             cls_val_per_class: int = 30,
             cls_image_size: int = 64,
             force: bool = False) -> str:
    """Write the demo datasets under ``out`` (skipped if already there with the same settings).

    Args:
        out (str): Output folder.
        seed (int): Seed of the single random generator everything is drawn from.
        num_train (int): Detection/segmentation training scenes.
        num_val (int): Detection/segmentation validation scenes.
        image_size (int): Side of the (square) scenes.
        max_objects (int): Maximum shapes per scene (at least one).
        cls_train_per_class (int): Classification training images per class.
        cls_val_per_class (int): Classification validation images per class.
        cls_image_size (int): Side of the classification images.
        force (bool): Regenerate even if ``out`` holds data of the same settings.

    Returns:
        str: ``out``.
    """
    settings = dict(
        format_version=_FORMAT_VERSION,
        seed=seed,
        num_train=num_train,
        num_val=num_val,
        image_size=image_size,
        max_objects=max_objects,
        cls_train_per_class=cls_train_per_class,
        cls_val_per_class=cls_val_per_class,
        cls_image_size=cls_image_size)
    meta_path = osp.join(out, _META_FILE)
    if not force and osp.isfile(meta_path):
        with open(meta_path) as f:
            if json.load(f) == settings:
                return out
    if image_size % 32 or cls_image_size % 32:
        raise ValueError('image sizes must be multiples of 32 (EATFormer-Mobile patch '
                         f'downsampling), got {image_size} and {cls_image_size}')
    rng = np.random.default_rng(seed)
    _write_split(rng, out, 'train', 'training', num_train, image_size, max_objects)
    _write_split(rng, out, 'val', 'validation', num_val, image_size, max_objects)
    _write_classification(rng, out, 'train', cls_train_per_class, cls_image_size)
    _write_classification(rng, out, 'val', cls_val_per_class, cls_image_size)
    with open(meta_path, 'w') as f:
        json.dump(settings, f, indent=2)
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Generate the mmevo synthetic demo datasets (COCO instances, ADE20K-style '
        'semantic masks, ImageNet-style class folders).')
    parser.add_argument('--out', default='data/demo', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-train', type=int, default=320)
    parser.add_argument('--num-val', type=int, default=80)
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--cls-train-per-class', type=int, default=120)
    parser.add_argument('--cls-val-per-class', type=int, default=30)
    parser.add_argument('--force', action='store_true', help='regenerate existing data')
    args = parser.parse_args(argv)
    out = generate(
        args.out,
        seed=args.seed,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=args.image_size,
        cls_train_per_class=args.cls_train_per_class,
        cls_val_per_class=args.cls_val_per_class,
        force=args.force)
    print(f'demo data in {out}')


if __name__ == '__main__':
    main()
