"""How redundant a layer's feature maps are: the "ghosts" that motivate Ghost modules (GhostNet paper, Fig. 1).

A channel's redundancy is the highest cosine similarity of its map to any other channel's (raw maps, not centred),
a layer's the mean over its live channels (1.0: every map a scaled copy of another; 0.0: all orthogonal). An
all-zero map has no direction: it takes part in no pair and is counted in `dead_channels`. Compare layers at the
same position relative to their activation; 1 x 1 maps always score +-1.
"""
import numpy as np

# Maps whose norm is below this fraction of the largest map's norm count as all-zero.
_DEAD_FRACTION = 1e-12


def flatten_maps(maps) -> np.ndarray:
    """(C, H, W) maps, or (C, D) vectors, -> (C, D) float64 rows."""
    maps = np.asarray(maps, np.float64)
    if maps.ndim < 2:
        raise ValueError(f"feature maps must be (channels, ...) with at least 2 dimensions, got shape {maps.shape}")
    return maps.reshape(maps.shape[0], -1)


def live_channels(maps) -> np.ndarray:
    """Boolean mask of the channels whose map is not all zero."""
    norms = np.linalg.norm(flatten_maps(maps), axis=1)
    return norms > _DEAD_FRACTION * max(float(norms.max(initial=0.0)), np.finfo(np.float64).tiny)


def cosine_similarity_matrix(maps) -> np.ndarray:
    """(C, C) cosine similarities between the flattened maps; rows and columns of all-zero maps are 0, the
    diagonal of the others 1."""
    flat = flatten_maps(maps)
    live = live_channels(flat)
    unit = np.zeros_like(flat)
    unit[live] = flat[live] / np.linalg.norm(flat[live], axis=1, keepdims=True)
    sim = np.clip(unit @ unit.T, -1.0, 1.0)
    np.fill_diagonal(sim, live.astype(np.float64))
    return sim


def nearest_channels(sim: np.ndarray, live=None):
    """For each channel, the other channel most similar to it and that similarity: (index array, value array).

    Dead channels (and every channel when fewer than two are live) get index -1 and value NaN."""
    sim = np.asarray(sim, np.float64)
    channels = sim.shape[0]
    live = np.ones(channels, bool) if live is None else np.asarray(live, bool)
    masked = np.where(np.outer(live, live) & ~np.eye(channels, dtype=bool), sim, -np.inf)
    index = np.full(channels, -1)
    value = np.full(channels, np.nan)
    if live.sum() >= 2:
        rows = np.flatnonzero(live)
        index[rows] = masked[rows].argmax(axis=1)
        value[rows] = masked[rows, index[rows]]
    return index, value


def redundancy_score(sim: np.ndarray, live=None) -> float:
    """Mean over the (live) channels of the highest cosine similarity to another channel; NaN with fewer than two
    live channels."""
    _, value = nearest_channels(sim, live)
    value = value[~np.isnan(value)]
    return float(value.mean()) if value.size else float("nan")


def top_pairs(sim: np.ndarray, k: int = 5, live=None):
    """The k most similar channel pairs (a < b), most similar first (ties: lower indices first):
    [(a, b, similarity), ...]."""
    sim = np.asarray(sim, np.float64)
    channels = sim.shape[0]
    live = np.ones(channels, bool) if live is None else np.asarray(live, bool)
    a, b = np.triu_indices(channels, k=1)
    keep = live[a] & live[b]
    a, b = a[keep], b[keep]
    values = sim[a, b]
    order = np.lexsort((b, a, -values))[:max(0, k)]  # last key first: similarity descending, then a, then b
    return [(int(a[i]), int(b[i]), float(values[i])) for i in order]


def channel_redundancy(maps, k: int = 5) -> dict:
    """Everything the visualisation reports about one layer's maps for one image, as JSON-ready values:
    channels, dead_channels, redundancy, top_pairs [{a, b, similarity}], nearest [{channel, nearest, similarity}]
    (nearest -1 and similarity None for dead channels)."""
    flat = flatten_maps(maps)
    live = live_channels(flat)
    sim = cosine_similarity_matrix(flat)
    index, value = nearest_channels(sim, live)
    score = redundancy_score(sim, live)
    return {
        "channels": int(flat.shape[0]),
        "dead_channels": int((~live).sum()),
        "redundancy": None if np.isnan(score) else score,
        "top_pairs": [{"a": a, "b": b, "similarity": s} for a, b, s in top_pairs(sim, k, live)],
        "nearest": [{"channel": c, "nearest": int(i), "similarity": None if np.isnan(v) else float(v)}
                    for c, (i, v) in enumerate(zip(index, value))],
    }
