"""LightGCN's normalised adjacency, multiplied as RecBole does and differentiated faster on the CPU.

RecBole keeps the ``(users + items)²`` adjacency as a COO tensor, and on the CPU the sparse products of a
2-layer forward and backward are most of a LightGCN batch. Backward, torch multiplies by the transposed matrix,
a COO tensor out of row order, at every batch; the plugin keeps that transpose once in CSR, each row's entries in
the order torch sums them (:class:`AdjacencyWithTranspose`, always on the CPU). With ``graph_csr: True`` the
forward products run on the matrix in CSR too, its entries in RecBole's stored order. Both give RecBole's floats:
on one torch thread on an Intel CPU (torch's MKL build) a trained epoch is bit for bit RecBole's (tested on tiny
data; ``bench/graph_csr.py`` checks ml-100k and Beauty and times them); on an AMD EPYC the weights differ from
RecBole's in the last bit (1.5e-8 after a tiny epoch), as RecBole's COO and CSR kernels there sum in another order;
with several threads RecBole's own epoch differs from run to run in the last bits, and so do these.
"""

import contextlib
import warnings

import torch

CSR_MODELS = ("LightGCN",)
"""Models whose adjacency is only ever multiplied (NGCF drops edges by COO index, so it stays COO)."""


def check_graph_csr(config):
    """``graph_csr`` is a boolean, and True only for a model that only multiplies its adjacency."""
    value = config["graph_csr"]
    if not isinstance(value, bool):
        raise ValueError(f"graph_csr={value!r}: expected True or False")
    if value and config["model"] not in CSR_MODELS:
        raise ValueError(f"graph_csr=True: model={config['model']} keeps no adjacency the plugin can convert; "
                         f"allowed: {', '.join(CSR_MODELS)}")


@contextlib.contextmanager
def _csr_quietly():
    """Torch calls its CSR support "beta" at every CSR tensor built; what is used here is tested."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        yield


def csr_form(matrix):
    """``matrix`` in CSR form, its entries sorted (``coalesce``), as torch's checks require."""
    with _csr_quietly():
        return matrix if matrix.layout == torch.sparse_csr else matrix.coalesce().to_sparse_csr()


def csr_in_stored_order(matrix, transpose=False):
    """A sparse COO (coalesced or not) or CSR ``matrix``, or its transpose, in CSR form with each row's entries in
    the order ``matrix`` stores them: the order in which torch's product by ``matrix`` (and, transposed, the
    backward of that product) sums them, so the CSR products give the same floats (one thread, on this x86 build
    with MKL: tested)."""
    if matrix.layout == torch.sparse_csr and not transpose:
        return matrix
    coo = matrix.to_sparse_coo() if matrix.layout == torch.sparse_csr else matrix
    rows, columns = coo._indices()
    if transpose:
        rows, columns = columns, rows
    order = torch.sort(rows, stable=True).indices
    shape = (matrix.shape[1], matrix.shape[0]) if transpose else tuple(matrix.shape)
    starts = torch.cat([rows.new_zeros(1), torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)])
    with _csr_quietly():  # rows may hold columns out of order (and twice), as the COO did: torch's check would refuse
        return torch.sparse_csr_tensor(starts, columns[order], coo._values()[order], shape, check_invariants=False)


class _Product(torch.autograd.Function):
    """``adjacency @ dense`` as torch computes it; its gradient through the stored transpose."""

    @staticmethod
    def forward(ctx, adjacency, dense):
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency.matrix, dense)

    @staticmethod
    def backward(ctx, grad):
        return None, torch.sparse.mm(ctx.adjacency.transpose, grad)


class AdjacencyWithTranspose:
    """A sparse matrix that ``torch.sparse.mm`` multiplies as it is (COO or CSR) and differentiates through its
    transpose kept in CSR (:func:`csr_in_stored_order`); any other use sees the matrix itself."""

    def __init__(self, matrix):
        self.matrix, self.transpose = matrix, csr_in_stored_order(matrix, transpose=True)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.sparse.mm and len(args) == 2 and not kwargs and isinstance(args[0], cls) \
                and not isinstance(args[1], cls):
            return _Product.apply(*args)
        unwrapped = [a.matrix if isinstance(a, cls) else a for a in args]
        return func(*unwrapped, **(kwargs or {}))

    def __reduce__(self):  # copies and pickles hold the matrix; the transpose is rebuilt from it
        return type(self), (self.matrix,)

    def __getattr__(self, name):  # layout, shape, device, …: the matrix's; copying and pickling: the wrapper's own
        if name.startswith("__") or name in ("matrix", "transpose"):
            raise AttributeError(name)
        return getattr(self.matrix, name)


def install_adjacency(model, config):
    """Store ``model.norm_adj_matrix`` in CSR form when ``graph_csr`` asks for it; on the CPU, differentiate its
    products through a stored transpose (:class:`AdjacencyWithTranspose`)."""
    if config["model"] not in CSR_MODELS:
        return
    matrix = model.norm_adj_matrix
    if config["graph_csr"]:  # off the CPU (untested: no GPU here), the sorted CSR the key always gave
        matrix = csr_in_stored_order(matrix) if matrix.device.type == "cpu" else csr_form(matrix)
    if matrix.device.type == "cpu" and not matrix.requires_grad:
        matrix = AdjacencyWithTranspose(matrix)
    model.norm_adj_matrix = matrix
