"""Everybody Dance Now\x27s own tasks: extract_poses, transfer."""
