"""Artist and tag identity: names normalized to keys, and ids a source tells apart kept apart.

An artist is normally its normalized name, so "Slot" and "СЛОТ", two ids of one source, are
one artist. A published protocol counts the source's ids (HetRec Last.fm-2K: 17,632 artists,
13 of them a case variant of another's name); with ``musicrec data prepare --no-filter`` the
second and later ids of a shared name get their id appended: ``СЛОТ [4914]``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from musicrec.text import normalize_name


def distinct_names(names: pd.Series, key: Callable[[str], str]) -> pd.Series:
    """``names`` (indexed by artist id, an id may repeat) made distinct per id under ``key``.

    The first id of a shared ``key(name)`` keeps its name; later ones get ``" [id]"`` appended.
    """
    names = names.astype(str)
    ids = names.index.astype(str)
    per_id = pd.Series(names.to_numpy(), index=ids)
    per_id = per_id[~per_id.index.duplicated()]
    later = per_id.map(key).duplicated(keep="first").to_numpy()
    per_id[later] = per_id[later] + " [" + per_id.index[later] + "]"
    return pd.Series(per_id.loc[ids].to_numpy(), index=names.index)


def normalize_tags(artists: pd.Series, tags: pd.Series, weights: pd.Series) -> pd.DataFrame:
    """(artist key, tag) pairs with summed weights; names normalized, empty ones dropped."""
    frame = pd.DataFrame(
        {
            "artist_key": [normalize_name(str(a)) for a in artists],
            "tag": [normalize_name(str(t)) for t in tags],
            "weight": pd.to_numeric(weights, errors="coerce").fillna(1.0).astype(np.float32),
        }
    )
    frame = frame[(frame["artist_key"] != "") & (frame["tag"] != "")]
    return frame.groupby(["artist_key", "tag"])["weight"].sum().reset_index()
