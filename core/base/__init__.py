"""The base layer every other package stands on: workspace configs, paths, the hub probe,
record keys and atomic writes, locks between writers, the process environment, and the
statistics of uncertainty."""
