"""Bake the model into an image (`notus build`) and ship it (`notus push`) through the Docker Engine API."""
