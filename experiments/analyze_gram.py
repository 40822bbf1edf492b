"""Self-similarity (Gram) matrices of inputs, softmax outputs and hidden states (parts 9, 10).

python -m experiments.analyze_gram --workdir=runs/tiny --output=runs/tiny/analysis
"""

from experiments import analyze_common

if __name__ == "__main__":
    analyze_common.main_for("gram")
