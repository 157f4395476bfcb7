"""One table whose entity rows are compressed and whose other rows stay full floats.

RecBole's context-aware models keep user and item ids inside one shared token table
(``FMEmbedding``: every token field at its own row offset), and BERT4Rec's item table ends with a
mask-token row that is not an item. The entity rows of such a table come from lightweight tables
(one per range); every other row is kept as it was, counted apart, outside the budget.
"""

import torch
from torch import nn

from recbole_lightemb.modules.base import FLOAT_BYTES, LightEmbedding


class RowRangesEmbedding(LightEmbedding):
    """Rows ``start .. start + n - 1`` of each range from its lightweight table, the rest from ``rest``.

    ``ranges`` is ``[(start, table)]``; ``labels`` is ``[(label, start, rows)]`` naming every row span of
    the original table (fields, a mask token), so the report can say what the full rows hold.
    """

    def __init__(self, weight, ranges, labels=()):
        super().__init__(weight.shape[0], weight.shape[1])
        ranges = sorted(ranges, key=lambda r: r[0])
        self.starts = [int(start) for start, _ in ranges]
        self.parts = nn.ModuleList(part for _, part in ranges)
        keep = torch.ones(weight.shape[0], dtype=torch.bool)
        for start, part in zip(self.starts, self.parts):
            if start < 0 or start + part.num_embeddings > weight.shape[0] or not keep[start:start + part.num_embeddings].all():
                raise ValueError(f"row range {start}..{start + part.num_embeddings - 1} overlaps another or "
                                 f"leaves the table's {weight.shape[0]} rows")
            keep[start:start + part.num_embeddings] = False
        self.rest = nn.Parameter(weight.detach()[keep].clone().float())
        self.labels = [(str(label), int(start), int(rows)) for label, start, rows in labels]

    def _ends(self):
        return [start + part.num_embeddings for start, part in zip(self.starts, self.parts)]

    def forward(self, ids):
        rows = None
        if self.rest.shape[0]:
            shift = torch.zeros_like(ids)
            for end, part in zip(self._ends(), self.parts):
                shift = shift + (ids >= end) * part.num_embeddings
            rows = self.rest[(ids - shift).clamp(0, self.rest.shape[0] - 1)]
        for start, end, part in zip(self.starts, self._ends(), self.parts):
            own = part((ids - start).clamp(0, part.num_embeddings - 1))
            rows = own if rows is None else torch.where(((ids >= start) & (ids < end)).unsqueeze(-1), own, rows)
        return rows

    def full_table(self):
        pieces, taken, row = [], 0, 0
        for start, part in zip(self.starts, self.parts):
            pieces.append(self.rest[taken:taken + start - row])
            taken += start - row
            pieces.append(part.full_table())
            row = start + part.num_embeddings
        pieces.append(self.rest[taken:])
        return torch.cat(pieces, 0)

    def named_parts(self):
        """``(label, table)`` of each compressed range."""
        for start, part in zip(self.starts, self.parts):
            yield next((label for label, s, _ in self.labels if s == start), f"rows {start}+"), part

    def rows_left_full(self):
        """``[{"name", "rows", "dim", "stored_bytes"}]`` for each labelled span kept as full rows."""
        compressed = set(self.starts)
        return [{"name": label, "rows": rows, "dim": self.embedding_dim,
                 "stored_bytes": rows * self.embedding_dim * FLOAT_BYTES}
                for label, start, rows in self.labels if start not in compressed]

    def stored_floats(self):
        return sum(part.stored_floats() for part in self.parts) + self.rest.numel()

    def index_bytes(self):
        return sum(part.index_bytes() for part in self.parts)

    def stored_bytes(self):
        return sum(part.stored_bytes() for part in self.parts) + self.rest.numel() * FLOAT_BYTES

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Checkpoints written before row ranges (BERT4Rec's ``entities.*`` and ``extra``) load too."""
        for key in [k for k in state_dict if k.startswith(prefix)]:
            name = key[len(prefix):]
            if name.startswith("entities."):
                state_dict[f"{prefix}parts.0.{name[len('entities.'):]}"] = state_dict.pop(key)
            elif name == "extra":
                state_dict[f"{prefix}rest"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
