"""X2Face tasks: reenact (drive a source face with a video, pose codes or audio)."""
