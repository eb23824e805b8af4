"""Labels of table and shard sources -> class indices, with the same rules as a manifest.

A label is an integer (a class index, as a Hugging Face ``ClassLabel`` stores it) or a string
(a class name first; a decimal integer in range is read as an index, so class names "0", "1"
still work as names). None, "" and -1 mean unknown (label -1). The classes are, in order of
precedence: the ones given (``--classes``), the names the data declares (``ClassLabel``
names), ``"0" .. "N-1"`` when every label is an integer, else the sorted distinct names.
"""

from __future__ import annotations

from collections.abc import Sequence

from auditor.errors import DataError

_SHOW = 5


def _index_of(value: int | str, classes: list[str], positions: dict[str, int]) -> int | None:
    if isinstance(value, str):
        if value in positions:
            return positions[value]
        if not value.lstrip("-").isdigit():
            return None
        value = int(value)
    return value if 0 <= value < len(classes) else None


def _unknown(value: int | str | None) -> bool:
    return value is None or value == "" or value == -1


def resolve_labels(
    values: Sequence[int | str | None],
    classes: Sequence[str] | None,
    declared: Sequence[str] | None,
    where: str,
) -> tuple[list[str], list[int], list[str]]:
    """Class names and one class index per label (-1 unknown).

    Args:
        values: the raw labels, one per sample.
        classes: class names given by the user, in the model's output order, or None.
        declared: class names the data declares (a ``ClassLabel``), or None.
        where: the data, named in messages.

    Returns:
        (classes, label indices, warnings).

    Raises:
        DataError: a label is neither a class name nor an index in range.
    """
    known = [value for value in values if not _unknown(value)]
    if classes is not None:
        names = list(classes)
    elif declared:
        names = list(declared)
    elif known and all(isinstance(value, int) for value in known):
        names = [str(i) for i in range(max(known) + 1)]  # type: ignore[type-var]
    else:
        names = sorted({str(value) for value in known})
    positions = {name: i for i, name in enumerate(names)}
    labels: list[int] = []
    bad: set[str] = set()
    for value in values:
        if _unknown(value):
            labels.append(-1)
            continue
        index = _index_of(value, names, positions)  # type: ignore[arg-type]
        if index is None:
            bad.add(str(value))
            index = -1
        labels.append(index)
    if bad:
        shown = ", ".join(repr(name) for name in sorted(bad)[:_SHOW])
        raise DataError(
            f"labels of {where} not among the classes: {shown} ({len(bad)} distinct); classes "
            f"are {', '.join(names[:_SHOW])}{' ...' if len(names) > _SHOW else ''} "
            f"({len(names)}); fix the labels or the classes list"
        )
    warnings = []
    unlabelled = labels.count(-1)
    if unlabelled:
        warnings.append(f"{unlabelled} samples of {where} have no label (label -1, unknown)")
    return names, labels, warnings
