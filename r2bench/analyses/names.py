"""Analysis names (import-light: the CLI reads them while building its parser)."""

STRATIFIED = ("cold-start", "history-length")
PERTURBATION = ("position", "history-shuffle", "truncation", "candidate-shuffle")
ANALYSES = (*STRATIFIED, *PERTURBATION, "transfer")
