"""Attention measures: where a class-activation map puts its mass, batched on the maps' device.

Every measure is computed per sample from the map upsampled (bilinear, align_corners=False) to
the model's input size and clamped at 0, in float32. "Mass" is the sum of map values; a measure
that is a share of mass is a fraction of the map's total.

| measure | definition | chance |
|---|---|---|
| fg_energy | mass on the foreground / total mass | fg area fraction |
| fg_enrichment | fg_energy / fg area fraction | 1.0 |
| bg_energy | 1 - fg_energy | |
| border_energy | mass in the border band (`border` of each side) / total | band area fraction |
| border_lift | border_energy / band area fraction | 1.0 |
| pointing_hit | 1.0 if the peak (below) lies on a foreground pixel, else 0.0 | |
| wsol_iou | IoU of the true box and the box of the largest 8-connected blob >= 15% of max | |
| peak_x, peak_y | the peak at feature resolution as a fraction of width / height (below) | |
| fg_enrichment_ceiling | fg_enrichment of the sample's own mask average-pooled to the map's | 1.0 |
| | grid and upsampled like a map: the most a map at that resolution can reach | |
| peak_fg_cover | that pooled mask at the peak's feature cell: the object's share of the | |
| | feature cell the map peaks in (0 = background only, 1 = object only) | |
| fg_cx, fg_cy | the object's centroid (mean of its pixel centres) as a fraction of width / | |
| | height: where the object is, so a detector can ask whether peaks follow it | |
| peak_in_hull | 1.0 if the feature cell of the peak lies inside the object's convex hull | |
| | (grown by half a pixel; the hull as HULL_DIRECTIONS support lines), else 0.0: | |
| | a peak in a ring's hole or an L's inner corner is off the object but within its | |
| | extent; a cell that only reaches into the hull (beside a large object) is not | |

The ceiling is what a map at feature resolution can reach: a map is never sharper than its grid,
so even the mask itself, seen through that grid, reaches only 1.007 on an object covering 93% of
the image (7x7 grid) and about 4 on one covering 10% (8x8). Detectors judge attention on the
object against it, and call a peak off the object only where the grid cell is mostly background.

The peak is found on the map as computed (feature resolution), not on the upsampled one: a
bilinear upsampling (align_corners=False) holds an edge cell's value flat out to the image edge,
so the first arg-max pixel of the upsampled map of a corner cell is the image corner, not the
cell. The peak is the centre of the arg-max cell, (col + 0.5) / w. Cells within `PEAK_RTOL` of
the maximum form a plateau: the peak is then the centre of the largest 8-connected plateau
(ties: the one that ends first in raster order), its centroid, or its cell nearest the centroid
when the centroid falls outside it (an L or a ring).

Undefined values are NaN, never 0. A map is degenerate when it is all zero (every value below
float32's smallest normal number, ~1.2e-38), not finite, or constant (every cell within
`PEAK_RTOL` of the maximum: no place stands out, so it has no peak and says nothing about where
the model looks): every measure is NaN. A sample without a mask
has NaN foreground measures (fg_*, bg_energy, pointing_hit, wsol_iou) but defined border
measures and peaks; an empty mask makes the foreground measures NaN.

Boxes are continuous pixel coordinates: pixel (row r, col c) covers [c, c+1) x [r, r+1), so the
box of a set of pixels is (min col, min row, max col + 1, max row + 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from auditor.data.regions import border_band
from auditor.errors import UsageError

MEASURES: tuple[str, ...] = (
    "fg_energy",
    "fg_enrichment",
    "bg_energy",
    "border_energy",
    "border_lift",
    "pointing_hit",
    "wsol_iou",
    "peak_x",
    "peak_y",
    "fg_enrichment_ceiling",
    "peak_fg_cover",
    "fg_cx",
    "fg_cy",
    "peak_in_hull",
)

#: Share of the map's max above which a pixel belongs to the localisation (Grad-CAM paper).
WSOL_THRESHOLD = 0.15
#: Relative tolerance under which two map cells count as the same maximum (a plateau).
PEAK_RTOL = 1e-5
#: Directions of the support lines that stand for an object's convex hull (over 180 degrees;
#: each gives two lines): the polygon they bound holds the hull and exceeds it by under 2%.
HULL_DIRECTIONS = 16


def upsample_maps(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) of maps [B, h, w] to [B, H, W], clamped >= 0.

    Returns float32 on the maps' device. Maps already at `size` are returned as float32 copies.
    """
    if maps.dim() != 3:
        raise UsageError(f"maps must have shape [B, h, w], got {tuple(maps.shape)}")
    height, width = int(size[0]), int(size[1])
    if height < 1 or width < 1:
        raise UsageError(f"size must be positive (height, width), got {size!r}")
    out = maps.to(torch.float32)
    if tuple(out.shape[1:]) != (height, width):
        out = F.interpolate(
            out[:, None], size=(height, width), mode="bilinear", align_corners=False
        )[:, 0]
    # Bilinear weights are >= 0, but a caller may hand negative values (signed maps): the
    # measures are shares of non-negative mass.
    return out.clamp(min=0.0)


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Maps [B, ...] divided by their per-sample max, so each peaks at 1.0.

    Samples whose max is not a positive finite number (all-zero or non-finite maps) come back
    as all zeros, never NaN or inf. Returns float32 on the maps' device.
    """
    flat = maps.to(torch.float32).reshape(maps.shape[0], -1)
    finite = torch.isfinite(flat).all(dim=1)
    peak = flat.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).amax(dim=1)
    usable = finite & (peak > 0)
    scale = torch.where(usable, peak, torch.ones_like(peak))
    out = torch.where(usable[:, None], flat / scale[:, None], torch.zeros_like(flat))
    return out.reshape(maps.shape)


def label_components(binary: torch.Tensor) -> torch.Tensor:
    """8-connected component labels of binary images [B, H, W], batched on their device.

    Returns long [B, H, W]: 0 for background; every pixel of a component carries the same label,
    1 + the largest flat index (row * W + col) of the component's pixels, so labels are unique
    within an image.

    Each foreground pixel keeps a parent: a pixel of its own component with a flat index no
    smaller than its own (a union-find forest over the max index). Each round takes the largest
    parent among the 8 neighbours (a 3x3 max-pool), hooks it onto the pixel's own root as well
    as the pixel (so whole trees merge at once, not one pixel ring per round), then compresses
    paths by pointer jumping. Rounds grow roughly with the log of the component size.
    """
    if binary.dim() != 3:
        raise UsageError(f"binary must have shape [B, H, W], got {tuple(binary.shape)}")
    batch, height, width = binary.shape
    n_pixels = height * width
    fg = binary.bool().reshape(batch, n_pixels)
    # Parents go through max_pool2d as floats: float32 is exact up to 2**24 pixels.
    pool_dtype = torch.float32 if n_pixels < 2**24 else torch.float64
    index = torch.arange(1, n_pixels + 1, device=binary.device).expand(batch, n_pixels)
    parent = torch.where(fg, index, 0)
    for _ in range(n_pixels):
        grid = parent.to(pool_dtype).reshape(batch, 1, height, width)
        neighbour = F.max_pool2d(grid, kernel_size=3, stride=1, padding=1)
        neighbour = torch.where(fg, neighbour.reshape(batch, n_pixels).long(), 0)
        if torch.equal(neighbour, parent):
            break
        hooked = parent.scatter_reduce(1, (parent - 1).clamp(min=0), neighbour, reduce="amax")
        parent = torch.maximum(hooked, neighbour)
        while True:
            jumped = torch.where(fg, parent.gather(1, (parent - 1).clamp(min=0)), 0)
            if torch.equal(jumped, parent):
                break
            parent = jumped
    return parent.reshape(batch, height, width)


def map_peaks(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Peak of each map at its own resolution (module docstring: centre of the arg-max cell or
    of the largest plateau).

    Args:
        maps: float [B, h, w], finite, >= 0.

    Returns:
        (x, y, located): float32 [B] positions as fractions of width and height in (0, 1), and
        bool [B], False for a map without a peak (all zero or constant), whose x, y are NaN.
    """
    batch, height, width = maps.shape
    flat = maps.to(torch.float32).reshape(batch, -1)
    top = flat.amax(dim=1, keepdim=True)
    tied = flat >= top * (1.0 - PEAK_RTOL)
    n_tied = tied.sum(dim=1)
    located = (top[:, 0] > 0) & (n_tied < height * width)
    cell = flat.argmax(dim=1)
    x = (cell % width).to(torch.float32) + 0.5
    y = torch.div(cell, width, rounding_mode="floor").to(torch.float32) + 0.5
    plateau = located & (n_tied > 1)
    if bool(plateau.any()):
        x[plateau], y[plateau] = _plateau_centres(tied[plateau].reshape(-1, height, width))
    nan = torch.full_like(x, math.nan)
    return (torch.where(located, x / width, nan), torch.where(located, y / height, nan),
            located)


