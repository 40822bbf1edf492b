"""First-layer input weights: token-to-token similarity, enharmonic vs random pairs.

python -m experiments.analyze_embeddings --workdir=runs/tiny --output=runs/tiny/analysis
"""

from experiments import analyze_common

if __name__ == "__main__":
    analyze_common.main_for("embeddings")
