"""What researchers record: labels and feature sets in one SQLite store per workspace (its
schema and migrations apart), and their export and import."""
