"""Loading the pieces a workspace names: the model, the SAE, the data, and the token rows
built from that data."""
