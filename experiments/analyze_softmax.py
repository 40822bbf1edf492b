"""Softmax layer: output bias, weight-column correlations, SVD spectrum (blog parts 2, 3).

python -m experiments.analyze_softmax --workdir=runs/tiny --output=runs/tiny/analysis
"""

from experiments import analyze_common

if __name__ == "__main__":
    analyze_common.main_for("softmax")
