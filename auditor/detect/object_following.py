"""The object-following gate of `fixed_location` (auditor.detect.location's rule "not following
the objects"): do a finding's members have their objects nearer its region than the other
samples do?

Each object's distance to a region is the distance from its edge (the centroid's distance
less the radius of a disc of its area, floored at 0; location.object_discs) to the region's
nearest point, measured on a grid of DISTANCE_STEPS points per map cell. A class tries many
regions and a thousand classes try the same few: each region's distances are ranked once over
every sample with a centroid, and each group of members is then a one-sided Mann-Whitney U
against the rest from that ranking (auditor.detect.stats.group_vs_rest_mannwhitneyu, equal to
scipy's), not a new ranking of every sample per tried region.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from auditor.detect.share_gates import MIN_MEMBERS
from auditor.detect.stats import PooledSample, group_vs_rest_mannwhitneyu, pooled_sample

DISTANCE_STEPS = 4  # points per map cell side where distances to a region are measured


class RegionDistances:
    """The objects of a table (float [N, 3] from location.object_discs; NaN centroid without
    a mask) and their edge distances to each region asked for, ranked once per region (cells
    bool [gh, gw])."""

    def __init__(self, objects: np.ndarray, gh: int, gw: int) -> None:
        known = np.isfinite(objects[:, :2]).all(axis=1)
        self.objects = objects[known]
        self.known = known
        self.place = np.cumsum(known) - 1  # a row's place among the rows with a centroid
        self.grid = (gh, gw)
        self._ranked: dict[bytes, PooledSample] = {}

    def ranked(self, cells: np.ndarray) -> PooledSample:
        """The distances of every object with a centroid to the region, ranked."""
        key = cells.tobytes()
        if key not in self._ranked:
            self._ranked[key] = pooled_sample(self._distances(cells))
        return self._ranked[key]

    def _distances(self, cells: np.ndarray) -> np.ndarray:
        gh, gw = self.grid
        fine = cells.repeat(DISTANCE_STEPS, axis=0).repeat(DISTANCE_STEPS, axis=1)
        # Distance (in image fractions) from every point of a fine grid to the region.
        distance = ndimage.distance_transform_edt(
            ~fine, sampling=(1 / (gh * DISTANCE_STEPS), 1 / (gw * DISTANCE_STEPS)))
        ys = np.clip((self.objects[:, 1] * fine.shape[0]).astype(int), 0, fine.shape[0] - 1)
        xs = np.clip((self.objects[:, 0] * fine.shape[1]).astype(int), 0, fine.shape[1] - 1)
        # A large object's edge can touch the region while its centroid lies far from it.
        return np.maximum(distance[ys, xs] - self.objects[:, 2], 0.0)


def objects_nearer_p(distances: RegionDistances, cells: np.ndarray, members: np.ndarray
                     ) -> float:
    """One-sided p that the members' objects (members: int rows of the table, ascending) lie
    nearer the region (cells bool [gh, gw]) than the other samples' objects with a centroid:
    Mann-Whitney U of their edge distances. NaN when fewer than MIN_MEMBERS on either side
    have a centroid."""
    near = distances.place[members[distances.known[members]]]
    if near.size < MIN_MEMBERS or distances.objects.shape[0] - near.size < MIN_MEMBERS:
        return math.nan
    return group_vs_rest_mannwhitneyu(distances.ranked(cells), near, "less")[1]