def _plateau_centres(tied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (x, y in cell units, cell c spans [c, c + 1)) of the largest 8-connected
    component of each bool [B, h, w]: its centroid when that lies in one of its cells, else the
    centre of its cell nearest the centroid (first in raster order on ties)."""
    batch, height, width = tied.shape
    labels = label_components(tied).reshape(batch, -1)
    # Component sizes by label (labels are 1 + a flat index); the largest wins, and among
    # equal sizes the smallest label, the component that ends first in raster order.
    sizes = torch.zeros(batch, height * width + 1, dtype=torch.long, device=tied.device)
    sizes = sizes.scatter_add_(1, labels, torch.ones_like(labels))
    sizes[:, 0] = 0
    member = labels == sizes.argmax(dim=1, keepdim=True)
    cols = (torch.arange(height * width, device=tied.device) % width).to(torch.float32) + 0.5
    rows = torch.div(torch.arange(height * width, device=tied.device), width,
                     rounding_mode="floor").to(torch.float32) + 0.5
    weight = member.to(torch.float32)
    count = weight.sum(dim=1)
    cx = (weight * cols).sum(dim=1) / count
    cy = (weight * rows).sum(dim=1) / count
    centroid_cell = (cy.floor().clamp(0, height - 1) * width
                     + cx.floor().clamp(0, width - 1)).long()
    inside = member.gather(1, centroid_cell[:, None])[:, 0]
    distance = (cols - cx[:, None]) ** 2 + (rows - cy[:, None]) ** 2
    nearest = torch.where(member, distance, math.inf).argmin(dim=1)
    return (torch.where(inside, cx, cols[nearest]), torch.where(inside, cy, rows[nearest]))


def _largest_component_boxes(binary: torch.Tensor) -> torch.Tensor:
    """Box (x0, y0, x1, y1) in pixels of the largest 8-connected component of each image.

    binary: bool [B, H, W], each image with at least one True pixel. Returns float32 [B, 4].
    Ties between equally large components go to the one with the smallest label (the one whose
    last pixel in raster order comes first).

    On the CPU OpenCV's labelling gives the same boxes about 100x faster than the batched tensor
    labelling, which is for accelerators (where it keeps the masks on the device).
    """
    if binary.device.type == "cpu":
        return _largest_component_boxes_opencv(binary)
    return _largest_component_boxes_tensor(binary)


def _largest_component_boxes_opencv(binary: torch.Tensor) -> torch.Tensor:
    """`_largest_component_boxes` for CPU tensors: ONE cv2.connectedComponentsWithStats call
    for the whole batch, the images stacked with a row of zeros between them (no 8-connected
    component crosses it), then the largest component of each image chosen in array code."""
    import cv2
    import numpy as np

    images = binary.to(torch.uint8).numpy()
    batch, height, width = images.shape
    stride = height + 1
    stacked = np.zeros((batch * stride, width), dtype=np.uint8)
    stacked.reshape(batch, stride, width)[:, :height] = images
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        stacked, connectivity=8, ltype=cv2.CV_32S
    )
    stats = stats[1:]
    image = stats[:, cv2.CC_STAT_TOP] // stride
    area = stats[:, cv2.CC_STAT_AREA]
    largest = np.zeros(batch, dtype=area.dtype)
    np.maximum.at(largest, image, area)
    # Tie rule of the tensor labelling: of equally large components, the one whose last pixel
    # in raster order comes first wins (stacking keeps raster order). Found only for images
    # with a tie, which are rare.
    last = np.zeros(len(stats), dtype=np.int64)
    tied = np.bincount(image[area == largest[image]], minlength=batch) > 1
    if tied.any():
        rows = np.flatnonzero(np.repeat(tied, stride))
        flat = labels[rows].reshape(-1)
        pixel = (rows[:, None] * width + np.arange(width)).reshape(-1)
        np.maximum.at(last, flat[flat > 0] - 1, pixel[flat > 0])
    order = np.lexsort((last, -area, image))
    first = order[np.r_[True, image[order][1:] != image[order][:-1]]]
    x, y, w, h = (stats[first, k] for k in range(4))
    y = y - image[first] * stride
    boxes = np.stack((x, y, x + w, y + h), axis=1).astype(np.float32)
    return torch.from_numpy(boxes)


def _largest_component_boxes_tensor(binary: torch.Tensor) -> torch.Tensor:
    """`_largest_component_boxes` in batched tensor code on the masks' device."""
    batch, height, width = binary.shape
    n_bins = height * width + 1
    labels = label_components(binary).reshape(batch, -1)
    offsets = torch.arange(batch, device=binary.device)[:, None] * n_bins
    # scatter_add_ rather than bincount: bincount has no deterministic CUDA kernel.
    flat = (labels + offsets).reshape(-1)
    sizes = torch.zeros(batch * n_bins, dtype=torch.long, device=binary.device)
    sizes = sizes.scatter_add_(0, flat, torch.ones_like(flat)).reshape(batch, n_bins)
    sizes[:, 0] = 0
    largest = sizes.argmax(dim=1)
    component = (labels == largest[:, None]).reshape(batch, height, width)
    return _mask_boxes(component)


def _mask_boxes(mask: torch.Tensor) -> torch.Tensor:
    """Bounding box (x0, y0, x1, y1) in pixels of each mask [B, H, W]; NaN rows for empty masks."""
    height, width = mask.shape[1:]
    cols = mask.any(dim=1).to(torch.uint8)
    rows = mask.any(dim=2).to(torch.uint8)
    x0 = cols.argmax(dim=1)
    x1 = width - cols.flip(dims=(1,)).argmax(dim=1)
    y0 = rows.argmax(dim=1)
    y1 = height - rows.flip(dims=(1,)).argmax(dim=1)
    boxes = torch.stack((x0, y0, x1, y1), dim=1).to(torch.float32)
    empty = ~cols.bool().any(dim=1)
    return torch.where(empty[:, None], torch.full_like(boxes, math.nan), boxes)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of paired boxes a, b: float [B, 4] (x0, y0, x1, y1). NaN where either box is NaN."""
    inter_w = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp(min=0)
    inter_h = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp(min=0)
    inter = inter_w * inter_h
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=torch.finfo(torch.float32).tiny)
    return torch.where(union > 0, iou, torch.full_like(iou, math.nan))


def _validate(maps: torch.Tensor, masks: torch.Tensor, has_mask: torch.Tensor,
              boxes: torch.Tensor, border: float) -> None:
    if maps.dim() != 3:
        raise UsageError(f"maps must have shape [B, h, w], got {tuple(maps.shape)}")
    batch = maps.shape[0]
    if masks.dim() != 3 or masks.shape[0] != batch:
        raise UsageError(f"masks must have shape [{batch}, H, W] to match the maps, "
                         f"got {tuple(masks.shape)}")
    if tuple(has_mask.shape) != (batch,):
        raise UsageError(f"has_mask must have shape [{batch}], got {tuple(has_mask.shape)}")
    if tuple(boxes.shape) != (batch, 4):
        raise UsageError(f"boxes must have shape [{batch}, 4] (x0, y0, x1, y1; NaN row for no "
                         f"box), got {tuple(boxes.shape)}")
    if not 0.0 <= border <= 0.5:
        raise UsageError(f"border must be a fraction of each side in [0, 0.5], got {border!r}")


def attention_measures(
    maps: torch.Tensor,
    masks: torch.Tensor,
    has_mask: torch.Tensor,
    boxes: torch.Tensor,
    border: float = 0.1,
) -> dict[str, torch.Tensor]:
    """Per-sample attention measures (see the module table).

    Args:
        maps: float [B, h, w] >= 0 at feature resolution, unnormalised.
        masks: bool or uint8 [B, H, W] at the model input size, nonzero = foreground.
        has_mask: bool [B], False where the sample has no mask (its `masks` row is ignored).
        boxes: float [B, 4] x0, y0, x1, y1 in input pixels; a NaN row means no box, and then
            wsol_iou uses the mask's bounding box.
        border: width of the border band as a fraction of each side, in [0, 0.5]
            (auditor.data.regions.border_band).

    Returns:
        {measure: float32 [B]} on the maps' device, NaN where undefined.
    """
    _validate(maps, masks, has_mask, boxes, border)
    device = maps.device
    batch, height, width = masks.shape
    nan = torch.full((batch,), math.nan, dtype=torch.float32, device=device)

    finite = torch.isfinite(maps.reshape(batch, -1)).all(dim=1)
    # Zero out non-finite maps so they cannot poison shared reductions; they end up NaN below.
    clean = torch.where(finite[:, None, None], maps.to(torch.float32), 0.0).clamp(min=0.0)
    peak_x, peak_y, located = map_peaks(clean)
    heat = upsample_maps(clean, (height, width))
    flat = heat.reshape(batch, -1)
    total = flat.sum(dim=1)
    # A map whose values are all subnormal (below float32's smallest normal, ~1.2e-38) has lost
    # the precision its shares are made of: it counts as all-zero, not as a location.
    valid = finite & (flat.amax(dim=1) >= torch.finfo(torch.float32).tiny) & located
    safe_total = torch.where(valid, total, torch.ones_like(total))

    fg = masks.to(device).bool() & has_mask.to(device).bool()[:, None, None]
    fg_flat = fg.reshape(batch, -1)
    fg_area = fg_flat.to(torch.float32).mean(dim=1)
    fg_valid = valid & (fg_area > 0)
    fg_energy = (flat * fg_flat).sum(dim=1) / safe_total
    fg_energy = torch.where(fg_valid, fg_energy, nan)
    fg_enrichment = torch.where(fg_valid, fg_energy / fg_area.clamp(min=1e-12), nan)

    band = border_band(height, width, border, device=device).reshape(-1)
    band_area = band.to(torch.float32).mean()
    border_energy = torch.where(valid, (flat * band).sum(dim=1) / safe_total, nan)
    border_lift = border_energy / band_area if band_area > 0 else nan.clone()

    # The input pixel under the peak (a cell centre on a pixel edge goes to the pixel after it).
    peak_col = (peak_x.nan_to_num(0.0) * width).floor().clamp(0, width - 1).long()
    peak_row = (peak_y.nan_to_num(0.0) * height).floor().clamp(0, height - 1).long()
    peak_pixel = (peak_row * width + peak_col)[:, None]
    hit = fg_flat.gather(1, peak_pixel)[:, 0].to(torch.float32)
    pointing_hit = torch.where(fg_valid, hit, nan)
    peak_x = torch.where(valid, peak_x, nan)
    peak_y = torch.where(valid, peak_y, nan)

    # The mask seen through the map's grid: pooled to [h, w], upsampled like the map.
    grid_h, grid_w = maps.shape[1:]
    pooled = F.adaptive_avg_pool2d(fg.to(torch.float32)[:, None], (grid_h, grid_w))[:, 0]
    reach = upsample_maps(pooled, (height, width))
    reach_flat = reach.reshape(batch, -1)
    reach_total = reach_flat.sum(dim=1)
    ceiling_ok = fg_valid & (reach_total > 0)
    ceiling_energy = (reach_flat * fg_flat).sum(dim=1) / reach_total.clamp(min=1e-12)
    fg_ceiling = torch.where(ceiling_ok, ceiling_energy / fg_area.clamp(min=1e-12), nan)
    # The object's share of the feature cell under the peak (a plateau centre on a cell edge
    # goes to the cell after it, as the peak pixel does).
    cell_col = (peak_x.nan_to_num(0.0) * grid_w).floor().clamp(0, grid_w - 1).long()
    cell_row = (peak_y.nan_to_num(0.0) * grid_h).floor().clamp(0, grid_h - 1).long()
    under_peak = pooled.reshape(batch, -1).gather(1, (cell_row * grid_w + cell_col)[:, None])
    peak_cover = torch.where(fg_valid, under_peak[:, 0], nan)

    # The object's centroid (pixel centres, fractions of the side); NaN where fg_valid is not.
    fg_weight = fg.to(torch.float32)
    fg_pixels = fg_weight.sum(dim=(1, 2)).clamp(min=1.0)
    centroid_x = (fg_weight.sum(dim=1) * ((torch.arange(width, device=device) + 0.5) / width)
                  ).sum(dim=1) / fg_pixels
    centroid_y = (fg_weight.sum(dim=2) * ((torch.arange(height, device=device) + 0.5) / height)
                  ).sum(dim=1) / fg_pixels

    in_hull = in_convex_hull(fg, peak_x.nan_to_num(0.0) * width,
                             peak_y.nan_to_num(0.0) * height,
                             width / grid_w / 2, height / grid_h / 2).to(torch.float32)

    wsol_iou = nan.clone()
    truth = torch.where(torch.isfinite(boxes.to(device)).all(dim=1, keepdim=True),
                        boxes.to(device=device, dtype=torch.float32), _mask_boxes(fg))
    wsol_rows = valid & has_mask.to(device).bool() & torch.isfinite(truth).all(dim=1)
    if bool(wsol_rows.any()):
        sub = heat[wsol_rows]
        peak_value = sub.reshape(sub.shape[0], -1).amax(dim=1)
        located = sub >= WSOL_THRESHOLD * peak_value[:, None, None]
        predicted = _largest_component_boxes(located)
        wsol_iou[wsol_rows] = box_iou(predicted, truth[wsol_rows])

    return {
        "fg_energy": fg_energy,
        "fg_enrichment": fg_enrichment,
        "bg_energy": 1.0 - fg_energy,
        "border_energy": border_energy,
        "border_lift": border_lift,
        "pointing_hit": pointing_hit,
        "wsol_iou": wsol_iou,
        "peak_x": peak_x,
        "peak_y": peak_y,
        "fg_enrichment_ceiling": fg_ceiling,
        "peak_fg_cover": peak_cover,
        "fg_cx": torch.where(fg_valid, centroid_x, nan),
        "fg_cy": torch.where(fg_valid, centroid_y, nan),
        "peak_in_hull": torch.where(fg_valid & valid, in_hull, nan),
    }


def in_convex_hull(fg: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                   half_width: float = 0.0, half_height: float = 0.0,
                   directions: int = HULL_DIRECTIONS) -> torch.Tensor:
    """Whether the box centred on (x, y) (float [B], input pixels) with half sides half_width
    and half_height (0: the point) lies in the convex hull of the foreground pixels of fg
    (bool [B, H, W]) grown by half a pixel: bool [B], False where fg is empty. The hull is
    bounded by the support lines of `directions` angles over 180 degrees; each row's leftmost
    and rightmost object pixels carry every support value, so the cost is B x H x directions
    after one pass over the pixels."""
    height, width = fg.shape[1:]
    device = fg.device
    cols = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    rows = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    present = fg.any(dim=2)  # [B, H]
    left = torch.where(fg, cols, float(width)).amin(dim=2)
    right = torch.where(fg, cols, 0.0).amax(dim=2)
    angle = torch.arange(directions, device=device, dtype=torch.float32) * math.pi / directions
    cos, sin = torch.cos(angle), torch.sin(angle)
    ends = torch.stack([left[..., None] * cos, right[..., None] * cos])  # [2, B, H, K]
    along = rows[None, :, None] * sin  # [1, H, K]
    high = torch.where(present[..., None], ends.amax(dim=0) + along, -math.inf).amax(dim=1)
    low = torch.where(present[..., None], ends.amin(dim=0) + along, math.inf).amin(dim=1)
    # Half a pixel square grown, the box's half extent taken off, both projected.
    margin = (0.5 - half_width) * cos.abs() + (0.5 - half_height) * sin.abs()
    point = x[:, None] * cos + y[:, None] * sin  # [B, K]
    return ((point <= high + margin) & (point >= low - margin)).all(dim=1)
