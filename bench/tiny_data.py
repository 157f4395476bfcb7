"""Tiny generated RecBole datasets (seconds per model), shared by the tests and the coverage table.

``tiny``: a power-law-ish user-item log with timestamps; ``tinyctr``: the same log with a 0/1 label
and user and item features (token, float and token-sequence fields), as context-aware models read
it; ``tinykg``: the log with a small knowledge graph and its item-entity links.
"""

import numpy as np

N_USERS, N_ITEMS = 40, 60


def write_tiny_dataset(folder, name="tiny", n_users=N_USERS, n_items=N_ITEMS, n_inter=1200, seed=0):
    """A power-law-ish user-item log with timestamps, as a RecBole atomic ``.inter`` file."""
    rng = np.random.default_rng(seed)
    users = rng.integers(1, n_users + 1, n_inter)
    items = np.minimum(rng.zipf(1.3, n_inter), n_items)
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    times = rng.permutation(len(pairs)) + 1_000_000
    path = folder / name
    path.mkdir(parents=True, exist_ok=True)
    with open(path / f"{name}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for (u, i), t in zip(pairs, times):
            f.write(f"u{u}\ti{i}\t{t}\n")
    return path


def write_tiny_ctr_dataset(folder, name="tinyctr", seed=0, n_users=N_USERS, n_items=N_ITEMS, n_inter=1200):
    """The tiny log with a 0/1 label per interaction and user and item features."""
    path = write_tiny_dataset(folder, name, n_users, n_items, n_inter, seed)
    rng = np.random.default_rng(seed)
    lines = (path / f"{name}.inter").read_text().splitlines()
    rows = [f"{line}\t{int(rng.random() < 0.6)}" for line in lines[1:]]
    (path / f"{name}.inter").write_text("\n".join([lines[0] + "\tlabel:float"] + rows) + "\n")
    with open(path / f"{name}.user", "w") as f:
        f.write("user_id:token\tgender:token\tage:float\n")
        for u in range(1, n_users + 1):
            f.write(f"u{u}\t{'MF'[u % 2]}\t{20 + u % 30}\n")
    write_tiny_item_features(path, name, n_items)
    return path


def write_tiny_item_features(path, name, n_items=N_ITEMS):
    """Item features: a genre token sequence and a price."""
    with open(path / f"{name}.item", "w") as f:
        f.write("item_id:token\tgenre:token_seq\tprice:float\n")
        for i in range(1, n_items + 1):
            f.write(f"i{i}\tg{i % 3} g{i % 5}\t{1 + i % 7}\n")


def write_tiny_kg_dataset(folder, name="tinykg", seed=0, n_users=N_USERS, n_items=N_ITEMS, n_inter=1200):
    """The tiny log with item features, a knowledge graph of 3 relations and every item linked to an entity."""
    path = write_tiny_dataset(folder, name, n_users, n_items, n_inter, seed)
    write_tiny_item_features(path, name, n_items)
    rng = np.random.default_rng(seed)
    with open(path / f"{name}.kg", "w") as f:
        f.write("head_id:token\trelation_id:token\ttail_id:token\n")
        for i in range(1, n_items + 1):
            for r in rng.choice(3, 2, replace=False):
                f.write(f"e{i}\tr{r}\tx{rng.integers(20)}\n")
    with open(path / f"{name}.ent", "w") as f:  # pretrained entity and relation vectors (KSR, GRU4RecKG)
        f.write("ent_id:token\tent_emb:float_seq\n")
        for i in range(1, n_items + 1):
            f.write(f"e{i}\t" + " ".join(f"{v:.3f}" for v in rng.normal(size=64)) + "\n")
    with open(path / f"{name}.rel", "w") as f:
        f.write("rel_id:token\trel_emb:float_seq\n")
        for r in range(3):
            f.write(f"r{r}\t" + " ".join(f"{v:.3f}" for v in rng.normal(size=64)) + "\n")
    with open(path / f"{name}.link", "w") as f:
        f.write("item_id:token\tentity_id:token\n")
        for i in range(1, n_items + 1):
            f.write(f"i{i}\te{i}\n")
    return path


CTR = {"dataset": "tinyctr", "load_col": None, "numerical_features": ["age", "price"],
       "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None, "mode": "labeled"},
       "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC", "user_inter_num_interval": None,
       "item_inter_num_interval": None}
"""Keys a context-aware model needs on top of ``tiny_config`` (labelled evaluation, every field loaded)."""
