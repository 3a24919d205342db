"""The serving runtime: catalogue, moods and the recommender the API answers from."""
