"""Class votes of a fitted forest's leaves, for many classes (part of
`auditor.detect.probe_classifier` above 100 classes).

A tree's class probabilities at a leaf are the class shares of the training rows in that leaf.
scikit-learn stores them as a dense [nodes, classes] array and sums [rows, classes] arrays per
tree to predict; at 1 000 classes and leaves of 3-6 rows almost every entry is zero. Here the
shares come from the leaves the training rows reach (`apply`), as a sparse [trees x nodes,
classes] matrix, and a scored row's votes are the sum over trees of its leaves' rows. Because
only the leaves' rows count, not the tree's stored values, the trees can be grown on another
target than the classes: `class_digits`, the class number's digits in base ceil(sqrt(K)), two
small outputs whose impurity costs 2 sqrt(K) counts per node instead of K (a node pure in both
digits is pure in the class).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from sklearn.ensemble import ExtraTreesClassifier


def class_digits(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """int [N, 2]: each class code in 0..n_classes-1 as its two digits in base ceil(sqrt(K)),
    low digit first (a one-to-one code: the pair gives the class back)."""
    base = max(2, math.isqrt(n_classes - 1) + 1)
    return np.stack([codes % base, codes // base], axis=1)


def leaf_class_votes(
    model: ExtraTreesClassifier,
    x_train: np.ndarray,
    codes_train: np.ndarray,
    x_score: np.ndarray,
    n_classes: int,
) -> sp.csr_matrix:
    """float csr [len(x_score), n_classes]: for each scored row, the sum over the model's trees
    of the class shares among the training rows in the leaf it reaches.

    Every tree must have been grown on all of `x_train`, unweighted (no bootstrap, no sample
    weights); then, for a model fitted on the codes themselves, this is `predict_proba` times
    the number of trees. Indices are sorted, so `argmax(axis=1)` picks the lowest class among
    equal votes, as numpy's argmax of the dense probabilities does."""
    train_leaves = model.apply(x_train)  # int [n_train, trees]
    score_leaves = model.apply(x_score)
    n_train, trees = train_leaves.shape
    nodes = max(e.tree_.node_count for e in model.estimators_)
    offset = np.arange(trees) * nodes
    counts = sp.csr_matrix(
        (np.ones(n_train * trees), ((train_leaves + offset).ravel(),
                                     np.repeat(codes_train, trees))),
        shape=(trees * nodes, n_classes))
    leaf_rows = np.asarray(counts.sum(axis=1)).ravel()
    shares = sp.diags(1.0 / np.maximum(leaf_rows, 1)) @ counts
    n_score = len(score_leaves)
    reached = sp.csr_matrix(
        (np.ones(n_score * trees), (np.repeat(np.arange(n_score), trees),
                                    (score_leaves + offset).ravel())),
        shape=(n_score, trees * nodes))
    votes = (reached @ shares).tocsr()
    votes.sum_duplicates()
    votes.sort_indices()
    return votes


def vote_outcome(votes: sp.csr_matrix, codes: np.ndarray, trees: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(correct bool [N], true-class probability float [N]) of scored rows with class `codes`
    (every row with at least one vote, indices sorted): correct when the most-voted class
    (lowest on ties) is the row's own."""
    rows = np.repeat(np.arange(votes.shape[0]), np.diff(votes.indptr))
    top = np.maximum.reduceat(votes.data, votes.indptr[:-1])
    at_top = np.flatnonzero(votes.data == top[rows])
    # Each row's first stored maximum: its lowest class, as indices are sorted.
    first = np.unique(rows[at_top], return_index=True)[1]
    predicted = votes.indices[at_top[first]]
    own = np.asarray(votes[np.arange(len(codes)), codes]).ravel() / trees
    return predicted == codes, own
