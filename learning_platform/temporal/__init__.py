"""Temporal client side: connecting, the payload codec and its server, worker start-up checks."""
