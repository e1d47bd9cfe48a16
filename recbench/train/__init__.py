"""The one training loop, its epoch strategies, losses and samplers."""
