"""``file:PATH`` and ``file:PATH#KEY`` references: a file on disk, watched for changes."""
