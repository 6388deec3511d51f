"""The result folder: its layout, typed rows and summary, and how it is written and read."""
