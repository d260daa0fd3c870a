"""The recommender API."""
