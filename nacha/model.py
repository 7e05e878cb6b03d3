"""A NACHA file held in memory: header, batches of entries with their addenda, controls.
Records are the immutable tuples of `fields.Layout`; these containers only group them."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Entry:
    record: tuple
    addenda: list = field(default_factory=list)


@dataclass
class Batch:
    header: tuple
    entries: list[Entry] = field(default_factory=list)
    control: tuple | None = None


@dataclass
class NachaFile:
    header: tuple | None
    batches: list[Batch] = field(default_factory=list)
    control: tuple | None = None
    issues: list = field(default_factory=list, compare=False, repr=False)
    warnings: list = field(default_factory=list, compare=False, repr=False)

    def entries(self):
        for b in self.batches:
            yield from b.entries
