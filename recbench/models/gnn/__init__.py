"""GNN recommenders (one model a file) over the user-item graph, built on DGL."""
