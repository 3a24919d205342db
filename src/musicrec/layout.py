"""File layout of the two on-disk contracts: the dataset dir and the model artifact dir.

Stages hand over directories, never in-memory objects. Every reader and writer uses these
names, so a layout change is made here once.

Dataset dir (written by ``musicrec data prepare``)::

    train.parquet   user_idx:int32, item_idx:int32, plays:float32[, timestamp:int64]
    valid.parquet   same columns (optional: protocols with a validation part, e.g. ratio 8:1:1)
    test.parquet    same columns; train, valid and test pairs are disjoint
    users.parquet   user_idx:int32, user_id:str
    items.parquet   item_idx:int32, artist_key:str (normalized name), artist_name:str,
                    mbid:str|null, listeners:int64, plays:int64
    tags.parquet    item_idx:int32, tag:str, weight:float32   (optional)
    stats.json      rows read / rejected by reason / dropped by each filter / kept
    dataset.json    format_version, source, fingerprint, split and filter parameters

Model artifact dir (written by ``musicrec train``)::

    user_factors.npy   als: float32 (n_users, factors), loadable with mmap_mode="r"
    item_factors.npy   als: float32 (n_items, factors)
    similarity.npz     itemknn / rp3beta: scipy CSR items x items, S[i, j] = i recommends j
    similarity.npy     ease: dense float32 items x items
    first/, second/    blend: each component's files
    train_matrix.npz   scipy CSR users x items, raw plays (filters already-played items)
    users.parquet, items.parquet[, tags.parquet]   vocabularies copied from the dataset
    manifest.json      format_version, kind, engine, params, metrics, dataset fingerprint/stats,
                       code version, created_at
    item_index.hnsw    optional approximate nearest-neighbour index over item factors
    evaluation.npz     per-user metric values of the last evaluation (paired comparisons)

No pickle anywhere: loading either directory never executes code.
"""

from __future__ import annotations

DATASET_FORMAT_VERSION = 1
ARTIFACT_FORMAT_VERSION = 1

TRAIN = "train.parquet"
VALID = "valid.parquet"
TEST = "test.parquet"
USERS = "users.parquet"
ITEMS = "items.parquet"
TAGS = "tags.parquet"
STATS = "stats.json"
DATASET_META = "dataset.json"

USER_FACTORS = "user_factors.npy"
ITEM_FACTORS = "item_factors.npy"
TRAIN_MATRIX = "train_matrix.npz"
MANIFEST = "manifest.json"
ITEM_INDEX = "item_index.hnsw"
SIMILARITY = "similarity.npz"  # item-item kinds: sparse CSR items x items
SIMILARITY_DENSE = "similarity.npy"  # EASE: dense float32 items x items
USER_SCORES = "evaluation.npz"  # per-user values beside the manifest, for paired comparisons
