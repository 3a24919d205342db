"""The listener web UI (Streamlit): moods, Music Twins, For You, Explore and the model card.

The UI talks to the model only through the HTTP API (:mod:`musicrec.ui.client`); run it with
``musicrec ui``.
"""
