"""A table whose rows have their own widths (CIESS, SCALL): row ``e`` keeps its first ``s_e`` floats."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recbole_lightemb.modules.base import LightEmbedding, index_bytes
from recbole_lightemb.modules.precision import LowBitWidths


class VariableWidthEmbedding(LowBitWidths, LightEmbedding):
    """Per-row widths ``s_e`` in ``0..d`` over an ``n × d`` parameter masked to each row's width.

    Training keeps the whole ``n × d`` parameter ``table`` (so widths can change during a search
    without rebuilding the optimizer) and a ``widths`` buffer; every read multiplies by the mask,
    so coordinates past a row's width get no gradient and never reach the model. Width ``0``
    means the row is not stored at all (an entity not seen yet; the padding row always).

    What is *stored* (accounting and the checkpoint) is packed: the ``Σ s_e`` kept floats plus
    one width per stored row, never the ``n × d`` training buffer. ``state_dict`` holds
    ``values`` (the kept floats, row after row) and ``widths`` (smallest int type for ``d``).
    :meth:`set_row_bits` stores the rows in fewer bits (:class:`~recbole_lightemb.modules.precision.LowBitWidths`).
    """

    def __init__(self, num_embeddings, embedding_dim, widths, padding_idx=None, init_from=None):
        super().__init__(num_embeddings, embedding_dim, padding_idx)
        if init_from is not None:
            data = init_from.detach().clone().float()
        else:
            data = torch.empty(num_embeddings, embedding_dim)
            nn.init.xavier_normal_(data)
        if tuple(data.shape) != (self.num_embeddings, self.embedding_dim):
            raise ValueError(f"init_from has shape {tuple(data.shape)}, expected "
                             f"({self.num_embeddings}, {self.embedding_dim})")
        self.table = nn.Parameter(data)
        self.register_buffer("widths", torch.zeros(num_embeddings, dtype=torch.long))
        self.register_buffer("mask", torch.zeros(num_embeddings, embedding_dim), persistent=False)
        self.set_widths(widths)

    def _checked_widths(self, widths):
        widths = torch.as_tensor(np.asarray(widths) if not torch.is_tensor(widths) else widths)
        if widths.shape != (self.num_embeddings,):
            raise ValueError(f"widths must have shape ({self.num_embeddings},), got {tuple(widths.shape)}")
        if widths.is_floating_point() and not torch.equal(widths, widths.round()):
            raise ValueError("widths must be whole numbers")
        widths = widths.to(torch.long)
        if widths.numel() and (int(widths.min()) < 0 or int(widths.max()) > self.embedding_dim):
            raise ValueError(f"widths must be in 0..{self.embedding_dim}, got {int(widths.min())}.."
                             f"{int(widths.max())}")
        if self.padding_idx is not None:
            widths = widths.clone()
            widths[self.padding_idx] = 0
        return widths

    @torch.no_grad()
    def set_widths(self, widths):
        """Change the widths in place; the ``table`` Parameter (and its optimizer state) survives.

        Coordinates that still fit keep their values. Newly opened coordinates resume from what
        the parameter holds: the value they had when last open (or their initial value), possibly
        nudged while closed by optimizer momentum or weight decay. They are not re-drawn, so a
        narrow-then-wide schedule does not inject fresh noise into trained rows.
        """
        widths = self._checked_widths(widths).to(self.widths.device)
        self.widths.copy_(widths)
        cols = torch.arange(self.embedding_dim, device=self.widths.device)
        self.mask.copy_((cols < self.widths[:, None]).to(self.mask.dtype))

    def full_table(self):
        return self.rounded(self.table * self.mask)

    def forward(self, ids):
        return self.rounded(F.embedding(ids, self.table) * F.embedding(ids, self.mask), ids)

    def master_rows(self):
        """Every row's float32 values, zero past its width, before any rounding to stored bits."""
        return self.table * self.mask

    def stored_floats(self):
        return int(self.widths.sum())

    def stored_rows(self):
        return int((self.widths > 0).sum())

    def index_bytes(self):
        """One width per stored row, in the smallest integer type that holds ``d``."""
        return self.stored_rows() * index_bytes(self.embedding_dim)

    def _width_dtype(self):
        return {1: torch.int8, 2: torch.int16, 4: torch.int32}.get(index_bytes(self.embedding_dim), torch.int64)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        """Packed form: the kept floats and the widths, not the ``n × d`` training buffer."""
        values = self.table[self.mask.bool()]
        destination[prefix + "values"] = values if keep_vars else values.detach()
        destination[prefix + "widths"] = self.widths.to(self._width_dtype())

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        keys = {name: prefix + name for name in ("values", "widths")}
        missing = [key for key in keys.values() if key not in state_dict]
        if missing:
            missing_keys.extend(missing)
            return
        widths, values = state_dict[keys["widths"]], state_dict[keys["values"]]
        try:
            widths = self._checked_widths(widths.long())
        except ValueError as error:
            error_msgs.append(f"{prefix}widths: {error}")
            return
        if values.numel() != int(widths.sum()):
            error_msgs.append(f"{prefix}values: {values.numel()} floats for widths that keep {int(widths.sum())}")
            return
        with torch.no_grad():
            self.set_widths(widths)
            self.table.zero_()
            self.table[self.mask.bool()] = values.to(self.table.device, self.table.dtype)
        if strict:
            unexpected_keys.extend(key for key in state_dict if key.startswith(prefix)
                                   and key not in keys.values() and "." not in key[len(prefix):])

    def extra_repr(self):
        return super().extra_repr() + f", mean_width={self.widths.float().mean().item():.2f}"
