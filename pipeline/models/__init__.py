"""Buy-'til-you-die models (BG/NBD, modified BG/NBD, Gamma-Gamma): pure scoring functions and offline MLE fits."""
